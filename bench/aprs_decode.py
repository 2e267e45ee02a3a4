"""Decode rate of the KISS -> AX.25 -> APRS receive path against merely splitting the KISS stream.

Prints JSON lines: frames/s of ``KissDecoder.feed`` alone (the ceiling), frames/s of the whole
decode (KISS + ``ax25.decode`` + ``decode_frame``) on the same mixed stream (positions in all three
formats, messages, acks), and their ratio. Usage: ``python bench/aprs_decode.py [--frames N]
[--chunk BYTES]``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from protocols import ax25, kiss
from protocols.aprs import (
    decode_frame,
    encode_ack,
    encode_message,
    encode_mic_e,
    encode_position,
)

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)


def mixed_stream(n_frames: int) -> bytes:
    mic_e_dest, mic_e_info = encode_mic_e(31.2, 121.5, speed_kmh=40, course_deg=90, alt_m=12)
    infos = [
        ("APRS", encode_position(31.235, 121.474, course_deg=88, speed_kmh=60, comment="R7")),
        ("APRS", encode_position(31.235, 121.474, timestamp=NOW, messaging=True, alt_m=30)),
        ("APRS", encode_position(49.5, -72.75, compressed=True, course_deg=88, speed_kmh=67)),
        (mic_e_dest, mic_e_info),
        ("APRS", encode_message("BG5XYZ-7", "Task 17: go to gate 3", "00017")),
        ("APRS", encode_ack("BH4ABC-9", "00017")),
    ]
    src = ax25.parse_address("BG5XYZ-7")
    digis = (ax25.parse_address("WIDE1-1"),)
    frames = [
        kiss.encode_frame(ax25.encode(ax25.Ax25Frame(ax25.parse_address(d), src, digis, info=i)))
        for d, i in infos
    ]
    return b"".join(frames[k % len(frames)] for k in range(n_frames))


def split_only(stream: bytes, chunk: int) -> int:
    dec = kiss.KissDecoder()
    count = 0
    for i in range(0, len(stream), chunk):
        count += len(dec.feed(stream[i : i + chunk]))
    return count


def full_decode(stream: bytes, chunk: int) -> int:
    dec = kiss.KissDecoder()
    count = 0
    for i in range(0, len(stream), chunk):
        for item in dec.feed(stream[i : i + chunk]):
            if isinstance(item, kiss.KissFrame):
                decode_frame(ax25.decode(item.payload), now=NOW)
                count += 1
    return count


def rate(fn: object, stream: bytes, chunk: int, repeat: int) -> float:
    assert callable(fn)
    best = float("inf")
    frames = 0
    for _ in range(repeat):
        start = time.perf_counter()
        frames = fn(stream, chunk)
        best = min(best, time.perf_counter() - start)
    return frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per feed() call")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stream = mixed_stream(args.frames)
    ceiling = rate(split_only, stream, args.chunk, args.repeat)
    decode = rate(full_decode, stream, args.chunk, args.repeat)
    common = {"frames": args.frames, "chunk_bytes": args.chunk}
    print(json.dumps({"figure": "kiss_split_frames_per_s", "value": round(ceiling), **common}))
    print(json.dumps({"figure": "aprs_decode_frames_per_s", "value": round(decode), **common}))
    print(json.dumps({"figure": "decode_vs_split_ratio", "value": round(decode / ceiling, 4)}))


if __name__ == "__main__":
    main()
