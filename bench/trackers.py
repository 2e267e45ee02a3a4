"""Trackers benchmark, JT/T 808 part: thousands of terminal stubs dialling the daemon over
loopback TCP, positions out to a subscriber on mosquitto.

Prints one JSON object per line:

* ``ceiling``: a bare paho-mqtt client publishing position payloads of the same shape (QoS 0,
  retained, one topic per unit) to the same broker, as delivered to the same kind of subscriber;
* ``idle``: the daemon's RSS growth per connected, authenticated, silent terminal (target under
  10 KB), and per raw TCP connection opened and left idle without a word (``--idle`` of them,
  10,000 by default: the issue's hostile case);
* ``steady``: ``--terminals`` terminals (5,000) each reporting every ``--interval`` s (5), that is
  1,000 positions/s: positions/s delivered, and the latency from the terminal's write of a frame
  until the subscriber has the position, p50/p99/max in ms. It contains the daemon's own share
  (frame read until published, target p99 under 20 ms) plus the broker and subscriber hops, so
  it bounds that share from above;
* ``saturated``: every terminal sends ``--burst`` reports back to back: positions/s delivered
  and the ratio to the ceiling (target at least 0.4); the daemon's CPU time per position.

The load generator and the subscriber run with their garbage collector off during the timed
runs: their own full collections (~100 ms over 5,000 terminals) would count as latency. The
daemon's are part of what is measured: with 5,000 sessions a full (gen2) collection takes
~125 ms and lands in the steady run's worst second (``worst_seconds_p99_ms``); seen by putting a
``sitecustomize.py`` with a ``gc.callbacks`` timer on ``PYTHONPATH`` and keeping the daemon's
log with ``TRACKERS_DAEMON_LOG=<path>``.

Run from the repository: ``.venv/bin/python bench/trackers.py [--terminals 5000] [--quick]``.
Needs mosquitto. The terminals run in a child process (one asyncio loop), the subscriber in
another; on a shared 2-core machine they compete with the daemon and mosquitto for the cores,
so compare the ratios of one run (``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchkit import PositionSubscriber, percentile, rate  # noqa: E402

from firmware_stubs.jt808_terminal import Jt808Terminal  # noqa: E402 - after the path set-up
from gateway.devkit.broker import Mosquitto, free_port  # noqa: E402

TOPICS = "fieldlink/bench/units/+/position"
TARGET_RATIO = 0.4
TARGET_BYTES_PER_IDLE = 10 * 1024
TARGET_P99_MS = 20.0
FDS = 20_000


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FDS if hard == resource.RLIM_INFINITY else min(FDS, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def phone(index: int) -> str:
    return str(13_000_000_000 + index)


def coordinates(index: int, seq: int) -> tuple[float, float]:
    """Unique per (terminal, report): the subscriber's payload names its send time."""
    return round(10.0 + seq * 1e-4, 6), round(100.0 + index * 1e-4, 6)


async def _steady(  # noqa: PLR0917 - one terminal's share of the steady run
    index: int,
    terminal: Jt808Terminal,
    first: int,
    n: int,
    interval: float,
    rounds: int,
    sent: dict[tuple[float, float], float],
) -> None:
    await asyncio.sleep(interval * index / n)  # the terminals spread evenly over the interval
    for r in range(rounds):
        lat, lon = coordinates(index, first + r)
        sent[(lat, lon)] = time.monotonic()
        await terminal.report(lat, lon, wait=False)
        await asyncio.sleep(interval)


async def _burst(index: int, terminal: Jt808Terminal, first: int, count: int) -> None:
    for r in range(count):
        lat, lon = coordinates(index, first + r)
        await terminal.report(lat, lon, wait=False)


