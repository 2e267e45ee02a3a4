"""ARS, the Automatic Registration Service (UDP 4005): radios say they are on the air.

Layout (``../shared/notes/mototrbo.md`` section 2; ok-dmrlib and dmr-kaitai test vectors,
trbodatasvc ``ars.py``): ``length u16 BE`` + first header + [second header] + [payload].

- First header: bit 7 ext (a second header follows), bit 6 ack (a request: ack requested; a
  response: 0 success, 1 failure), bit 5 priority, bit 4 control (1) / user (0), bits 3-0 PDU
  type.
- Registration second header: bit 7 ext, bits 6-5 event (01 initial, 10 refresh), bits 4-0
  encoding (0 UTF-8); then three length-prefixed strings: device id (the radio id in ASCII),
  user id, password.
- Response second header: bit 7 ext, bits 6-0 the refresh time in 30-minute units (success)
  or the failure reason.

Bytes after the declared length (a pad byte seen in a capture) are ignored and counted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from construct import BitsInteger, BitStruct, Flag

from protocols.mototrbo.common import MototrboError

REFRESH_UNIT_MIN: Final = 30
"""The refresh time in an ARS answer counts half hours."""
MAX_REFRESH_UNITS: Final = 127
MAX_STRING_BYTES: Final = 255

FIRST_HEADER: Final = BitStruct(
    "ext" / Flag,
    "ack" / Flag,
    "priority" / Flag,
    "control" / Flag,
    "pdu_type" / BitsInteger(4),
).compile()
"""The first header of every ARS PDU, as data. Compiled, though for a one-byte bit field
that gains nothing measurable (76k vs 84k parses/s here): ARS is a few datagrams per radio
per half hour, far from any hot path."""
REGISTRATION_HEADER: Final = BitStruct(
    "ext" / Flag, "event" / BitsInteger(2), "encoding" / BitsInteger(5)
).compile()
RESPONSE_HEADER: Final = BitStruct("ext" / Flag, "value" / BitsInteger(7)).compile()


class ArsType(enum.IntEnum):
    DEVICE_REGISTRATION = 0
    DEVICE_DEREGISTRATION = 1
    QUERY = 4
    USER_REGISTRATION = 5
    USER_DEREGISTRATION = 6
    USER_REGISTRATION_RESPONSE = 7
    RESPONSE = 0xF
    """A device registration's answer (server -> radio) or a query's (radio -> server)."""


class ArsEvent(enum.IntEnum):
    INITIAL = 1
    REFRESH = 2


class ArsFailure(enum.IntEnum):
    DEVICE_NOT_AUTHORISED = 0
    USER_ID_INVALID = 1
    USER_VALIDATION_TIMEOUT = 2


@dataclass(frozen=True, slots=True)
class ArsRegistration:
    """A radio (``user=False``) or a user on it registers."""

    device_id: str
    user_id: str = ""
    password: str = ""
    event: int | None = ArsEvent.INITIAL
    """None when the radio sent no second header."""
    encoding: int = 0
    user: bool = False
    ack_requested: bool = True


@dataclass(frozen=True, slots=True)
class ArsDeregistration:
    """The radio (or its user) leaves: switched off, or out of range politely."""

    user: bool = False


@dataclass(frozen=True, slots=True)
class ArsQuery:
    """Server -> radio: are you there? (The radio answers with a response.)"""


@dataclass(frozen=True, slots=True)
class ArsResponse:
    """A registration's answer (success with a refresh time, or a failure reason), or a
    radio's answer to a query (``refresh_units`` None)."""

    success: bool
    refresh_units: int | None = None
    """Half hours after which the radio registers again (0: never), on success."""
    reason: int | None = None
    """An :class:`ArsFailure` code, on failure."""
    user: bool = False

    @property
    def refresh_min(self) -> int | None:
        return None if self.refresh_units is None else self.refresh_units * REFRESH_UNIT_MIN


ArsMessage = ArsRegistration | ArsDeregistration | ArsQuery | ArsResponse


@dataclass(frozen=True, slots=True)
class ArsDecoded:
    message: ArsMessage
    raw: bytes
    trailing: int
    """Bytes after the declared length (ignored)."""


def _frame_body(data: bytes) -> tuple[bytes, int]:
    if len(data) < 3:
        raise MototrboError(f"ARS datagram of {len(data)} bytes is too short")
    length = int.from_bytes(data[:2], "big")
    if length < 1:
        raise MototrboError("ARS length is 0")
    if len(data) < 2 + length:
        raise MototrboError(f"ARS length says {length} bytes, {len(data) - 2} follow")
    return data[2 : 2 + length], len(data) - 2 - length


