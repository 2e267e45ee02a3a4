"""MOTOTRBO codecs: the shared vectors, round trips, all four hemispheres, the test-only
oracles (ok-dmrlib, for the fields it reads right), and fuzzing of all three decoders."""

from __future__ import annotations

import contextlib
import importlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# Test-only oracles (ok-dmrlib is AGPL): never imported by gateway/, protocols/ or stubs.
from okdmr.dmrlib.motorola.automatic_registration_service import AutomaticRegistrationService
from okdmr.dmrlib.motorola.mbxml import MBXML
from okdmr.dmrlib.motorola.text_messaging_service import TextMessagingService

from protocols.mototrbo import MototrboError, ars, lrrp, radio_id_of, radio_ip, tms
from protocols.mototrbo.common import (
    encode_sfloatvar,
    encode_ufloatvar,
    encode_uintvar,
    read_sfloatvar,
    read_ufloatvar,
    read_uintvar,
)

# trbodatasvc installs as TrboDataSvc (no types; pyproject's override names "trbodatasvc").
trbo_util: Any = importlib.import_module("TrboDataSvc.util")
TrboLrrp: Any = importlib.import_module("TrboDataSvc.lrrp").LRRP


def load_vectors(vectors_dir: Path, layer: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((vectors_dir / "mototrbo.json").read_text("utf-8"))
    return [v for v in data if v["layer"] == layer]


# --- addressing and numbers ------------------------------------------------------------


def test_radio_addresses_follow_the_system_planner() -> None:
    assert radio_ip(12045) == "12.0.47.13"
    assert radio_id_of("12.0.47.13") == 12045
    assert radio_id_of("13.0.47.13") is None  # the PC side, not a radio
    assert radio_id_of("127.0.3.233", cai=127) == 1001
    for bad in ("12.0.0.0", "12.0.300.1", "12.0.x.1", "12.0.1"):
        assert radio_id_of(bad) is None
    with pytest.raises(MototrboError):
        radio_ip(0)


def test_uintvar_examples_from_the_notes() -> None:
    assert encode_uintvar(250) == bytes.fromhex("817a")
    assert encode_uintvar(500) == bytes.fromhex("8374")
    assert read_uintvar(bytes.fromhex("8374"), 0) == (500, 2)
    assert read_sfloatvar(bytes.fromhex("70402b"), 1)[0] == pytest.approx(-0.336, abs=1e-3)
    assert read_sfloatvar(bytes.fromhex("82534e"), 0)[0] == pytest.approx(339.61, abs=1e-2)
    with pytest.raises(MototrboError):
        read_uintvar(b"\x81\x82", 0)


@given(st.integers(0, 2**40))
def test_uintvar_round_trips(value: int) -> None:
    assert read_uintvar(encode_uintvar(value), 0) == (value, len(encode_uintvar(value)))


@given(st.integers(0, 2**20), st.integers(0, 127))
def test_floatvars_round_trip_at_their_resolution(integer: int, steps: int) -> None:
    value = integer + steps / 128
    assert read_ufloatvar(encode_ufloatvar(value), 0)[0] == value
    assert read_sfloatvar(encode_sfloatvar(value), 0)[0] == value
    assert read_sfloatvar(encode_sfloatvar(-value), 0)[0] == -value


# --- the shared vectors ---------------------------------------------------------------------


def header_bits(byte: int) -> dict[str, object]:
    return {
        "ext": bool(byte & 0x80),
        "ack_bit6": bool(byte & 0x40),
        "bit5": bool(byte & 0x20),
        "control": bool(byte & 0x10),
        "pdu_type": byte & 0x0F,
    }


@pytest.mark.vectors
def test_ars_vectors(vectors_dir: Path) -> None:
    vectors = load_vectors(vectors_dir, "ars")
    assert vectors
    for v in vectors:
        raw = bytes.fromhex(v["hex"])
        want = v["expect"]
        decoded = ars.decode(raw)
        assert decoded.trailing == want["trailing_bytes"], v["name"]
        assert header_bits(raw[2]) == want["header"], v["name"]
        msg = decoded.message
        if want["type"] == "device_registration":
            assert isinstance(msg, ars.ArsRegistration)
            assert (msg.device_id, msg.user_id, msg.password) == (
                want["device_id"],
                want["user_id"],
                want["password"],
            )
            assert msg.event == ars.ArsEvent.INITIAL
            assert msg.encoding == want["encoding"]
        elif want["type"] == "device_deregistration":
            assert isinstance(msg, ars.ArsDeregistration)
        elif want["type"] == "query":
            assert isinstance(msg, ars.ArsQuery)
        else:
            assert isinstance(msg, ars.ArsResponse)
            assert msg.success is want["success"]
            assert msg.refresh_min == want.get("refresh_min")
        # Well-formed frames re-encode to the same bytes (the pad byte is not ours).
        assert ars.encode(msg) == raw[: 2 + want["length"]], v["name"]


@pytest.mark.vectors
def test_tms_vectors(vectors_dir: Path) -> None:
    vectors = load_vectors(vectors_dir, "tms")
    assert vectors
    for v in vectors:
        raw = bytes.fromhex(v["hex"])
        want = v["expect"]
        assert header_bits(raw[2]) == want["header"], v["name"]
        msg = tms.decode(raw)
        if want["type"] == "simple_text":
            assert isinstance(msg, tms.TmsText)
            assert msg.text == want["text"]
            assert msg.sn == want["sn"]
            assert msg.ack_requested is want["ack_requested"]
            assert msg.address.hex() == want["address"]
            assert msg.encoding == want["encoding"]
            assert tms.encode_raw_text(msg) == raw
        elif want["type"] == "ack":
            assert isinstance(msg, tms.TmsAck)
            assert msg.sn == want.get("sn")
            assert msg.sn_header.hex() == want.get("sn_header_bytes", "")
            assert tms.encode_ack(msg.sn_header, first_header=raw[2]) == raw
        else:
            assert isinstance(msg, tms.TmsAvailability)


@pytest.mark.vectors
def test_lrrp_vectors(vectors_dir: Path) -> None:
    vectors = load_vectors(vectors_dir, "lrrp")
    assert vectors
    for v in vectors:
        raw = bytes.fromhex(v["hex"])
        want = v["expect"]
        doc = lrrp.decode(raw)
        assert doc.doc.name.replace("_START", "") == want["doc"].upper().replace("-", "_")
        assert doc.request_id.hex() == want["request_id"]
        if isinstance(doc, lrrp.LrrpRequest):
            if "interval_s" in want:
                assert doc.periodic_s == want["interval_s"]
            assert doc.distance_m == want.get("trigger_distance_raw")
            if "query_tokens" in want:
                assert doc.ret_info == 0x51
                assert doc.altitude
                assert doc.speed
                assert doc.direction
            assert lrrp.encode_request(doc) == raw, v["name"]
            continue
        assert doc.result_code == want.get("result_code")
        assert doc.operation_error is want.get("operation_error", False)
        if "lat" in want:
            assert doc.has_position
            assert doc.shape == want["shape"]
            assert doc.lat == pytest.approx(want["lat"], abs=1e-6)
            assert doc.lon == pytest.approx(want["lon"], abs=1e-6)
            assert doc.radius_m == pytest.approx(want.get("radius"), abs=1e-6)
            assert doc.alt_m == pytest.approx(want.get("altitude"), abs=1e-6)
            assert doc.speed_raw == pytest.approx(want["speed_hor_raw"], abs=1e-6)
            assert doc.direction_raw == want.get("direction_raw")
            if "direction_deg_if_x2" in want:
                assert doc.course_deg == want["direction_deg_if_x2"]
        else:
            assert not doc.has_position
        if "info_time_utc" in want:
            assert doc.info_time == datetime.fromisoformat(want["info_time_utc"] + "+00:00")
        if "rest" in want:
            assert doc.rest.hex() == want["rest"]
        assert lrrp.encode_report(doc) == raw, v["name"]


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (31.2304, 121.4737),  # north-east: Shanghai
        (40.7128, -74.0060),  # north-west: New York
        (-33.8688, 151.2093),  # south-east: Sydney
        (-34.6037, -58.3816),  # south-west: Buenos Aires
        (-0.0001, -0.0001),
        (90.0, 180.0),
        (-90.0, -180.0),
    ],
)
def test_positions_round_trip_in_all_four_hemispheres(lat: float, lon: float) -> None:
    report = lrrp.LrrpReport(
        lrrp.DocId.TRIGGERED_LOCATION_REPORT,
        b"\x01\x00\x00\x01",
        info_time=datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC),
        shape=lrrp.Shape.POINT_3D,
        lat=lat,
        lon=lon,
        alt_m=-12.5,
        speed_raw=lrrp.speed_raw_for(36.0),
        direction_raw=lrrp.direction_raw_for(270),
    )
    back = lrrp.decode(lrrp.encode_report(report))
    assert isinstance(back, lrrp.LrrpReport)
    assert back.lat == pytest.approx(lat, abs=1e-6)
    assert back.lon == pytest.approx(lon if lon != 180.0 else 180.0, abs=1e-6)
    assert back.alt_m == -12.5
    assert back.speed_kmh == pytest.approx(36.0, abs=0.03)
    assert back.course_deg == 270
    assert back.info_time == report.info_time