async def _fleet(port: int, n: int, commands: Queue[Any], replies: Queue[Any]) -> None:
    raise_fd_limit()
    terminals = [
        Jt808Terminal(("127.0.0.1", port), phone=phone(i), register=False, auth_code="bench")
        for i in range(n)
    ]
    idle: list[asyncio.StreamWriter] = []
    sent: dict[tuple[float, float], float] = {}
    seq = 0
    loop = asyncio.get_running_loop()
    while True:
        command, arg = await loop.run_in_executor(None, commands.get)
        if command == "connect":
            for start in range(0, n, 200):  # in waves: the listen backlog is 1024
                await asyncio.gather(*(t.start() for t in terminals[start : start + 200]))
            replies.put(sum(t.authenticated for t in terminals))
            # The load generator's own collections (gen2 over 5,000 terminals: ~100 ms, seen
            # with gc.callbacks) would show as latency between our timestamp and the write.
            gc.collect()
            gc.freeze()
            gc.disable()
        elif command == "idle":
            for _ in range(arg):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                idle.append(writer)
            replies.put(len(idle))
        elif command == "close_idle":
            for writer in idle:
                writer.close()
            idle.clear()
            replies.put(0)
        elif command == "steady":  # arg = (interval_s, rounds)
            interval, rounds = arg
            sent.clear()
            await asyncio.gather(
                *(_steady(i, t, seq, n, interval, rounds, sent) for i, t in enumerate(terminals))
            )
            seq += rounds
            replies.put(dict(sent))
        elif command == "burst":
            await asyncio.gather(*(_burst(i, t, seq, arg) for i, t in enumerate(terminals)))
            seq += arg
            replies.put(arg * n)
        elif command == "stop":
            await asyncio.gather(*(t.stop() for t in terminals), return_exceptions=True)
            replies.put(0)
            return


def fleet_main(port: int, n: int, commands: Queue[Any], replies: Queue[Any]) -> None:
    asyncio.run(_fleet(port, n, commands, replies))


