"""Hypothesis: nothing but Gt06Error escapes the splitter or the decoder; the splitter's
buffer stays within its cap; valid packets survive any chunking."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
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
    messages,
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


@settings(deadline=None, max_examples=300)
@given(st.binary(min_size=27, max_size=27))
def test_the_struct_fast_path_reads_what_the_construct_schema_says(block: bytes) -> None:
    """The GPS and LBS blocks are read with struct on the hot path; the construct layouts are
    the schema. Both must agree on every input."""
    schema = messages.GPS_LAYOUT.parse(block[:18])
    t = schema.time
    try:
        when = datetime(2000 + t.year, t.month, t.day, t.hour, t.minute, t.second)
    except ValueError:
        with pytest.raises(Gt06Error):
            messages.read_gps(block)
        return
    fast = messages.read_gps(block)
    assert fast.time == when
    assert round(abs(fast.lat) * messages.COORD_DIVISOR) == schema.lat
    assert round(abs(fast.lon) * messages.COORD_DIVISOR) == schema.lon
    assert (fast.speed_kmh, fast.satellites) == (schema.speed_kmh, schema.gps_info & 0x0F)
    assert fast.course == schema.course_status & 0x3FF
    cell, size = messages.read_cell(block[18:])
    lbs = messages.CELL_LAYOUT.parse(block[18:])
    assert (cell.mcc, cell.mnc, cell.lac, cell.cell_id) == (
        lbs.mcc & 0x7FFF,
        lbs.mnc,
        lbs.lac,
        lbs.cell_id,
    )
    assert size == (9 if lbs.mcc & 0x8000 else 8)
