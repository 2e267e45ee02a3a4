"""JT/T 808 codec against the shared vectors (../shared/vectors/jt808.json), plus framing torture,
round trips and hypothesis fuzzing: only :class:`Jt808Error` escapes the decoder."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import plausible
from gateway.model import DeviceRef, Position
from protocols.jt808 import messages as m
from protocols.jt808.framing import (
    MAX_WIRE_FRAME_BYTES,
    Frame,
    FrameSplitter,
    Jt808Error,
    Rejected,
    decode_frame,
    encode_bcd_phone,
    encode_frame,
    escape,
    unescape,
    xor_check,
)
from protocols.jt808.reassembly import Reassembler


def _vectors(vectors_dir: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((vectors_dir / "jt808.json").read_text("utf-8"))
    return data


def _frame(hex_text: str) -> Frame:
    pieces = FrameSplitter().feed(bytes.fromhex(hex_text))
    assert len(pieces) == 1
    assert isinstance(pieces[0], bytes)
    return decode_frame(pieces[0])


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _check_location(got: m.Location, want: dict[str, Any]) -> None:
    assert got.alarm == int(want["alarm"], 16)
    assert got.status == int(want["status"], 16)
    assert got.acc_on is want["acc_on"]
    assert got.fix is want["fix"]
    assert got.lat == pytest.approx(want["lat"], abs=1e-9)
    assert got.lon == pytest.approx(want["lon"], abs=1e-9)
    assert got.alt_m == want["alt_m"]
    assert got.speed_kmh == pytest.approx(want["speed_kmh"])
    assert got.course == want["course"]
    assert got.time == _utc(want["time"])
    items = [{"id": f"0x{k:02X}", "len": len(v), "value": v.hex()} for k, v in got.items]
    assert items == want["items"]
    # the shared invariant check, for every decoded position (not live: vector times are old)
    if got.fix:
        assert got.time is not None
        position = Position(
            DeviceRef("trk", "1"), got.lat, got.lon, got.time, datetime.now(UTC), "jt808",
            float(got.alt_m), got.speed_kmh, float(got.course), got.satellites,
        )  # fmt: skip
        assert plausible.clean(position, datetime.now(UTC), max_fix_age_s=1e10, live=False)


def _check_body(frame: Frame, want: dict[str, Any]) -> None:  # noqa: PLR0912 - one branch per message id
    msg_id, v2019, body = frame.header.msg_id, frame.header.edition_2019, frame.body
    if want.get("empty"):
        assert body == b""
    elif msg_id in (m.TERMINAL_RESPONSE, m.PLATFORM_RESPONSE):
        got = m.decode_general_response(body)
        assert (got.reply_serial, f"0x{got.reply_id:04X}", got.result) == (
            want["reply_serial"], want["reply_id"], want["result"],
        )  # fmt: skip
    elif msg_id == m.REGISTER_RESPONSE:
        reg = m.decode_registration_response(body)
        assert (reg.reply_serial, reg.result) == (want["reply_serial"], want["result"])
        assert reg.auth_code == want.get("auth_code", "")
        again = m.encode_registration_response(reg.reply_serial, reg.result, reg.auth_code)
        assert again == body
    elif msg_id == m.REGISTER:
        got_reg = m.decode_registration(body, v2019)
        assert got_reg == m.Registration(**want)
        assert m.encode_registration(got_reg) == body
    elif msg_id == m.AUTHENTICATE:
        auth = m.decode_authentication(body, v2019)
        assert auth.auth_code == want["auth_code"]
        assert auth.imei == want.get("imei", "")
        assert auth.software_version == want.get("software_version", "")
        assert m.encode_authentication(auth, v2019) == body
    elif msg_id == m.LOCATION:
        location = m.decode_location(body)
        _check_location(location, want)
        assert m.encode_location(location) == body
    elif msg_id == m.POSITION_REPLY:
        reply = m.decode_location_reply(body)
        assert reply.reply_serial == want["reply_serial"]
        _check_location(reply.location, want["location"])
    elif msg_id == m.BATCH:
        batch = m.decode_batch(body)
        assert (len(batch.locations), batch.kind) == (want["count"], want["type"])
        for item, expected in zip(batch.locations, want["locations"], strict=True):
            _check_location(item, expected)
        assert m.encode_batch(batch.locations, backfill=batch.backfill) == body
    elif msg_id == m.TEXT:
        text = m.decode_text(body, v2019)
        assert (f"0x{text.flag:02X}", text.text) == (want["flag"], want["text"])
        assert text.text_type == want.get("text_type")
        assert m.encode_text(text.flag, text.text.encode("gbk"), text.text_type) == body
    elif msg_id == m.QUESTION:
        question = m.decode_question(body)
        assert f"0x{question.flag:02X}" == want["flag"]
        assert question.question == want["question"]
        assert [{"id": i, "text": t} for i, t in question.answers] == want["answers"]
        assert m.encode_question(question.flag, question.question, list(question.answers)) == body
    elif msg_id == m.QUESTION_ANSWER:
        answer = m.decode_question_answer(body)
        assert (answer.reply_serial, answer.answer_id) == (want["reply_serial"], want["answer_id"])
        assert m.encode_question_answer(answer.reply_serial, answer.answer_id) == body
    elif msg_id == m.RESEND_REQUEST:
        request = m.decode_resend_request(body, v2019)
        assert request.original_serial == want["original_serial"]
        assert list(request.packet_ids) == want["packet_ids"]
        assert want["count"] == 2
        assert m.encode_resend_request(request, v2019) == body
    else:
        pytest.fail(f"no body check for 0x{msg_id:04x}")


@pytest.mark.vectors
def test_every_vector_decodes_to_its_fields(vectors_dir: Path) -> None:
    vectors = _vectors(vectors_dir)
    assert len(vectors) == 40
    for vector in vectors:
        want = vector["expect"]
        wire = bytes.fromhex(vector["hex"])
        if "error" in want or not want.get("checksum_ok", True):
            with pytest.raises(Jt808Error) as caught:
                _frame(vector["hex"])
            assert caught.value.reason in {"escape", "check"}, vector["name"]
            continue
        frame = _frame(vector["hex"])
        header = want["header"]
        assert frame.header.msg_id == int(header["msg_id"], 16), vector["name"]
        assert frame.header.phone == header["phone"]
        assert frame.header.serial == header["serial"]
        assert frame.header.edition_2019 is header["version_flag"]
        assert frame.header.version == header.get("protocol_version")
        assert frame.header.encrypt == header["encrypt"]
        assert (frame.header.parts is not None) is header["subpackage"]
        assert len(frame.body) == header["body_len"]
        assert xor_check(unescape(wire[1:-2])) == int(want["checksum"], 16)
        assert (b"\x7d" in wire[1:-1]) is want["escaped_on_wire"]
        # encode reproduces the wire bytes: check code produced and escaping applied
        again = encode_frame(
            frame.header.msg_id, frame.phone_bcd, frame.header.serial, frame.body,
            version=frame.header.version, parts=frame.header.parts,
        )  # fmt: skip
        assert again == wire, vector["name"]
        if "body_fragment_hex" in want:
            assert frame.body.hex() == want["body_fragment_hex"]
        elif want.get("body") is not None:
            _check_body(frame, want["body"])


@pytest.mark.vectors
def test_subpackaged_batch_is_reassembled(vectors_dir: Path) -> None:
    parts = {
        v["name"]: _frame(v["hex"]) for v in _vectors(vectors_dir) if "subpackage" in v["name"]
    }
    first, second = parts["0704_subpackage_1_of_2"], parts["0704_subpackage_2_of_2"]
    reassembler = Reassembler()
    for frame in (second, first):  # out of order
        assert frame.header.parts is not None
        total, index = frame.header.parts
        whole = reassembler.add(
            frame.header.msg_id, frame.header.serial, total, index, frame.body, now=0.0
        )
    assert whole is not None
    assert len(reassembler) == 0
    batch = m.decode_batch(whole)
    assert len(batch.locations) == 2
    assert batch.locations[0].time == datetime(2026, 3, 15, 0, 0, tzinfo=UTC)


def test_reassembly_is_bounded_in_parts_messages_and_time() -> None:
    reassembler = Reassembler(max_parts=4, max_pending=2, timeout_s=10.0)
    with pytest.raises(Jt808Error):
        reassembler.add(0x0704, 1, 5, 1, b"x", now=0.0)
    for serial in (10, 20, 30):
        assert reassembler.add(0x0704, serial, 2, 1, b"x", now=0.0) is None
    assert len(reassembler) == 2
    assert reassembler.dropped == 1
    reassembler.expire(now=11.0)
    assert len(reassembler) == 0
    assert reassembler.missing(0x0704, 10) == ()


def test_shanghai_time_is_utc() -> None:
    body = m.encode_location(
        m.Location(0, 2, 31.2, 121.4, 0, 0.0, 0, datetime(2026, 3, 15, 0, 30, tzinfo=UTC))
    )
    assert body[22:28].hex() == "260315083000"
    assert m.decode_location(body).time == datetime(2026, 3, 15, 0, 30, tzinfo=UTC)


def test_escaping_rules() -> None:
    assert escape(bytes.fromhex("307e087d55")) == bytes.fromhex("307d02087d0155")
    assert unescape(bytes.fromhex("307d02087d0155")) == bytes.fromhex("307e087d55")
    assert unescape(bytes.fromhex("7d0102")) == bytes.fromhex("7d02")
    for bad in ("7d03", "007d"):
        with pytest.raises(Jt808Error):
            unescape(bytes.fromhex(bad))


def test_splitter_resyncs_and_caps_frames() -> None:
    good = encode_frame(m.HEARTBEAT, encode_bcd_phone("13800138000", False), 1, b"")
    splitter = FrameSplitter()
    out = splitter.feed(b"junk" + good + good[:5])
    assert isinstance(out[0], Rejected)
    assert out[0].reason == "garbage"
    assert out[1:] == [good[1:-1]]
    assert splitter.feed(good[5:]) == [good[1:-1]]
    huge = splitter.feed(b"\x7e" + b"\x11" * 65536)
    assert [r.reason for r in huge if isinstance(r, Rejected)] == ["oversize"]
    assert splitter.buffered <= MAX_WIRE_FRAME_BYTES
    assert splitter.feed(b"\x11" * 1000 + good) == [good[1:-1]]
    # byte by byte
    splitter = FrameSplitter()
    frames = [item for byte in good * 2 for item in splitter.feed(bytes((byte,)))]
    assert frames == [good[1:-1], good[1:-1]]


def test_gbk_text_is_sanitised_and_bounded() -> None:
    assert m.gbk_text("请于\x07今日😀", 100) == "请于今日?".encode("gbk")
    with pytest.raises(Jt808Error):
        m.gbk_text("东" * 600, 1021)


def test_2019_phone_and_imei_fallback() -> None:
    frame = decode_frame(
        encode_frame(m.HEARTBEAT, encode_bcd_phone("13800138000", True), 3, b"", version=1)[1:-1]
    )
    assert frame.header.phone == "00000000013800138000"
    assert frame.header.version == 1
    imei = bytes.fromhex("0c4b7e51d2ab")  # not BCD: a binary IMEI
    frame = decode_frame(escape(_content(imei)))
    assert frame.header.phone.isdigit()
    assert len(frame.header.phone) >= 15


def _content(phone_bcd: bytes) -> bytes:
    content = b"\x00\x02\x00\x00" + phone_bcd + b"\x00\x01"
    return content + bytes((xor_check(content),))


_ANY_ID = st.sampled_from(
    [m.LOCATION, m.BATCH, m.REGISTER, m.AUTHENTICATE, m.TEXT, m.QUESTION, m.QUESTION_ANSWER,
     m.TERMINAL_RESPONSE, m.POSITION_REPLY, m.REGISTER_RESPONSE, m.RESEND_REQUEST]
)  # fmt: skip


def _decode_any(msg_id: int, body: bytes, v2019: bool) -> object:
    decoders: dict[int, Any] = {
        m.LOCATION: m.decode_location,
        m.BATCH: m.decode_batch,
        m.REGISTER: lambda b: m.decode_registration(b, v2019),
        m.AUTHENTICATE: lambda b: m.decode_authentication(b, v2019),
        m.TEXT: lambda b: m.decode_text(b, v2019),
        m.QUESTION: m.decode_question,
        m.QUESTION_ANSWER: m.decode_question_answer,
        m.TERMINAL_RESPONSE: m.decode_general_response,
        m.POSITION_REPLY: m.decode_location_reply,
        m.REGISTER_RESPONSE: m.decode_registration_response,
        m.RESEND_REQUEST: lambda b: m.decode_resend_request(b, v2019),
    }
    return decoders[msg_id](body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_frames_raise_only_the_codec_error(data: bytes) -> None:
    for item in FrameSplitter().feed(data):
        if isinstance(item, bytes):
            with contextlib.suppress(Jt808Error):
                decode_frame(item)
    with contextlib.suppress(Jt808Error):
        decode_frame(data)


@settings(max_examples=400, deadline=None)
@given(_ANY_ID, st.binary(max_size=200), st.booleans())
def test_fuzz_bodies_raise_only_the_codec_error(msg_id: int, body: bytes, v2019: bool) -> None:
    try:
        decoded = _decode_any(msg_id, body, v2019)
    except Jt808Error:
        return
    if isinstance(decoded, m.Location) and decoded.fix and decoded.time is not None:
        # whatever decodes is in range or caught by the shared check, never a crash
        position = Position(
            DeviceRef("trk", "1"), decoded.lat, decoded.lon, decoded.time, decoded.time,
            "jt808", float(decoded.alt_m), decoded.speed_kmh, float(decoded.course),
        )  # fmt: skip
        plausible.check(position, decoded.time + timedelta(seconds=1), max_fix_age_s=60.0)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-90, 90), st.floats(-180, 180), st.integers(-1000, 9000),
    st.integers(0, 3599), st.integers(0, 359), st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_location_round_trip(
    lat: float, lon: float, alt: int, speed: int, course: int, alarm: int
) -> None:
    when = datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC)
    location = m.Location(alarm, 0x2, lat, lon, alt, speed / 10, course, when)
    got = m.decode_location(m.encode_location(location))
    assert got.lat == pytest.approx(lat, abs=1e-6)
    assert got.lon == pytest.approx(lon, abs=1e-6)
    assert (got.alt_m, got.course, got.alarm, got.time) == (alt, course, alarm, when)
