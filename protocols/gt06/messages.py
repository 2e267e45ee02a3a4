"""GT06 packet bodies: typed messages, decoded from and encoded to :class:`Frame` content.

Layouts and meanings are from ``../shared/notes/gt06.md`` (sections 3-5: the Concox JM-VL03
V1.1.2 document and the GT06 v1.8.1 examples). The fixed layouts are data, as construct
structs compiled once; the variable tails (optional fields, the LBS length byte) are read in
Python around them. Every error is a :class:`Gt06Error`.

Times are returned as they are on the wire: naive ``datetime`` values. Which zone they are in
is not the codec's business: 0x22/0x26/0x27 are UTC (VL03); classic 0x12/0x16 are in the zone
set on the device by SMS (``GMT,E,8#``; the factory default is GMT+8). See :attr:`Location.utc`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import construct as c

from protocols.gt06.framing import Frame, Gt06Error, encode_frame

__all__ = [
    "ALARM_PROTOCOLS",
    "CELL_LAYOUT",
    "GPS_LAYOUT",
    "LOCATION_PROTOCOLS",
    "PROTO_ALARM",
    "PROTO_ALARM_MULTIFENCE",
    "PROTO_ALARM_UTC",
    "PROTO_COMMAND",
    "PROTO_HEARTBEAT",
    "PROTO_INFO",
    "PROTO_LOCATION",
    "PROTO_LOCATION_UTC",
    "PROTO_LOGIN",
    "PROTO_REPLY",
    "PROTO_REPLY_LONG",
    "PROTO_TIME",
    "Ack",
    "AlarmCode",
    "AlarmReport",
    "Cell",
    "Command",
    "CommandReply",
    "GpsFix",
    "Heartbeat",
    "InfoTransfer",
    "Location",
    "Login",
    "Message",
    "TerminalStatus",
    "TimeRequest",
    "Unsupported",
    "decode",
    "encode_ack",
    "encode_alarm",
    "encode_command",
    "encode_heartbeat",
    "encode_location",
    "encode_login",
    "encode_reply",
    "encode_time_response",
    "read_cell",
    "read_gps",
]

PROTO_LOGIN: Final = 0x01
PROTO_LOCATION: Final = 0x12
PROTO_HEARTBEAT: Final = 0x13
PROTO_REPLY: Final = 0x15
PROTO_ALARM: Final = 0x16
PROTO_REPLY_LONG: Final = 0x21
PROTO_LOCATION_UTC: Final = 0x22
PROTO_ALARM_UTC: Final = 0x26
PROTO_ALARM_MULTIFENCE: Final = 0x27
PROTO_COMMAND: Final = 0x80
PROTO_TIME: Final = 0x8A
PROTO_INFO: Final = 0x94

LOCATION_PROTOCOLS: Final = frozenset({PROTO_LOCATION, PROTO_LOCATION_UTC})
ALARM_PROTOCOLS: Final = frozenset({PROTO_ALARM, PROTO_ALARM_UTC, PROTO_ALARM_MULTIFENCE})
_ACKED: Final = frozenset({0x01, 0x12, 0x13, 0x16, 0x22, 0x26, 0x27})
"""Protocols whose server reply is the same number without content."""
_UTC_PROTOCOLS: Final = frozenset({PROTO_LOCATION_UTC, PROTO_ALARM_UTC, PROTO_ALARM_MULTIFENCE})

COORD_DIVISOR: Final = 1_800_000
"""Latitude and longitude are degrees x 60 x 30000 (notes section 4)."""
_COURSE_MASK: Final = 0x03FF
_NORTH: Final = 1 << 10  # set: north; clear: south (the inverse of intuition)
_WEST: Final = 1 << 11
_POSITIONED: Final = 1 << 12
_DIFFERENTIAL: Final = 1 << 13
_MCC_WIDE_MNC: Final = 0x8000
REPLY_ASCII: Final = 1
REPLY_UTF16: Final = 2

# -- layouts (data) ----------------------------------------------------------------------------

_DATETIME = c.Struct(
    "year" / c.Int8ub,
    "month" / c.Int8ub,
    "day" / c.Int8ub,
    "hour" / c.Int8ub,
    "minute" / c.Int8ub,
    "second" / c.Int8ub,
)
_GPS = c.Struct(
    "time" / _DATETIME,
    "gps_info" / c.Int8ub,  # high nibble: GPS info length (usually 12); low: satellites
    "lat" / c.Int32ub,
    "lon" / c.Int32ub,
    "speed_kmh" / c.Int8ub,
    "course_status" / c.Int16ub,
)
_CELL = c.Struct(
    "mcc" / c.Int16ub,
    "mnc" / c.IfThenElse(c.this.mcc & _MCC_WIDE_MNC, c.Int16ub, c.Int8ub),
    "lac" / c.Int16ub,
    "cell_id" / c.Int24ub,
)
_STATUS = c.Struct(
    "terminal_info" / c.Int8ub,
    "voltage_level" / c.Int8ub,
    "gsm_signal" / c.Int8ub,
)
_LOGIN = c.Struct(
    "imei" / c.Bytes(8),
    "type_code" / c.Optional(c.Int16ub),
    "tz_language" / c.Optional(c.Int16ub),
)

_DATETIME_C: Final = _DATETIME.compile()
GPS_LAYOUT: Final = _GPS.compile()
CELL_LAYOUT: Final = _CELL.compile()
_STATUS_C: Final = _STATUS.compile()
_LOGIN_C: Final = _LOGIN.compile()
_GPS_BYTES: Final = _GPS.sizeof()

# Profiled (cProfile, 0x12 packets on this 2-core machine): decoding the GPS and LBS blocks
# with the compiled construct structs above ran at about 47k locations/s, most of it inside
# construct's stream and container machinery; with struct.unpack_from, 240k/s. So on the path
# of every position the two blocks are read with struct; the layouts above stay the schema
# (and build every packet). tests/test_gt06_fuzz.py checks that both read the same.
_GPS_FAST: Final = struct.Struct(">6BBIIBH")
_U16: Final = struct.Struct(">H")
assert _GPS_FAST.size == _GPS_BYTES


def _parse(layout: Any, data: bytes, what: str) -> Any:
    try:
        return layout.parse(data)
    except c.ConstructError as exc:
        raise Gt06Error(f"{what}: {exc}") from None


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpsFix:
    """The GPS block of a location or alarm packet; ``time`` naive, as sent."""

    time: datetime
    satellites: int
    lat: float
    lon: float
    speed_kmh: int
    course: int
    positioned: bool
    differential: bool = False
    gps_info_len: int = 12


@dataclass(frozen=True, slots=True)
class Cell:
    """The serving cell (LBS block)."""

    mcc: int
    mnc: int
    lac: int
    cell_id: int


@dataclass(frozen=True, slots=True)
class TerminalStatus:
    """The terminal information byte with voltage level (0-6) and GSM signal (0-4)."""

    terminal_info: int
    voltage_level: int
    gsm_signal: int

    @property
    def alarm_bits(self) -> int:
        """Bits 3-5: 4 SOS, 3 low battery, 2 power cut, 1 vibration, 0 none."""
        return (self.terminal_info >> 3) & 0x07

    @property
    def gps_tracking(self) -> bool:
        return bool(self.terminal_info & 0x40)

    @property
    def charging(self) -> bool:
        return bool(self.terminal_info & 0x04)

    @property
    def acc(self) -> bool:
        return bool(self.terminal_info & 0x02)

    @property
    def armed(self) -> bool:
        return bool(self.terminal_info & 0x01)


class AlarmCode:
    """The alarm byte of 0x16/0x26/0x27 (notes section 4); not exhaustive."""

    NORMAL: Final = 0x00
    SOS: Final = 0x01
    POWER_CUT: Final = 0x02
    VIBRATION: Final = 0x03
    ENTER_FENCE: Final = 0x04
    EXIT_FENCE: Final = 0x05
    OVERSPEED: Final = 0x06
    TOW: Final = 0x09
    LOW_EXTERNAL_BATTERY: Final = 0x0E
    LOW_EXTERNAL_BATTERY_2: Final = 0x0F
    POWER_OFF: Final = 0x11
    TAMPER: Final = 0x13
    ACC_ON: Final = 0xFE
    ACC_OFF: Final = 0xFF


@dataclass(frozen=True, slots=True)
class Login:
    """0x01: the IMEI, and on the extended form the type code and time zone.

    ``tz_minutes`` is signed (west negative), ``None`` on the short form."""

    imei: str
    type_code: int | None = None
    tz_minutes: int | None = None
    language: int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """0x13: status and heartbeat."""

    status: TerminalStatus
    alarm_language: int | None = None


@dataclass(frozen=True, slots=True)
class Location:
    """0x12 (classic, device zone) and 0x22 (UTC, with ACC, upload mode, re-upload flag)."""

    protocol: int
    gps: GpsFix
    cell: Cell | None
    acc: int | None = None
    upload_mode: int | None = None
    reupload: int | None = None
    mileage: int | None = None

    @property
    def utc(self) -> bool:
        return self.protocol in _UTC_PROTOCOLS


@dataclass(frozen=True, slots=True)
class AlarmReport:
    """0x16 (classic, device zone), 0x26 (UTC) and 0x27 (UTC, multi-fence, ``fence``)."""

    protocol: int
    gps: GpsFix
    cell: Cell | None
    status: TerminalStatus
    alarm: int
    language: int
    fence: int | None = None

    @property
    def utc(self) -> bool:
        return self.protocol in _UTC_PROTOCOLS


@dataclass(frozen=True, slots=True)
class Command:
    """0x80, server to device: an SMS-style command; the device echoes ``flag``."""

    flag: int
    command: str
    language: int | None = None


@dataclass(frozen=True, slots=True)
class CommandReply:
    """0x15 (ASCII) or 0x21 (``encoding`` 1 ASCII, 2 UTF-16BE): the answer to a 0x80."""

    protocol: int
    flag: int
    text: str
    encoding: int = REPLY_ASCII
    language: int | None = None


@dataclass(frozen=True, slots=True)
class TimeRequest:
    """0x8A from the device (no content); a 0x8A content of 6 bytes is the server's answer."""

    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class InfoTransfer:
    """0x94: information transfer, ``info_type`` (0 external voltage, 4 status, ...) + data."""

    info_type: int
    data: bytes

    @property
    def external_voltage_v(self) -> float | None:
        if self.info_type != 0 or len(self.data) != 2:
            return None
        return int.from_bytes(self.data, "big") / 100


