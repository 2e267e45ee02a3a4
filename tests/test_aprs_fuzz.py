"""Hypothesis fuzzing: every decoder lets only its own error escape, whatever the input.

KISS: ``KissDecoder.feed`` never raises at all (bad frames come back as ``KissRejected``) and keeps
its buffer bounded. AX.25: ``decode`` raises only ``Ax25Error``. APRS: ``decode_info`` raises only
``AprsError``. Inputs are random bytes plus mutations of valid frames, which reach deeper branches.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import ax25
from protocols.aprs import (
    AprsError,
    decode_frame,
    decode_info,
    encode_message,
    encode_mic_e,
    encode_position,
    encode_status,
)
from protocols.kiss import KissDecoder, KissFrame, KissRejected, encode_frame

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)

_MIC_E_DEST, _MIC_E_INFO = encode_mic_e(31.2, 121.5, speed_kmh=40, course_deg=90, alt_m=12)
VALID_INFOS = [
    encode_message("BH4ABC-9", "Task 17: go to gate 3", "00017"),
    b":BH4ABC-9 :ack00017",
    b":BH4ABC-9 :hello{MM}AA",
    encode_status("on duty", NOW),
    encode_position(31.2, 121.5, course_deg=88, speed_kmh=60, alt_m=30, comment="x"),
    encode_position(31.2, 121.5, timestamp=NOW, messaging=True),
    encode_position(31.2, 121.5, compressed=True, course_deg=88, speed_kmh=60),
    encode_position(31.2, 121.5, compressed=True, alt_m=300),
    b"!31  .  N/121  .  E>",
    _MIC_E_INFO,
]
DESTS = ["APRS", _MIC_E_DEST, "S32U6T", "S32U6T-3"]


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


infos = st.one_of(
    st.binary(max_size=120),
    st.sampled_from(b"!=/@`':>;T").flatmap(
        lambda dti: st.binary(max_size=60).map(bytes([dti]).__add__)
    ),
    st.sampled_from(VALID_INFOS).flatmap(mutated),
)


@settings(deadline=None, max_examples=500)
@given(st.text(max_size=12), st.one_of(st.sampled_from(DESTS), st.text(max_size=10)), infos)
def test_decode_info_raises_only_aprs_error(source: str, dest: str, info: bytes) -> None:
    with contextlib.suppress(AprsError):
        decode_info(source, dest, info, now=NOW)


_FRAME = ax25.encode(
    ax25.Ax25Frame(
        ax25.parse_address("APRS"),
        ax25.parse_address("BH4ABC-9"),
        (ax25.parse_address("WIDE1-1*"), ax25.parse_address("WIDE2-1")),
        info=VALID_INFOS[0],
    )
)


@settings(deadline=None, max_examples=500)
@given(st.one_of(st.binary(max_size=100), mutated(_FRAME)))
def test_ax25_decode_raises_only_ax25_error(data: bytes) -> None:
    with contextlib.suppress(ax25.Ax25Error):
        ax25.decode(data)


@settings(deadline=None, max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from([b"\xc0", b"\xdb", b"\xc0\xc0", b"\xdb\xdc", encode_frame(_FRAME)]),
        ),
        max_size=30,
    ),
    st.integers(1, 200),
)
def test_kiss_feed_never_raises_and_stays_bounded(chunks: list[bytes], max_frame: int) -> None:
    dec = KissDecoder(max_frame_bytes=max_frame)
    for chunk in chunks:
        for item in dec.feed(chunk):
            assert isinstance(item, KissFrame | KissRejected)
            if isinstance(item, KissFrame):
                assert len(item.payload) <= max_frame
                assert 0 <= item.port <= 15
                assert 0 <= item.command <= 15
        assert dec.buffered_bytes <= 2 * max_frame + 2


@settings(deadline=None, max_examples=300)
@given(st.lists(st.one_of(st.binary(max_size=40), mutated(encode_frame(_FRAME))), max_size=10))
def test_whole_receive_path(chunks: list[bytes]) -> None:
    """KISS -> AX.25 -> APRS as the driver chains them: each stage raises only its own error."""
    dec = KissDecoder()
    for chunk in chunks:
        for item in dec.feed(chunk):
            if not isinstance(item, KissFrame):
                continue
            try:
                frame = ax25.decode(item.payload)
            except ax25.Ax25Error:
                continue
            with contextlib.suppress(AprsError):
                decode_frame(frame, now=NOW)
