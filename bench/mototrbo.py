"""MOTOTRBO benchmark: LRRP decode rate, and the gateway's own share of a text round trip.

Prints JSON lines:

* ``lrrp_split_reports_per_s``: :func:`protocols.mototrbo.lrrp.tokenize` on a set of distinct
  reports (point/circle, 2d/3d, speed, direction, time): merely splitting each datagram into its
  tokens' bytes, knowing only their sizes: the ceiling; one core;
* ``lrrp_decode_reports_per_s``: :func:`protocols.mototrbo.lrrp.decode` on the same datagrams
  (every field read and scaled into an ``LrrpReport``); one core;
* ``decode_vs_split_ratio``: the two rates' ratio;
* ``text_task_to_tms_ms``: a task published to a real mosquitto until the control-station stub
  receives its TMS datagram, through the daemon (a child process, journal on disk): p50/p99;
* ``text_ack_to_event_ms``: the stub's TMS ack sent until the ``delivered`` event arrives from the
  broker: p50/p99;
  (``channel_hold_s = 0``: the figures are the gateway's processing, not the radio channel's
  pacing);
* ``mqtt_hop_ms``: the ceiling for both, measured in the same run: one publish through the same
  broker to a subscriber (p50/p99). Each round-trip figure includes one such hop, so the gateway's
  own share is that figure minus this one.

Usage: ``python bench/mototrbo.py [--reports N] [--texts N]`` (needs mosquitto on PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from firmware_stubs.mototrbo_radio import ControlStation, SubscriberRadio  # noqa: E402
from gateway.devkit.broker import Mosquitto  # noqa: E402
from protocols.mototrbo import lrrp  # noqa: E402

BASE = "fieldlink/gw1"
HOST = "127.0.0.1"
UNITS = 10


class _RadioLike(Protocol):
    text_times: list[float]


def reports(n: int) -> list[bytes]:
    rng = random.Random(11)
    shapes = list(lrrp.Shape)
    out = []
    for i in range(n):
        shape = shapes[i % len(shapes)]
        three_d = shape in (lrrp.Shape.POINT_3D, lrrp.Shape.CIRCLE_3D)
        report = lrrp.LrrpReport(
            lrrp.DocId.TRIGGERED_LOCATION_REPORT,
            bytes([1, 0, i >> 8 & 255, i & 255]),
            info_time=datetime(2026, 12, 5, 1, i % 60, i % 60, tzinfo=UTC),
            shape=shape,
            lat=rng.uniform(-89, 89),
            lon=rng.uniform(-179, 179),
            radius_m=rng.uniform(1, 50) if shape.startswith("circle") else None,
            alt_m=rng.uniform(-100, 3000) if three_d else None,
            speed_raw=rng.uniform(0, 40),
            direction_raw=rng.randrange(180),
        )
        out.append(lrrp.encode_report(report))
    return out


def best_rate(fn: Callable[[bytes], object], data: list[bytes], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for item in data:
            fn(item)
        best = max(best, len(data) / (time.perf_counter() - start))
    return best


def pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 3), "p99": round(p99, 3), "n": len(ordered)}


def free_udp_ports(count: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for sock in socks:
        sock.bind((HOST, 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def config(data_dir: Path, broker: Mosquitto, ports: list[int]) -> str:
    units = "\n".join(
        f'[[units]]\nid = "u{i}"\nname = "u{i}"\ndevices = ["trbo:{1001 + i}"]\n'
        for i in range(UNITS)
    )
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[mqtt]
url = "{broker.url}"

[[links]]
name = "trbo"
protocol = "mototrbo"
url = "udp-listen://{HOST}:{ports[0]}"
tms_port = {ports[1]}
lrrp_port = {ports[2]}
cai = 127
location_interval_s = 0
arm_emergency = false
retry_intervals_s = [5.0]
channel_hold_s = 0.0

{units}
"""


class Events:
    """A paho subscriber that timestamps what arrives."""

    def __init__(self, broker: Mosquitto, topics: list[str]) -> None:
        self.lock = threading.Lock()
        self.arrived: list[tuple[float, str, bytes]] = []
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        sock = self.client.socket()
        if isinstance(sock, socket.socket):  # Nagle would add ~40 ms to a lone publish
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("no subscription")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        with self.lock:
            self.arrived.append((now, msg.topic, bytes(msg.payload)))

    def find(self, predicate: Callable[[str, bytes], bool]) -> float | None:
        with self.lock:
            return next((t for t, topic, p in self.arrived if predicate(topic, p)), None)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(predicate: Callable[[], object], timeout_s: float = 20.0) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("bench wait timed out")
        await asyncio.sleep(0.0005)


