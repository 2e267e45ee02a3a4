"""KISS framing: hand vectors from the KISS spec, round trips and the torture suite.

Spec: K3MC/KA9Q "The KISS TNC" (http://ir3ip.net/iw3fqg/doc/kiss.htm), sections "Asynchronous frame
format" (FEND/FESC/TFEND/TFESC) and "Frame types"; worked frame and direwolf behaviour from
docs/protocols/aprs.md section 1, and direwolf 1.6 itself (its KISS parameter frames).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import ProtocolError
from protocols.kiss import (
    KissDecoder,
    KissError,
    KissFrame,
    KissRejected,
    encode_frame,
    encode_full_duplex,
    encode_persistence,
    encode_return,
    encode_set_hardware,
    encode_slot_time,
    encode_tx_delay,
    encode_tx_tail,
)

# The worked frame of kiss-ax25-aprs.md section 2: BH4ABC-9>APRS,WIDE1-1::BG5XYZ-7 :Task 17{00017
WORKED_AX25 = (
    bytes.fromhex("82a0a4a64040e084906882848672ae92888a62406303f0") + b":BG5XYZ-7 :Task 17{00017"
)
WORKED_KISS = b"\xc0\x00" + WORKED_AX25 + b"\xc0"


def frames_of(out: list[KissFrame | KissRejected]) -> list[KissFrame]:
    return [f for f in out if isinstance(f, KissFrame)]


def rejects_of(out: list[KissFrame | KissRejected]) -> list[KissRejected]:
    return [f for f in out if isinstance(f, KissRejected)]


def test_error_is_protocol_error() -> None:
    assert issubclass(KissError, ProtocolError)


def test_encode_worked_frame() -> None:
    assert encode_frame(WORKED_AX25) == WORKED_KISS


def test_escape_vectors_from_spec() -> None:
    # Data C0 -> DB DC, data DB -> DB DD; TFEND/TFESC alone are plain data.
    assert encode_frame(b"\xc0\xdb\xdc\xdd") == b"\xc0\x00\xdb\xdc\xdb\xdd\xdc\xdd\xc0"
    out = KissDecoder().feed(b"\xc0\x00\xdb\xdc\xdb\xdd\xdc\xdd\xc0")
    assert out == [KissFrame(0, 0, b"\xc0\xdb\xdc\xdd")]


def test_type_byte_port_and_command() -> None:
    assert encode_frame(b"x", port=1) == b"\xc0\x10x\xc0"
    assert KissDecoder().feed(b"\xc0\x10x\xc0\xc0\x35y\xc0") == [
        KissFrame(1, 0, b"x"),
        KissFrame(3, 5, b"y"),
    ]
    # Port 12, command 0 makes the type byte C0 itself: it must be escaped, and decodes back.
    wire = encode_frame(b"z", port=12)
    assert wire == b"\xc0\xdb\xdcz\xc0"
    assert KissDecoder().feed(wire) == [KissFrame(12, 0, b"z")]


@pytest.mark.parametrize(("port", "command"), [(-1, 0), (16, 0), (0, 16), (0, -1)])
def test_encode_rejects_bad_type_nibbles(port: int, command: int) -> None:
    with pytest.raises(KissError):
        encode_frame(b"", port=port, command=command)


def test_parameter_commands() -> None:
    # direwolf applies parameter frames: C0 01 14 C0 sets TXDELAY 20 (200 ms); C0 02 FF C0
    # persistence 255.
    assert encode_tx_delay(200) == b"\xc0\x01\x14\xc0"
    assert encode_persistence(1.0) == b"\xc0\x02\xff\xc0"
    assert encode_persistence(0.25) == b"\xc0\x02\x3f\xc0"  # spec default P = 63
    assert encode_slot_time(100) == b"\xc0\x03\x0a\xc0"
    assert encode_tx_tail(50, port=1) == b"\xc0\x14\x05\xc0"
    assert encode_full_duplex(True) == b"\xc0\x05\x01\xc0"
    assert encode_full_duplex(False) == b"\xc0\x05\x00\xc0"
    assert encode_set_hardware(b"\xc0") == b"\xc0\x06\xdb\xdc\xc0"
    assert encode_return() == b"\xc0\xff\xc0"
    assert KissDecoder().feed(encode_return()) == [KissFrame(15, 15, b"")]


@pytest.mark.parametrize("call", [lambda: encode_tx_delay(2560), lambda: encode_persistence(0.0)])
def test_parameter_range(call: object) -> None:
    assert callable(call)
    with pytest.raises(KissError):
        call()


def test_empty_frames_are_not_frames() -> None:
    dec = KissDecoder()
    assert dec.feed(b"\xc0\xc0\xc0\xc0") == []
    assert dec.feed(b"\xc0\xc0" + WORKED_KISS + b"\xc0") == [KissFrame(0, 0, WORKED_AX25)]


def test_raw_is_kept_escaped() -> None:
    (frame,) = KissDecoder().feed(b"\xc0\x00a\xdb\xdcb\xc0")
    assert isinstance(frame, KissFrame)
    assert frame.payload == b"a\xc0b"
    assert frame.raw == b"\x00a\xdb\xdcb"


def test_byte_by_byte_equals_whole() -> None:
    stream = b"".join(encode_frame(bytes([i]) * i + b"\xc0\xdb") for i in range(40))
    whole = KissDecoder().feed(stream)
    dec = KissDecoder()
    pieces: list[KissFrame | KissRejected] = []
    for b in stream:
        pieces += dec.feed(bytes([b]))
    assert pieces == whole
    assert len(whole) == 40


def test_noise_before_first_fend_is_dropped() -> None:
    dec = KissDecoder()
    assert dec.feed(b"line noise \x00\xdb\xff" + WORKED_KISS) == [KissFrame(0, 0, WORKED_AX25)]
    assert dec.noise_bytes == 14


def test_garbage_between_frames_does_not_hide_frames() -> None:
    stream = WORKED_KISS + b"\x12\x34garbage" + WORKED_KISS + b"\xc0\xc0\xc0" + WORKED_KISS
    out = KissDecoder().feed(stream)
    good = [f for f in frames_of(out) if f.payload == WORKED_AX25]
    assert len(good) == 3


def test_invalid_escape_rejects_frame_and_counts() -> None:
    dec = KissDecoder()
    out = dec.feed(b"\xc0\x00ab\xdb\x41cd\xc0" + WORKED_KISS)
    assert out[0] == KissRejected("invalid-escape", b"\x00ab\xdbAcd")
    assert out[1:] == [KissFrame(0, 0, WORKED_AX25)]
    assert dec.invalid_escapes == 1
    assert dec.frames == 1


def test_fesc_right_before_fend_is_invalid() -> None:
    dec = KissDecoder()
    out = dec.feed(b"\xc0\x00ab\xdb\xc0" + WORKED_KISS)
    assert [type(f) for f in out] == [KissRejected, KissFrame]
    assert dec.invalid_escapes == 1


def test_fesc_fesc_is_invalid() -> None:
    out = KissDecoder().feed(b"\xc0\x00\xdb\xdb\xdc\xc0")
    assert rejects_of(out) == [KissRejected("invalid-escape", b"\x00\xdb\xdb\xdc")]


@pytest.mark.parametrize("chunk", [1, 7, 100, 10_000])
def test_oversize_rejected_once_then_resync(chunk: int) -> None:
    dec = KissDecoder(max_frame_bytes=100)
    stream = b"\xc0\x00" + b"A" * 5000 + b"\xc0" + WORKED_KISS
    out: list[KissFrame | KissRejected] = []
    for i in range(0, len(stream), chunk):
        out += dec.feed(stream[i : i + chunk])
        assert dec.buffered_bytes <= 2 * 100 + 2
    assert [r.reason for r in rejects_of(out)] == ["oversize"]
    assert frames_of(out) == [KissFrame(0, 0, WORKED_AX25)]
    assert dec.oversize == 1


def test_oversize_resync_delivers_next_frame() -> None:
    dec = KissDecoder(max_frame_bytes=len(WORKED_AX25))
    out = dec.feed(b"\xc0\x00" + b"B" * 500 + WORKED_KISS)
    assert [type(f) for f in out] == [KissRejected, KissFrame]
    assert frames_of(out)[0].payload == WORKED_AX25


def test_limit_is_on_unescaped_payload() -> None:
    dec = KissDecoder(max_frame_bytes=16)
    fits = encode_frame(b"\xc0" * 16)  # 34 escaped bytes, 16 payload bytes
    assert dec.feed(fits) == [KissFrame(0, 0, b"\xc0" * 16)]
    too_big = encode_frame(b"a" * 17)
    assert [r.reason for r in rejects_of(dec.feed(too_big))] == ["oversize"]
    assert dec.feed(fits) == [KissFrame(0, 0, b"\xc0" * 16)]


def test_stray_fends_and_never_ending_frame_stay_bounded() -> None:
    dec = KissDecoder(max_frame_bytes=32)
    rng = random.Random(7)
    for _ in range(2000):
        dec.feed(bytes(rng.choice((0x41, 0x42, 0xDB, 0xDC)) for _ in range(rng.randint(0, 50))))
        assert dec.buffered_bytes <= 66


def test_max_frame_bytes_must_be_positive() -> None:
    with pytest.raises(KissError):
        KissDecoder(max_frame_bytes=0)


payloads = st.lists(st.binary(max_size=80), min_size=1, max_size=8)


@settings(deadline=None, max_examples=200)
@given(payloads, st.integers(0, 15), st.lists(st.integers(1, 64), min_size=1, max_size=10))
def test_round_trip_any_chunking(frames: list[bytes], port: int, cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p, port=port) for p in frames)
    dec = KissDecoder(max_frame_bytes=80)
    out: list[KissFrame | KissRejected] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += dec.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert out == [KissFrame(port, 0, p) for p in frames]
