"""LRRP, the Location Request/Response Protocol (UDP 4001), in its binary MBXML form.

A document is ``docId (uintvar)``, ``length (uintvar)``, then ``length`` bytes of tokens. Tokens
depend on the document: ``0x34`` is the periodic trigger in a request and the info time in a
report, so requests and reports have a token table each (:data:`REQUEST_TOKENS`,
:data:`REPORT_TOKENS`: the layout as data; ``../shared/notes/mototrbo.md`` section 4, from
ok-dmrlib, dmr-kaitai, sdrtrunk, node-dmr-lib and dsd-fme).

Where the sources conflict, one named constant says what we read, with the majority:
:data:`LATITUDE_SIGN_MAGNITUDE`, :data:`SPEED_KMH_PER_UNIT`, :data:`DEGREES_PER_DIRECTION_UNIT`
(and :data:`TOKEN_TRIGGER_DISTANCE`). docs/protocols/mototrbo.md says how to confirm each with
a radio at a known place, heading and speed.

Hot path: the report decoder runs for every position of every radio. It is a loop over a
dict of small readers, with ``struct`` for the fixed-width coordinates: measured here, a
compiled construct ``Struct(Int32ub, Int32sb)`` parses 310k coordinate pairs/s against
``struct.unpack_from``'s 8.4M/s, which would add about 3 us to a report that decodes in 5-8 us
(bench/mototrbo.py measures the whole decoder against merely splitting the same datagrams
into tokens). The token tables stay data either way.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from protocols.mototrbo.common import (
    MototrboError,
    encode_sfloatvar,
    encode_ufloatvar,
    encode_uintvar,
    read_sfloatvar,
    read_ufloatvar,
    read_uintvar,
)

LATITUDE_SIGN_MAGNITUDE: Final = True
"""Latitude is bit 31 = south, bits 30-0 x 90/2^31 (sdrtrunk ``Position.java``, dsd-fme: the
majority). ok-dmrlib and node-dmr-lib read it unsigned, which is right only north of the
equator; trbodatasvc reads a southern latitude a third way."""
SPEED_KMH_PER_UNIT: Final = 3.6
"""Speed-hor (0x6C) is in m/s (node-dmr-lib; dsd-fme also m/s: the majority), x 3.6 for
km/h. sdrtrunk reads one byte of km/h."""
DEGREES_PER_DIRECTION_UNIT: Final = 2
"""Direction-hor (0x56) counts 2-degree steps (sdrtrunk, dsd-fme, node-dmr-lib: a capture's
162 is 324 degrees); ok-dmrlib shows the raw value."""
TOKEN_TRIGGER_DISTANCE: Final = 0x78
"""Request token 0x78: a trigger distance in metres, a uintvar (node-dmr-lib, with a TRBOnet
capture "distance 500m 250sec"); sdrtrunk names it "trigger on move". Sources conflict."""
TRIGGER_CONDITION_EMERGENCY: Final = 0x02
"""Trigger condition (request token 0x4A, one byte) values per node-dmr-lib: 0x02 emergency,
0x42 GPIO, 0x50 PTT, 0x51 PTT or emergency (inferred: not in a captured frame)."""
TRIGGER_CONDITION_PTT: Final = 0x50
MAX_DOCUMENT_BYTES: Final = 1024
"""Longest document accepted (a report is about 30 bytes; one UDP datagram bounds it too)."""
MAX_REQUEST_ID_BYTES: Final = 16

_LAT_SCALE: Final = 90 / 2**31
_LON_SCALE: Final = 360 / 2**32
_COORDS: Final = struct.Struct(">Ii")  # latitude as bits (sign-magnitude), longitude int32


class DocId(enum.IntEnum):
    IMMEDIATE_LOCATION_REQUEST = 0x05
    IMMEDIATE_LOCATION_REPORT = 0x07
    TRIGGERED_LOCATION_START_REQUEST = 0x09
    TRIGGERED_LOCATION_START_ANSWER = 0x0B
    TRIGGERED_LOCATION_REPORT = 0x0D
    TRIGGERED_LOCATION_STOP_REQUEST = 0x0F
    TRIGGERED_LOCATION_STOP_ANSWER = 0x11
    UNSOLICITED_LOCATION_REPORT = 0x13
    LOCATION_PROTOCOL_REQUEST = 0x15


REQUEST_DOCS: Final = frozenset(
    {
        DocId.IMMEDIATE_LOCATION_REQUEST,
        DocId.TRIGGERED_LOCATION_START_REQUEST,
        DocId.TRIGGERED_LOCATION_STOP_REQUEST,
        DocId.LOCATION_PROTOCOL_REQUEST,
    }
)


class Shape(enum.StrEnum):
    POINT_2D = "point-2d"
    POINT_3D = "point-3d"
    CIRCLE_2D = "circle-2d"
    CIRCLE_3D = "circle-3d"


@dataclass(slots=True)
class LrrpRequest:
    """A request (immediate, triggered start or stop) from the server to a radio."""

    doc: DocId
    request_id: bytes
    ret_info: int | None = None
    """0x50-0x53: which accuracy/time details the answer carries (0x51 as TRBOnet asks)."""
    altitude: bool = False
    speed: bool = False
    direction: bool = False
    periodic_s: int | None = None
    distance_m: int | None = None
    condition: int | None = None
    oneshot: bool = False


@dataclass(slots=True)
class LrrpReport:
    """A report or answer from a radio. A position only when :attr:`has_position`."""

    doc: DocId
    request_id: bytes = b""
    result_code: int | None = None
    """None: no result token; 0: OK (0x38); otherwise the code (0x37 or 0x39)."""
    operation_error: bool = False
    info_time: datetime | None = None
    shape: Shape | None = None
    lat: float = 0.0
    lon: float = 0.0
    radius_m: float | None = None
    alt_m: float | None = None
    alt_accuracy_m: float | None = None
    speed_raw: float | None = None
    speed_vrt: float | None = None
    direction_raw: int | None = None
    lev_conf: int | None = None
    rest: bytes = field(default=b"")
    """Bytes after an operation error (opaque, kept for the log)."""

    @property
    def has_position(self) -> bool:
        """An operation error or a report without a shape is not a position."""
        return self.shape is not None and not self.operation_error

    @property
    def speed_kmh(self) -> float | None:
        return None if self.speed_raw is None else self.speed_raw * SPEED_KMH_PER_UNIT

    @property
    def course_deg(self) -> float | None:
        if self.direction_raw is None:
            return None
        return float((self.direction_raw * DEGREES_PER_DIRECTION_UNIT) % 360)


LrrpDocument = LrrpRequest | LrrpReport


# --- coordinates and time --------------------------------------------------------------


def lat_from_bits(bits: int) -> float:
    if LATITUDE_SIGN_MAGNITUDE:
        value = (bits & 0x7FFFFFFF) * _LAT_SCALE
        return -value if bits & 0x80000000 else value
    return bits * _LAT_SCALE  # pragma: no cover - the unsigned reading, kept named


def lat_to_bits(lat: float) -> int:
    if not -90.0 <= lat <= 90.0:
        raise MototrboError(f"latitude {lat} is out of range")
    magnitude = min(round(abs(lat) / _LAT_SCALE), 0x7FFFFFFF)
    return magnitude | (0x80000000 if lat < 0 and magnitude else 0)


def lon_to_int(lon: float) -> int:
    if not -180.0 <= lon <= 180.0:
        raise MototrboError(f"longitude {lon} is out of range")
    return max(-(2**31), min(round(lon / _LON_SCALE), 2**31 - 1))


def decode_info_time(raw: bytes) -> datetime:
    """5 bytes: ``year<<26 | month<<22 | day<<17 | hour<<12 | minute<<6 | second`` (UTC)."""
    v = int.from_bytes(raw, "big")
    try:
        return datetime(
            v >> 26,
            (v >> 22) & 0xF,
            (v >> 17) & 0x1F,
            (v >> 12) & 0x1F,
            (v >> 6) & 0x3F,
            v & 0x3F,
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise MototrboError(f"LRRP info time {raw.hex()} is no date: {exc}") from None


def encode_info_time(moment: datetime) -> bytes:
    m = moment.astimezone(UTC)
    if not 0 <= m.year < 1 << 14:
        raise MototrboError(f"year {m.year} does not fit LRRP info time")
    v = m.year << 26 | m.month << 22 | m.day << 17 | m.hour << 12 | m.minute << 6 | m.second
    return v.to_bytes(5, "big")


# --- token tables --------------------------------------------------------------------------

_Reader = Callable[[bytes, int, LrrpReport], int]
_RequestReader = Callable[[bytes, int, LrrpRequest], int]


def _need(data: bytes, pos: int, size: int, what: str) -> None:
    if pos + size > len(data):
        raise MototrboError(f"LRRP {what} runs past the end of the document")


def _rid_len(data: bytes, pos: int) -> tuple[bytes, int]:
    _need(data, pos, 1, "request id")
    size = data[pos]
    if size > MAX_REQUEST_ID_BYTES:
        raise MototrboError(f"LRRP request id of {size} bytes")
    _need(data, pos + 1, size, "request id")
    return data[pos + 1 : pos + 1 + size], pos + 1 + size


def _rid_byte(data: bytes, pos: int) -> tuple[bytes, int]:
    _need(data, pos, 1, "request id")
    return data[pos : pos + 1], pos + 1


def _coords(data: bytes, pos: int, doc: LrrpReport) -> int:
    _need(data, pos, 8, "coordinates")
    bits, lon = _COORDS.unpack_from(data, pos)
    doc.lat = lat_from_bits(bits)
    doc.lon = lon * _LON_SCALE
    return pos + 8


def _shape(shape: Shape, radius: bool, altitude: bool, alt_acc: bool) -> _Reader:
    def read(data: bytes, pos: int, doc: LrrpReport) -> int:
        doc.shape = shape
        pos = _coords(data, pos, doc)
        if radius:
            doc.radius_m, pos = read_ufloatvar(data, pos)
        if altitude:
            doc.alt_m, pos = read_sfloatvar(data, pos)
        if alt_acc:
            doc.alt_accuracy_m, pos = read_ufloatvar(data, pos)
        return pos

    return read


def _r_rid(data: bytes, pos: int, doc: LrrpReport) -> int:
    doc.request_id, pos = _rid_len(data, pos)
    return pos


def _r_rid1(data: bytes, pos: int, doc: LrrpReport) -> int:
    doc.request_id, pos = _rid_byte(data, pos)
    return pos


def _r_time(data: bytes, pos: int, doc: LrrpReport) -> int:
    _need(data, pos, 5, "info time")
    doc.info_time = decode_info_time(data[pos : pos + 5])
    return pos + 5


def _r_result(data: bytes, pos: int, doc: LrrpReport) -> int:
    doc.result_code, pos = read_uintvar(data, pos)
    return pos


def _r_result_ok(data: bytes, pos: int, doc: LrrpReport) -> int:
    doc.result_code = 0
    return pos


def _r_operation_error(data: bytes, pos: int, doc: LrrpReport) -> int:
    doc.operation_error = True
    doc.result_code, pos = read_uintvar(data, pos)
    doc.rest = data[pos:]  # what follows an operation error is not documented: kept opaque
    return len(data)


def _r_direction(data: bytes, pos: int, doc: LrrpReport) -> int:
    _need(data, pos, 1, "direction")
    doc.direction_raw = data[pos]
    return pos + 1


def _r_lev_conf(data: bytes, pos: int, doc: LrrpReport) -> int:
    _need(data, pos, 1, "level of confidence")
    doc.lev_conf = data[pos]
    return pos + 1


def _r_speed(data: bytes, pos: int, doc: LrrpReport) -> int:
    doc.speed_raw, pos = read_ufloatvar(data, pos)
    return pos


def _r_speed_vrt(data: bytes, pos: int, doc: LrrpReport) -> int:
    doc.speed_vrt, pos = read_sfloatvar(data, pos)
    return pos


REPORT_TOKENS: Final[dict[int, _Reader]] = {
    0x22: _r_rid,
    0x23: _r_rid1,
    0x34: _r_time,
    0x37: _r_result,
    0x38: _r_result_ok,
    0x39: _r_operation_error,
    0x51: _shape(Shape.CIRCLE_2D, radius=True, altitude=False, alt_acc=False),
    0x54: _shape(Shape.CIRCLE_3D, radius=True, altitude=True, alt_acc=False),
    0x55: _shape(Shape.CIRCLE_3D, radius=True, altitude=True, alt_acc=True),
    0x56: _r_direction,
    0x65: _r_lev_conf,
    0x66: _shape(Shape.POINT_2D, radius=False, altitude=False, alt_acc=False),
    0x69: _shape(Shape.POINT_3D, radius=False, altitude=True, alt_acc=False),
    0x6A: _shape(Shape.POINT_3D, radius=False, altitude=True, alt_acc=True),
    0x6C: _r_speed,
    0x70: _r_speed_vrt,
}
"""Report tokens: token -> reader(data, position after the token, document) -> next
position. Circle-3d's altitude layout (0x54/0x55) follows point-3d's (inferred)."""


def _q_rid(data: bytes, pos: int, doc: LrrpRequest) -> int:
    doc.request_id, pos = _rid_len(data, pos)
    return pos


def _q_rid1(data: bytes, pos: int, doc: LrrpRequest) -> int:
    doc.request_id, pos = _rid_byte(data, pos)
    return pos


def _q_flag(name: str) -> _RequestReader:
    def read(data: bytes, pos: int, doc: LrrpRequest) -> int:
        setattr(doc, name, True)
        return pos

    return read


def _q_ret_info(value: int) -> _RequestReader:
    def read(data: bytes, pos: int, doc: LrrpRequest) -> int:
        doc.ret_info = value
        return pos

    return read


def _q_interval(data: bytes, pos: int, doc: LrrpRequest) -> int:
    doc.periodic_s, pos = read_uintvar(data, pos)
    return pos


def _q_periodic(data: bytes, pos: int, doc: LrrpRequest) -> int:
    doc.periodic_s = doc.periodic_s or 0  # its interval token follows
    return pos


def _q_distance(data: bytes, pos: int, doc: LrrpRequest) -> int:
    doc.distance_m, pos = read_uintvar(data, pos)
    return pos


def _q_condition(data: bytes, pos: int, doc: LrrpRequest) -> int:
    _need(data, pos, 1, "trigger condition")
    doc.condition = data[pos]
    return pos + 1


REQUEST_TOKENS: Final[dict[int, _RequestReader]] = {
    0x22: _q_rid,
    0x23: _q_rid1,
    0x31: _q_interval,
    0x33: _q_flag("oneshot"),
    0x34: _q_periodic,
    0x4A: _q_condition,
    **{token: _q_ret_info(token) for token in (0x50, 0x51, 0x52, 0x53)},
    0x54: _q_flag("altitude"),
    0x57: _q_flag("direction"),
    0x62: _q_flag("speed"),
    TOKEN_TRIGGER_DISTANCE: _q_distance,
}
"""Request tokens: token -> reader(data, position after the token, request) -> next position."""


# --- decode --------------------------------------------------------------------------------


def split(data: bytes) -> tuple[int, bytes]:
    """(docId, token bytes) of one document; checks the declared length."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise MototrboError(f"LRRP document of {len(data)} bytes is over {MAX_DOCUMENT_BYTES}")
    doc_id, pos = read_uintvar(data, 0)
    length, pos = read_uintvar(data, pos)
    if length != len(data) - pos:
        raise MototrboError(f"LRRP length says {length} bytes, {len(data) - pos} follow")
    return doc_id, data[pos:]


