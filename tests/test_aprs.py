"""APRS: hand vectors from the specs, text rules, encoder round trips and aprslib as an oracle.

Specs: APRS101 (https://op-co.de/tmp/APRS101/APRS.html) ch.6, 7, 8, 9, 10, 14, 16; reply-acks
http://www.wa8lmf.net/bruninga/aprs/replyacks.txt; worked examples verified with aprslib and
direwolf in docs/protocols/aprs.md sections 3 and 4.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import aprslib
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocols import ProtocolError
from protocols.aprs import (
    MIC_E_STATUSES,
    AprsAck,
    AprsBulletin,
    AprsError,
    AprsMessage,
    AprsPosition,
    AprsRej,
    AprsStatus,
    AprsUnknown,
    decode_frame,
    decode_info,
    encode_ack,
    encode_bulletin,
    encode_message,
    encode_mic_e,
    encode_position,
    encode_rej,
    encode_status,
    sanitize_text,
    split_message_text,
)
from protocols.ax25 import parse_tnc2

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)


def dec(info: bytes, dest: str = "APRS") -> Any:
    return decode_info("N0CALL", dest, info, now=NOW)


def position(info: bytes, dest: str = "APRS") -> AprsPosition:
    packet = dec(info, dest)
    assert isinstance(packet, AprsPosition)
    return packet


def test_error_is_protocol_error() -> None:
    assert issubclass(AprsError, ProtocolError)


# --- Messages (APRS101 ch.14, docs/protocols/aprs.md section 3) ---------------------------------


def test_message_worked_example() -> None:
    info = b":BG5XYZ-7 :Task 17: go to gate 3{00017"
    assert dec(info) == AprsMessage("BG5XYZ-7", "Task 17: go to gate 3", "00017")
    assert dec(info).raw == info
    assert encode_message("BG5XYZ-7", "Task 17: go to gate 3", "00017") == info


def test_ack_and_rej() -> None:
    assert dec(b":BH4ABC-9 :ack00017") == AprsAck("BH4ABC-9", "00017")
    assert dec(b":BH4ABC-9 :rej00017") == AprsRej("BH4ABC-9", "00017")
    assert encode_ack("BH4ABC-9", "00017") == b":BH4ABC-9 :ack00017"
    assert encode_rej("BH4ABC-9", "00017") == b":BH4ABC-9 :rej00017"


@pytest.mark.parametrize("tail", [b" ", b"  ", b"\r\n", b"\n", b" \r"])
def test_trailing_whitespace_keeps_acks_and_msgnos(tail: bytes) -> None:
    # docs/protocols/aprs.md section 3: aprslib turns ":BH4ABC-9 :ack00019 " into a plain
    # message; we must not.
    assert dec(b":BH4ABC-9 :ack00019" + tail) == AprsAck("BH4ABC-9", "00019")
    assert dec(b":BH4ABC-9 :hello{00019" + tail) == AprsMessage("BH4ABC-9", "hello", "00019")


def test_reply_acks() -> None:
    assert dec(b":BH4ABC-9 :hello{MM}AA") == AprsMessage("BH4ABC-9", "hello", "MM", "AA")
    assert dec(b":BH4ABC-9 :hello{MM}") == AprsMessage("BH4ABC-9", "hello", "MM", "")
    assert dec(b":BH4ABC-9 :ackMM}AA") == AprsAck("BH4ABC-9", "MM", "AA")
    assert encode_message("BH4ABC-9", "hello", "MM", "AA") == b":BH4ABC-9 :hello{MM}AA"
    assert encode_message("BH4ABC-9", "hello", "MM", "") == b":BH4ABC-9 :hello{MM}"
    assert encode_ack("BH4ABC-9", "MM", "AA") == b":BH4ABC-9 :ackMM}AA"


def test_message_edge_cases() -> None:
    # Unpadded addressee accepted on input (aprslib calls it a beacon).
    assert dec(b":BH4ABC-9:ack12") == AprsAck("BH4ABC-9", "12")
    # Text that merely starts with "ack" is a message.
    assert dec(b":BH4ABC-9 :acknowledged, thanks") == AprsMessage(
        "BH4ABC-9", "acknowledged, thanks"
    )
    # A "{" not followed by a valid msgno stays in the text.
    assert dec(b":BH4ABC-9 :a {b c") == AprsMessage("BH4ABC-9", "a {b c")
    assert dec(b":BH4ABC-9 :x{123456") == AprsMessage("BH4ABC-9", "x{123456")
    assert dec(b":BH4ABC-9 :") == AprsMessage("BH4ABC-9", "")
    # UTF-8 passes; invalid UTF-8 falls back to Latin-1.
    assert dec(":BH4ABC-9 :收到 张伟{7".encode()) == AprsMessage("BH4ABC-9", "收到 张伟", "7")
    assert dec(b":BH4ABC-9 :caf\xe9") == AprsMessage("BH4ABC-9", "café")


@pytest.mark.parametrize("info", [b":", b":BH4ABC-9", b":BH4ABC-9  x", b":         :text", b":BH4"])
def test_malformed_messages(info: bytes) -> None:
    with pytest.raises(AprsError):
        dec(info)


def test_bulletins() -> None:
    assert dec(b":BLN1     :bulletin text") == AprsBulletin("BLN1", "bulletin text")
    assert dec(b":BLNA     :announce").bulletin_id == "A"
    assert encode_bulletin("1", "bulletin text") == b":BLN1     :bulletin text"


def test_message_encoder_validation() -> None:
    for bad_addressee in ("", "TOOLONGCALL", "A:B", "A B", "张", "BLN1"):
        with pytest.raises(AprsError):
            encode_message(bad_addressee, "x")
    for bad_msgno in ("", "123456", "1 2", "a-b", "{1"):
        with pytest.raises(AprsError):
            encode_message("BH4ABC-9", "x", bad_msgno)
        with pytest.raises(AprsError):
            encode_ack("BH4ABC-9", bad_msgno)
    with pytest.raises(AprsError):
        encode_message("BH4ABC-9", "x", None, "AA")
    for bad_text in ("a|b", "a~b", "a{b", "line\nbreak", "tab\t", "\x7f", "\u2028", "\u202e"):
        with pytest.raises(AprsError, match="sanitize_text"):
            encode_message("BH4ABC-9", bad_text)


def test_text_limit_is_67_utf8_bytes() -> None:
    assert encode_message("BH4ABC-9", "a" * 67).endswith(b"a" * 67)
    with pytest.raises(AprsError, match="68 bytes"):
        encode_message("BH4ABC-9", "a" * 68)
    chinese = "张" * 22  # 66 bytes
    assert encode_message("BH4ABC-9", chinese, "1").endswith(chinese.encode() + b"{1")
    with pytest.raises(AprsError, match="69 bytes"):
        encode_message("BH4ABC-9", chinese + "伟")


def test_sanitize_text() -> None:
    assert sanitize_text("a|b~c{d}e") == "a/b-c(d}e"
    assert sanitize_text("line1\r\nline2\tend\x00\x7f\x85") == "line1  line2 end   "
    assert sanitize_text("\u202eevil\u2066") == " evil "
    assert sanitize_text("收到 张伟") == "收到 张伟"


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=120))
def test_sanitized_text_always_encodes(text: str) -> None:
    clean = sanitize_text(text)
    for part in split_message_text(clean):
        decoded = dec(encode_message("BH4ABC-9", part, "1"))
        assert isinstance(decoded, AprsMessage)
        assert decoded.msgno == "1"
        assert decoded.text == part  # the msgno protects trailing spaces from stripping


def test_split_short_text_unchanged() -> None:
    assert split_message_text("short") == ["short"]
    assert split_message_text("") == [""]
    assert split_message_text("x" * 67) == ["x" * 67]


def test_split_numbers_parts_and_prefers_spaces() -> None:
    words = " ".join(f"word{i}" for i in range(40))
    parts = split_message_text(words)
    assert len(parts) > 1
    assert all(len(p.encode()) <= 67 for p in parts)
    assert [p.split(" ", 1)[0] for p in parts] == [f"({i}/{len(parts)})" for i in range(1, 7)][
        : len(parts)
    ]
    assert " ".join(p.split(" ", 1)[1] for p in parts) == words  # cut at spaces only


def test_split_chinese_never_cuts_a_character() -> None:
    text = "请到三号门集合并报告位置" * 10  # 120 characters, 360 bytes
    parts = split_message_text(text)
    assert all(len(p.encode()) <= 67 for p in parts)
    assert "".join(p.split(" ", 1)[1] for p in parts) == text
    assert parts[0].startswith("(1/")


def test_split_rejects_impossible_limit() -> None:
    with pytest.raises(AprsError):
        split_message_text("x" * 100, limit=8)


@settings(deadline=None, max_examples=300)
@given(st.text(min_size=1, max_size=400), st.integers(16, 100))
def test_split_properties(text: str, limit: int) -> None:
    parts = split_message_text(text, limit)
    assert all(len(p.encode("utf-8")) <= limit for p in parts)
    if len(parts) == 1:
        assert parts == [text]
    else:
        n = len(parts)
        bodies = [p.split(") ", 1)[1] for p in parts]
        assert [p[: p.index(")") + 1] for p in parts] == [f"({i}/{n})" for i in range(1, n + 1)]
        rebuilt = "".join(bodies)
        # Only break spaces are dropped: the characters come back in order.
        assert rebuilt.replace(" ", "") == text.replace(" ", "")


# --- Status (APRS101 ch.16) -------------------------------------------------------------------


def test_status() -> None:
    assert dec(b">12.6V 0.2A 22degC") == AprsStatus("12.6V 0.2A 22degC")
    # Day 28 seen on 20 November lies in the future this month: it is 28 October.
    assert dec(b">281205zSystem will shutdown") == AprsStatus(
        "System will shutdown", datetime(2025, 10, 28, 12, 5, tzinfo=UTC)
    )
    assert dec(b">191205zyesterday") == AprsStatus(
        "yesterday", datetime(2025, 11, 19, 12, 5, tzinfo=UTC)
    )
    assert dec(b">120503hFatal error") == AprsStatus(
        "Fatal error", datetime(2025, 11, 20, 12, 5, 3, tzinfo=UTC)
    )
    assert dec(b">") == AprsStatus("")
    assert encode_status("Status: on duty") == b">Status: on duty"
    ts = datetime(2025, 11, 19, 23, 59, 30, tzinfo=UTC)
    assert encode_status("x", ts) == b">192359zx"
    with pytest.raises(AprsError):
        encode_status("x" * 63)
    with pytest.raises(AprsError):
        encode_status("x" * 56, ts)
    with pytest.raises(AprsError):
        encode_status("x", datetime(2025, 1, 1))  # naive


def test_timestamps_pick_the_latest_past_date() -> None:
    # Day 31 seen on 1 December: November has no 31st, so 31 October.
    now = datetime(2025, 12, 1, 0, 10, tzinfo=UTC)
    packet = decode_info("A", "APRS", b">312355zlate", now=now)
    assert isinstance(packet, AprsStatus)
    assert packet.timestamp == datetime(2025, 10, 31, 23, 55, tzinfo=UTC)
    # A sender clock a few minutes ahead across midnight at the month end.
    now = datetime(2025, 11, 30, 23, 58, tzinfo=UTC)
    packet = decode_info("A", "APRS", b">010005zearly", now=now)
    assert isinstance(packet, AprsStatus)
    assert packet.timestamp == datetime(2025, 12, 1, 0, 5, tzinfo=UTC)
    packet = decode_info("A", "APRS", b">235959hlate", now=now.replace(hour=0))
    assert isinstance(packet, AprsStatus)
    assert packet.timestamp == datetime(2025, 11, 29, 23, 59, 59, tzinfo=UTC)
    local = position(b"/092345/3114.12N/12128.45E>")
    assert local.timestamp == datetime(2025, 11, 9, 23, 45)  # naive: sender-local time
    for bad in (b"/322345z3114.12N/12128.45E>", b"/092460z3114.12N/12128.45E>", b"/0923x5z3"):
        with pytest.raises(AprsError):
            dec(bad)


# --- Positions: uncompressed (APRS101 ch.8, docs/protocols/aprs.md section 4) -------------------


def test_uncompressed_vectors() -> None:
    p = position(b"!3114.12N/12128.45E>Radio 7 position")
    assert (p.lat, p.lon) == pytest.approx((31.235333, 121.474167), abs=1e-6)
    assert (p.symbol_table, p.symbol_code, p.comment) == ("/", ">", "Radio 7 position")
    assert (p.format, p.messaging, p.timestamp, p.course_deg, p.speed_kmh) == (
        "uncompressed",
        False,
        None,
        None,
        None,
    )
    p = position(b"@092345z3114.12N/12128.45E>088/036/A=000123")
    assert p.messaging
    assert p.timestamp == datetime(2025, 11, 9, 23, 45, tzinfo=UTC)
    assert p.course_deg == 88
    assert p.speed_kmh == pytest.approx(66.672)
    assert p.alt_m == pytest.approx(37.49, abs=0.01)
    p = position(b"=3114.12S\\12128.45W#000/000/A=-00012 PHG5132 ok")
    assert (p.lat, p.lon) == pytest.approx((-31.235333, -121.474167), abs=1e-6)
    assert (p.symbol_table, p.course_deg, p.speed_kmh) == ("\\", None, 0.0)
    assert p.alt_m == pytest.approx(-12 * 0.3048)
    assert p.comment == "PHG5132 ok"
    assert position(b"!3114.12N/12128.45E>.../...x").comment == "x"


def test_ambiguity() -> None:
    p = position(b"!31  .  N/121  .  E>")
    assert (p.lat, p.lon, p.ambiguity) == (31.5, 121.5, 4)
    p = position(b"!3114.1 N/12128.45E>")  # longitude takes the latitude's ambiguity
    assert p.ambiguity == 1
    assert p.lat == pytest.approx(31 + 14.15 / 60)
    assert p.lon == pytest.approx(121 + 28.45 / 60)
    with pytest.raises(AprsError):
        dec(b"!3114.12N/121  .  E>")  # longitude more ambiguous than latitude


@pytest.mark.parametrize(
    "info",
    [
        b"!3114.12N/12128.45E",  # no symbol code
        b"!3114.12X/12128.45E>",
        b"!3114,12N/12128.45E>",
        b"!9114.12N/12128.45E>",
        b"!3174.12N/12128.45E>",
        b"!3114.12N/18128.45E>",
        b"!3114.12N*12128.45E>",
        b"!3114.12N/12128.45E\x01",
        b"!3114.12N/12128.45E>361/010",
        b"!3 14.12N/12128.45E>",
        b"!",
    ],
)
def test_uncompressed_malformed(info: bytes) -> None:
    with pytest.raises(AprsError):
        dec(info)


# --- Positions: compressed (APRS101 ch.9) -----------------------------------------------------


def test_compressed_spec_examples() -> None:
    p = position(b"=/5L!!<*e7>7P[ compressed")
    assert (p.lat, p.lon) == pytest.approx((49.5, -72.75), abs=1e-4)
    assert p.course_deg == 88
    assert p.speed_kmh == pytest.approx(36.2 * 1.852, abs=0.1)
    assert (p.format, p.messaging, p.comment) == ("compressed", True, "compressed")
    # ch.9 altitude example: cs "S]" with a GGA compression type gives 10004 ft.
    p = position(b"!/5L!!<*e7>S]S")
    assert p.alt_m == pytest.approx(10004 * 0.3048, rel=1e-3)
    assert p.course_deg is None
    p = position(b"!/5L!!<*e7> sT")  # c = space: no course/speed/altitude
    assert (p.course_deg, p.speed_kmh, p.alt_m) == (None, None, None)
    p = position(b"!a5L!!<*e7>{?!")  # overlay "a" = 0; c = "{": radio range, ignored
    assert (p.symbol_table, p.course_deg) == ("0", None)
    p = position(b"@092345z/5L!!<*e7>7P[")
    assert p.timestamp == datetime(2025, 11, 9, 23, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    "info", [b"=/5L!!<*e7>7P", b"=/5L!!<*e7>\x7fP[", b"=/5L!~<*e7>7P[", b"=*5L!!<*e7>7P["]
)
def test_compressed_malformed(info: bytes) -> None:
    with pytest.raises(AprsError):
        dec(info)


# --- Positions: Mic-E (APRS101 ch.10) ---------------------------------------------------------

MIC_E_INFO = b'`(_fn"Oj/]"4T}='


def test_mic_e_worked_example() -> None:
    p = position(MIC_E_INFO, "S32U6T")
    assert (p.lat, p.lon) == pytest.approx((33.427333, -12.129), abs=1e-6)
    assert p.speed_kmh == pytest.approx(37.04)
    assert (p.course_deg, p.alt_m) == (251, 61.0)
    assert (p.symbol_table, p.symbol_code, p.format) == ("/", "j", "mic-e")
    assert p.mic_e_status == "Returning"
    assert not p.emergency
    assert p.comment == "]="


@pytest.mark.parametrize(
    ("dest", "status"),
    [
        ("S32U6T", "Returning"),  # 100
        ("S2UU6T", "In Service"),  # 101
        ("STRU6T", "Off Duty"),  # 111
        ("332U6T", "Emergency"),  # 000
        ("C32U6T", "Custom-3"),  # custom 100
        ("CU2U6T", "Unknown"),  # custom and standard ones mixed
        ("3R2U6T", "Special"),  # 010
    ],
)
def test_mic_e_message_bits(dest: str, status: str) -> None:
    assert position(MIC_E_INFO, dest).mic_e_status == status


def test_mic_e_hemispheres_offset_and_ambiguity() -> None:
    # Char 4 "0": South; char 6 "0": East.
    p = position(MIC_E_INFO, "S32060")
    assert p.lat < 0 < p.lon
    p = position(MIC_E_INFO, "S32U6Z")  # hundredths blank: ambiguity 1
    assert p.ambiguity == 1
    with pytest.raises(AprsError):
        position(MIC_E_INFO, "S3ZU6T")  # blank not at the end


@pytest.mark.parametrize(
    ("dest", "info"),
    [
        ("S32U6", MIC_E_INFO),
        ("S32A6T", MIC_E_INFO),  # custom characters only in 1-3
        ("s32u6t", MIC_E_INFO),
        ("S32U6T", b'`(_fn"Oj'),
        ("S32U6T", b'`\x10_fn"Oj/'),
        ("S32U6T", b'`(_\x90n"Oj/'),
        ("S32U6T", b'`(_f\x10"Oj/'),
        ("S32U6T", b'`(_fn"Oj*'),
        ("S32U6T", b"`(_fn%Oj/"),  # course 500
        ("S32U6T", b'`(_fn"Oj/!!\x01}'),
    ],
)
def test_mic_e_malformed(dest: str, info: bytes) -> None:
    with pytest.raises(AprsError):
        dec(info, dest)


def test_mic_e_encoder_matches_worked_example() -> None:
    dest, info = encode_mic_e(
        33.427333,
        -12.129,
        symbol_code="j",
        speed_kmh=37.04,
        course_deg=251,
        alt_m=61,
        status="Returning",
        comment="]=",
    )
    assert dest == "S32U6T"
    assert info[:9] == MIC_E_INFO[:9]  # the same bytes as the Kenwood in the example
    assert position(info, dest) == position(MIC_E_INFO, dest)


def test_mic_e_encoder_validation() -> None:
    with pytest.raises(AprsError):
        encode_mic_e(0, 0, status="Lunch")
    with pytest.raises(AprsError):
        encode_mic_e(0, 179.9999999)
    with pytest.raises(AprsError):
        encode_mic_e(0, 0, speed_kmh=1500)
    with pytest.raises(AprsError):
        encode_mic_e(0, 0, comment="abc}def")  # would read as altitude


def test_unknown_and_empty() -> None:
    assert dec(b"T#005,199,000,255,073,123,01101001") == AprsUnknown("T")
    assert dec(b";OBJECT   *092345z") == AprsUnknown(";")
    for empty in (b"", b"  \r\n"):
        with pytest.raises(AprsError):
            dec(empty)


def test_decode_frame() -> None:
    frame = parse_tnc2(b"N0CALL>S32U6T,WIDE1-1:" + MIC_E_INFO)
    assert decode_frame(frame, now=NOW) == position(MIC_E_INFO, "S32U6T")


# --- Encoder round trips ---------------------------------------------------------------------

lats = st.floats(-89.99, 89.99)
lons = st.floats(-179.99, 179.99)
comments = st.text(alphabet="abcXYZ019 .,-_张伟", max_size=20).map(str.strip)
symbols = st.sampled_from(["/>", "/j", "\\#", "Ak", "9&"])
minute_ts = st.datetimes(  # within the month before NOW: DDHHMMz then decodes unambiguously
    min_value=datetime(2025, 10, 21), max_value=datetime(2025, 11, 20, 12), timezones=st.just(UTC)
).map(lambda t: t.replace(second=0, microsecond=0))
HALF_HUNDREDTH_DEG = 1 / 12000 + 1e-9


def course_eq(decoded: int | None, sent: int | None) -> bool:
    if sent is None:
        return decoded is None
    return decoded is not None and decoded % 360 == sent % 360


@settings(deadline=None, max_examples=200)
@given(
    lat=lats,
    lon=lons,
    symbol=symbols,
    messaging=st.booleans(),
    ts=st.none() | minute_ts,
    course=st.none() | st.integers(0, 360),
    speed=st.none() | st.floats(0, 1800),
    alt=st.none() | st.floats(-9000, 99000),
    comment=comments,
)
def test_uncompressed_round_trip(
    *,
    lat: float,
    lon: float,
    symbol: str,
    messaging: bool,
    ts: datetime | None,
    course: int | None,
    speed: float | None,
    alt: float | None,
    comment: str,
) -> None:
    info = encode_position(
        lat,
        lon,
        symbol_table=symbol[0],
        symbol_code=symbol[1],
        messaging=messaging,
        timestamp=ts,
        course_deg=course,
        speed_kmh=speed,
        alt_m=alt,
        comment=comment,
    )
    p = position(info)
    assert abs(p.lat - lat) <= HALF_HUNDREDTH_DEG
    assert abs(p.lon - lon) <= HALF_HUNDREDTH_DEG
    assert (p.symbol_table + p.symbol_code, p.messaging, p.timestamp) == (symbol, messaging, ts)
    assert (p.format, p.comment) == ("uncompressed", comment)
    motion = course is not None or speed is not None
    assert course_eq(p.course_deg, course)
    if motion:
        assert p.speed_kmh is not None
        assert abs(p.speed_kmh - (speed or 0.0)) <= 1.852 / 2 + 1e-9
    else:
        assert p.speed_kmh is None
    if alt is None:
        assert p.alt_m is None
    else:
        assert p.alt_m is not None
        assert abs(p.alt_m - alt) <= 0.3048 / 2 + 1e-9


@settings(deadline=None, max_examples=200)
@given(
    lat=lats,
    lon=lons,
    symbol=symbols,
    messaging=st.booleans(),
    ts=st.none() | minute_ts,
    course=st.none() | st.integers(0, 360),
    speed=st.none() | st.floats(0, 1700),
    alt=st.none() | st.floats(-500, 30000),
    comment=comments,
)
def test_compressed_round_trip(
    *,
    lat: float,
    lon: float,
    symbol: str,
    messaging: bool,
    ts: datetime | None,
    course: int | None,
    speed: float | None,
    alt: float | None,
    comment: str,
) -> None:
    info = encode_position(
        lat,
        lon,
        symbol_table=symbol[0],
        symbol_code=symbol[1],
        messaging=messaging,
        timestamp=ts,
        course_deg=course,
        speed_kmh=speed,
        alt_m=alt,
        comment=comment,
        compressed=True,
    )
    p = position(info)
    assert abs(p.lat - lat) <= 1 / 380926
    assert abs(p.lon - lon) <= 1 / 190463
    assert (p.symbol_table + p.symbol_code, p.messaging, p.timestamp) == (symbol, messaging, ts)
    assert (p.format, p.comment) == ("compressed", comment)
    if course is not None or speed is not None:
        assert p.course_deg is not None
        sent = course or 360
        assert min((p.course_deg - sent) % 360, (sent - p.course_deg) % 360) <= 2
        assert p.speed_kmh is not None
        knots_sent = (speed or 0.0) / 1.852 + 1
        assert abs(math.log((p.speed_kmh / 1.852 + 1) / knots_sent, 1.08)) <= 0.5 + 1e-9
    else:
        assert (p.course_deg, p.speed_kmh) == (None, None)
    if alt is None:
        assert p.alt_m is None
    else:
        assert p.alt_m is not None
        assert abs(p.alt_m - alt) <= max(0.3048 / 2, abs(alt) * 0.001) + 1e-9


@settings(deadline=None, max_examples=200)
@given(
    lat=lats,
    lon=lons,
    symbol=st.sampled_from(["/>", "/j", "\\k", "Ak", "9&"]),
    speed=st.floats(0, 1400),
    course=st.none() | st.integers(0, 360),
    alt=st.none() | st.floats(-9000, 50000),
    status=st.sampled_from(MIC_E_STATUSES),
    comment=comments,
    current=st.booleans(),
)
def test_mic_e_round_trip(
    *,
    lat: float,
    lon: float,
    symbol: str,
    speed: float,
    course: int | None,
    alt: float | None,
    status: str,
    comment: str,
    current: bool,
) -> None:
    assume(round(abs(lon) * 6000) < 180 * 6000)
    dest, info = encode_mic_e(
        lat,
        lon,
        symbol_table=symbol[0],
        symbol_code=symbol[1],
        speed_kmh=speed,
        course_deg=course,
        alt_m=alt,
        status=status,
        comment=comment,
        current=current,
    )
    p = position(info, dest)
    assert abs(p.lat - lat) <= HALF_HUNDREDTH_DEG
    assert abs(p.lon - lon) <= HALF_HUNDREDTH_DEG
    assert (p.symbol_table + p.symbol_code, p.format, p.mic_e_status) == (symbol, "mic-e", status)
    assert p.comment == comment
    assert course_eq(p.course_deg, course)
    assert p.speed_kmh is not None
    assert abs(p.speed_kmh - speed) <= 1.852 / 2 + 1e-9
    if alt is None:
        assert p.alt_m is None
    else:
        assert p.alt_m is not None
        assert abs(p.alt_m - alt) <= 0.5 + 1e-9


msgnos = st.from_regex(r"[A-Za-z0-9]{1,5}", fullmatch=True)
addressees = st.from_regex(r"[A-Z0-9]{1,6}(-[0-9]{1,2})?", fullmatch=True).filter(
    lambda a: not a.startswith("BLN")  # bulletins by definition (APRS101 ch.14)
)


@settings(deadline=None, max_examples=200)
@given(addressees, st.text(max_size=30).map(sanitize_text), st.none() | msgnos)
def test_message_round_trip(addressee: str, text: str, msgno: str | None) -> None:
    text = text.rstrip()
    assume(not text.startswith(("ack", "rej")) or msgno is not None)
    decoded = dec(encode_message(addressee, text, msgno))
    assert decoded == AprsMessage(addressee, text, msgno)


@settings(deadline=None, max_examples=100)
@given(addressees, msgnos, st.none() | msgnos)
def test_ack_rej_round_trip(addressee: str, msgno: str, reply: str | None) -> None:
    assert dec(encode_ack(addressee, msgno, reply)) == AprsAck(addressee, msgno, reply)
    assert dec(encode_rej(addressee, msgno, reply)) == AprsRej(addressee, msgno, reply)


@settings(deadline=None, max_examples=100)
@given(st.text(max_size=40).map(sanitize_text).map(str.strip), st.none() | minute_ts)
def test_status_round_trip(text: str, ts: datetime | None) -> None:
    assume(len(text.encode()) <= 55)
    assume(ts is not None or not (text[:6].isdigit() and text[6:7] in ("z", "h")))
    assert dec(encode_status(text, ts)) == AprsStatus(text, ts)


# --- aprslib as an independent oracle ---------------------------------------------------------


def aprslib_parse(dest: str, info: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = aprslib.parse(b"N0CALL>" + dest.encode() + b":" + info)
    return parsed


def assert_agrees(ours: AprsPosition, theirs: dict[str, Any]) -> None:
    assert ours.lat == pytest.approx(theirs["latitude"], abs=1e-5)
    assert ours.lon == pytest.approx(theirs["longitude"], abs=1e-5)
    assert ours.symbol_code == theirs["symbol"]
    if ours.course_deg is not None:
        assert ours.course_deg == theirs["course"]
    elif ours.format == "mic-e":
        assert theirs.get("course", 0) == 0
    else:
        assert "course" not in theirs
    if ours.speed_kmh:  # aprslib leaves out a zero speed
        assert ours.speed_kmh == pytest.approx(theirs["speed"], abs=0.01)
    if ours.alt_m is not None:
        assert ours.alt_m == pytest.approx(theirs["altitude"], abs=0.01)
    else:
        assert "altitude" not in theirs


@settings(deadline=None, max_examples=150)
@given(
    lat=lats,
    lon=lons,
    fmt=st.sampled_from(["uncompressed", "compressed", "mic-e"]),
    course=st.none() | st.integers(1, 360),
    speed=st.floats(0, 300),
    alt=st.none() | st.floats(0, 9000),
    messaging=st.booleans(),
)
def test_aprslib_decodes_our_positions(
    *,
    lat: float,
    lon: float,
    fmt: str,
    course: int | None,
    speed: float,
    alt: float | None,
    messaging: bool,
) -> None:
    dest = "APRS"
    if fmt == "mic-e":
        assume(round(abs(lon) * 6000) < 180 * 6000)
        dest, info = encode_mic_e(lat, lon, speed_kmh=speed, course_deg=course, alt_m=alt)
    else:
        info = encode_position(
            lat,
            lon,
            messaging=messaging,
            course_deg=course,
            speed_kmh=speed,
            alt_m=alt,
            comment="fieldlink",
            compressed=fmt == "compressed",
        )
    ours = position(info, dest)
    theirs = aprslib_parse(dest, info)
    assert theirs["format"] == fmt
    assert_agrees(ours, theirs)
    if fmt != "mic-e":
        assert theirs["messagecapable"] == messaging
        assert ours.comment == theirs["comment"] == "fieldlink"


SAMPLES = [
    ("APRS", b"!3114.12N/12128.45E>Radio 7 position"),
    ("APRS", b"@092345z3114.12N/12128.45E>088/036/A=000123"),
    ("APRS", b"!31  .  N/121  .  E>"),
    ("APRS", b"=/5L!!<*e7>7P[ compressed"),
    ("APRS", b"=/5L!!<*e7>S]S hi"),
    ("APRS", b"/092345z4903.50N/07201.75W>088/036"),
    ("APRS", b"!4903.50N/07201.75W-Test 001234"),
    ("APRS", b"=4903.50N/07201.75W-/A=001234 with altitude"),
    ("APRS", b"!/;cE[/F&6_ 5T"),
    ("S32U6T", MIC_E_INFO),
    ("S32U6T", b'`(_fn"Oj/'),
    ("T2SP0W", b'`c51!f?>/]"3x}='),
]


@pytest.mark.parametrize(("dest", "info"), SAMPLES)
def test_samples_decode_like_aprslib(dest: str, info: bytes) -> None:
    theirs = aprslib_parse(dest, info)
    ours = position(info, dest)
    assert ours.format == theirs["format"]
    assert_agrees(ours, theirs)
    assert ours.comment == theirs.get("comment", "").strip()
    if ours.format == "mic-e":
        assert theirs["mtype"].endswith(ours.mic_e_status or "?")


def test_messages_decode_like_aprslib() -> None:
    for info in (
        b":BG5XYZ-7 :Task 17: go to gate 3{00017",
        b":BH4ABC-9 :ack00017",
        b":BH4ABC-9 :rej00017",
        b":BH4ABC-9 :hello{MM}AA",
        ":BH4ABC-9 :收到{42".encode(),
    ):
        theirs = aprslib_parse("APRS", info)
        ours = dec(info)
        assert isinstance(ours, AprsMessage | AprsAck | AprsRej)
        assert ours.addressee == theirs["addresse"]
        assert ours.msgno == theirs.get("msgNo")
        if isinstance(ours, AprsMessage):
            assert ours.text == theirs["message_text"]
            assert ours.reply_ack == theirs.get("ackMsgNo")
        else:
            assert theirs["response"] == ("ack" if isinstance(ours, AprsAck) else "rej")