@dataclass(frozen=True, slots=True)
class Ack:
    """A packet without content where one is expected from the device: the server's ack of
    a login, heartbeat, location or alarm (it echoes the device's serial)."""

    protocol: int


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A protocol number this codec does not read (LBS-only 0x28, 4G 0xA0, ...)."""

    protocol: int
    content: bytes


Message = (
    Ack
    | Login
    | Heartbeat
    | Location
    | AlarmReport
    | Command
    | CommandReply
    | TimeRequest
    | InfoTransfer
    | Unsupported
)

# -- decode --------------------------------------------------------------------------------------


def decode(frame: Frame) -> Message:
    """The message a packet carries; :class:`Gt06Error` when its content does not fit."""
    reader = _DECODERS.get(frame.protocol)
    if reader is None:
        return Unsupported(frame.protocol, frame.content)
    if not frame.content and frame.protocol in _ACKED:
        return Ack(frame.protocol)
    return reader(frame.protocol, frame.content)


def _datetime(raw: Any, what: str) -> datetime:
    try:
        return datetime(
            2000 + raw.year, raw.month, raw.day, raw.hour, raw.minute, raw.second
        )  # naive: the zone depends on the packet type and the device
    except ValueError as exc:
        raise Gt06Error(f"{what}: bad date/time: {exc}") from None


def read_gps(data: bytes) -> GpsFix:
    """The GPS block (:data:`GPS_LAYOUT`) at the start of ``data``."""
    # The hot path of every position: _GPS unpacked with struct (see _GPS_FAST).
    if len(data) < _GPS_BYTES:
        raise Gt06Error(f"GPS block: {len(data)} bytes, expected {_GPS_BYTES}")
    year, month, day, hour, minute, second, info, lat_raw, lon_raw, speed, status = (
        _GPS_FAST.unpack_from(data)
    )
    try:
        when = datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise Gt06Error(f"GPS block: bad date/time: {exc}") from None
    lat = lat_raw / COORD_DIVISOR
    lon = lon_raw / COORD_DIVISOR
    return GpsFix(
        when,  # naive: the zone depends on the packet type and the device
        info & 0x0F,
        lat if status & _NORTH else -lat,
        -lon if status & _WEST else lon,
        speed,
        status & _COURSE_MASK,
        bool(status & _POSITIONED),
        bool(status & _DIFFERENTIAL),
        info >> 4,
    )


def read_cell(data: bytes) -> tuple[Cell, int]:
    """The LBS block (:data:`CELL_LAYOUT`) at the start of ``data``, and its size."""
    # The LBS block of every position: _CELL read with struct (see _GPS_FAST).
    if len(data) < 2:
        raise Gt06Error("LBS block: too short")
    (mcc,) = _U16.unpack_from(data)
    wide = mcc & _MCC_WIDE_MNC
    size = 9 if wide else 8
    if len(data) < size:
        raise Gt06Error(f"LBS block: {len(data)} bytes, expected {size}")
    if wide:
        mnc, lac = _U16.unpack_from(data, 2)[0], _U16.unpack_from(data, 4)[0]
    else:
        mnc, lac = data[2], _U16.unpack_from(data, 3)[0]
    cell_id = int.from_bytes(data[size - 3 : size], "big")
    return Cell(mcc & ~_MCC_WIDE_MNC, mnc, lac, cell_id), size


def _login(protocol: int, content: bytes) -> Login:
    if len(content) not in (8, 10, 12):
        raise Gt06Error(f"login: {len(content)} content bytes, expected 8, 10 or 12")
    raw = _parse(_LOGIN_C, content, "login")
    digits = raw.imei.hex()
    if not digits.isdigit():
        raise Gt06Error(f"login: IMEI {digits!r} is not BCD")
    imei = digits[1:] if digits.startswith("0") else digits
    if len(imei) != 15:
        raise Gt06Error(f"login: IMEI {digits!r} has not 15 digits after its leading 0")
    tz_minutes = language = None
    if raw.tz_language is not None:
        word = raw.tz_language
        zone = word >> 4  # hours x 100 + minutes: 800 = 8:00, 530 = 5:30
        hours, minutes = divmod(zone, 100)
        if minutes >= 60 or hours > 14:
            raise Gt06Error(f"login: time zone word {word:#06x} is not a zone")
        tz_minutes = (hours * 60 + minutes) * (-1 if word & 0x08 else 1)
        language = word & 0x03
    return Login(imei, raw.type_code, tz_minutes, language)


def _heartbeat(protocol: int, content: bytes) -> Heartbeat:
    if len(content) not in (3, 4, 5):
        raise Gt06Error(f"heartbeat: {len(content)} content bytes, expected 3 to 5")
    raw = _parse(_STATUS_C, content, "heartbeat")
    tail = content[3:]
    alarm_language = int.from_bytes(tail, "big") if len(tail) == 2 else None
    return Heartbeat(
        TerminalStatus(raw.terminal_info, raw.voltage_level, raw.gsm_signal), alarm_language
    )


def _location(protocol: int, content: bytes) -> Location:
    if len(content) < _GPS_BYTES + 8:
        raise Gt06Error(f"location: {len(content)} content bytes, too short")
    gps = read_gps(content)
    cell, size = read_cell(content[_GPS_BYTES:])
    tail = content[_GPS_BYTES + size :]
    if protocol != PROTO_LOCATION_UTC:
        return Location(protocol, gps, cell)
    if len(tail) not in (3, 7):
        raise Gt06Error(f"location 0x22: {len(tail)} bytes after the LBS block, expected 3 or 7")
    mileage = int.from_bytes(tail[3:7], "big") if len(tail) == 7 else None
    return Location(protocol, gps, cell, tail[0], tail[1], tail[2], mileage)


def _alarm(protocol: int, content: bytes) -> AlarmReport:
    if len(content) < _GPS_BYTES + 1:
        raise Gt06Error(f"alarm: {len(content)} content bytes, too short")
    gps = read_gps(content)
    lbs_len = content[_GPS_BYTES]  # counts itself
    at = _GPS_BYTES + max(lbs_len, 1)
    cell = None
    if lbs_len >= 9:
        cell, _ = read_cell(content[_GPS_BYTES + 1 : at])
    tail = content[at:]
    if len(tail) not in (5, 6):
        raise Gt06Error(f"alarm: {len(tail)} status bytes after the LBS block, expected 5 or 6")
    status = TerminalStatus(tail[0], tail[1], tail[2])
    fence = tail[5] if len(tail) == 6 else None
    return AlarmReport(protocol, gps, cell, status, tail[3], tail[4], fence)


def _command(protocol: int, content: bytes) -> Command:
    if len(content) < 5:
        raise Gt06Error(f"command: {len(content)} content bytes, too short")
    size = content[0]
    end = 1 + size
    if size < 4 or end > len(content) or len(content) - end not in (0, 2):
        raise Gt06Error(f"command: length byte {size} does not fit {len(content)} bytes")
    language = int.from_bytes(content[end:], "big") if len(content) > end else None
    text = content[5:end].decode("utf-8", errors="replace")
    return Command(int.from_bytes(content[1:5], "big"), text, language)


def _reply(protocol: int, content: bytes) -> CommandReply:
    if protocol == PROTO_REPLY:
        command = _command(protocol, content)
        return CommandReply(protocol, command.flag, command.command, REPLY_ASCII, command.language)
    if len(content) < 5:
        raise Gt06Error(f"reply 0x21: {len(content)} content bytes, too short")
    encoding = content[4]
    body = content[5:]
    if encoding == REPLY_UTF16:
        if len(body) % 2:
            raise Gt06Error("reply 0x21: odd number of UTF-16 bytes")
        text = body.decode("utf-16-be", errors="replace")
    else:
        text = body.decode("utf-8", errors="replace")
    return CommandReply(protocol, int.from_bytes(content[:4], "big"), text, encoding)


def _time(protocol: int, content: bytes) -> TimeRequest:
    if not content:
        return TimeRequest()
    if len(content) != 6:
        raise Gt06Error(f"time: {len(content)} content bytes, expected 0 or 6")
    return TimeRequest(_datetime(_parse(_DATETIME_C, content, "time"), "time"))


def _info(protocol: int, content: bytes) -> InfoTransfer:
    if not content:
        raise Gt06Error("information transfer without a type")
    return InfoTransfer(content[0], content[1:])


_DECODERS: Final[dict[int, Callable[[int, bytes], Message]]] = {
    PROTO_LOGIN: _login,
    PROTO_LOCATION: _location,
    PROTO_LOCATION_UTC: _location,
    PROTO_HEARTBEAT: _heartbeat,
    PROTO_ALARM: _alarm,
    PROTO_ALARM_UTC: _alarm,
    PROTO_ALARM_MULTIFENCE: _alarm,
    PROTO_COMMAND: _command,
    PROTO_REPLY: _reply,
    PROTO_REPLY_LONG: _reply,
    PROTO_TIME: _time,
    PROTO_INFO: _info,
}

# -- encode --------------------------------------------------------------------------------------


def _build(layout: Any, values: dict[str, Any], what: str) -> bytes:
    try:
        out: bytes = layout.build(values)
    except (c.ConstructError, ValueError, OverflowError) as exc:
        raise Gt06Error(f"{what}: {exc}") from None
    return out


def _time_values(when: datetime) -> dict[str, int]:
    if not 2000 <= when.year <= 2255:
        raise Gt06Error(f"year {when.year} does not fit a GT06 date")
    return {
        "year": when.year - 2000,
        "month": when.month,
        "day": when.day,
        "hour": when.hour,
        "minute": when.minute,
        "second": when.second,
    }


def encode_ack(protocol: int, serial: int) -> bytes:
    """The server's reply without content (login, heartbeat, location, alarm acks): it
    echoes the device's ``serial``, or the device resends."""
    return encode_frame(protocol, b"", serial)