def decode(data: bytes) -> LrrpDocument:
    """One LRRP document; raises :class:`MototrboError` and nothing else for bad input."""
    doc_id, body = split(data)
    try:
        kind = DocId(doc_id)
    except ValueError:
        raise MototrboError(f"LRRP document id {doc_id:#x} is not known") from None
    pos = 0
    end = len(body)
    if kind in REQUEST_DOCS:
        request = LrrpRequest(kind, b"")
        while pos < end:
            reader = REQUEST_TOKENS.get(body[pos])
            if reader is None:
                raise MototrboError(f"LRRP request token {body[pos]:#04x} is not known")
            pos = reader(body, pos + 1, request)
        return request
    report = LrrpReport(kind)
    tokens = REPORT_TOKENS
    while pos < end:
        report_reader = tokens.get(body[pos])
        if report_reader is None:
            raise MototrboError(f"LRRP report token {body[pos]:#04x} is not known")
        pos = report_reader(body, pos + 1, report)
    return report


# --- encode --------------------------------------------------------------------------------


def _document(doc: int, tokens: bytes) -> bytes:
    return encode_uintvar(doc) + encode_uintvar(len(tokens)) + tokens


def _rid(request_id: bytes) -> bytes:
    if len(request_id) > MAX_REQUEST_ID_BYTES:
        raise MototrboError(f"request id longer than {MAX_REQUEST_ID_BYTES} bytes")
    return bytes([0x22, len(request_id)]) + request_id