def test_text_round_trip_with_subject_and_chinese() -> None:
    raw = tms.encode_text("到达现场", 100, subject="状态")
    msg = tms.decode(raw)
    assert isinstance(msg, tms.TmsText)
    assert (msg.sn, msg.subject, msg.body, msg.ack_requested) == (100, "状态", "到达现场", True)
    ack = tms.decode(tms.encode_ack(msg))
    assert isinstance(ack, tms.TmsAck)
    assert ack.matches(100)
    assert not ack.matches(101)
    assert ack.sn_header == msg.sn_header  # echoed as received
    two_byte = tms.decode(tms.encode_ack_for(100))
    assert isinstance(two_byte, tms.TmsAck)
    assert two_byte.sn == 100
    assert two_byte.sn_bits == 7
    one_byte = tms.TmsAck(100 & 0x1F, bytes([100 & 0x1F]))
    assert one_byte.matches(100)
    assert one_byte.sn_bits == 5


def test_text_limits() -> None:
    assert tms.fits("字" * 280)
    assert not tms.fits("字" * 281)
    assert tms.fits("x" * 138, tms.FIRST_GENERATION_MAX_TEXT_CHARS)
    with pytest.raises(MototrboError):
        tms.encode_text("x", 128)


def test_short_and_odd_frames_are_refused() -> None:
    good = tms.encode_text("ok", 5)
    for bad in (good[:-2], good[:3], b"\x00\x00\xe0\x00", good[:-1]):
        with pytest.raises(MototrboError):
            tms.decode(bad)
    with pytest.raises(MototrboError):
        ars.decode(b"\x00\x05\xf0\x20")
    with pytest.raises(MototrboError):
        lrrp.decode(bytes.fromhex("0d1622047fffffff"))  # length says more than follows