def encode_login(
    imei: str,
    serial: int,
    *,
    type_code: int | None = None,
    tz_minutes: int | None = None,
    language: int = 0,
) -> bytes:
    if len(imei) != 15 or not imei.isascii() or not imei.isdigit():
        raise Gt06Error(f"IMEI {imei!r} is not 15 digits")
    content = bytes.fromhex("0" + imei)
    if type_code is not None or tz_minutes is not None:
        content += (type_code or 0).to_bytes(2, "big")
    if tz_minutes is not None:
        hours, minutes = divmod(abs(tz_minutes), 60)
        word = ((hours * 100 + minutes) << 4) | (0x08 if tz_minutes < 0 else 0) | (language & 3)
        content += word.to_bytes(2, "big")
    return encode_frame(PROTO_LOGIN, content, serial)


def encode_heartbeat(
    status: TerminalStatus, serial: int, *, alarm_language: int | None = 0x0002
) -> bytes:
    content = bytes((status.terminal_info, status.voltage_level, status.gsm_signal))
    if alarm_language is not None:
        content += alarm_language.to_bytes(2, "big")
    return encode_frame(PROTO_HEARTBEAT, content, serial)


def _gps_bytes(gps: GpsFix) -> bytes:
    status = gps.course & _COURSE_MASK
    status |= _NORTH if gps.lat >= 0 else 0
    status |= _WEST if gps.lon < 0 else 0
    status |= _POSITIONED if gps.positioned else 0
    status |= _DIFFERENTIAL if gps.differential else 0
    values = {
        "time": _time_values(gps.time),
        "gps_info": ((gps.gps_info_len & 0x0F) << 4) | min(gps.satellites, 15),
        "lat": round(abs(gps.lat) * COORD_DIVISOR),
        "lon": round(abs(gps.lon) * COORD_DIVISOR),
        "speed_kmh": gps.speed_kmh,
        "course_status": status,
    }
    return _build(GPS_LAYOUT, values, "GPS block")