def _read_string(body: bytes, pos: int, what: str) -> tuple[str, int]:
    if pos >= len(body):
        return "", pos  # trailing strings may be left out
    size = body[pos]
    end = pos + 1 + size
    if end > len(body):
        raise MototrboError(f"ARS {what} of {size} bytes runs past the end")
    try:
        return body[pos + 1 : end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise MototrboError(f"ARS {what} is not UTF-8: {exc.reason}") from None


def decode(data: bytes) -> ArsDecoded:
    """One ARS datagram; raises :class:`MototrboError` and nothing else for bad input."""
    body, trailing = _frame_body(data)
    first = FIRST_HEADER.parse(body[:1])
    pdu = first.pdu_type
    message: ArsMessage
    if pdu in (ArsType.DEVICE_REGISTRATION, ArsType.USER_REGISTRATION):
        pos = 1
        event: int | None = None
        encoding = 0
        if first.ext:
            if len(body) < 2:
                raise MototrboError("ARS registration lacks its second header")
            second = REGISTRATION_HEADER.parse(body[1:2])
            event, encoding = second.event, second.encoding
            pos = 2
            while second.ext and pos < len(body):  # further headers: none known, skipped
                second = REGISTRATION_HEADER.parse(body[pos : pos + 1])
                pos += 1
        device_id, pos = _read_string(body, pos, "device id")
        user_id, pos = _read_string(body, pos, "user id")
        password, pos = _read_string(body, pos, "password")
        message = ArsRegistration(
            device_id,
            user_id,
            password,
            event,
            encoding,
            user=pdu == ArsType.USER_REGISTRATION,
            ack_requested=first.ack,
        )
    elif pdu in (ArsType.DEVICE_DEREGISTRATION, ArsType.USER_DEREGISTRATION):
        message = ArsDeregistration(user=pdu == ArsType.USER_DEREGISTRATION)
    elif pdu == ArsType.QUERY:
        message = ArsQuery()
    elif pdu in (ArsType.RESPONSE, ArsType.USER_REGISTRATION_RESPONSE):
        success = not first.ack
        value: int | None = None
        if first.ext:
            if len(body) < 2:
                raise MototrboError("ARS response lacks its second header")
            value = RESPONSE_HEADER.parse(body[1:2]).value
        message = ArsResponse(
            success,
            refresh_units=value if success else None,
            reason=None if success else value,
            user=pdu == ArsType.USER_REGISTRATION_RESPONSE,
        )
    else:
        raise MototrboError(f"ARS PDU type {pdu} is not known")
    return ArsDecoded(message, data, trailing)


def _header(pdu: int, *, ext: bool = False, ack: bool = False) -> bytes:
    # Priority and control are set on every control PDU seen (notes section 2 vectors).
    built: bytes = FIRST_HEADER.build(
        {"ext": ext, "ack": ack, "priority": True, "control": True, "pdu_type": pdu}
    )
    return built


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(2, "big") + body


def _string(value: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > MAX_STRING_BYTES:
        raise MototrboError(f"ARS {what} is longer than {MAX_STRING_BYTES} bytes")
    return bytes([len(raw)]) + raw


def encode(message: ArsMessage) -> bytes:
    """The datagram for ``message``; :class:`MototrboError` when a value does not fit."""
    if isinstance(message, ArsRegistration):
        pdu = ArsType.USER_REGISTRATION if message.user else ArsType.DEVICE_REGISTRATION
        ext = message.event is not None
        body = _header(pdu, ext=ext, ack=message.ack_requested)
        if message.event is not None:
            if not 0 <= message.event <= 3 or not 0 <= message.encoding <= 31:
                raise MototrboError("ARS event or encoding out of range")
            body += REGISTRATION_HEADER.build(
                {"ext": False, "event": message.event, "encoding": message.encoding}
            )
        body += _string(message.device_id, "device id")
        body += _string(message.user_id, "user id") + _string(message.password, "password")
        return _frame(body)
    if isinstance(message, ArsDeregistration):
        pdu = ArsType.USER_DEREGISTRATION if message.user else ArsType.DEVICE_DEREGISTRATION
        return _frame(_header(pdu))
    if isinstance(message, ArsQuery):
        return _frame(_header(ArsType.QUERY, ack=True))
    pdu = ArsType.USER_REGISTRATION_RESPONSE if message.user else ArsType.RESPONSE
    value = message.refresh_units if message.success else message.reason
    if value is None:
        return _frame(_header(pdu, ack=not message.success))
    if not 0 <= value <= MAX_REFRESH_UNITS:
        raise MototrboError(f"ARS response value {value} is not 0..{MAX_REFRESH_UNITS}")
    body = _header(pdu, ext=True, ack=not message.success)
    return _frame(body + RESPONSE_HEADER.build({"ext": False, "value": value}))


def registration_answer(refresh_min: int) -> bytes:
    """The server's success answer, asking the radio to register again after
    ``refresh_min`` minutes (rounded up to half hours; 0: never)."""
    units = -(-refresh_min // REFRESH_UNIT_MIN)
    return encode(ArsResponse(True, refresh_units=min(units, MAX_REFRESH_UNITS)))
