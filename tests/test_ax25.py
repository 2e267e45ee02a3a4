"""AX.25 frames inside KISS: hand vectors, error cases and round trips.

Spec: AX.25 v2.0 (https://www.qsl.net/lz4ny/packet/ax25.htm) section 3.12 (address field), 4.3.3
(UI control), 3.4 (PID); worked frame from docs/protocols/aprs.md section 2.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import ProtocolError
from protocols.ax25 import (
    Address,
    Ax25Error,
    Ax25Frame,
    decode,
    encode,
    parse_address,
    parse_tnc2,
)

DEST = bytes.fromhex("82a0a4a64040e0")  # "APRS  " << 1, SSID byte E0
SRC = bytes.fromhex("84906882848672")  # "BH4ABC" << 1, SSID byte 72 (SSID 9)
DIGI_LAST = bytes.fromhex("ae92888a624063")  # "WIDE1 " << 1, SSID 1, last address
INFO = b":BG5XYZ-7 :Task 17{00017"
WORKED = DEST + SRC + DIGI_LAST + b"\x03\xf0" + INFO
WORKED_FRAME = Ax25Frame(Address("APRS"), Address("BH4ABC", 9), (Address("WIDE1", 1),), info=INFO)


def test_error_is_protocol_error() -> None:
    assert issubclass(Ax25Error, ProtocolError)


def test_decode_worked_frame() -> None:
    frame = decode(WORKED)
    assert frame == WORKED_FRAME
    assert frame.raw == WORKED
    assert frame.is_ui
    assert frame.tnc2() == b"BH4ABC-9>APRS,WIDE1-1::BG5XYZ-7 :Task 17{00017"


def test_encode_worked_frame() -> None:
    assert encode(WORKED_FRAME) == WORKED


def test_c_bits_are_ignored() -> None:
    # direwolf writes source SSID byte F2 (C=1) where a v2 encoder writes 72
    # (docs/protocols/aprs.md section 2).
    direwolf_style = DEST + SRC[:6] + b"\xf2" + DIGI_LAST + b"\x03\xf0" + INFO
    assert decode(direwolf_style) == WORKED_FRAME
    v1_style = DEST[:6] + b"\x60" + SRC + DIGI_LAST + b"\x03\xf0" + INFO
    assert decode(v1_style) == WORKED_FRAME


def test_repeated_digipeater_h_bit() -> None:
    used = DIGI_LAST[:6] + b"\xe3"  # H=1: "WIDE1-1*"
    frame = decode(DEST + SRC + used + b"\x03\xf0" + INFO)
    assert frame.digipeaters == (Address("WIDE1", 1, True),)
    assert str(frame.digipeaters[0]) == "WIDE1-1*"
    assert frame.tnc2().startswith(b"BH4ABC-9>APRS,WIDE1-1*:")
    assert encode(frame) == DEST + SRC + used + b"\x03\xf0" + INFO


def test_no_digipeaters_sets_extension_on_source() -> None:
    frame = Ax25Frame(Address("APRS"), Address("BH4ABC", 9), info=b">hi")
    wire = encode(frame)
    assert wire == DEST + SRC[:6] + b"\x73\x03\xf0>hi"
    assert decode(wire) == frame


def test_eight_digipeaters() -> None:
    digis = tuple(Address(f"DIGI{i}", i) for i in range(8))
    frame = Ax25Frame(Address("APRS"), Address("N0CALL"), digis, info=b"x")
    assert decode(encode(frame)) == frame


def test_more_than_eight_digipeaters() -> None:
    digis = tuple(Address(f"DIGI{i}") for i in range(9))
    with pytest.raises(Ax25Error):
        encode(Ax25Frame(Address("APRS"), Address("N0CALL"), digis))
    wire = encode(Ax25Frame(Address("APRS"), Address("N0CALL"), digis[:8], info=b"x"))
    # Clear the extension bit of the 8th digipeater and append a 9th address.
    tampered = bytearray(wire[: 7 * 10])
    tampered[-1] &= 0xFE
    with pytest.raises(Ax25Error, match="more than 8"):
        decode(bytes(tampered) + DIGI_LAST + b"\x03\xf0x")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "truncated"),
        (DEST, "truncated"),
        (DEST + SRC[:5], "truncated"),
        (DEST + SRC + DIGI_LAST[:6], "truncated"),  # last address never flagged
        (DEST[:6] + b"\xe1" + SRC, "no source"),  # extension bit on the destination
        (DEST + SRC + DIGI_LAST, "control"),
        (DEST + SRC + DIGI_LAST + b"\x03", "PID"),
        (DEST + SRC + DIGI_LAST + b"\x00", "PID"),  # I frame without PID
        (b"\xc2" + DEST[1:] + SRC + DIGI_LAST + b"\x03\xf0", "invalid callsign"),  # 'a'
        (b"\x83" + DEST[1:] + SRC + DIGI_LAST + b"\x03\xf0", "invalid callsign"),  # low bit
        (b"\x82\x40\xa4" + DEST[3:] + SRC + DIGI_LAST + b"\x03\xf0", "embedded space"),
        (b"\x40" * 6 + DEST[6:] + SRC + DIGI_LAST + b"\x03\xf0", "empty"),
    ],
)
def test_malformed_frames(data: bytes, match: str) -> None:
    with pytest.raises(Ax25Error, match=match):
        decode(data)


def test_non_ui_frames_are_flagged() -> None:
    rr = decode(DEST + SRC + DIGI_LAST + b"\x01")  # S frame RR: no PID
    assert not rr.is_ui
    assert rr.pid is None
    assert rr.info == b""
    sabm = decode(DEST + SRC + DIGI_LAST + b"\x3f")  # U frame SABM with P bit
    assert not sabm.is_ui
    i_frame = decode(DEST + SRC + DIGI_LAST + b"\x00\xf0data")
    assert not i_frame.is_ui
    assert (i_frame.pid, i_frame.info) == (0xF0, b"data")
    ui_poll = decode(DEST + SRC + DIGI_LAST + b"\x13\xf0x")  # UI with P bit still UI
    assert ui_poll.is_ui
    assert encode(rr) == DEST + SRC + DIGI_LAST + b"\x01"


def test_encode_pid_rules() -> None:
    with pytest.raises(Ax25Error):
        encode(Ax25Frame(Address("A"), Address("B"), pid=None))
    with pytest.raises(Ax25Error):
        encode(Ax25Frame(Address("A"), Address("B"), control=0x01, pid=0xF0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BH4ABC-10", Address("BH4ABC", 10)),
        ("bh4abc-9", Address("BH4ABC", 9)),
        ("APRS", Address("APRS")),
        ("N0CALL-0", Address("N0CALL")),
        ("WIDE1-1*", Address("WIDE1", 1, True)),
        ("WIDE2-15", Address("WIDE2", 15)),
    ],
)
def test_parse_address(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["", "BH4ABC-16", "BH4ABC-", "BH4ABCD", "BH4-ABC", "BH 4", "BH4ABC-1A", "B*C", "张伟"]
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(Ax25Error):
        parse_address(text)


def test_address_validates_and_prints() -> None:
    assert str(Address("BH4ABC", 10)) == "BH4ABC-10"
    assert str(Address("WIDE1", 1, True)) == "WIDE1-1*"
    assert str(Address("APRS")) == "APRS"
    assert Address("WIDE1", 1, True).call_ssid == "WIDE1-1"
    for bad in (("bh4abc", 0), ("BH4ABC", 16), ("BH4ABC", -1), ("TOOLONG", 0), ("", 0)):
        with pytest.raises(Ax25Error):
            Address(*bad)


def test_parse_tnc2() -> None:
    frame = parse_tnc2(b"BH4ABC-9>APRS,WIDE1-1,WIDE2-1*,WIDE3-3:>status: ok")
    assert frame.source == Address("BH4ABC", 9)
    assert frame.digipeaters == (
        Address("WIDE1", 1, True),
        Address("WIDE2", 1, True),
        Address("WIDE3", 3),
    )
    assert frame.info == b">status: ok"
    assert frame.tnc2() == b"BH4ABC-9>APRS,WIDE1-1,WIDE2-1*,WIDE3-3:>status: ok"
    for bad in (b"no colon", b"NOGT:x", b"A>B*:x", b"A>B,C,D,E,F,G,H,I,J,K:x", "张>B:x".encode()):
        with pytest.raises(Ax25Error):
            parse_tnc2(bad)


calls = st.from_regex(r"[A-Z0-9]{1,6}", fullmatch=True)
addresses = st.builds(Address, calls, st.integers(0, 15), st.booleans())
plain = st.builds(Address, calls, st.integers(0, 15))


@settings(deadline=None, max_examples=200)
@given(plain, plain, st.lists(addresses, max_size=8), st.binary(max_size=256))
def test_round_trip(dest: Address, src: Address, digis: list[Address], info: bytes) -> None:
    frame = Ax25Frame(dest, src, tuple(digis), info=info)
    wire = encode(frame)
    assert decode(wire) == frame
    assert len(wire) == 7 * (2 + len(digis)) + 2 + len(info)