def _cell_bytes(cell: Cell | None) -> bytes:
    cell = cell or Cell(0, 0, 0, 0)
    values = {"mcc": cell.mcc, "mnc": cell.mnc, "lac": cell.lac, "cell_id": cell.cell_id}
    return _build(CELL_LAYOUT, values, "LBS block")


def encode_location(
    gps: GpsFix,
    serial: int,
    *,
    cell: Cell | None = None,
    protocol: int = PROTO_LOCATION,
    acc: int = 0,
    upload_mode: int = 0,
    reupload: int = 0,
) -> bytes:
    """0x12 (classic) or 0x22 (UTC, with ACC, upload mode and re-upload flag)."""
    if protocol not in LOCATION_PROTOCOLS:
        raise Gt06Error(f"{protocol:#04x} is not a location protocol")
    content = _gps_bytes(gps) + _cell_bytes(cell)
    if protocol == PROTO_LOCATION_UTC:
        content += bytes((acc & 0xFF, upload_mode & 0xFF, reupload & 0xFF))
    return encode_frame(protocol, content, serial)


def encode_alarm(
    gps: GpsFix,
    status: TerminalStatus,
    alarm: int,
    serial: int,
    *,
    cell: Cell | None = None,
    language: int = 0x02,
    protocol: int = PROTO_ALARM,
) -> bytes:
    """0x16 (classic) or 0x26 (UTC): GPS, LBS with its length byte, status, alarm, language."""
    if protocol not in (PROTO_ALARM, PROTO_ALARM_UTC):
        raise Gt06Error(f"{protocol:#04x} is not an alarm protocol this encoder writes")
    lbs = _cell_bytes(cell)
    content = (
        _gps_bytes(gps)
        + bytes((len(lbs) + 1,))
        + lbs
        + bytes((status.terminal_info, status.voltage_level, status.gsm_signal))
        + bytes((alarm & 0xFF, language & 0xFF))
    )
    return encode_frame(protocol, content, serial)


