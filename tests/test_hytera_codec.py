"""The Hytera codecs (``protocols/hytera``): the recorded frames of ../shared/vectors/hytera.json,
our own vectors built from the specs (``docs/protocols/hytera.md``), ok-dmrlib as a test-only
oracle for what the gateway writes, and the torture suite with hypothesis on both framing
layers (HRNP and HDAP): only :class:`HyteraError` ever escapes, and garbage between frames
costs only the damaged frame."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from okdmr.dmrlib.hytera.pdu.hdap import HDAP
from okdmr.dmrlib.hytera.pdu.hrnp import HRNP, HRNPOpcodes

from protocols import ProtocolError
from protocols.hytera.errors import HyteraError
from protocols.hytera.hdap import (
    ENVELOPE_BE,
    ENVELOPE_LE,
    HdapEnvelope,
    Service,
    decode_envelope,
    encode_envelope,
)
from protocols.hytera.hrnp import (
    FRAME,
    PC_ADDRESS,
    RADIO_ADDRESS,
    HrnpDecoder,
    HrnpFrame,
    HrnpOpcode,
    HrnpRejected,
    decode_frame,
    encode_frame,
    internet_checksum,
)
from protocols.hytera.services import (
    GPS,
    GPS_FAST,
    REQ_IP_FAST,
    TMP_ADDRESSES,
    TMP_ADDRESSES_FAST,
    DdsReport,
    GpsFix,
    LpAnswer,
    LpLocation,
    LpOpcode,
    LpRequest,
    RcpMessage,
    RcpOpcode,
    RrsMessage,
    RrsOpcode,
    ServiceMessage,
    TmpAck,
    TmpMessage,
    decode_service,
    encode_service,
    interval_seconds,
    interval_text,
    ip_text,
    radio_id,
    radio_ip,
)
from tests.conftest import VECTORS as VECTORS_DIR

SERVICE_NAMES = {s.name: s for s in Service}


def load_vectors() -> list[dict[str, Any]]:
    path = VECTORS_DIR / "hytera.json"
    if not path.exists():
        return []
    vectors: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return vectors


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


VECTORS = load_vectors()


def _radio(expect: dict[str, Any], value: int) -> None:
    assert ip_text(value) == expect["ip"]
    assert radio_id(value) == expect["id"]


def check_service(  # noqa: PLR0912 - one branch per service and field of the vectors
    message: ServiceMessage, name: str, expect: dict[str, Any]
) -> None:
    """The typed message against a vector's service fields."""
    if name == "tmp":
        assert isinstance(message, TmpMessage | TmpAck)
        assert f"0x{message.request_id:08X}" == expect["request_id"]
        assert bool(message.flags & 0x80) == expect["ack_flag_bit7"]
        assert bool(message.flags & 0x40) == expect["option_bit6"]
        _radio(expect["dest"], message.dest)
        if "src" in expect:
            assert message.src is not None
            _radio(expect["src"], message.src)
        if isinstance(message, TmpMessage):
            assert message.text == expect["text"]
            assert message.group == expect["svc"].startswith("group")
        else:
            assert message.result == expect["result"]
            if "option_len" in expect:
                assert len(message.option) == expect["option_len"]
    elif name == "lp":
        assert isinstance(message, LpLocation | LpRequest)
        assert message.request_id == expect["request_id"]
        _radio(expect["radio"], message.radio)
        if isinstance(message, LpRequest):
            if "extra_bytes" in expect:
                assert message.extra.hex() == expect["extra_bytes"]
            if "trigger_type" in expect:
                assert (message.trigger, message.distance_m) == (
                    expect["trigger_type"], expect["distance_m"],
                )  # fmt: skip
                assert (message.start, message.stop) == (expect["start"], expect["stop"])
                assert message.interval == expect["interval"]
                assert message.max_interval == expect["max_interval"]
        else:
            gps, want = message.gps, expect["gps"]
            assert message.result == expect["result"]
            assert gps.status == want["status"]
            assert (gps.time, gps.date) == (want["time"], want["date"])
            assert gps.lat == pytest.approx(want["lat"], abs=1e-6)
            assert gps.lon == pytest.approx(want["lon"], abs=1e-6)
            speed = None if want["speed_knots"] == "" else float(want["speed_knots"])
            assert gps.speed_knots == speed
            direction = None if want["direction"] == "" else int(want["direction"])
            assert gps.direction == direction
            assert message.rssi == expect.get("rssi")
    elif name == "rrs":
        assert isinstance(message, RrsMessage)
        _radio(expect["radio"], message.radio)
        assert message.result == expect.get("result")
        assert message.renew_s == expect.get("renew_s")
        if "state" in expect:
            assert message.online == (expect["state"] == "online")
    elif name == "rcp":
        assert isinstance(message, RcpMessage)
        if "target_id" in expect:
            assert (message.call_type, message.target) == (
                expect["call_type"], expect["target_id"],
            )  # fmt: skip
        if "broadcast_flags" in expect:
            assert message.flags == expect["broadcast_flags"]
        if "result" in expect:
            assert message.result == expect["result"]
        if "value" in expect:
            target = {"radio_id": 0, "radio_ip": 1}[expect["target"]]
            assert message.target == target
            assert message.value is not None
            value = ip_text(message.value) if target else message.value
            assert value == expect["value"]
        elif "target" in expect:
            assert message.target == {"radio_id": 0, "radio_ip": 1}[expect["target"]]
    elif name == "dds":
        assert isinstance(message, DdsReport)
        assert Service(message.service).name == expect["about_service"]
        _radio(expect["radio"], message.radio)
        assert f"0x{message.protocol_opcode:04X}" == expect["protocol_opcode"]
        assert message.result == expect["result"]


