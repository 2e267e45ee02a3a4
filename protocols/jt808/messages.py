"""JT/T 808 message bodies: typed values, decoded from and encoded to body bytes.

Layouts from ``../shared/notes/jt808.md`` sections 4-6 (SmallChi, yezhihao, EMQX, G10LS,
QuecPython as cited there). The cold bodies (registration, authentication, text, questions,
resend requests) are ``construct`` structs, compiled once at import: the layout is the data.
The location body (0x0200, the hot path: one every few seconds from each of thousands of
terminals, and each item of a 0x0704 batch) is parsed with ``struct``: measured on the test
machine, the compiled construct struct of its fixed 28 bytes takes 3.2 us per parse, the
``struct`` unpack 0.15 us, and the whole :func:`decode_location` (time conversion and items
included) 3.1 us (the performance notes' ceilings agree: construct compiled ~266k/s, struct
~9.6M/s).

Strings are GBK (notes section 4); times are BCD ``YYMMDDhhmmss`` in GMT+8 and come out as
UTC ``datetime`` values (``None`` when the terminal sends zeros or a date that does not exist).
"""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from construct import (
    Bytes,
    ConstructError,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    Prefixed,
    PrefixedArray,
    Struct,
)

from protocols.jt808.framing import MAX_BODY_BYTES, Jt808Error

__all__ = [
    "ALARM_BITS",
    "AlarmConfirmation",
    "Authentication",
    "GeneralResponse",
    "Location",
    "LocationBatch",
    "LocationReply",
    "Question",
    "QuestionAnswer",
    "Registration",
    "RegistrationResponse",
    "ResendRequest",
    "TextMessage",
    "decode_authentication",
    "decode_batch",
    "decode_general_response",
    "decode_location",
    "decode_location_reply",
    "decode_question",
    "decode_question_answer",
    "decode_registration",
    "decode_registration_response",
    "decode_resend_request",
    "decode_text",
    "encode_alarm_confirmation",
    "encode_authentication",
    "encode_batch",
    "encode_general_response",
    "encode_location",
    "encode_location_reply",
    "encode_question",
    "encode_question_answer",
    "encode_registration",
    "encode_registration_response",
    "encode_text",
    "gbk_text",
]

# Message ids (notes section 5).
TERMINAL_RESPONSE: Final = 0x0001
PLATFORM_RESPONSE: Final = 0x8001
HEARTBEAT: Final = 0x0002
LOGOUT: Final = 0x0003
REGISTER: Final = 0x0100
REGISTER_RESPONSE: Final = 0x8100
AUTHENTICATE: Final = 0x0102
LOCATION: Final = 0x0200
POSITION_QUERY: Final = 0x8201
POSITION_REPLY: Final = 0x0201
ALARM_CONFIRM: Final = 0x8203
TEXT: Final = 0x8300
QUESTION: Final = 0x8302
QUESTION_ANSWER: Final = 0x0302
BATCH: Final = 0x0704
RESEND_REQUEST: Final = 0x8003

# Results of 0x0001 / 0x8001 and 0x8100.
RESULT_OK: Final = 0
RESULT_FAILED: Final = 1
RESULT_MESSAGE_ERROR: Final = 2
RESULT_NOT_SUPPORTED: Final = 3
REGISTER_OK: Final = 0
REGISTER_TERMINAL_NOT_IN_DB: Final = 4

# 0x0200 status bits (notes section 6).
STATUS_ACC: Final = 1 << 0
STATUS_FIX: Final = 1 << 1
STATUS_SOUTH: Final = 1 << 2
STATUS_WEST: Final = 1 << 3