class Fleet:
    def __init__(self, port: int, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.commands: Queue[Any] = ctx.Queue()
        self.replies: Queue[Any] = ctx.Queue()
        self.proc = ctx.Process(target=fleet_main, args=(port, n, self.commands, self.replies))
        self.proc.start()

    def do(self, command: str, arg: object = None, timeout_s: float = 600) -> Any:
        self.commands.put((command, arg))
        return self.replies.get(timeout=timeout_s)

    def stop(self) -> None:
        try:
            self.do("stop", timeout_s=120)
        except Exception:  # noqa: BLE001 - a stuck fleet is killed below; the run is over anyway
            print(json.dumps({"warning": "the terminals did not stop in time"}), flush=True)
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()


# -- the daemon -----------------------------------------------------------------------------


def start_daemon(
    tmp: Path, broker: Mosquitto, port: int, n: int, idle: int
) -> subprocess.Popen[bytes]:
    config = tmp / "config.toml"
    config.write_text(
        f"""
[gateway]
id = "bench"
data_dir = "{tmp / "data"}"
log_level = "warning"
max_implicit_units = {n + 10}

[mqtt]
url = "{broker.url}"

[[links]]
name = "trk"
protocol = "jt808"
url = "listen://127.0.0.1:{port}"
register = "open"
accept_unregistered = true
max_connections = {n + idle + 100}
idle_timeout_s = 3600
auth_timeout_s = 3600
""",
        encoding="utf-8",
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("wb"),
    )
    time.sleep(2.0)
    return proc


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s: never leave a daemon behind the bench."""
    daemon.terminate()
    try:
        daemon.wait(30)
    except subprocess.TimeoutExpired:
        print(json.dumps({"warning": "the daemon did not stop within 30 s: killed"}), flush=True)
        daemon.kill()
        daemon.wait(10)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, seconds: float = 2.0) -> int:
    time.sleep(seconds)
    return rss_bytes(pid)


# -- the runs -------------------------------------------------------------------------------


def measure_ceiling(broker: Mosquitto, count: int, units: int) -> float:
    sub = PositionSubscriber(broker.port, TOPICS, quiet_s=2.0, limit_s=300.0)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    for i in range(count):
        payload = {
            "lat": 10.0 + i * 1e-6, "lon": 100.0, "alt_m": 12.0, "speed_kmh": 36.5,
            "course_deg": 90.0, "satellites": 11, "fix_time": "2026-11-28T12:00:00.000Z",
            "received_at": "2026-11-28T12:00:00.001Z", "source": "jt808", "link": "trk",
        }  # fmt: skip
        client.publish(
            f"fieldlink/bench/units/u{i % units}/position",
            json.dumps(payload, separators=(",", ":")),
            0,
            True,
        )
    deadline = time.monotonic() + 120
    while client.want_write() and time.monotonic() < deadline:
        time.sleep(0.01)
    received = sub.collect()
    client.loop_stop()
    client.disconnect()
    return rate(received)


def latencies_ms(
    sent: dict[tuple[float, float], float], got: list[tuple[float, bytes]]
) -> list[tuple[float, float]]:
    """(send time, latency in ms) of every position delivered."""
    out = []
    for at, payload in got:
        data = json.loads(payload)
        t0 = sent.get((round(data["lat"], 6), round(data["lon"], 6)))
        if t0 is not None:
            out.append((t0, (at - t0) * 1000))
    return out


def worst_seconds(samples: list[tuple[float, float]], count: int = 5) -> list[list[float]]:
    """The seconds of the run (from its start) with the highest p99, as [second, p99 ms]."""
    if not samples:
        return []
    start = min(t for t, _ in samples)
    by_second: dict[int, list[float]] = {}
    for t, ms in samples:
        by_second.setdefault(int(t - start), []).append(ms)
    p99s = [(percentile(v, 99), second) for second, v in by_second.items()]
    return [[second, round(p, 1)] for p, second in sorted(p99s, reverse=True)[:count]]


def run_idle(fleet: Fleet, daemon: subprocess.Popen[bytes], idle: int) -> None:
    """RSS growth per authenticated silent terminal, then per raw idle connection."""
    base = settle(daemon.pid)
    authenticated = fleet.do("connect")
    connected = settle(daemon.pid)
    opened = fleet.do("idle", idle)
    with_idle = settle(daemon.pid)
    fleet.do("close_idle")
    settle(daemon.pid, 5.0)  # the 10,000 closes are handled before the timed runs
    print(json.dumps({"idle": {
        "terminals": authenticated,
        "bytes_per_idle_terminal": round((connected - base) / max(authenticated, 1)),
        "raw_idle_connections": opened,
        "bytes_per_raw_idle_connection": round((with_idle - connected) / max(opened, 1)),
        "target_bytes": TARGET_BYTES_PER_IDLE,
        "daemon_rss_mb": round(with_idle / 2**20, 1),
    }}), flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=5000)
    parser.add_argument("--idle", type=int, default=10_000, help="raw idle TCP connections")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4, help="reports per terminal, steady run")
    parser.add_argument("--burst", type=int, default=10, help="reports per terminal, saturated")
    parser.add_argument("--quick", action="store_true", help="1,000 terminals, 2,000 idle")
    args = parser.parse_args()
    if args.quick:
        args.terminals, args.idle, args.rounds, args.burst = 1000, 2000, 3, 5
    raise_fd_limit()
    n = args.terminals
    with tempfile.TemporaryDirectory() as tmp_name, Mosquitto(Path(tmp_name) / "broker") as broker:
        keep_log = os.environ.get("TRACKERS_DAEMON_LOG")
        tmp = Path(tmp_name)
        ceiling = measure_ceiling(broker, n * args.burst, n)
        print(json.dumps({"ceiling": {"positions_per_s": round(ceiling)}}), flush=True)
        port = free_port()
        daemon = start_daemon(tmp, broker, port, n, args.idle)
        fleet = Fleet(port, n)
        try:
            run_idle(fleet, daemon, args.idle)
            sub = PositionSubscriber(broker.port, TOPICS, quiet_s=args.interval + 2, limit_s=300.0)
            sent = fleet.do("steady", (args.interval, args.rounds))
            got = sub.collect()
            samples = latencies_ms(sent, got)
            lat = [ms for _, ms in samples]
            print(json.dumps({"steady": {
                "terminals": n, "interval_s": args.interval,
                "offered_per_s": round(n / args.interval),
                "delivered": len(got), "sent": len(sent),
                "positions_per_s": round(rate(got)),
                "latency_ms": {"p50": round(percentile(lat, 50), 2),
                               "p99": round(percentile(lat, 99), 2),
                               "max": round(max(lat, default=float("nan")), 2)},
                "target_p99_ms": TARGET_P99_MS,
                "worst_seconds_p99_ms": worst_seconds(samples),
            }}), flush=True)  # fmt: skip

            sub = PositionSubscriber(broker.port, TOPICS, quiet_s=2.0, limit_s=300.0)
            cpu0 = cpu_s(daemon.pid)
            total = fleet.do("burst", args.burst)
            got = sub.collect()
            cpu = cpu_s(daemon.pid) - cpu0
            saturated = rate(got)
            print(json.dumps({"saturated": {
                "sent": total, "delivered": len(got),
                "positions_per_s": round(saturated),
                "ratio_to_ceiling": round(saturated / ceiling, 3) if ceiling else None,
                "target_ratio": TARGET_RATIO,
                "daemon_cpu_us_per_position": round(cpu / max(len(got), 1) * 1e6, 1),
            }}), flush=True)  # fmt: skip
        finally:
            try:
                fleet.stop()
            finally:
                stop_daemon(daemon)
                if keep_log:
                    Path(keep_log).write_bytes((tmp / "daemon.log").read_bytes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
