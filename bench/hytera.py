"""Hytera driver benchmark: the receive path's decode rate, and the gateway's own share of a
text round trip.

Prints JSON lines:

* ``hrnp_split_frames_per_s``: ``HrnpDecoder.feed`` alone on a mixed stream of HRNP DATA frames
  (LP periodic reports, TMP texts from radios, TMP acks) in 4 KiB chunks: the ceiling;
* ``codec_decode_frames_per_s``: the same stream split, then the HDAP envelope and the service
  decoded (``decode_envelope`` + ``decode_service``);
* ``driver_decode_frames_per_s``: the same stream through the driver's receive path
  (``HyteraDriver.handle_hdap``: decode, positions, texts with their dedupe, acks matched) into
  a sink that only counts; one core;
* ``..._vs_split_ratio``: each rate over the split rate measured in the same run;
* ``driver_text_out_ms`` / ``driver_ack_in_ms``: the driver's share of a text round trip, p50/p99
  over ``--round-trips``: from ``send_text`` called until the TMP bytes are written to the
  link, and from the radio's ack read off the link until the delivery is reported. The link is
  an in-memory connection whose radio answers at once, so only the driver's time is measured.
* ``daemon_outbound_ms`` / ``daemon_inbound_ms`` (with ``--daemon``, needs mosquitto): the
  whole gateway, ``fieldlink run`` with a hytera link to the simulated radio on a pty (in a
  process of its own), tasks published at a steady 20/s: outbound is the journal's
  ``transmitted`` minus ``received`` (the gateway's monotonic clock; ``transmitted`` is the
  radio's HRNP ack of the TMP frame); inbound is from the radio writing its TMP ack to the
  ``delivered`` event at a subscriber, minus the broker's one-hop p50 measured in the same run.
  Targets for both: p50 under 5 ms, p99 under 20 ms.

Usage: ``python bench/hytera.py [--frames N] [--round-trips N] [--daemon]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchkit import best_rate, wait  # noqa: E402

from firmware_stubs.hytera_radio import AirRadio, HyteraRadio  # noqa: E402
from gateway.channel import NORMAL  # noqa: E402
from gateway.config import LinkConfig  # noqa: E402
from gateway.devkit.broker import Mosquitto  # noqa: E402
from gateway.devkit.sinks import CountingSink  # noqa: E402
from gateway.drivers.hytera.driver import HyteraDriver  # noqa: E402
from gateway.drivers.hytera.spec import SPEC  # noqa: E402
from gateway.errors import LinkError  # noqa: E402
from gateway.model import (  # noqa: E402
    LinkCounters,
    TextOrder,
    rfc3339,
    utc_now,
)
from gateway.transport import Connection  # noqa: E402
from protocols.hytera.hdap import decode_envelope, encode_envelope  # noqa: E402
from protocols.hytera.hrnp import (  # noqa: E402
    PC_ADDRESS,
    RADIO_ADDRESS,
    HrnpDecoder,
    HrnpFrame,
    HrnpOpcode,
    encode_frame,
)
from protocols.hytera.services import (  # noqa: E402
    GpsFix,
    LpLocation,
    LpOpcode,
    RcpMessage,
    RcpOpcode,
    ServiceMessage,
    TmpAck,
    TmpMessage,
    decode_service,
    encode_service,
    radio_ip,
)

OWN_ID = 7


def make_driver(**overrides: object) -> HyteraDriver:
    options = {name: spec.default for name, spec in SPEC.options.items()}
    options.update(overrides)
    link = LinkConfig("bench", "hytera", "/dev/null", options=MappingProxyType(options))
    return HyteraDriver(link, CountingSink(), LinkCounters())


def mixed_stream(n_frames: int) -> bytes:
    """LP periodic reports, texts from radios, TMP acks; every frame distinct."""
    frames = []
    for k in range(n_frames):
        radio = radio_ip(1000 + k % 200)
        kind = k % 3
        if kind == 0:
            lat, lon = 31.2 + (k % 997) * 1e-4, 121.4 + (k // 997) * 1e-3
            block = GpsFix.build(lat, lon, time="120000", date="050126", direction=k % 360)
            fix = GpsFix.decode(block)
            message: object = LpLocation(
                LpOpcode.TRIGGERED_REPORT, k, radio, fix, time_remaining="00000000"
            )
        elif kind == 1:
            message = TmpMessage(k, radio_ip(OWN_ID), radio, f"收到 #{k}")
        else:
            message = TmpAck(k, radio, radio_ip(OWN_ID), 0)
        data = encode_envelope(encode_service(message))  # type: ignore[arg-type]
        number = k & 0xFFFF
        frames.append(encode_frame(HrnpFrame(HrnpOpcode.DATA, RADIO_ADDRESS, PC_ADDRESS, number,
                                             data)))  # fmt: skip
    return b"".join(frames)


def split_only(stream: bytes, chunk: int) -> int:
    decoder = HrnpDecoder()
    return sum(len(decoder.feed(stream[i : i + chunk])) for i in range(0, len(stream), chunk))


def codec_decode(stream: bytes, chunk: int) -> int:
    decoder = HrnpDecoder()
    count = 0
    for i in range(0, len(stream), chunk):
        for item in decoder.feed(stream[i : i + chunk]):
            if isinstance(item, HrnpFrame):
                decode_service(decode_envelope(item.data))
                count += 1
    return count


def driver_decode(stream: bytes, chunk: int) -> int:
    driver = make_driver()
    driver.own_id = OWN_ID
    decoder = HrnpDecoder()
    count = 0
    for i in range(0, len(stream), chunk):
        for item in decoder.feed(stream[i : i + chunk]):
            if isinstance(item, HrnpFrame):
                driver.handle_hdap(item.data)
                count += 1
    return count


class RadioLink(Connection):
    """An in-memory link to a radio that answers at once: ACCEPT, DATA_ACK, its id, TMP acks.
    Records when each TMP message was written and when each TMP ack was read."""

    def __init__(self) -> None:
        self.peer = "memory"
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_rx = 0.0
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._decoder = HrnpDecoder()
        self._numbers = 0
        self.tmp_written_at: list[float] = []
        self.ack_read_at: list[float] = []
        self._acks: set[bytes] = set()

    async def read(self) -> bytes:
        data = await self._inbox.get()
        if data in self._acks:
            self._acks.discard(data)
            self.ack_read_at.append(time.perf_counter())
        return data

    def _data(self, message: object) -> bytes:
        self._numbers = (self._numbers + 1) & 0xFFFF
        hdap = encode_envelope(encode_service(message))  # type: ignore[arg-type]
        return encode_frame(
            HrnpFrame(HrnpOpcode.DATA, RADIO_ADDRESS, PC_ADDRESS, self._numbers, hdap)
        )

    async def write(self, data: bytes) -> None:
        now = time.perf_counter()
        for frame in self._decoder.feed(data):
            if not isinstance(frame, HrnpFrame):
                continue
            if frame.opcode == HrnpOpcode.CONNECT:
                self._inbox.put_nowait(
                    encode_frame(HrnpFrame(HrnpOpcode.ACCEPT, RADIO_ADDRESS, PC_ADDRESS))
                )
            elif frame.opcode == HrnpOpcode.DATA:
                self._inbox.put_nowait(
                    encode_frame(
                        HrnpFrame(
                            HrnpOpcode.DATA_ACK, RADIO_ADDRESS, PC_ADDRESS, frame.packet_number
                        )
                    )
                )
                message = decode_service(decode_envelope(frame.data))
                if isinstance(message, RcpMessage) and message.opcode == RcpOpcode.RADIO_ID_REQUEST:
                    reply = RcpMessage(RcpOpcode.RADIO_ID_REPLY, result=0, target=0, value=OWN_ID)
                    self._inbox.put_nowait(self._data(reply))
                elif isinstance(message, TmpMessage):
                    self.tmp_written_at.append(now)
                    ack = self._data(TmpAck(message.request_id, message.dest, message.src, 0))
                    self._acks.add(ack)
                    self._inbox.put_nowait(ack)

    async def close(self) -> None:
        pass


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    cuts = statistics.quantiles(ms, n=100)
    return {"p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3), "max_ms": round(ms[-1], 3)}


async def round_trips(n: int) -> dict[str, dict[str, float]]:
    driver = make_driver(location_interval_s=0.0)
    driver.tx_gap_s = 0.0
    conn = RadioLink()
    runner = asyncio.create_task(driver.run(conn))
    try:
        async with asyncio.timeout(10):
            while not driver.connected:  # noqa: ASYNC110 - the driver offers no event for it
                await asyncio.sleep(0.001)
        out: list[float] = []
        back: list[float] = []
        for k in range(n):
            order = TextOrder("1001", f"#{k} 人民广场东侧有人摔倒", NORMAL, key=f"t{k}")
            called = time.perf_counter()
            report = await driver.send_text(order, lambda: None)
            reported = time.perf_counter()
            assert report.outcome.value == "delivered", report
            out.append(conn.tmp_written_at[-1] - called)
            back.append(reported - conn.ack_read_at[-1])
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, LinkError):
            await runner
    return {"driver_text_out_ms": percentiles(out), "driver_ack_in_ms": percentiles(back)}


# -- through the daemon ------------------------------------------------------------------------

BASE = "fieldlink/bench-hytera"
UNITS = 20
RATE_PER_S = 20.0


class AckTimingRadio(HyteraRadio):
    """The stub, noting when it writes each TMP ack (wall clock), by the text's task id."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.acked_at: dict[int, float] = {}
        self.texts: dict[int, str] = {}

    def send(self, message: ServiceMessage) -> None:
        if isinstance(message, TmpAck):
            for sent in self.from_gateway:
                if isinstance(sent, TmpMessage) and sent.request_id == message.request_id:
                    self.texts[message.request_id] = sent.text
        super().send(message)
        if isinstance(message, TmpAck):
            self.acked_at[message.request_id] = time.time()