def check_hdap(data: bytes, expect: dict[str, Any]) -> None:
    if not expect["checksum_ok"]:
        with pytest.raises(HyteraError, match="checksum"):
            decode_envelope(data)
        return
    env = decode_envelope(data)
    assert env.service == SERVICE_NAMES[expect["service"]]
    assert env.reliable == expect["reliable"]
    assert f"0x{env.opcode:04X}" == expect["opcode"]
    assert len(env.payload) == expect["length"]
    assert f"0x{env.end_byte:02X}" == expect["end_byte"]
    message = decode_service(env)
    for name in ("tmp", "lp", "rrs", "rcp", "dds"):
        if name in expect:
            check_service(message, name, expect[name])
    if env.end_byte == 0x03:
        # Well formed: the typed message re-encodes to the same bytes.
        assert encode_envelope(encode_service(message, reliable=env.reliable)) == data
    else:
        assert encode_envelope(env) == data  # the envelope keeps its odd end byte


def hstrp_hdap(data: bytes) -> bytes:
    """The HDAP inside an HSTRP packet (notes section 3): 6 header bytes, then options while
    flag 0x20 says so (``more|cmd``, length, value)."""
    at = 6
    if data[3] & 0x20:
        more = True
        while more:
            more = bool(data[at] & 0x80)
            at += 2 + data[at + 1]
    return data[at:]


@pytest.mark.vectors
@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_recorded_vectors(vector: dict[str, Any], vectors_dir: Path) -> None:
    assert (vectors_dir / "hytera.json").exists()
    data, expect = bytes.fromhex(vector["hex"]), vector["expect"]
    if vector["layer"] == "hrnp":
        frame = decode_frame(data)
        assert frame.version == expect["version"]
        assert HrnpOpcode(frame.opcode).name == expect["opcode"]
        assert (f"0x{frame.src:02X}", f"0x{frame.dst:02X}") == (expect["src"], expect["dst"])
        assert frame.packet_number == expect["packet_number"]
        assert len(data) == expect["length"]
        assert f"0x{int.from_bytes(data[10:12], 'big'):04X}" == expect["checksum"]
        assert encode_frame(frame) == data  # checksum produced, not copied
        assert [f.raw for f in HrnpDecoder().feed(data) if isinstance(f, HrnpFrame)] == [data]
        if "hdap" in expect:
            check_hdap(frame.data, expect["hdap"])
    elif vector["layer"] == "hdap":
        check_hdap(data, expect)
    else:
        assert vector["layer"] == "hstrp"
        if "hdap" in expect:
            check_hdap(hstrp_hdap(data), expect["hdap"])


