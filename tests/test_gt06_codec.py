"""The GT06 codec: the shared vectors (CRCs verified and produced, fields decoded, every
position plausible), round trips of every encoder, and the framing torture suite."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.model import DeviceRef, Position
from gateway.plausible import check
from protocols.gt06 import (
    AlarmReport,
    Cell,
    Command,
    CommandReply,
    Frame,
    FrameSplitter,
    GpsFix,
    Gt06Error,
    Heartbeat,
    InfoTransfer,
    Location,
    Login,
    Rejected,
    TerminalStatus,
    TimeRequest,
    crc_x25,
    decode,
    encode_ack,
    encode_alarm,
    encode_command,
    encode_frame,
    encode_heartbeat,
    encode_location,
    encode_login,
    encode_reply,
    encode_time_response,
    parse_frame,
)

LOGIN = bytes.fromhex("78780d01012345678901234500018cdd0d0a")
LOCATION = bytes.fromhex("78781f121a030f001e00c90359c4dd0d085ff624145a01cc00123400abcd0003c58c0d0a")


def load_vectors(vectors_dir: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((vectors_dir / "gt06.json").read_text())
    return data


def position_of(gps: GpsFix) -> Position:
    """As the driver makes it (the wire time taken as UTC: the vectors are in the past)."""
    return Position(
        DeviceRef("gt", "123456789012345"),
        gps.lat,
        gps.lon,
        gps.time.replace(tzinfo=UTC),
        datetime.now(UTC),
        "gt06",
        speed_kmh=float(gps.speed_kmh),
        course_deg=float(gps.course),
        satellites=gps.satellites,
    )


def check_gps(gps: GpsFix, expect: dict[str, Any]) -> None:
    assert gps.time == datetime.fromisoformat(expect["datetime"])
    assert gps.gps_info_len == expect["gps_info_len"]
    assert gps.satellites == expect["satellites"]
    assert gps.lat == pytest.approx(expect["lat"], abs=1e-6)
    assert gps.lon == pytest.approx(expect["lon"], abs=1e-6)
    assert gps.speed_kmh == expect["speed_kmh"]
    assert gps.course == expect["course"]
    assert gps.positioned is expect["positioned"]
    assert gps.differential is expect["differential"]
    # The shared invariant check, as for every decoded position (historic: no age limit).
    verdict = check(position_of(gps), now=datetime.now(UTC), max_fix_age_s=1e12, live=False)
    assert verdict.position is not None, verdict
    assert verdict.dropped == ()


def check_cell(cell: Cell | None, expect: dict[str, Any]) -> None:
    assert cell is not None
    assert (cell.mcc, cell.mnc, cell.lac, cell.cell_id) == (
        expect["mcc"],
        expect["mnc"],
        expect["lac"],
        expect["cell_id"],
    )


def check_status(status: TerminalStatus, expect: dict[str, Any]) -> None:
    assert status.terminal_info == int(expect["terminal_info"], 16)
    assert status.gps_tracking is expect["gps_tracking"]
    assert status.voltage_level == expect["voltage_level"]
    assert status.gsm_signal == expect["gsm_signal"]
    for key in ("charging", "acc", "armed"):
        if key in expect:
            assert getattr(status, key) is expect[key]
    if "alarm_bits_3_5" in expect:
        assert status.alarm_bits == expect["alarm_bits_3_5"]


def check_message(frame: Frame, expect: dict[str, Any]) -> None:  # noqa: PLR0912 - one branch per field group
    message = decode(frame)
    if expect.get("no_content"):
        assert frame.content == b""
        return
    if "imei" in expect:
        assert isinstance(message, Login)
        assert message.imei == expect["imei"]
        if "type_code" in expect:
            assert message.type_code == int(expect["type_code"], 16)
            assert message.tz_minutes == expect["tz_minutes"]
            assert message.language == expect["tz_lang_bits"]
    if "gps" in expect:
        assert isinstance(message, Location | AlarmReport)
        check_gps(message.gps, expect["gps"])
        check_cell(message.cell, expect["lbs"])
    if isinstance(message, Location) and "acc" in expect:
        assert (message.acc, message.upload_mode, message.reupload) == (
            expect["acc"],
            expect["upload_mode"],
            expect["reupload"],
        )
    if isinstance(message, AlarmReport):
        check_status(message.status, expect["status"])
        assert message.alarm == int(expect["status"]["alarm"], 16)
        assert message.language == int(expect["status"]["language"], 16)
        assert message.fence == expect.get("fence_no")
    if isinstance(message, Heartbeat):
        check_status(message.status, expect["status"])
        assert message.alarm_language == int(expect["status"]["alarm_language"], 16)
    if "server_flag" in expect:
        assert isinstance(message, Command | CommandReply)
        assert message.flag == int(expect["server_flag"], 16)
        if isinstance(message, Command):
            assert message.command == expect["command"]
        else:
            assert message.text == expect["text"]
            assert message.encoding == expect.get("encoding", 1)
        if "language" in expect:
            assert message.language == int(expect["language"], 16)
    if "time_utc" in expect:
        assert isinstance(message, TimeRequest)
        assert message.time == datetime.fromisoformat(expect["time_utc"].rstrip("Z"))
    if "info_type" in expect:
        assert isinstance(message, InfoTransfer)
        assert message.info_type == expect["info_type"]
        assert message.data.hex() == expect["data_hex"]
        assert message.external_voltage_v == pytest.approx(expect["external_voltage_v"])


@pytest.mark.vectors
def test_shared_vectors_frame_check_and_decode(vectors_dir: Path) -> None:
    vectors = load_vectors(vectors_dir)
    assert len(vectors) == 33
    for vector in vectors:
        raw = bytes.fromhex(vector["hex"])
        expect = vector["expect"]
        name = vector["name"]
        assert raw[:2].hex() == expect["start"], name
        head = 4 if expect["start"] == "7979" else 3
        # The CRC as sent, and as recomputed over length .. serial.
        sent_crc = int.from_bytes(raw[-4:-2], "big")
        assert sent_crc == int(expect["crc"], 16), name
        assert (crc_x25(raw[2:-4]) == sent_crc) is expect["crc_ok"], name
        items = FrameSplitter().feed(raw)
        if not (expect["crc_ok"] and expect["length_ok"] and expect["stop_ok"]):
            assert not any(isinstance(i, Frame) for i in items), name
            assert isinstance(items[0], Rejected), name
            assert items[0].reason == ("crc" if expect["length_ok"] else "stop"), name
            with pytest.raises(Gt06Error):
                parse_frame(raw)
            continue
        frame = parse_frame(raw)
        assert frame.protocol == int(expect["protocol"], 16), name
        assert frame.serial == expect["serial"], name
        assert frame.long is (head == 4)
        assert len(raw) == head + expect["length"] + 2
        if "content_hex" in expect:
            assert frame.content.hex() == expect["content_hex"]
        check_message(frame, expect)
        # And produced: the same bytes from the frame's parts.
        again = encode_frame(frame.protocol, frame.content, frame.serial, long=frame.long)
        assert again == raw, name


@pytest.mark.vectors
def test_acks_are_produced_byte_for_byte(vectors_dir: Path) -> None:
    acks = [v for v in load_vectors(vectors_dir) if v["expect"].get("no_content")]
    assert len(acks) >= 6
    for vector in acks:
        expect = vector["expect"]
        produced = encode_ack(int(expect["protocol"], 16), expect["serial"])
        assert produced.hex() == vector["hex"], vector["name"]


@pytest.mark.vectors
def test_encoders_reproduce_the_synthetic_vectors(vectors_dir: Path) -> None:
    by_name = {v["name"]: bytes.fromhex(v["hex"]) for v in load_vectors(vectors_dir)}
    assert encode_login("123456789012345", 1) == by_name["login_doc_example"]
    assert (
        encode_login("123456789012345", 1, type_code=0x3600, tz_minutes=480, language=2)
        == by_name["login_gmt8"]
    )
    heartbeat = decode(parse_frame(by_name["heartbeat"]))
    assert isinstance(heartbeat, Heartbeat)
    assert encode_heartbeat(heartbeat.status, 2, alarm_language=2) == by_name["heartbeat"]
    for name in ("location_0x12_north_east", "location_0x12_south_west", "location_0x22_utc"):
        frame = parse_frame(by_name[name])
        loc = decode(frame)
        assert isinstance(loc, Location)
        produced = encode_location(
            loc.gps,
            frame.serial,
            cell=loc.cell,
            protocol=loc.protocol,
            acc=loc.acc or 0,
            upload_mode=loc.upload_mode or 0,
            reupload=loc.reupload or 0,
        )
        assert produced == by_name[name], name
    frame = parse_frame(by_name["alarm_0x16_sos"])
    alarm = decode(frame)
    assert isinstance(alarm, AlarmReport)
    produced = encode_alarm(
        alarm.gps, alarm.status, alarm.alarm, frame.serial, cell=alarm.cell, language=1
    )
    assert produced == by_name["alarm_0x16_sos"]
    assert encode_command(0x0001A958, b"WHERE#", 7) == by_name["command_0x80_where"]
    assert encode_command(0, b"sos#", 1, language=None) == by_name["vl03_online_command_0x80"]
    text = "Lat:N31.230416,Lon:E121.473701"
    assert encode_reply(0x0001A958, text, 8) == by_name["reply_0x15_echo_flag"]
    assert encode_reply(0x0001A958, "OK", 9, long=True) == by_name["reply_0x21_long_utf16"]
    when = datetime(2026, 3, 15, 0, 30, 5)
    assert encode_time_response(when, 10) == by_name["time_response_0x8A"]


def test_crc_is_x25_not_ccitt_false() -> None:
    assert crc_x25(b"123456789") == 0x906E
    assert crc_x25(b"") == 0x0000


def test_encode_decode_round_trip_of_every_message() -> None:
    gps = GpsFix(datetime(2026, 1, 2, 3, 4, 5), 7, -33.8688, 151.2093, 55, 271, True)
    status = TerminalStatus(0x66, 4, 3)
    cell = Cell(0x1CC, 0x10, 0xFFFF, 0xFFFFFF)
    wide = Cell(0x1CC | 0x8000, 0x1234, 1, 2)  # MCC bit 15: a two-byte MNC
    frames = [
        encode_login("860000000000042", 9, type_code=0x7000, tz_minutes=-330),
        encode_heartbeat(status, 10, alarm_language=None),
        encode_location(gps, 11, cell=cell),
        encode_location(gps, 12, cell=wide),
        encode_alarm(gps, status, 0x06, 13, protocol=0x26),
        encode_reply(77, "ok", 14),
        encode_command(0xFFFFFFFF, "到达".encode(), 15),
    ]
    decoded = [decode(parse_frame(f)) for f in frames]
    login, beat, loc, loc_wide, alarm, reply, command = decoded
    assert login == Login("860000000000042", 0x7000, -330, 0)
    assert beat == Heartbeat(status, None)
    assert isinstance(loc, Location)
    assert loc.cell == cell
    assert loc.gps.lat == pytest.approx(gps.lat, abs=1e-6)
    assert loc.gps.lon == pytest.approx(gps.lon, abs=1e-6)
    assert (loc.gps.course, loc.gps.speed_kmh, loc.gps.time) == (271, 55, gps.time)
    assert isinstance(loc_wide, Location)
    assert loc_wide.cell == Cell(0x1CC, 0x1234, 1, 2)
    assert isinstance(alarm, AlarmReport)
    assert (alarm.alarm, alarm.status, alarm.utc) == (0x06, status, True)
    assert isinstance(reply, CommandReply)
    assert (reply.flag, reply.text) == (77, "ok")
    assert command == Command(0xFFFFFFFF, "到达", 2)


def test_encoders_refuse_what_does_not_fit() -> None:
    with pytest.raises(Gt06Error):
        encode_login("12345", 1)
    with pytest.raises(Gt06Error):
        encode_command(1, b"x" * 252, 1)
    with pytest.raises(Gt06Error):
        encode_frame(0x12, b"x" * 251, 1)
    with pytest.raises(Gt06Error):
        encode_frame(0x100, b"", 1)
    with pytest.raises(Gt06Error):
        encode_frame(0x12, b"", 0x10000)
    when = datetime(1999, 12, 31)
    with pytest.raises(Gt06Error):
        encode_time_response(when, 1)
    assert len(encode_frame(0x94, b"x" * 1000, 1, long=True)) == 1000 + 11


# -- framing torture ------------------------------------------------------------------------


def frames_of(items: list[Frame | Rejected]) -> list[bytes]:
    return [i.raw for i in items if isinstance(i, Frame)]


def reasons_of(items: list[Frame | Rejected]) -> list[str]:
    return [i.reason for i in items if isinstance(i, Rejected)]


def test_byte_by_byte() -> None:
    splitter = FrameSplitter()
    out: list[Frame | Rejected] = []
    for byte in LOGIN + LOCATION:
        out += splitter.feed(bytes((byte,)))
    assert frames_of(out) == [LOGIN, LOCATION]
    assert reasons_of(out) == []
    assert splitter.buffered == 0


def test_garbage_around_and_stray_start_bytes() -> None:
    stream = b"\x00\x01ab" + LOGIN + b"\x78\x78\x05" + LOCATION + b"\x79\x79\xff" + b"\x78"
    splitter = FrameSplitter()
    out = splitter.feed(stream)
    # The stray "78 78 05" swallows the start of the location until its stop check fails;
    # the splitter then resyncs and finds the location inside.
    assert frames_of(out) == [LOGIN, LOCATION]
    assert "garbage" in reasons_of(out)
    assert "stop" in reasons_of(out)
    assert splitter.buffered <= 4  # "79 79 ff 78": a possible start, kept


def test_a_stray_start_with_a_long_length_does_not_hold_back_good_packets() -> None:
    splitter = FrameSplitter()
    out = splitter.feed(b"\x78\x78\xf0" + LOGIN)  # "wait for 240 bytes" says the stray start
    assert frames_of(out) == [LOGIN]
    assert reasons_of(out) == ["stop"]
    assert splitter.buffered == 0
    out = splitter.feed(b"\x78\x78\xf0" + LOGIN[:10])  # incomplete: wait for more
    assert out == []
    assert frames_of(splitter.feed(LOGIN[10:])) == [LOGIN]


def test_bad_crc_is_discarded_and_the_next_packet_found() -> None:
    bad = bytearray(LOCATION)
    bad[10] ^= 0x01
    out = FrameSplitter().feed(bytes(bad) + LOGIN)
    assert frames_of(out) == [LOGIN]
    assert reasons_of(out) == ["crc"]


def test_truncated_then_a_good_packet() -> None:
    out = FrameSplitter().feed(LOCATION[:20] + LOGIN)
    assert frames_of(out) == [LOGIN]
    assert reasons_of(out)[0] == "stop"


def test_too_short_and_oversize_lengths_are_rejected_without_buffering() -> None:
    splitter = FrameSplitter(max_frame_bytes=300)
    out = splitter.feed(b"\x78\x78\x02\x01\x00")
    assert reasons_of(out)[0] == "length"
    huge = b"\x79\x79\xff\xff\x12" + b"\x00" * 100
    out = splitter.feed(huge)
    assert "oversize" in reasons_of(out)
    assert splitter.buffered <= 1
    assert frames_of(splitter.feed(LOGIN)) == [LOGIN]


def test_the_buffer_is_bounded_by_the_frame_cap() -> None:
    cap = 200
    splitter = FrameSplitter(max_frame_bytes=cap)
    # An unterminated frame announcing the largest length the cap allows, fed forever.
    splitter.feed(b"\x79\x79" + (cap - 6).to_bytes(2, "big"))
    for _ in range(100):
        splitter.feed(b"\x00" * 50)
        assert splitter.buffered <= cap
    for _ in range(100):
        splitter.feed(b"\x78" * 333)
        assert splitter.buffered <= cap
    assert frames_of(splitter.feed(b"\x0d\x0a" * 200 + LOGIN)) == [LOGIN]


def test_decode_errors_are_the_codecs_own() -> None:
    for protocol, content in [
        (0x01, b"\x01\x23"),
        (0x01, bytes.fromhex("0a23456789012345")),
        (0x12, b"\x00" * 10),
        (0x12, bytes.fromhex("1a0d0f001e00c90359c4dd0d085ff624145a01cc00123400abcd")),
        (0x13, b"\x00"),
        (0x16, b"\x00" * 19),
        (0x22, b"\x1a\x03\x0f" + b"\x00" * 31),
        (0x80, b"\x30\x00\x00\x00\x00abc"),
        (0x21, b"\x00\x00\x00\x01\x02\x00"),
        (0x8A, b"\x00"),
        (0x94, b""),
    ]:
        frame = parse_frame(encode_frame(protocol, content, 1))
        with pytest.raises(Gt06Error):
            decode(frame)
