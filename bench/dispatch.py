"""Dispatch benchmark: 1,000 tasks to 200 APRS radio stubs over MQTT, through the daemon.

The radios share one simulated channel behind a KISS TCP port (no airtime: the
channel is not what is measured); each acks at once and its person replies "收到".
Prints JSON lines:

* ``ceiling``: the same broker's bare QoS 1 publish rate (paho-mqtt, messages the size
  of a task, to a subscriber), and its one-hop latency p50;
* ``outbound``: the gateway's own share from a task's receipt to its bytes on the link,
  from the journal (``transmitted`` minus ``received``, both on the gateway's monotonic
  clock), at a steady 20 tasks/s: p50/p99 (targets: 5 ms / 20 ms);
* ``inbound``: from the reply's bytes on the channel to the ``acknowledged`` event at a
  subscriber, minus the broker's one-hop p50 measured above: p50/p99 (same targets);
* ``throughput``: the rest of the 1,000 tasks as one burst: acknowledged tasks/s end to
  end, and its ratio to the ceiling.

Run from the repository: ``.venv/bin/python bench/dispatch.py``. Needs mosquitto.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_stubs.aprs_radio import AprsRadio  # noqa: E402
from gateway.broker import Mosquitto  # noqa: E402
from gateway.model import rfc3339, utc_now  # noqa: E402
from protocols import ax25  # noqa: E402
from protocols.aprs import AprsMessage, decode_frame  # noqa: E402
from tests.radio_harness import RadioField  # noqa: E402

UNITS = 200
TASKS = 1000
STEADY_TASKS = 200
STEADY_RATE_PER_S = 20.0
BASE = "fieldlink/bench"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def callsign(i: int) -> str:
    return f"B{i:03d}X-7"


class Listener:
    """Records every task event (and ceiling message) with its arrival time."""

    def __init__(self, port: int) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.ceiling: list[tuple[float, bytes]] = []
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(f"{BASE}/tasks/+/events", 1), ("bench/ceiling", 1)])
        if not self._ready.wait(10):
            raise RuntimeError("listener did not subscribe")

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic == "bench/ceiling":
            self.ceiling.append((now, bytes(msg.payload)))
        else:
            self.events.append((now, json.loads(msg.payload)))

    def acknowledged(self) -> dict[str, float]:
        return {e["task_id"]: at for at, e in list(self.events) if e["stage"] == "acknowledged"}

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def measure_ceiling(port: int, listener: Listener, size: int) -> tuple[float, float]:
    """Bare QoS 1 publish rate through the broker, and one-hop latency at a low rate."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = b"x" * size
    # Latency: one message at a time.
    hops = []
    for _ in range(200):
        before = len(listener.ceiling)
        sent = time.monotonic()
        client.publish("bench/ceiling", payload, 1)
        wait(lambda n=before: len(listener.ceiling) > n, 5, "a ceiling message")
        hops.append(listener.ceiling[-1][0] - sent)
        time.sleep(0.002)
    listener.ceiling.clear()
    start = time.monotonic()
    for _ in range(TASKS):
        client.publish("bench/ceiling", payload, 1)
    wait(lambda: len(listener.ceiling) >= TASKS, 60, "the ceiling burst")
    rate = TASKS / (listener.ceiling[-1][0] - start)
    client.loop_stop()
    client.disconnect()
    return rate, percentile(hops, 50)


def config_text(tmp: Path, broker: Mosquitto, kiss_url: str) -> str:
    units = "".join(
        f'[[units]]\nid = "u{i}"\nname = "u{i}"\ndevices = ["vhf:{callsign(i)}"]\n'
        for i in range(UNITS)
    )
    return f"""
[gateway]
id = "bench"
data_dir = "{tmp / "data"}"
log_level = "warning"

[mqtt]
url = "{broker.url}"

[[links]]
name = "vhf"
protocol = "aprs"
url = "{kiss_url}"
callsign = "BH4GW-10"
retry_intervals_s = [5.0, 5.0, 5.0]
channel_baud = 10000000
txdelay_s = 0.0
txtail_s = 0.0
gap_s = 0.0

{units}"""


def task(n: int) -> bytes:
    body = {
        "task_id": f"b{n:04d}",
        "units": [f"u{n % UNITS}"],
        "text": f"b{n:04d} 人民广场东侧有人摔倒",
        "priority": "urgent" if n % 10 == 0 else "normal",
        "created_at": rfc3339(utc_now()),
    }
    return json.dumps(body, ensure_ascii=False).encode()


def radio_process(ready: Any, done: Any, results: Any) -> None:
    """The 200 radios on their channel, in a process of their own (no GIL shared with
    the MQTT listener of the measuring process)."""
    radios = [
        AprsRadio(callsign(i), reply="收到", reply_delay_s=0.0, ack_delay_s=0.0)
        for i in range(UNITS)
    ]
    field = RadioField(radios).start()
    ready.put(field.url)
    done.wait()
    results.put(list(field.net.log))
    field.stop()


