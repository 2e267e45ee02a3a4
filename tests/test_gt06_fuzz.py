"""Hypothesis: nothing but Gt06Error escapes the splitter or the decoder; the splitter's
buffer stays within its cap; valid packets survive any chunking."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import DeviceRef, Position
from gateway.plausible import check
from protocols.gt06 import (
    AlarmReport,
    Frame,
    FrameSplitter,
    Gt06Error,
    Location,
    Rejected,
    decode,
    encode_frame,
)

CAP = 300
PROTOCOLS = st.sampled_from(
    [0x01, 0x12, 0x13, 0x15, 0x16, 0x21, 0x22, 0x26, 0x27, 0x80, 0x8A, 0x94]
)


def run(chunks: list[bytes]) -> list[Frame]:
    splitter = FrameSplitter(max_frame_bytes=CAP)
    frames = []
    for chunk in chunks:
        for item in splitter.feed(chunk):
            if isinstance(item, Rejected):
                continue
            frames.append(item)
            try:
                message = decode(item)
            except Gt06Error:
                continue
            if isinstance(message, Location | AlarmReport):
                gps = message.gps
                position = Position(
                    DeviceRef("gt", "1"),
                    gps.lat,
                    gps.lon,
                    gps.time.replace(tzinfo=UTC),
                    datetime.now(UTC),
                    "gt06",
                    speed_kmh=float(gps.speed_kmh),
                    course_deg=float(gps.course),
                    satellites=gps.satellites,
                )
                check(position, now=datetime.now(UTC), max_fix_age_s=86400.0)  # never raises
        assert splitter.buffered <= CAP + len(chunk)
    return frames


@settings(deadline=None, max_examples=400)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes(chunks: list[bytes]) -> None:
    run(chunks)


@settings(deadline=None, max_examples=400)
@given(PROTOCOLS, st.binary(max_size=80), st.integers(0, 0xFFFF), st.booleans())
def test_valid_frames_with_random_content_decode_or_raise_gt06error(
    protocol: int, content: bytes, serial: int, long: bool
) -> None:
    raw = encode_frame(protocol, content, serial, long=long)
    frames = run([raw])
    assert [f.raw for f in frames] == [raw]
    assert (frames[0].protocol, frames[0].serial, frames[0].content) == (protocol, serial, content)


@settings(deadline=None, max_examples=200)
@given(
    st.lists(st.tuples(PROTOCOLS, st.binary(max_size=40)), min_size=1, max_size=5),
    st.binary(max_size=20),
    st.data(),
)
def test_packets_between_garbage_in_any_chunking(
    packets: list[tuple[int, bytes]], garbage: bytes, data: st.DataObject
) -> None:
    raws = [encode_frame(p, c, n) for n, (p, c) in enumerate(packets)]
    # Garbage without start markers before the packets; the packets back to back.
    junk = garbage.replace(b"\x78", b"").replace(b"\x79", b"")
    stream = junk + b"".join(raws)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert [f.raw for f in run(chunks)] == raws