def encode_request(request: LrrpRequest) -> bytes:
    """A request document, tokens in the order TRBOnet sends them (node-dmr-lib captures)."""
    out = bytearray(_rid(request.request_id))
    if request.ret_info is not None:
        out.append(request.ret_info)
    if request.altitude:
        out.append(0x54)
    if request.speed:
        out.append(0x62)
    if request.direction:
        out.append(0x57)
    if request.oneshot:
        out.append(0x33)
    if request.periodic_s is not None:
        out += b"\x34\x31" + encode_uintvar(request.periodic_s)
    if request.distance_m is not None:
        out.append(TOKEN_TRIGGER_DISTANCE)
        out += encode_uintvar(request.distance_m)
    if request.condition is not None:
        out += bytes([0x4A, request.condition & 0xFF])
    return _document(request.doc, bytes(out))


def immediate_request(request_id: bytes) -> bytes:
    """Where are you now, with altitude, speed and direction."""
    return encode_request(
        LrrpRequest(
            DocId.IMMEDIATE_LOCATION_REQUEST,
            request_id,
            ret_info=0x51,
            altitude=True,
            speed=True,
            direction=True,
        )
    )


def triggered_request(
    request_id: bytes,
    *,
    interval_s: int | None = None,
    distance_m: int | None = None,
    condition: int | None = None,
) -> bytes:
    """Report every ``interval_s``, every ``distance_m`` moved, or on ``condition``."""
    return encode_request(
        LrrpRequest(
            DocId.TRIGGERED_LOCATION_START_REQUEST,
            request_id,
            ret_info=0x51,
            altitude=True,
            speed=True,
            direction=True,
            periodic_s=interval_s,
            distance_m=distance_m,
            condition=condition,
        )
    )