def encode_command(
    flag: int, command: bytes, serial: int, *, language: int | None = 0x0002
) -> bytes:
    """0x80: ``command`` (already encoded) with the server ``flag`` the device echoes."""
    if not 0 <= flag <= 0xFFFFFFFF:
        raise Gt06Error(f"server flag {flag} is not 32 bits")
    size = 4 + len(command)
    if size > 0xFF:
        raise Gt06Error(f"command of {len(command)} bytes is too long (at most 251)")
    content = bytes((size,)) + flag.to_bytes(4, "big") + command
    if language is not None:
        content += language.to_bytes(2, "big")
    return encode_frame(PROTO_COMMAND, content, serial)


def encode_reply(
    flag: int, text: str, serial: int, *, long: bool = False, language: int = 0x0002
) -> bytes:
    """The device's answer to a 0x80: 0x15 (ASCII) or, ``long``, 0x21 in UTF-16BE."""
    if not 0 <= flag <= 0xFFFFFFFF:
        raise Gt06Error(f"server flag {flag} is not 32 bits")
    if long:
        content = flag.to_bytes(4, "big") + bytes((REPLY_UTF16,)) + text.encode("utf-16-be")
        return encode_frame(PROTO_REPLY_LONG, content, serial, long=True)
    body = text.encode("ascii", errors="replace")
    if 4 + len(body) > 0xFF:
        raise Gt06Error("reply text too long for 0x15")
    content = bytes((4 + len(body),)) + flag.to_bytes(4, "big") + body + language.to_bytes(2, "big")
    return encode_frame(PROTO_REPLY, content, serial)


def encode_time_response(when: datetime, serial: int) -> bytes:
    """0x8A: the server's UTC time, answering a device's time request."""
    return encode_frame(PROTO_TIME, _build(_DATETIME_C, _time_values(when), "time"), serial)