def reply_times(log: list[tuple[float, str, bytes]]) -> dict[str, float]:
    """When each task's reply ("收到 #ref") went on the channel, by task ref."""
    out: dict[str, float] = {}
    for at, sender, frame_bytes in log:
        if sender.startswith("tcp:"):
            continue
        packet = decode_frame(ax25.decode(frame_bytes))
        if isinstance(packet, AprsMessage) and "#" in packet.text:
            ref = packet.text.rsplit("#", 1)[1].strip()
            out.setdefault(ref, at)
    return out


def shares(
    journal: Path, replies: dict[str, float], acked: dict[str, float], hop_s: float
) -> list[dict[str, object]]:
    """The gateway's own share, outbound from the journal and inbound from the air log."""
    with sqlite3.connect(journal) as conn:
        rows = conn.execute(
            "SELECT t.task_id, t.ref, r.offset_s, x.offset_s FROM tasks t"
            " JOIN stages r ON r.task_id = t.task_id AND r.stage = 'received'"
            " JOIN stages x ON x.task_id = t.task_id AND x.stage = 'transmitted'"
        ).fetchall()
    steady = {f"b{n:04d}" for n in range(STEADY_TASKS)}
    outbound = [(x - r) * 1000 for task_id, _ref, r, x in rows if task_id in steady]
    refs = {str(ref): task_id for task_id, ref, _r, _x in rows}
    inbound = []
    for ref, at in replies.items():
        task_id = refs.get(ref)
        if task_id in steady and task_id in acked:
            inbound.append((acked[task_id] - at - hop_s) * 1000)
    return [
        {
            "figure": name,
            "tasks": len(values),
            "p50_ms": round(percentile(values, 50), 3),
            "p99_ms": round(percentile(values, 99), 3),
            "target_p50_ms": 5,
            "target_p99_ms": 20,
        }
        for name, values in (("outbound", outbound), ("inbound", inbound))
    ]


def main() -> int:  # noqa: PLR0915 - a benchmark reads best top to bottom
    # The radios, the MQTT listener and this thread share one interpreter: a short GIL
    # switch interval keeps them from adding milliseconds of their own to the figures.
    sys.setswitchinterval(0.0002)
    ctx = mp.get_context("spawn")
    ready: Any = ctx.Queue()
    results: Any = ctx.Queue()
    done = ctx.Event()
    radios = ctx.Process(target=radio_process, args=(ready, done, results))
    radios.start()
    with tempfile.TemporaryDirectory(prefix="fieldlink-bench-") as tmp_name, Mosquitto() as broker:
        tmp = Path(tmp_name)
        kiss_url = ready.get(timeout=60)
        listener = Listener(broker.port)
        rate, hop = measure_ceiling(broker.port, listener, len(task(0)))
        print(
            json.dumps(
                {
                    "figure": "ceiling",
                    "qos1_msgs_per_s": round(rate),
                    "hop_p50_ms": round(hop * 1000, 3),
                }
            )
        )

        cfg = tmp / "config.toml"
        cfg.write_text(config_text(tmp, broker, kiss_url), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "daemon.log").open("wb"),
        )
        publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        publisher.max_inflight_messages_set(100)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        try:
            time.sleep(2.0)  # the daemon connects, subscribes, opens its link
            # Steady phase: latency.
            for n in range(STEADY_TASKS):
                publisher.publish(f"{BASE}/tasks/dispatch", task(n), 1)
                time.sleep(1 / STEADY_RATE_PER_S)
            wait(
                lambda: len(listener.acknowledged()) >= STEADY_TASKS,
                60,
                "steady tasks acknowledged",
            )
            # Burst phase: throughput.
            burst_start = time.monotonic()
            for n in range(STEADY_TASKS, TASKS):
                publisher.publish(f"{BASE}/tasks/dispatch", task(n), 1)
            try:
                wait(lambda: len(listener.acknowledged()) >= TASKS, 180, "every task acknowledged")
            except RuntimeError:
                stages: dict[str, int] = {}
                for _at, event in list(listener.events):
                    stages[event["stage"]] = stages.get(event["stage"], 0) + 1
                print(json.dumps({"figure": "error", "stages_seen": stages}))
                print((tmp / "daemon.log").read_text()[-3000:], file=sys.stderr)
                (Path(tempfile.gettempdir()) / "fieldlink-bench-daemon.log").write_bytes(
                    (tmp / "daemon.log").read_bytes()
                )
                raise
            acked = listener.acknowledged()
            burst_end = max(at for task_id, at in acked.items() if int(task_id[1:]) >= STEADY_TASKS)
            throughput = (TASKS - STEADY_TASKS) / (burst_end - burst_start)
        finally:
            publisher.loop_stop()
            publisher.disconnect()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)

        done.set()
        air_log = results.get(timeout=60)
        radios.join(30)
        for figure in shares(tmp / "data" / "journal.sqlite", reply_times(air_log), acked, hop):
            print(json.dumps(figure))
        print(
            json.dumps(
                {
                    "figure": "throughput",
                    "tasks": TASKS - STEADY_TASKS,
                    "acknowledged_per_s": round(throughput, 1),
                    "ratio_to_ceiling": round(throughput / rate, 4),
                }
            )
        )
        listener.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