def stop_request(request_id: bytes) -> bytes:
    return encode_request(LrrpRequest(DocId.TRIGGERED_LOCATION_STOP_REQUEST, request_id))


def encode_report(report: LrrpReport) -> bytes:
    """A report document (what a radio sends; the stub and the tests use it)."""
    out = bytearray(_rid(report.request_id))
    if report.operation_error:
        out.append(0x39)
        out += encode_uintvar(report.result_code or 0) + report.rest
        return _document(report.doc, bytes(out))
    if report.result_code == 0:
        out.append(0x38)
    elif report.result_code is not None:
        out.append(0x37)
        out += encode_uintvar(report.result_code)
    if report.info_time is not None:
        out.append(0x34)
        out += encode_info_time(report.info_time)
    if report.shape is not None:
        shape = report.shape
        circle = shape in (Shape.CIRCLE_2D, Shape.CIRCLE_3D)
        three_d = shape in (Shape.POINT_3D, Shape.CIRCLE_3D)
        with_acc = three_d and report.alt_accuracy_m is not None
        token = {
            (Shape.CIRCLE_2D, False): 0x51,
            (Shape.CIRCLE_3D, False): 0x54,
            (Shape.CIRCLE_3D, True): 0x55,
            (Shape.POINT_2D, False): 0x66,
            (Shape.POINT_3D, False): 0x69,
            (Shape.POINT_3D, True): 0x6A,
        }[(shape, with_acc)]
        out.append(token)
        out += _COORDS.pack(lat_to_bits(report.lat), lon_to_int(report.lon))
        if circle:
            out += encode_ufloatvar(report.radius_m or 0.0)
        if three_d:
            out += encode_sfloatvar(report.alt_m or 0.0)
        if with_acc:
            out += encode_ufloatvar(report.alt_accuracy_m or 0.0)
    if report.speed_raw is not None:
        out.append(0x6C)
        out += encode_ufloatvar(report.speed_raw)
    if report.direction_raw is not None:
        out += bytes([0x56, report.direction_raw & 0xFF])
    if report.speed_vrt is not None:
        out.append(0x70)
        out += encode_sfloatvar(report.speed_vrt)
    if report.lev_conf is not None:
        out += bytes([0x65, report.lev_conf & 0xFF])
    return _document(report.doc, bytes(out))