@pytest.mark.vectors
def test_every_recorded_vector_is_covered(vectors_dir: Path) -> None:
    assert len(VECTORS) == 45
    assert {v["layer"] for v in VECTORS} == {"hrnp", "hdap", "hstrp"}


# --- our own vectors, built from the specs ---------------------------------------------------

# Built by hand from the layouts of docs/protocols/hytera.md (notes sections 5-7): a periodic
# report (C003) and an emergency report (B003) from radio 1001, with the GPS block of the
# dmr-kaitai A002 vector, and the checksums computed by the formula of section 4.
GPS_BLOCK = b"A162251311018N4736.6975E00739.26800.0005"
OWN_VECTORS = {
    "lp_c003_periodic_report": (
        "08c0030038" + "123456780a0003e9" + "3030303030313030".lower() + GPS_BLOCK.hex(),
        LpLocation(0xC003, 0x12345678, radio_ip(1001), GpsFix.decode(GPS_BLOCK),
                   time_remaining="00000100"),
    ),
    "lp_b003_emergency_report": (
        "08b003002d" + "0a0003e9" + "01" + GPS_BLOCK.hex(),
        LpLocation(0xB003, None, radio_ip(1001), GpsFix.decode(GPS_BLOCK), emergency_type=1),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(OWN_VECTORS))
def test_own_vectors(name: str) -> None:
    body_hex, message = OWN_VECTORS[name]
    body = bytes.fromhex(body_hex)
    checksum = (0x32 - sum(body[1:])) & 0xFF
    data = body + bytes((checksum, 0x03))
    assert decode_service(decode_envelope(data)) == message
    assert encode_envelope(encode_service(message)) == data


def test_gps_block_both_ways_and_signs() -> None:
    for lat, lon in ((31.2304, 121.4737), (-33.8688, -151.2093), (0.0001, -0.0001)):
        fix = GpsFix.decode(GpsFix.build(lat, lon, time="235959", date="311299", direction=359))
        assert fix.valid
        assert fix.lat == pytest.approx(lat, abs=1e-5)
        assert fix.lon == pytest.approx(lon, abs=1e-5)
        assert (fix.time, fix.date, fix.direction) == ("235959", "311299", 359)
    void = GpsFix.decode(GpsFix.build(31.0, 121.0, valid=False))
    assert not void.valid
    nul = GpsFix.decode(b"A" + bytes(39))
    assert not nul.valid
    assert (nul.lat, nul.lon, nul.time, nul.speed_knots, nul.direction) == (None,) * 5


def test_intervals() -> None:
    assert interval_text(60) == "00000100"
    assert interval_text(90061) == "01010101"
    assert interval_text(0.2) == "00000001"
    assert interval_seconds("00000820") == 500
    assert interval_seconds("abc") is None


def test_layouts_as_data_agree_with_the_fast_paths() -> None:
    frame = encode_frame(HrnpFrame(HrnpOpcode.DATA, PC_ADDRESS, RADIO_ADDRESS, 9, b"\x01\x02"))
    parsed = FRAME.parse(frame)
    assert (parsed.opcode, parsed.packet_number, parsed.length, parsed.data) == (
        0, 9, 14, b"\x01\x02",
    )  # fmt: skip
    env = encode_envelope(HdapEnvelope(Service.TMP, 0x80A2, b"\xaa"))
    be = ENVELOPE_BE.parse(env)
    assert (be.service, be.opcode, be.length, be.payload, be.end) == (9, 0x80A2, 1, b"\xaa", 3)
    rcp = encode_envelope(HdapEnvelope(Service.RCP, 0x0452, b"\x00"))
    le = ENVELOPE_LE.parse(rcp)
    assert (le.opcode, le.length) == (0x0452, 1)
    assert rcp.hex().startswith("0252040100")


def test_rfc1071_checksum() -> None:
    # RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement 220d).
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00")


# --- ok-dmrlib as oracle: what the gateway writes decodes there to the same fields ----------


def test_oracle_reads_our_hrnp_session_frames() -> None:
    for opcode, name in ((HrnpOpcode.CONNECT, "CONNECT"), (HrnpOpcode.DATA_ACK, "DATA_ACK")):
        data = encode_frame(HrnpFrame(opcode, PC_ADDRESS, RADIO_ADDRESS, 5))
        theirs = HRNP.from_bytes(data)
        assert theirs.opcode == HRNPOpcodes[name]
        assert theirs.packet_number == 5
        assert theirs.checksum_correct


def test_oracle_reads_our_text_in_hrnp() -> None:
    text = "请到人民广场东侧，有人摔倒 #12"
    message = TmpMessage(0x40000001, radio_ip(1002), radio_ip(1001), text)
    data = encode_frame(
        HrnpFrame(HrnpOpcode.DATA, PC_ADDRESS, RADIO_ADDRESS, 3,
                  encode_envelope(encode_service(message)))
    )  # fmt: skip
    theirs = HRNP.from_bytes(data)
    assert theirs.checksum_correct
    tmp = theirs.data
    assert tmp.request_id == 0x40000001
    assert tmp.is_confirmed
    assert (tmp.destination_ip.radio_id, tmp.source_ip.radio_id) == (1002, 1001)
    assert (tmp.destination_ip.subnet, tmp.source_ip.subnet) == (10, 10)
    assert tmp.text_data.decode("utf-16-le") == text


def test_oracle_reads_our_acks_requests_and_answers() -> None:
    ack = HDAP.from_bytes(
        encode_envelope(encode_service(TmpAck(7, radio_ip(1001), radio_ip(1002), 0)))
    )
    assert (ack.request_id, ack.result_code.value) == (7, 0)
    assert ack.destination_ip.radio_id == 1001
    poll = HDAP.from_bytes(
        encode_envelope(encode_service(LpRequest(LpOpcode.IMMEDIATE_REQUEST, 12, radio_ip(1002))))
    )
    assert (poll.request_id, poll.radio_ip.radio_id, poll.specific_service.value) == (
        12, 1002, 0xA001,
    )  # fmt: skip
    answer = HDAP.from_bytes(
        encode_envelope(
            encode_service(RrsMessage(RrsOpcode.REGISTRATION_ANSWER, radio_ip(1002), 0, 1800))
        )
    )
    assert (answer.radio_ip.radio_id, answer.result.value, answer.renew_time_seconds) == (
        1002, 0, 1800,
    )  # fmt: skip
    query = HDAP.from_bytes(
        encode_envelope(encode_service(RcpMessage(RcpOpcode.RADIO_ID_REQUEST, target=0)))
    )
    assert query.opcode.value == 0x0452


def test_oracle_reads_the_stubs_location_answer() -> None:
    fix = GpsFix.decode(GpsFix.build(31.2304, 121.4737, time="120000", date="010126",
                                     direction=90))  # fmt: skip
    data = encode_envelope(encode_service(LpLocation(0xA002, 3, radio_ip(1001), fix)))
    theirs = HDAP.from_bytes(data)
    assert theirs.radio_ip.radio_id == 1001
    assert theirs.gpsdata.data_valid == "A"
    assert theirs.gpsdata.direction == 90


# --- torture and fuzzing ---------------------------------------------------------------------

GOOD = [
    encode_frame(HrnpFrame(HrnpOpcode.ACCEPT, RADIO_ADDRESS, PC_ADDRESS)),
    encode_frame(
        HrnpFrame(HrnpOpcode.DATA, RADIO_ADDRESS, PC_ADDRESS, 1,
                  encode_envelope(encode_service(TmpMessage(1, radio_ip(7), radio_ip(1001),
                                                            "收到 \x7e"))))
    ),
    encode_frame(HrnpFrame(HrnpOpcode.DATA_ACK, RADIO_ADDRESS, PC_ADDRESS, 0x7E7E)),
]  # fmt: skip


def frames_of(items: list[HrnpFrame | HrnpRejected]) -> list[bytes]:
    return [item.raw for item in items if isinstance(item, HrnpFrame)]


def drain(decoder: HrnpDecoder, items: list[HrnpFrame | HrnpRejected]) -> None:
    """End of stream: give up on whatever waits (as the driver does after a quiet spell)."""
    while decoder.buffered:
        items += decoder.resync()


def test_byte_by_byte_and_all_at_once() -> None:
    stream = b"".join(GOOD)
    decoder = HrnpDecoder()
    items: list[HrnpFrame | HrnpRejected] = []
    for byte in stream:
        items += decoder.feed(bytes([byte]))
    assert frames_of(items) == GOOD
    assert not [i for i in items if isinstance(i, HrnpRejected)]
    assert frames_of(HrnpDecoder().feed(stream)) == GOOD


def test_a_bad_checksum_a_truncated_frame_and_stray_starts_lose_only_themselves() -> None:
    bad = bytearray(GOOD[1])
    bad[-3] ^= 0x01
    truncated = GOOD[1][:20]
    stream = b"\x7e\x7e\x00" + GOOD[0] + bytes(bad) + GOOD[1] + truncated + b"\x7e" + GOOD[2]
    decoder = HrnpDecoder()
    items = decoder.feed(stream)
    drain(decoder, items)
    assert frames_of(items) == [GOOD[0], GOOD[1], GOOD[2]]
    reasons = {i.reason for i in items if isinstance(i, HrnpRejected)}
    assert "checksum" in reasons


def test_oversize_length_is_refused_and_the_buffer_stays_bounded() -> None:
    decoder = HrnpDecoder()
    huge = bytes.fromhex("7e04000010200001ffff0000")
    items = decoder.feed(huge + b"\x00" * 5000)
    assert any(isinstance(i, HrnpRejected) and i.reason == "header" for i in items)
    assert decoder.buffered == 0
    for _ in range(100):
        decoder.feed(b"\x7e\x04\x00\x00\x10\x20\x00\x01\x05\xdc")  # plausible, never complete
    assert decoder.buffered <= 2000


def test_codec_errors_are_protocol_errors() -> None:
    assert issubclass(HyteraError, ProtocolError)
    assert issubclass(HyteraError, ValueError)
    with pytest.raises(HyteraError, match="shorter"):
        decode_frame(b"\x7e\x04")
    with pytest.raises(HyteraError, match="service"):
        decode_envelope(bytes.fromhex("7700010000cc03"))
    with pytest.raises(HyteraError, match="UTF-16"):
        decode_service(HdapEnvelope(Service.TMP, 0x80A1, bytes(12) + b"\x00"))
    with pytest.raises(HyteraError, match="not valid UTF-16LE"):
        decode_service(HdapEnvelope(Service.TMP, 0x80A1, bytes(12) + b"\x00\xd8"))
    with pytest.raises(HyteraError):
        encode_service(TmpAck(1 << 40, 0, 0, 0))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_fuzz_hrnp_decoder_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    decoder = HrnpDecoder()
    for chunk in chunks:
        for item in decoder.feed(chunk):
            if isinstance(item, HrnpFrame):
                assert decode_frame(item.raw) == item
        assert decoder.buffered <= decoder.max_frame_bytes + 80


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=len(GOOD) + 1, max_size=len(GOOD) + 1),
       st.integers(min_value=1, max_value=64))  # fmt: skip