ALARM_BITS: Final = {
    0: "emergency", 1: "overspeed", 2: "fatigue", 3: "danger", 4: "gnss_fault",
    5: "antenna_open", 6: "antenna_short", 7: "power_low", 8: "power_off", 9: "lcd_fault",
    10: "tts_fault", 11: "camera_fault", 12: "ic_card_fault", 13: "overspeed_warning",
    14: "fatigue_warning", 18: "driving_overtime", 19: "parking_overtime", 20: "area",
    21: "route", 22: "road_section_time", 23: "route_deviation", 24: "vss_fault",
    25: "fuel_abnormal", 26: "stolen", 27: "illegal_ignition", 28: "illegal_displacement",
    29: "collision", 30: "rollover", 31: "illegal_door",
}  # fmt: skip
"""Alarm flag bits by number (2013 per SmallChi JT808Alarm; 2019 per EMQX, notes section 6)."""

GMT8: Final = timedelta(hours=8)
ITEM_ODOMETER: Final = 0x01
ITEM_FUEL: Final = 0x02
ITEM_SIGNAL: Final = 0x30
ITEM_SATELLITES: Final = 0x31

_LOCATION = struct.Struct(">IIIIhHH6s")
_GENERAL_RESPONSE = struct.Struct(">HHB")

# -- construct layouts (cold bodies) ----------------------------------------------------------

_REGISTRATION_2011 = Struct(
    "province" / Int16ub, "city" / Int16ub, "maker" / Bytes(5), "model" / Bytes(8),
    "terminal_id" / Bytes(7), "plate_colour" / Int8ub, "plate" / GreedyBytes,
).compile()  # fmt: skip
_REGISTRATION_2013 = Struct(
    "province" / Int16ub, "city" / Int16ub, "maker" / Bytes(5), "model" / Bytes(20),
    "terminal_id" / Bytes(7), "plate_colour" / Int8ub, "plate" / GreedyBytes,
).compile()  # fmt: skip
_REGISTRATION_2019 = Struct(
    "province" / Int16ub, "city" / Int16ub, "maker" / Bytes(11), "model" / Bytes(30),
    "terminal_id" / Bytes(30), "plate_colour" / Int8ub, "plate" / GreedyBytes,
).compile()  # fmt: skip
_REGISTRATION_2011_MAX_BODY: Final = 36
"""A 0x0100 body shorter than 37 bytes is the 2011 layout (yezhihao ``T0100``)."""
_REGISTRATION_RESPONSE = Struct(
    "reply_serial" / Int16ub, "result" / Int8ub, "auth_code" / GreedyBytes
).compile()
_AUTH_2019 = Struct(
    "auth_code" / Prefixed(Int8ub, GreedyBytes),
    "imei" / Bytes(15),
    "software_version" / Bytes(20),
).compile()
_TEXT_2013 = Struct("flag" / Int8ub, "text" / GreedyBytes).compile()
_TEXT_2019 = Struct("flag" / Int8ub, "text_type" / Int8ub, "text" / GreedyBytes).compile()
_QUESTION = Struct(
    "flag" / Int8ub,
    "question" / Prefixed(Int8ub, GreedyBytes),
    "answers" / GreedyRange(Struct("id" / Int8ub, "text" / Prefixed(Int16ub, GreedyBytes))),
).compile()
_QUESTION_ANSWER = Struct("reply_serial" / Int16ub, "answer_id" / Int8ub).compile()
_RESEND_2013 = Struct(
    "original_serial" / Int16ub, "packet_ids" / PrefixedArray(Int8ub, Int16ub)
).compile()
_RESEND_2019 = Struct(
    "original_serial" / Int16ub, "packet_ids" / PrefixedArray(Int16ub, Int16ub)
).compile()
_ALARM_CONFIRMATION = Struct("alarm_serial" / Int16ub, "alarm_type" / Int32ub).compile()
_BATCH_HEAD = struct.Struct(">HB")
_ITEM_LENGTH = struct.Struct(">H")


def _parse(layout: Any, body: bytes, what: str) -> Any:
    # A compiled construct raises struct.error where the plain one raises StreamError (found
    # by the fuzz test): both are "too short" here.
    try:
        return layout.parse(body)
    except (ConstructError, struct.error, ValueError, IndexError, OverflowError) as exc:
        raise Jt808Error(f"{what}: {exc}") from None