def round_trips(n_texts: int) -> dict[str, dict[str, float]]:
    """Broker and daemon up (synchronously), then the stub and the measurements."""
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        ports = free_udp_ports(3)
        cfg = Path(tmp) / "config.toml"
        cfg.write_text(config(Path(tmp) / "data", broker, ports), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with (Path(tmp) / "gateway.log").open("wb") as log_file:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)],
                stdout=log_file, stderr=log_file, env=env, cwd=ROOT,
            )  # fmt: skip
        events = Events(broker, [f"{BASE}/#"])
        try:
            return asyncio.run(_measure(events, ports, n_texts))
        finally:
            events.stop()
            daemon.terminate()
            daemon.wait(15)


def _arrived(events: Events, topic: str, needle: bytes = b"") -> Callable[[], float | None]:
    return lambda: events.find(lambda t, p: t == topic and needle in p)


def _more_texts(state: _RadioLike, seen: int) -> Callable[[], bool]:
    return lambda: len(state.text_times) > seen


async def _measure(events: Events, ports: list[int], n_texts: int) -> dict[str, dict[str, float]]:
    radios = [SubscriberRadio(1001 + i, reply=None) for i in range(UNITS)]
    station = ControlStation(
        radios, gateway_host=HOST, ars_port=ports[0], tms_port=ports[1],
        lrrp_port=ports[2], cai=127, ars_retry_s=0.2,
    )  # fmt: skip
    async with station:
        await until(lambda: all(s.registered for s in station.radios.values()))
        await until(_arrived(events, f"{BASE}/units/u{UNITS - 1}/availability"))
        hop: list[float] = []
        for i in range(n_texts):
            topic = f"{BASE}/bench/hop/{i}"
            start = time.monotonic()
            events.client.publish(topic, b"x", qos=1)
            end = await until(_arrived(events, topic))
            assert isinstance(end, float)
            hop.append((end - start) * 1000)
        to_tms: list[float] = []
        ack_to_event: list[float] = []
        for i in range(n_texts):
            unit = i % UNITS
            state = station.radios[1001 + unit]
            seen = len(state.text_times)
            body = {
                "task_id": f"b{i}",
                "units": [f"u{unit}"],
                "text": f"任务 {i}",
                "priority": "normal",
                "created_at": datetime.now(UTC).isoformat(),
            }
            start = time.monotonic()
            events.client.publish(f"{BASE}/tasks/dispatch", json.dumps(body), qos=1)
            await until(_more_texts(state, seen))
            to_tms.append((state.text_times[seen] - start) * 1000)
            delivered = await until(_arrived(events, f"{BASE}/tasks/b{i}/events", b'"delivered"'))
            assert isinstance(delivered, float)
            ack_to_event.append((delivered - state.ack_times[seen]) * 1000)
    return {"to_tms": pct(to_tms), "ack_to_event": pct(ack_to_event), "hop": pct(hop)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--reports", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--texts", type=int, default=200)
    args = parser.parse_args()
    data = reports(args.reports)
    split = best_rate(lrrp.tokenize, data, args.repeat)
    decode = best_rate(lrrp.decode, data, args.repeat)
    common = {"reports": len(data), "cores": 1}
    print(json.dumps({"figure": "lrrp_split_reports_per_s", "value": round(split), **common}))
    print(json.dumps({"figure": "lrrp_decode_reports_per_s", "value": round(decode), **common}))
    print(json.dumps({"figure": "decode_vs_split_ratio", "value": round(decode / split, 4)}))
    if args.texts:
        trips = round_trips(args.texts)
        hop = trips["hop"]
        for name, key in (
            ("text_task_to_tms_ms", "to_tms"),
            ("text_ack_to_event_ms", "ack_to_event"),
        ):
            figure = trips[key]
            print(json.dumps({
                "figure": name, **figure, "targets": {"p50": 5.0, "p99": 20.0},
                "p50_vs_mqtt_hop": round(figure["p50"] / hop["p50"], 2),
            }))  # fmt: skip
        print(json.dumps({"figure": "mqtt_hop_ms", **hop}))


if __name__ == "__main__":
    main()
