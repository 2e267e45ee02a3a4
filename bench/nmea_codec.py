"""NMEA codec micro benchmark: the pure splitter, parser and fix assembler, no I/O.

For each receiver profile of the simulated GPS (``minimal``, ``ublox``, ``bd``), a stream of
epochs is cut into chunks of ``--chunk-epochs`` epochs (as a serial read would deliver them) and
decoded in three stages, each timed on its own (best of ``--repeat`` runs):

* ``split``: ``SentenceSplitter.feed`` only;
* ``split+parse``: plus ``parse`` of every sentence;
* ``split+parse+assemble``: plus ``FixAssembler.feed`` (the gateway's full decode path).

Prints one JSON object per line and stage: sentences/s, fixes/s and microseconds per fix (the
goal for ``minimal``, split+parse+assemble: under 25 us per fix).

Run from the repository: ``.venv/bin/python bench/nmea_codec.py [--epochs N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_stubs.nmea_gps import NmeaGps  # noqa: E402 - after the path set-up
from protocols.nmea import (  # noqa: E402
    FixAssembler,
    NmeaError,
    RawSentence,
    SentenceSplitter,
    parse,
)

PROFILES = ("minimal", "ublox", "bd")
START = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)


def make_chunks(profile: str, epochs: int, chunk_epochs: int) -> list[bytes]:
    """The simulated receiver's stream, ``chunk_epochs`` epochs per chunk."""
    gps = NmeaGps(profile=profile, rate_hz=100_000, start=START)
    bursts = [gps.epoch() for _ in range(epochs)]
    return [b"".join(bursts[i : i + chunk_epochs]) for i in range(0, epochs, chunk_epochs)]


def run_split(chunks: list[bytes]) -> tuple[int, int]:
    splitter = SentenceSplitter()
    sentences = 0
    for chunk in chunks:
        sentences += len(splitter.feed(chunk))
    return sentences, 0


def run_parse(chunks: list[bytes]) -> tuple[int, int]:
    splitter = SentenceSplitter()
    sentences = 0
    for chunk in chunks:
        for item in splitter.feed(chunk):
            sentences += 1
            if isinstance(item, RawSentence):
                with contextlib.suppress(NmeaError):
                    parse(item)
    return sentences, 0


def run_full(chunks: list[bytes]) -> tuple[int, int]:
    splitter, assembler = SentenceSplitter(), FixAssembler()
    sentences = fixes = 0
    for chunk in chunks:
        for item in splitter.feed(chunk):
            sentences += 1
            if not isinstance(item, RawSentence):
                continue
            try:
                msg = parse(item)
            except NmeaError:
                continue
            if msg is not None and assembler.feed(msg) is not None:
                fixes += 1
    if assembler.flush() is not None:
        fixes += 1
    return sentences, fixes


STAGES: dict[str, Callable[[list[bytes]], tuple[int, int]]] = {
    "split": run_split,
    "split+parse": run_parse,
    "split+parse+assemble": run_full,
}


def best_of(
    stage: Callable[[list[bytes]], tuple[int, int]], chunks: list[bytes], repeat: int
) -> tuple[float, int, int]:
    best = float("inf")
    sentences = fixes = 0
    for _ in range(repeat):
        began = time.perf_counter()
        sentences, fixes = stage(chunks)
        best = min(best, time.perf_counter() - began)
    return best, sentences, fixes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--epochs", type=int, default=20_000, help="epochs per profile")
    ap.add_argument("--chunk-epochs", type=int, default=50, help="epochs per fed chunk")
    ap.add_argument("--repeat", type=int, default=5, help="runs per stage (best is kept)")
    ap.add_argument("--profile", choices=PROFILES, action="append", help="default: all")
    args = ap.parse_args(argv)
    for profile in args.profile or PROFILES:
        chunks = make_chunks(profile, args.epochs, args.chunk_epochs)
        for name, stage in STAGES.items():
            seconds, sentences, fixes = best_of(stage, chunks, args.repeat)
            epochs = args.epochs
            record = {
                "profile": profile,
                "stage": name,
                "epochs": epochs,
                "sentences": sentences,
                "sentences_per_s": round(sentences / seconds),
                "fixes_per_s": round(epochs / seconds),
                "us_per_fix": round(seconds / epochs * 1e6, 2),
            }
            if name == "split+parse+assemble":
                record["fixes"] = fixes
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