def radio_process(ready: Any, done: Any, results: Any) -> None:
    async def run() -> None:
        radios = [AirRadio(2000 + i, reply=None) for i in range(UNITS)]
        stub = AckTimingRadio(radios, own_id=9, mode="pty")
        async with stub:
            ready.put(stub.device_path)
            while not done.is_set():  # noqa: ASYNC110 - a process event, not an asyncio one
                await asyncio.sleep(0.05)
            acks = {
                stub.texts[rid].split(" ", 2)[1]: at
                for rid, at in stub.acked_at.items()
                if rid in stub.texts
            }
            results.put(acks)

    logging.disable(logging.WARNING)
    asyncio.run(run())


class Listener:
    def __init__(self, port: int) -> None:
        self.delivered: dict[str, float] = {}
        self.hops: list[float] = []
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(f"{BASE}/tasks/+/events", 1), ("bench/hop", 1)])
        if not self._ready.wait(10):
            raise RuntimeError("listener did not subscribe")

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.time()
        if msg.topic == "bench/hop":
            self.hops.append(now - float(msg.payload))
            return
        event = json.loads(msg.payload)
        if event["stage"] == "delivered":
            self.delivered.setdefault(event["task_id"], now)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def daemon_config(tmp: Path, broker: Mosquitto, device: str) -> str:
    units = "".join(f'[[units]]\nid = "u{i}"\ndevices = ["dmr:{2000 + i}"]\n' for i in range(UNITS))
    return f"""
[gateway]
id = "bench-hytera"
data_dir = "{tmp / "data"}"
log_level = "warning"

[mqtt]
url = "{broker.url}"

[[links]]
name = "dmr"
protocol = "hytera"
url = "{device}"
baudrate = 115200
location_interval_s = 0.0

{units}"""