def test_fuzz_garbage_between_frames_loses_no_good_frame(
    garbage: list[bytes], chunk_size: int
) -> None:
    stream = garbage[0] + b"".join(
        frame + junk for frame, junk in zip(GOOD, garbage[1:], strict=False)
    )
    decoder = HrnpDecoder()
    items: list[HrnpFrame | HrnpRejected] = []
    for at in range(0, len(stream), chunk_size):
        items += decoder.feed(stream[at : at + chunk_size])
    drain(decoder, items)
    got = iter(frames_of(items))
    assert all(any(frame == seen for seen in got) for frame in GOOD)  # in order


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_hrnp_and_hdap_decoders_raise_only_their_own_error(data: bytes) -> None:
    for decode in (decode_frame, decode_envelope):
        with contextlib.suppress(HyteraError):
            decode(data)


@settings(max_examples=800, deadline=None)
@given(
    st.sampled_from(list(Service)),
    st.integers(min_value=0, max_value=0xFFFF) | st.sampled_from(
        [0x80A1, 0xC0A1, 0x80A2, 0x80B2, 0xA002, 0xA003, 0xB003, 0xC003, 0xD002, 0xD004, 3, 0x80,
         0x82, 0x8452, 0x0841, 0x1847, 0xC001, 0xD001]
    ),
    st.binary(max_size=80),
)  # fmt: skip
def test_fuzz_services_raise_only_their_own_error(
    service: int, opcode: int, payload: bytes
) -> None:
    env = HdapEnvelope(service, opcode, payload)
    assert decode_envelope(encode_envelope(env)) == env
    try:
        message = decode_service(env)
    except HyteraError:
        return
    with contextlib.suppress(HyteraError):
        encode_service(message)


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=200),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
    st.integers(min_value=1, max_value=0xFFFFFF),
    st.booleans(),
)
def test_fuzz_text_round_trips(text: str, request_id: int, radio: int, group: bool) -> None:
    message = TmpMessage(request_id, radio_ip(radio), radio_ip(1), text, group)
    wire = encode_envelope(encode_service(message))
    assert decode_service(decode_envelope(wire)) == message
    framed = encode_frame(HrnpFrame(HrnpOpcode.DATA, PC_ADDRESS, RADIO_ADDRESS, 1, wire))
    (frame,) = HrnpDecoder().feed(framed)
    assert isinstance(frame, HrnpFrame)
    assert frame.data == wire


