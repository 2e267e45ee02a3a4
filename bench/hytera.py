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
* ``text_out_ms`` / ``ack_in_ms``: the gateway's own share of a text round trip, p50/p99 over
  ``--round-trips``: from ``send_text`` called until the TMP bytes are written to the link,
  and from the radio's ack read off the link until the delivery is reported (the driver's
  event). The link is an in-memory connection whose radio answers at once, so only the
  gateway's time is measured. Targets: p50 under 5 ms, p99 under 20 ms.

Usage: ``python bench/hytera.py [--frames N] [--round-trips N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.channel import NORMAL  # noqa: E402
from gateway.config import LinkConfig  # noqa: E402
from gateway.drivers.hytera.driver import HyteraDriver  # noqa: E402
from gateway.drivers.hytera.spec import SPEC  # noqa: E402
from gateway.errors import LinkError  # noqa: E402
from gateway.model import (  # noqa: E402
    Alarm,
    DeviceRef,
    LinkCounters,
    Position,
    TextFromUnit,
    TextOrder,
    UnitAnswer,
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
    TmpAck,
    TmpMessage,
    decode_service,
    encode_service,
    radio_ip,
)

OWN_ID = 7


class CountingSink:
    def __init__(self) -> None:
        self.events = 0

    def heard(self, device: DeviceRef) -> None:
        self.events += 1

    def position(self, position: Position) -> None:
        self.events += 1

    def text(self, text: TextFromUnit) -> None:
        self.events += 1

    def answer(self, answer: UnitAnswer) -> None:
        self.events += 1

    def alarm(self, alarm: Alarm) -> None:
        self.events += 1


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


def best_rate(fn: object, stream: bytes, chunk: int, repeat: int) -> float:
    assert callable(fn)
    best = float("inf")
    frames = 0
    for _ in range(repeat):
        start = time.perf_counter()
        frames = fn(stream, chunk)
        best = min(best, time.perf_counter() - start)
    return frames / best


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
    return {"text_out_ms": percentiles(out), "ack_in_ms": percentiles(back)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per feed() call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=2000)
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


if __name__ == "__main__":
    main()