def bench_task(n: int) -> bytes:
    body = {
        "task_id": f"h{n:04d}",
        "units": [f"u{n % UNITS}"],
        "text": f"h{n:04d} 人民广场东侧有人摔倒",
        "priority": "normal",
        "created_at": rfc3339(utc_now()),
    }
    return json.dumps(body, ensure_ascii=False).encode()


def daemon_figures(tasks: int) -> list[dict[str, object]]:
    sys.setswitchinterval(0.0002)
    ctx = mp.get_context("spawn")
    ready: Any = ctx.Queue()
    results: Any = ctx.Queue()
    done = ctx.Event()
    radio = ctx.Process(target=radio_process, args=(ready, done, results))
    radio.start()
    with tempfile.TemporaryDirectory(prefix="fieldlink-bench-") as name, Mosquitto() as broker:
        tmp = Path(name)
        device = ready.get(timeout=60)
        listener = Listener(broker.port)
        publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        for _ in range(200):  # the broker's one hop, at a low rate
            publisher.publish("bench/hop", str(time.time()).encode(), 1)
            time.sleep(0.003)
        cfg = tmp / "config.toml"
        cfg.write_text(daemon_config(tmp, broker, device), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)],
            env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "daemon.log").open("wb"),
        )  # fmt: skip
        try:
            time.sleep(2.0)  # the daemon connects, subscribes, opens its link
            for n in range(tasks):
                publisher.publish(f"{BASE}/tasks/dispatch", bench_task(n), 1)
                time.sleep(1 / RATE_PER_S)
            wait(lambda: len(listener.delivered) >= tasks, 60, "every task delivered")
        finally:
            publisher.loop_stop()
            publisher.disconnect()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        done.set()
        acks: dict[str, float] = results.get(timeout=60)
        radio.join(30)
        hop = statistics.median(listener.hops)
        listener.stop()
        with sqlite3.connect(tmp / "data" / "journal.sqlite") as db:
            rows = db.execute(
                "SELECT r.task_id, r.offset_s, x.offset_s FROM stages r"
                " JOIN stages x ON x.task_id = r.task_id AND x.stage = 'transmitted'"
                " WHERE r.stage = 'received'"
            ).fetchall()
    outbound = [x - r for _task, r, x in rows]
    inbound = [
        listener.delivered[task_id] - at - hop
        for task_id, at in acks.items()
        if task_id in listener.delivered
    ]
    return [
        {"figure": figure, **percentiles(values), "tasks": len(values),
         "broker_hop_p50_ms": round(hop * 1000, 3), "targets_ms": {"p50": 5, "p99": 20}}
        for figure, values in (("daemon_outbound_ms", outbound), ("daemon_inbound_ms", inbound))
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per feed() call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--daemon", action="store_true", help="also through the daemon")
    parser.add_argument("--tasks", type=int, default=200, help="tasks for --daemon")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    stream = mixed_stream(args.frames)
    common = {"frames": args.frames, "chunk_bytes": args.chunk}
    split = best_rate(split_only, stream, args.chunk, args.repeat)
    print(json.dumps({"figure": "hrnp_split_frames_per_s", "value": round(split), **common}))
    for name, fn in (("codec_decode", codec_decode), ("driver_decode", driver_decode)):
        rate = best_rate(fn, stream, args.chunk, args.repeat)
        print(json.dumps({"figure": f"{name}_frames_per_s", "value": round(rate), **common}))
        print(json.dumps({"figure": f"{name}_vs_split_ratio", "value": round(rate / split, 4)}))
    for figure, values in asyncio.run(round_trips(args.round_trips)).items():
        print(json.dumps({"figure": figure, **values, "round_trips": args.round_trips,
                          "targets_ms": {"p50": 5, "p99": 20}}))  # fmt: skip
    if args.daemon:
        for daemon_figure in daemon_figures(args.tasks):
            print(json.dumps(daemon_figure))


if __name__ == "__main__":
    main()