def speed_raw_for(kmh: float) -> float:
    """The speed-hor value for ``kmh`` (see :data:`SPEED_KMH_PER_UNIT`)."""
    return kmh / SPEED_KMH_PER_UNIT


def direction_raw_for(course_deg: float) -> int:
    """The direction-hor value for ``course_deg`` (see :data:`DEGREES_PER_DIRECTION_UNIT`)."""
    return round((course_deg % 360) / DEGREES_PER_DIRECTION_UNIT) % 180


def _skip_var(body: bytes, pos: int) -> int:
    while pos < len(body) and body[pos] & 0x80:
        pos += 1
    return pos + 1


_FIXED_SIZES: Final = {0x23: 1, 0x34: 5, 0x38: 0, 0x56: 1, 0x65: 1}
_COORD_VARS: Final = {0x51: 2, 0x54: 4, 0x55: 6, 0x66: 0, 0x69: 2, 0x6A: 4}
_VARS: Final = {0x37: 1, 0x39: 1, 0x6C: 2, 0x70: 2}


def tokenize(data: bytes) -> list[bytes]:
    """Split a report into its tokens' bytes without interpreting them (sizes only): the
    floor bench/mototrbo.py compares :func:`decode` against."""
    _, body = split(data)
    out = []
    pos = 0
    end = len(body)
    while pos < end:
        start = pos
        token = body[pos]
        pos += 1
        if token == 0x22:
            pos += 1 + body[pos]
        elif token in _FIXED_SIZES:
            pos += _FIXED_SIZES[token]
        elif token in _COORD_VARS:
            pos += 8
            for _ in range(_COORD_VARS[token]):
                pos = _skip_var(body, pos)
        elif token in _VARS:
            for _ in range(_VARS[token]):
                pos = _skip_var(body, pos)
        else:
            raise MototrboError(f"LRRP report token {token:#04x} is not known")
        out.append(body[start:pos])
    return out