def test_ars_answers() -> None:
    assert ars.registration_answer(30) == bytes.fromhex("0002bf01")
    assert ars.registration_answer(31) == bytes.fromhex("0002bf02")
    failure = ars.encode(ars.ArsResponse(False, reason=ars.ArsFailure.DEVICE_NOT_AUTHORISED))
    decoded = ars.decode(failure).message
    assert decoded == ars.ArsResponse(False, reason=0)
    refresh = ars.encode(ars.ArsRegistration("1001", event=ars.ArsEvent.REFRESH))
    assert ars.decode(refresh).message == ars.ArsRegistration("1001", event=ars.ArsEvent.REFRESH)


# --- the oracles: what the gateway sends decodes there to the same fields --------------------


def oracle_tokens(raw: bytes) -> dict[str, Any]:

    docs = MBXML.from_bytes(raw)
    assert len(docs) == 1
    return {part.name: part.value for part in docs[0].parts}


def test_ok_dmrlib_reads_what_the_gateway_sends() -> None:
    answer = AutomaticRegistrationService.from_bytes(ars.registration_answer(30))
    assert answer.response_second_header.refresh_time == 1

    text = TextMessagingService.from_bytes(tms.encode_text("收到请回复", 77))
    assert text.sequence_number == 77
    assert text.header.is_acknowledged
    assert bytes(text.message).decode("utf-16-le") == "\r\n收到请回复"

    periodic = oracle_tokens(lrrp.triggered_request(b"\x01\x00\x00\x07", interval_s=60))
    assert periodic["request-id"] == b"\x01\x00\x00\x07" or periodic["request-id"] == "01000007"
    assert "request-altitude" in periodic
    assert "request-speed-hor" in periodic
    immediate = oracle_tokens(lrrp.immediate_request(b"\x03\x00\x00\x01"))
    assert {"ret-info", "request-altitude", "request-speed-hor", "request-direction-hor"} <= set(
        immediate
    )
    assert "request-id" in oracle_tokens(lrrp.stop_request(b"\x01\x00\x00\x07"))


