"""Positions benchmark: NMEA fixes into a pty, through the daemon, to a subscriber on mosquitto.

Prints one JSON object per line:

* ``ceiling``: a bare paho-mqtt client publishing the daemon's own position payloads
  (QoS 0, retained) to the same broker, as delivered to the same kind of subscriber;
* ``saturated``: positions per second the daemon delivers when the pty is written as
  fast as it takes, and its ratio to the ceiling (target: at least 0.8); beside it, what
  explains it: the daemon's CPU time per position (and the kernel's share of it), and its
  read() calls with the bytes each returned on average;
* ``latency``: at a steady 1,000 fixes/s, the time from writing a fix's sentences to the
  pty until the subscriber has the position, p50/p99/p99.9 in ms (targets: p99 < 5 ms,
  p99.9 < 20 ms);
* ``memory``: the daemon's peak RSS (target: under 80 MB);
* ``profile`` (with ``--profile RAW``): where the daemon spends its time in the saturated
  run, sampled with py-spy (``pip install py-spy``), as self and inclusive percentages.

Run from the repository: ``.venv/bin/python bench/positions.py [--quick]``. Needs mosquitto.
Compare ratios measured in one run; on a shared 2-core machine the subscriber, mosquitto and
the daemon compete for the cores, so every figure moves with the load (``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchkit import PositionSubscriber, percentile, rate  # noqa: E402

from firmware_stubs.nmea_gps import NmeaGps  # noqa: E402 - after the path set-up
from gateway.devkit.broker import Mosquitto  # noqa: E402

TOPIC = "fieldlink/bench/units/bench/position"
TARGET_RATIO = 0.8


def sample_payloads(count: int) -> list[bytes]:
    payload = {
        "lat": 31.2304123,
        "lon": 121.4737456,
        "alt_m": 12.0,
        "speed_kmh": 36.0,
        "course_deg": 90.0,
        "satellites": 12,
        "hdop": 0.9,
        "fix_time": "2026-11-28T12:00:00.000Z",
        "received_at": "2026-11-28T12:00:00.001Z",
        "source": "nmea",
        "link": "gps0",
    }
    out = []
    for i in range(count):
        payload["lat"] = 31.2304123 + i * 1e-7
        out.append(json.dumps(payload, separators=(",", ":")).encode())
    return out


def measure_ceiling(broker: Mosquitto, count: int) -> float:
    """A bare paho client publishing the same payloads as fast as it can."""
    sub = PositionSubscriber(broker.port, TOPIC, quiet_s=1.5, limit_s=120.0)
    payloads = sample_payloads(count)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    for payload in payloads:
        client.publish(TOPIC, payload, 0, True)
    deadline = time.monotonic() + 60
    while client.want_write() and time.monotonic() < deadline:
        time.sleep(0.01)
    received = sub.collect()
    client.loop_stop()
    client.disconnect()
    return rate(received)


def start_daemon(tmp: Path, broker: Mosquitto, device: str) -> subprocess.Popen[bytes]:
    config = tmp / "config.toml"
    config.write_text(
        f"""
[gateway]
id = "bench"
data_dir = "{tmp / "data"}"
log_level = "warning"

[mqtt]
url = "{broker.url}"

