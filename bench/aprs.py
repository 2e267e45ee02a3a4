"""APRS driver benchmark: the receive path's decode rate, and how busy it keeps the channel.

Prints JSON lines:

* ``kiss_split_frames_per_s``: ``KissDecoder.feed`` alone on a mixed KISS stream (the ceiling);
* ``driver_decode_frames_per_s``: the same stream through the driver's whole receive path
  (``AprsDriver.handle_kiss_frame``: AX.25, APRS, dedupe caches, positions, messages to the
  gateway acked and delivered, acks matched) into a sink that only counts; one core;
* ``decode_vs_split_ratio``: the two rates' ratio;
* ``channel_busy_ratio``: N messages queued at once on a simulated 1200 baud channel (a
  ``Channel`` whose write only timestamps, holding each frame for its AFSK airtime plus the
  driver's gap): airtime / wall time from the first write to the end of the last frame. The
  ceiling is airtime / (airtime + gaps); ``max_idle_s`` (the longest pause between one frame's end
  and the next write, gap included) must stay at the configured ``gap_s``.

Every frame of the stream is distinct (positions move, message numbers count), so the dedupe
caches do not shortcut the work. Usage: ``python bench/aprs.py [--frames N] [--messages N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
from pathlib import Path
from types import MappingProxyType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchkit import best_rate  # noqa: E402

from gateway.channel import NORMAL, Channel  # noqa: E402
from gateway.config import LinkConfig  # noqa: E402
from gateway.devkit.sinks import CountingSink  # noqa: E402
from gateway.drivers.aprs.driver import DEFAULT_GAP_S, AprsDriver  # noqa: E402
from gateway.model import (  # noqa: E402
    LinkCounters,
)
from protocols import ax25, kiss  # noqa: E402
from protocols.aprs import encode_ack, encode_message, encode_mic_e, encode_position  # noqa: E402

GATEWAY = "BH4ABC-9"


def make_driver() -> AprsDriver:
    options = MappingProxyType(
        {
            "callsign": GATEWAY,
            "path": ("WIDE1-1",),
            "retry_intervals_s": (30.0,),
            "offline_after_s": 1800.0,
            "kiss_port": 0,
        }
    )
    link = LinkConfig("bench", "aprs", "tcp://127.0.0.1:8001", options=options)
    return AprsDriver(link, CountingSink(), LinkCounters())


def mixed_stream(n_frames: int) -> bytes:
    """Positions in three formats, messages (half to the gateway), acks; every frame distinct."""
    stations = [ax25.parse_address(f"BG5X{chr(65 + i // 10)}{i % 10}-7") for i in range(20)]
    digis = (ax25.parse_address("WIDE1-1"),)
    aprs = ax25.parse_address("APRS")
    frames = []
    for k in range(n_frames):
        source = stations[k % len(stations)]
        lat, lon = 31.2 + (k % 997) * 1e-4, 121.4 + (k // 997) * 1e-3
        kind = k % 6
        dest = aprs
        if kind == 0:
            info = encode_position(lat, lon, course_deg=88, speed_kmh=60, comment="R7")
        elif kind == 1:
            info = encode_position(lat, lon, compressed=True, course_deg=88, speed_kmh=67)
        elif kind == 2:
            mic_e_dest, info = encode_mic_e(lat, lon, speed_kmh=40, course_deg=90, alt_m=12)
            dest = ax25.parse_address(mic_e_dest)
        elif kind == 3:
            info = encode_message(GATEWAY, f"收到 #{k}", f"{k % 100000:05d}")
        elif kind == 4:
            info = encode_message("BG5OTH-1", f"Task {k}: go to gate 3", f"{k % 100000:05d}")
        else:
            info = encode_ack(GATEWAY, f"{k % 100000:05d}")
        frames.append(
            kiss.encode_frame(ax25.encode(ax25.Ax25Frame(dest, source, digis, info=info)))
        )
    return b"".join(frames)


def split_only(stream: bytes, chunk: int) -> int:
    decoder = kiss.KissDecoder()
    count = 0
    for i in range(0, len(stream), chunk):
        count += len(decoder.feed(stream[i : i + chunk]))
    return count


def driver_decode(stream: bytes, chunk: int) -> int:
    driver = make_driver()  # fresh caches per run
    decoder = kiss.KissDecoder()
    count = 0
    for i in range(0, len(stream), chunk):
        for item in decoder.feed(stream[i : i + chunk]):
            if isinstance(item, kiss.KissFrame):
                driver.handle_kiss_frame(item)
                count += 1
    return count


async def channel_busy(n_messages: int, speedup: float) -> dict[str, float]:
    """Queue ``n_messages`` at once; airtimes and the gap divided by ``speedup``."""
    driver = make_driver()
    loop = asyncio.get_running_loop()
    written: list[tuple[float, float]] = []  # (write time, airtime)

    def airtime(frame: bytes) -> float:
        return driver.frame_airtime_s(frame) / speedup

    async def write(frame: bytes) -> None:
        written.append((loop.time(), airtime(frame)))

    gap_s = DEFAULT_GAP_S / speedup
    channel = Channel("bench", write, airtime, gap_s=gap_s)
    frames = [
        driver.kiss_frame(
            encode_message(f"BG5X{i % 100:02d}", f"Task {i}: go to gate 3", f"{i:05d}")
        )
        for i in range(n_messages)
    ]
    async with asyncio.TaskGroup() as tasks:
        runner = tasks.create_task(channel.run())
        await asyncio.gather(*(channel.transmit(frame, NORMAL) for frame in frames))
        end = written[-1][0] + written[-1][1]
        runner.cancel()
    wall = end - written[0][0]
    air = sum(a for _, a in written)
    idle = [b[0] - (a[0] + a[1]) for a, b in itertools.pairwise(written)]
    return {
        "channel_busy_ratio": round(air / wall, 4),
        "ceiling_with_gaps": round(air / (air + gap_s * (len(written) - 1)), 4),
        "max_idle_s": round(max(idle, default=0.0) * speedup, 4),
        "gap_s": DEFAULT_GAP_S,
        "mean_airtime_s": round(air / len(written) * speedup, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per feed() call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--speedup", type=float, default=20.0, help="divide airtimes by this")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # acks matching nothing pending are logged at debug
    stream = mixed_stream(args.frames)
    ceiling = best_rate(split_only, stream, args.chunk, args.repeat)
    decode = best_rate(driver_decode, stream, args.chunk, args.repeat)
    common = {"frames": args.frames, "chunk_bytes": args.chunk}
    print(json.dumps({"figure": "kiss_split_frames_per_s", "value": round(ceiling), **common}))
    print(json.dumps({"figure": "driver_decode_frames_per_s", "value": round(decode), **common}))
    print(json.dumps({"figure": "decode_vs_split_ratio", "value": round(decode / ceiling, 4)}))
    busy = asyncio.run(channel_busy(args.messages, args.speedup))
    ratio = busy.pop("channel_busy_ratio")
    print(
        json.dumps(
            {"figure": "channel_busy_ratio", "value": ratio, "messages": args.messages, **busy}
        )
    )


if __name__ == "__main__":
    main()