def test_ok_dmrlib_reads_a_northern_report_the_same() -> None:
    # ok-dmrlib reads latitude unsigned: only a northern one can agree with it.
    report = lrrp.LrrpReport(
        lrrp.DocId.TRIGGERED_LOCATION_REPORT,
        b"\x01",
        shape=lrrp.Shape.POINT_3D,
        lat=31.2304,
        lon=121.4737,
        alt_m=4.5,
        speed_raw=3.5,
        direction_raw=45,
    )
    tokens = oracle_tokens(lrrp.encode_report(report))
    assert tokens["speed-hor"] == 3.5
    assert tokens["direction-hor"] == 45
    lat_raw, lon_raw, alt = tokens["point-3d"]
    assert int.from_bytes(lat_raw, "big") * 90 / 2**31 == pytest.approx(31.2304, abs=1e-6)
    assert int.from_bytes(lon_raw, "big", signed=True) * 360 / 2**32 == pytest.approx(
        121.4737, abs=1e-6
    )
    assert alt == 4.5


@pytest.mark.parametrize("radio", [1, 12045, 0xFFFFFF])
def test_trbodatasvc_agrees_on_addresses(radio: int) -> None:
    assert radio_ip(radio) == trbo_util.id2ip(12, radio)
    assert radio_id_of(radio_ip(radio)) == trbo_util.ip2id(radio_ip(radio))


def test_trbodatasvc_reads_a_northern_eastern_point_the_same() -> None:
    # trbodatasvc decodes only what radios send, and reads a southern latitude a third way:
    # compare a northern-eastern point (the stub's report), through its own helpers.
    report = lrrp.LrrpReport(
        lrrp.DocId.TRIGGERED_LOCATION_REPORT,
        b"\x01",
        shape=lrrp.Shape.POINT_2D,
        lat=31.2304,
        lon=121.4737,
    )
    raw = lrrp.encode_report(report)
    point = raw[raw.index(0x66) + 1 :][:8]
    assert TrboLrrp._decodeLat(None, point[:4]) == pytest.approx(31.2304, abs=1e-5)  # noqa: SLF001 - the oracle's decoder
    assert TrboLrrp._decodeLon(None, point[4:]) == pytest.approx(121.4737, abs=1e-5)  # noqa: SLF001 - the oracle's decoder


# --- fuzzing: only the codec's own error escapes -----------------------------------------------


def _decode_all(data: bytes) -> None:
    for decoder in (ars.decode, tms.decode, lrrp.decode):
        with contextlib.suppress(MototrboError):
            decoder(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_all(data)


SEEDS = [
    ars.registration_answer(30),
    ars.encode(ars.ArsRegistration("2308094")),
    tms.encode_text("收到", 19),
    tms.encode_ack_for(53),
    lrrp.triggered_request(b"\x01\x02", interval_s=30, distance_m=500, condition=2),
    bytes.fromhex("0d1a22047fffffff694728710f0a522c2d82534e6c0048564770402b"),
    bytes.fromhex("071a22042468ace0341f4dbc778051118ecd8d118ad47b00636c0006"),
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SEEDS), st.data())
def test_fuzz_mutated_frames(seed: bytes, data: st.DataObject) -> None:
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        index = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[index] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[index:]
        else:
            raw.insert(index, data.draw(st.integers(0, 255)))
    _decode_all(bytes(raw))