def _build(layout: Any, values: dict[str, object], what: str) -> bytes:
    try:
        data: bytes = layout.build(values)
    except (ConstructError, struct.error, ValueError, OverflowError, TypeError) as exc:
        raise Jt808Error(f"cannot encode {what}: {exc}") from None
    return data


def _string(raw: bytes) -> str:
    """A GBK STRING field; zero padding removed. Undecodable bytes become U+FFFD: a name
    field never costs the frame."""
    return raw.rstrip(b"\x00").decode("gbk", errors="replace")


def _padded(text: str, size: int, what: str) -> bytes:
    raw = text.encode("gbk", errors="strict") if text else b""
    if len(raw) > size:
        raise Jt808Error(f"{what} {text!r} is longer than {size} bytes")
    return raw.ljust(size, b"\x00")


def gbk_text(text: str, max_bytes: int) -> bytes:
    """Text for a terminal's screen or speech: control characters (but newlines) removed,
    characters GBK cannot carry (emoji, some rare names) replaced by ``?``; at most
    ``max_bytes`` bytes of GBK, else :class:`Jt808Error`."""
    kept = "".join(ch for ch in text if ch == "\n" or not unicodedata.category(ch).startswith("C"))
    raw = kept.encode("gbk", errors="replace")
    if len(raw) > max_bytes:
        raise Jt808Error(f"text is {len(raw)} bytes in GBK, at most {max_bytes} fit a frame")
    return raw