def test_lp_answers_and_dds_round_trip() -> None:
    for message in (
        LpAnswer(LpOpcode.TRIGGERED_ANSWER, 5, radio_ip(1001), 0),
        LpAnswer(LpOpcode.CONDITION_ANSWER, 5, radio_ip(1001), 105, trigger=4),
        LpAnswer(LpOpcode.IMMEDIATE_ANSWER, 5, radio_ip(1001), 6),
        DdsReport(Service.LP, radio_ip(1001), 0xA001, 5),
        RrsMessage(RrsOpcode.ONLINE_CHECK_ANSWER, radio_ip(3), online=False),
        RcpMessage(RcpOpcode.RADIO_ID_REPLY, result=0, target=1, value=radio_ip(1001)),
    ):
        decoded = decode_service(decode_envelope(encode_envelope(encode_service(message))))
        if isinstance(decoded, RcpMessage):
            decoded = dataclasses.replace(decoded, payload=b"")  # RCP keeps its raw payload
        assert decoded == message


def test_fast_readings_agree_with_the_layouts_as_data() -> None:
    parsed = GPS.parse(GPS_BLOCK)
    fast = GPS_FAST.unpack(GPS_BLOCK)
    names = ("status", "time", "date", "ns", "lat", "ew", "lon", "speed", "direction")
    assert tuple(parsed[name] for name in names) == fast
    assert GPS_FAST.size == GPS.sizeof() == 40
    addresses = bytes.fromhex("000000070a0003ea0a0003e9")
    a = TMP_ADDRESSES.parse(addresses)
    assert (a.request_id, a.dest, a.src) == TMP_ADDRESSES_FAST.unpack(addresses)
    assert REQ_IP_FAST.unpack(addresses[:8]) == (7, radio_ip(1002))