[[links]]
name = "gps0"
protocol = "nmea"
url = "{device}"
baudrate = 115200
unit = "bench"
"""
    )
    # This repository first; a caller's PYTHONPATH after it (for experiments, see docs).
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
        env=env,
        cwd=ROOT,  # "-m" puts the working directory first on the path: this repository's code
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("wb"),
    )
    time.sleep(1.5)  # connect, open the link
    return proc


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def read_calls(pid: int) -> tuple[int, int]:
    """Read system calls the process has made so far, and the bytes they returned."""
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(io["syscr"]), int(io["rchar"])


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the daemon (collapsed stacks), until it is sent SIGINT."""
    py_spy = Path(sys.executable).with_name("py-spy")
    proc = subprocess.Popen(
        [str(py_spy if py_spy.exists() else "py-spy"), "record", "--pid", str(pid),
         "--format", "raw", "--output", str(output), "--rate", "200"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # attached
    return proc


_FRAME_LINE = re.compile(r":\d+\)$")
# Waiting, not working: the event loop in epoll, aiomqtt's connect thread on its queue.
_IDLE_LEAVES = ("EpollSelector.select (", "_worker (concurrent/futures/thread.py)")


def profile_summary(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares of the busiest functions in py-spy's collapsed stacks
    (idle samples counted apart: the event loop in ``select``, an idle executor thread)."""
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    file_counts: dict[str, int] = {}
    samples = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_FRAME_LINE.sub(")", f) for f in stack.split(";")]
        if frames[-1].startswith(_IDLE_LEAVES):
            idle += count
            continue
        samples += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        where = frames[-1].rpartition(" (")[2].rstrip(")")
        file_counts[where] = file_counts.get(where, 0) + count
        for frame in set(frames):
            total_counts[frame] = total_counts.get(frame, 0) + count

    def share(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * n / samples, 1)) for name, n in ranked]

    return {
        "figure": "profile",
        "busy_samples": samples,
        "idle_samples": idle,
        "self_pct_by_file": share(file_counts),
        "self_pct": share(self_counts),
        "total_pct": share(total_counts),
    }


def measure_saturated(
    broker: Mosquitto, master: int, fixes: int, daemon: int, profile: Path | None
) -> dict[str, Any]:
    gps = NmeaGps(profile="minimal", rate_hz=100_000)
    chunks = [b"".join(gps.epoch() for _ in range(50)) for _ in range(fixes // 50)]
    sub = PositionSubscriber(broker.port, TOPIC, quiet_s=1.5, limit_s=120.0)
    profiler = start_profiler(daemon, profile) if profile is not None else None
    cpu_before = cpu_seconds(daemon)
    reads_before, read_bytes_before = read_calls(daemon)
    for chunk in chunks:
        write_all(master, chunk)
    received = sub.collect()
    user_after, system_after = cpu_seconds(daemon)
    user, system = user_after - cpu_before[0], system_after - cpu_before[1]
    cpu = user + system
    reads, read_bytes = read_calls(daemon)
    reads -= reads_before
    read_bytes -= read_bytes_before
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)
    return {
        "rate": rate(received),
        "fixes_written": len(chunks) * 50,
        "positions_received": len(received),
        # Includes the idle second or so the subscriber waits for silence: an upper bound.
        "daemon_cpu_us_per_position": round(cpu / max(1, len(received)) * 1e6, 1),
        "daemon_system_cpu_share": round(system / cpu, 2) if cpu else float("nan"),
        # read() calls of every kind (the pty's, most of them) and what they returned on average
        "daemon_reads": reads,
        "bytes_per_read": round(read_bytes / max(1, reads)),
    }


def measure_latency(broker: Mosquitto, master: int, seconds: float) -> dict[str, float]:
    gps = NmeaGps(profile="minimal", rate_hz=1000)
    written: dict[str, float] = {}
    sub = PositionSubscriber(broker.port, TOPIC, quiet_s=1.5, limit_s=120.0)
    period = 0.001
    start = time.monotonic()
    count = int(seconds * 1000)
    for i in range(count):
        due = start + i * period
        while (now := time.monotonic()) < due:
            if due - now > 0.0003:
                time.sleep(due - now - 0.0002)
        data = gps.epoch()
        stamp = time.monotonic()
        write_all(master, data)
        written[gps.time.strftime("%H:%M:%S.%f")[:-3]] = stamp
    received = sub.collect()
    latencies = []
    for at, payload in received:
        fix_time = json.loads(payload)["fix_time"][11:23]
        sent = written.get(fix_time)
        if sent is not None:
            latencies.append((at - sent) * 1000)
    latencies.sort()
    return {
        "fixes_written": count,
        "positions_received": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "p99_9_ms": round(percentile(latencies, 99.9), 3),
        "max_ms": round(latencies[-1], 3) if latencies else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--fixes", type=int, help="fixes in the saturated run (100,000)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="RAW",
        help="sample the daemon with py-spy during the saturated run, write its collapsed"
        " stacks to RAW and print a summary (the ratio is then not representative)",
    )
    args = parser.parse_args()
    fixes = args.fixes or (20_000 if args.quick else 100_000)
    latency_s = 3.0 if args.quick else 15.0

    with tempfile.TemporaryDirectory(prefix="fieldlink-bench-") as tmp_name, Mosquitto() as broker:
        tmp = Path(tmp_name)
        ceiling = measure_ceiling(broker, fixes)
        print(
            json.dumps(
                {"figure": "ceiling", "publisher": "paho-mqtt", "msgs_per_s": round(ceiling)}
            )
        )

        master, slave = os.openpty()
        tty.setraw(slave)
        link = tmp / "gps0"
        link.symlink_to(os.ttyname(slave))
        daemon = start_daemon(tmp, broker, str(link))
        try:
            saturated = measure_saturated(broker, master, fixes, daemon.pid, args.profile)
            print(
                json.dumps(
                    {
                        "figure": "saturated",
                        "positions_per_s": round(saturated["rate"]),
                        "ratio_to_ceiling": round(saturated["rate"] / ceiling, 3),
                        "target_ratio": TARGET_RATIO,
                        "fixes_written": saturated["fixes_written"],
                        "positions_received": saturated["positions_received"],
                        "daemon_cpu_us_per_position": saturated["daemon_cpu_us_per_position"],
                        "daemon_system_cpu_share": saturated["daemon_system_cpu_share"],
                        "daemon_reads": saturated["daemon_reads"],
                        "bytes_per_read": saturated["bytes_per_read"],
                    }
                )
            )
            if args.profile is not None:
                print(json.dumps(profile_summary(args.profile)))
            time.sleep(1.0)
            latency = measure_latency(broker, master, latency_s)
            print(
                json.dumps(
                    {
                        "figure": "latency",
                        "rate_per_s": 1000,
                        **latency,
                        "target_p99_ms": 5,
                        "target_p99_9_ms": 20,
                    }
                )
            )
            print(
                json.dumps(
                    {
                        "figure": "memory",
                        "peak_rss_mb": round(peak_rss_mb(daemon.pid), 1),
                        "target_mb": 80,
                    }
                )
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
            os.close(master)
            os.close(slave)
    return 0


if __name__ == "__main__":
    sys.exit(main())