def _bcd_time(raw: bytes) -> datetime | None:
    digits = raw.hex()
    if not digits.isdigit() or digits == "000000000000":
        return None
    try:
        local = datetime(
            2000 + int(digits[0:2]), int(digits[2:4]), int(digits[4:6]),
            int(digits[6:8]), int(digits[8:10]), int(digits[10:12]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None
    return local - GMT8


def _bcd_time_encode(moment: datetime) -> bytes:
    local = moment.astimezone(UTC) + GMT8
    if not 2000 <= local.year <= 2099:
        raise Jt808Error(f"{moment} is outside the BCD years 2000-2099")
    return bytes.fromhex(local.strftime("%y%m%d%H%M%S"))


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeneralResponse:
    """0x0001 (terminal) or 0x8001 (platform): which message of the peer it answers."""

    reply_serial: int
    reply_id: int
    result: int


@dataclass(frozen=True, slots=True)
class Registration:
    """0x0100; ``layout`` is ``2011``, ``2013`` or ``2019``."""

    layout: str
    province: int
    city: int
    maker: str
    model: str
    terminal_id: str
    plate_colour: int
    plate: str


@dataclass(frozen=True, slots=True)
class RegistrationResponse:
    """0x8100; the auth code only with result 0."""

    reply_serial: int
    result: int
    auth_code: str = ""


@dataclass(frozen=True, slots=True)
class Authentication:
    """0x0102; ``imei`` and ``software_version`` only in 2019."""

    auth_code: str
    imei: str = ""
    software_version: str = ""


@dataclass(frozen=True, slots=True)
class Location:
    """A 0x0200 body. ``lat``/``lon`` signed (south/west from the status bits), ``time`` in
    UTC. ``items`` are the additional items as ``(id, value)``, unknown ones included."""

    alarm: int
    status: int
    lat: float
    lon: float
    alt_m: int
    speed_kmh: float
    course: int
    time: datetime | None
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def fix(self) -> bool:
        return bool(self.status & STATUS_FIX)

    @property
    def acc_on(self) -> bool:
        return bool(self.status & STATUS_ACC)

    def item(self, item_id: int) -> bytes | None:
        for key, value in self.items:
            if key == item_id:
                return value
        return None

    def _item_int(self, item_id: int, size: int) -> int | None:
        value = self.item(item_id)
        return int.from_bytes(value, "big") if value is not None and len(value) == size else None

    @property
    def odometer_km(self) -> float | None:
        value = self._item_int(ITEM_ODOMETER, 4)
        return None if value is None else value / 10

    @property
    def fuel_l(self) -> float | None:
        value = self._item_int(ITEM_FUEL, 2)
        return None if value is None else value / 10

    @property
    def signal(self) -> int | None:
        return self._item_int(ITEM_SIGNAL, 1)

    @property
    def satellites(self) -> int | None:
        return self._item_int(ITEM_SATELLITES, 1)


@dataclass(frozen=True, slots=True)
class LocationBatch:
    """0x0704; ``kind`` 0 normal, 1 blind-area back-fill (old positions, not live)."""

    kind: int
    locations: tuple[Location, ...]

    @property
    def backfill(self) -> bool:
        return self.kind == 1


@dataclass(frozen=True, slots=True)
class LocationReply:
    """0x0201: the answer to a 0x8201 position query."""

    reply_serial: int
    location: Location


@dataclass(frozen=True, slots=True)
class TextMessage:
    """0x8300; ``text_type`` only in 2019 (1 notice, 2 service)."""

    flag: int
    text: str
    text_type: int | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """0x8302 (2013 only): a question with answers ``(id, text)``."""

    flag: int
    question: str
    answers: tuple[tuple[int, str], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class QuestionAnswer:
    """0x0302: ``answer_id`` chosen for the question sent with serial ``reply_serial``."""

    reply_serial: int
    answer_id: int


@dataclass(frozen=True, slots=True)
class ResendRequest:
    """0x8003 (platform) / 0x0005 (2019 terminal): packets of a subpackaged message to send
    again."""

    original_serial: int
    packet_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AlarmConfirmation:
    """0x8203: the platform confirms the alarms of ``alarm_type`` (the bits) reported in the
    message with ``alarm_serial`` (0: all)."""

    alarm_serial: int
    alarm_type: int


# -- decoders ---------------------------------------------------------------------------------


def decode_general_response(body: bytes) -> GeneralResponse:
    if len(body) < _GENERAL_RESPONSE.size:
        raise Jt808Error(f"general response of {len(body)} bytes")
    return GeneralResponse(*_GENERAL_RESPONSE.unpack_from(body))


def decode_registration(body: bytes, edition_2019: bool) -> Registration:
    if edition_2019:
        layout, values = "2019", _parse(_REGISTRATION_2019, body, "0x0100")
    elif len(body) <= _REGISTRATION_2011_MAX_BODY:
        layout, values = "2011", _parse(_REGISTRATION_2011, body, "0x0100")
    else:
        layout, values = "2013", _parse(_REGISTRATION_2013, body, "0x0100")
    return Registration(
        layout, values.province, values.city, _string(values.maker), _string(values.model),
        _string(values.terminal_id), values.plate_colour, _string(values.plate),
    )  # fmt: skip


def decode_registration_response(body: bytes) -> RegistrationResponse:
    values = _parse(_REGISTRATION_RESPONSE, body, "0x8100")
    return RegistrationResponse(values.reply_serial, values.result, _string(values.auth_code))


def decode_authentication(body: bytes, edition_2019: bool) -> Authentication:
    if not edition_2019:
        return Authentication(_string(body))
    values = _parse(_AUTH_2019, body, "0x0102")
    return Authentication(
        _string(values.auth_code), _string(values.imei), _string(values.software_version)
    )


def decode_location(body: bytes) -> Location:
    """A 0x0200 body (struct: the hot path). Additional items are read until the end of the
    body, each bounded by its length byte; unknown ids are kept, never fatal; an item whose
    length runs past the body ends the list (the fixed fields still count)."""
    if len(body) < _LOCATION.size:
        raise Jt808Error(f"location of {len(body)} bytes, at least {_LOCATION.size}")
    alarm, status, lat_raw, lon_raw, alt, speed, course, when = _LOCATION.unpack_from(body)
    lat = lat_raw / 1e6
    lon = lon_raw / 1e6
    if status & STATUS_SOUTH:
        lat = -lat
    if status & STATUS_WEST:
        lon = -lon
    items: tuple[tuple[int, bytes], ...] = ()
    size = len(body)
    if size > _LOCATION.size:
        found = []
        at = _LOCATION.size
        while at + 2 <= size:
            item_id, length = body[at], body[at + 1]
            end = at + 2 + length
            if end > size:
                break
            found.append((item_id, body[at + 2 : end]))
            at = end
        items = tuple(found)
    return Location(alarm, status, lat, lon, alt, speed / 10, course, _bcd_time(when), items)


def decode_location_reply(body: bytes) -> LocationReply:
    if len(body) < 2:
        raise Jt808Error("0x0201 shorter than its reply serial")
    return LocationReply(int.from_bytes(body[:2], "big"), decode_location(body[2:]))


def decode_batch(body: bytes) -> LocationBatch:
    """0x0704: count, type, then ``count`` items of {length WORD, 0x0200 body}."""
    if len(body) < _BATCH_HEAD.size:
        raise Jt808Error("0x0704 shorter than its count and type")
    count, kind = _BATCH_HEAD.unpack_from(body)
    at = _BATCH_HEAD.size
    locations = []
    for index in range(count):
        if at + 2 > len(body):
            raise Jt808Error(f"0x0704 says {count} items, ends after {index}")
        (length,) = _ITEM_LENGTH.unpack_from(body, at)
        item = body[at + 2 : at + 2 + length]
        if len(item) != length:
            raise Jt808Error(f"0x0704 item {index + 1} runs past the body")
        locations.append(decode_location(item))
        at += 2 + length
    return LocationBatch(kind, tuple(locations))


def decode_text(body: bytes, edition_2019: bool) -> TextMessage:
    if edition_2019:
        values = _parse(_TEXT_2019, body, "0x8300")
        return TextMessage(values.flag, _string(values.text), values.text_type)
    values = _parse(_TEXT_2013, body, "0x8300")
    return TextMessage(values.flag, _string(values.text))


def decode_question(body: bytes) -> Question:
    values = _parse(_QUESTION, body, "0x8302")
    answers = tuple((a.id, _string(a.text)) for a in values.answers)
    return Question(values.flag, _string(values.question), answers)


def decode_question_answer(body: bytes) -> QuestionAnswer:
    values = _parse(_QUESTION_ANSWER, body, "0x0302")
    return QuestionAnswer(values.reply_serial, values.answer_id)


def decode_resend_request(body: bytes, edition_2019: bool) -> ResendRequest:
    values = _parse(_RESEND_2019 if edition_2019 else _RESEND_2013, body, "0x8003")
    return ResendRequest(values.original_serial, tuple(values.packet_ids))


def decode_alarm_confirmation(body: bytes) -> AlarmConfirmation:
    values = _parse(_ALARM_CONFIRMATION, body, "0x8203")
    return AlarmConfirmation(values.alarm_serial, values.alarm_type)


# -- encoders ---------------------------------------------------------------------------------


def encode_general_response(reply_serial: int, reply_id: int, result: int) -> bytes:
    return _GENERAL_RESPONSE.pack(reply_serial, reply_id, result)


def encode_registration_response(reply_serial: int, result: int, auth_code: str = "") -> bytes:
    code = auth_code.encode("gbk") if result == REGISTER_OK else b""
    return _build(
        _REGISTRATION_RESPONSE,
        {"reply_serial": reply_serial, "result": result, "auth_code": code},
        "0x8100",
    )


def encode_registration(message: Registration) -> bytes:
    sizes = {"2011": (5, 8, 7), "2013": (5, 20, 7), "2019": (11, 30, 30)}.get(message.layout)
    if sizes is None:
        raise Jt808Error(f"registration layout {message.layout!r}")
    layout = {"2011": _REGISTRATION_2011, "2013": _REGISTRATION_2013}.get(
        message.layout, _REGISTRATION_2019
    )
    try:
        plate = message.plate.encode("gbk")
    except UnicodeEncodeError as exc:
        raise Jt808Error(f"plate {message.plate!r} is not GBK") from exc
    return _build(
        layout,
        {
            "province": message.province,
            "city": message.city,
            "maker": _padded(message.maker, sizes[0], "maker"),
            "model": _padded(message.model, sizes[1], "model"),
            "terminal_id": _padded(message.terminal_id, sizes[2], "terminal id"),
            "plate_colour": message.plate_colour,
            "plate": plate,
        },
        "0x0100",
    )


def encode_authentication(message: Authentication, edition_2019: bool) -> bytes:
    code = message.auth_code.encode("gbk", errors="replace")
    if not edition_2019:
        return code
    return _build(
        _AUTH_2019,
        {
            "auth_code": code,
            "imei": _padded(message.imei, 15, "imei"),
            "software_version": _padded(message.software_version, 20, "software version"),
        },
        "0x0102",
    )


def encode_location(location: Location) -> bytes:
    status = location.status & ~(STATUS_SOUTH | STATUS_WEST)
    if location.lat < 0:
        status |= STATUS_SOUTH
    if location.lon < 0:
        status |= STATUS_WEST
    when = b"\x00" * 6 if location.time is None else _bcd_time_encode(location.time)
    try:
        head = _LOCATION.pack(
            location.alarm, status, round(abs(location.lat) * 1e6), round(abs(location.lon) * 1e6),
            location.alt_m, round(location.speed_kmh * 10), location.course, when,
        )  # fmt: skip
    except struct.error as exc:
        raise Jt808Error(f"cannot encode location: {exc}") from None
    extra = b"".join(bytes((key, len(value))) + value for key, value in location.items)
    return head + extra


def encode_location_reply(reply_serial: int, location: Location) -> bytes:
    return reply_serial.to_bytes(2, "big") + encode_location(location)


def encode_batch(locations: list[Location] | tuple[Location, ...], *, backfill: bool) -> bytes:
    items = [encode_location(location) for location in locations]
    head = _BATCH_HEAD.pack(len(items), 1 if backfill else 0)
    return head + b"".join(_ITEM_LENGTH.pack(len(item)) + item for item in items)


def encode_text(flag: int, text: bytes, text_type: int | None) -> bytes:
    """0x8300 body; ``text`` already GBK (see :func:`gbk_text`); ``text_type`` for 2019."""
    if text_type is None:
        body = _build(_TEXT_2013, {"flag": flag, "text": text}, "0x8300")
    else:
        body = _build(_TEXT_2019, {"flag": flag, "text_type": text_type, "text": text}, "0x8300")
    if len(body) > MAX_BODY_BYTES:
        raise Jt808Error(f"0x8300 body of {len(body)} bytes")
    return body


def encode_question(flag: int, question: str, answers: list[tuple[int, str]]) -> bytes:
    try:
        values = {
            "flag": flag,
            "question": question.encode("gbk"),
            "answers": [{"id": i, "text": text.encode("gbk")} for i, text in answers],
        }
    except UnicodeEncodeError as exc:
        raise Jt808Error(f"question text is not GBK: {exc}") from None
    body = _build(_QUESTION, values, "0x8302")
    if len(body) > MAX_BODY_BYTES:
        raise Jt808Error(f"0x8302 body of {len(body)} bytes")
    return body


def encode_question_answer(reply_serial: int, answer_id: int) -> bytes:
    return _build(
        _QUESTION_ANSWER, {"reply_serial": reply_serial, "answer_id": answer_id}, "0x0302"
    )


def encode_resend_request(request: ResendRequest, edition_2019: bool) -> bytes:
    return _build(
        _RESEND_2019 if edition_2019 else _RESEND_2013,
        {"original_serial": request.original_serial, "packet_ids": list(request.packet_ids)},
        "0x8003",
    )


def encode_alarm_confirmation(alarm_serial: int, alarm_type: int) -> bytes:
    return _build(
        _ALARM_CONFIRMATION, {"alarm_serial": alarm_serial, "alarm_type": alarm_type}, "0x8203"
    )
