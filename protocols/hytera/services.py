"""The HDAP services the gateway speaks: TMP (text), LP (location), RRS (registration),
RCP (radio control) and DDS (delivery states), as typed messages.

Facts from ``../shared/notes/hytera.md`` sections 4-9, each with its public source:

* **Radio IP** (section 4): 4 bytes, byte 0 the subnet (10, 12, ...), bytes 1-3 the 24-bit radio
  id, big-endian (``0a 03 64 0e`` = 10.3.100.14 = radio 222222). Groups carry subnet 0
  (inferred). Kept here as one ``int`` (the four bytes big-endian).
* **TMP** (section 5; dmr-kaitai, ok-dmrlib, hylink, kevsgithub/HyteraDMRUSB captures): opcode
  high byte = flags (bit 7 ack requested, bit 6 option field present), low byte = the PDU
  (``A1`` private message, ``A2`` its ack, ``B1``/``B2`` group, ``AE``/``AF``/``BE``/``BF`` short
  data). Payload: ``[option length u16]`` request id u32, destination, source (not in ``B2``),
  then the text in UTF-16LE / the result byte / raw data, then the option bytes.
* **LP** (section 6; dmr-kaitai ``location_protocol.ksy``, ok-dmrlib, HyteraNetRpt): opcode =
  general service (high byte) + specific (low byte); the 40-byte ASCII GPS block; results u16.
* **RRS** (section 7): ``00 03`` registration, ``00 01`` de-registration, ``00 02`` online check,
  ``00 80`` answer (result, renew time u32 s), ``00 82`` check answer (0 online, 1 offline).
* **RCP** (section 9, little-endian): ``0452``/``8452`` radio id or IP, ``1847``/``8847``
  forward received messages to the PC, ``0841``/``8841`` call request.
* **DDS** (section 8): ``00 ss``, radio IP, the reported PDU's opcode u16, result u8.

Every decode raises only :class:`~protocols.hytera.errors.HyteraError`.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from construct import Bytes, ConstructError, Int8ub, Int16sb, Int16ub, Int32ub, Int32ul, Struct

from protocols.hytera.errors import HyteraError
from protocols.hytera.hdap import HdapEnvelope, Service

__all__ = [
    "GPS_BYTES",
    "DdsReport",
    "GpsFix",
    "LpAnswer",
    "LpLocation",
    "LpOpcode",
    "LpRequest",
    "RcpMessage",
    "RcpOpcode",
    "RrsMessage",
    "RrsOpcode",
    "ServiceMessage",
    "TmpAck",
    "TmpKind",
    "TmpMessage",
    "TmpResult",
    "TmpShortData",
    "decode_service",
    "encode_service",
    "ip_text",
    "radio_id",
    "radio_ip",
]


def radio_ip(radio: int, subnet: int = 10) -> int:
    """The radio IP of radio id ``radio`` in ``subnet`` (as one big-endian int)."""
    if not 0 <= radio <= 0xFFFFFF or not 0 <= subnet <= 0xFF:
        raise HyteraError(f"radio {radio} / subnet {subnet} out of range")
    return (subnet << 24) | radio


def radio_id(ip: int) -> int:
    return ip & 0xFFFFFF


def ip_text(ip: int) -> str:
    return ".".join(str(b) for b in ip.to_bytes(4, "big"))


# --- TMP -------------------------------------------------------------------------------------


class TmpKind(enum.IntEnum):
    PRIVATE_MESSAGE = 0xA1
    PRIVATE_ACK = 0xA2
    PRIVATE_SHORT_DATA = 0xAE
    PRIVATE_SHORT_DATA_ACK = 0xAF
    GROUP_MESSAGE = 0xB1
    GROUP_ACK = 0xB2
    GROUP_SHORT_DATA = 0xBE
    GROUP_SHORT_DATA_ACK = 0xBF


class TmpResult(enum.IntEnum):
    """TMP ack result codes (dmr-kaitai, ok-dmrlib and hylink agree; notes section 5)."""

    OK = 0
    FAIL = 1
    INVALID_PARAMS = 3
    CHANNEL_BUSY = 4
    RX_ONLY = 5
    LOW_BATTERY = 6
    PLL_UNLOCK = 7
    PRIVATE_CALL_NO_ACK = 8
    REPEATER_WAKEUP_FAIL = 9
    NO_CONTACT = 10
    TX_DENY = 11
    TX_INTERRUPTED = 12

    @classmethod
    def describe(cls, code: int) -> str:
        """Words for a result code, for a delivery failure's reason."""
        try:
            return cls(code).name.lower().replace("_", " ") + f" ({code})"
        except ValueError:
            return f"result code {code}"


TMP_ACK_REQUESTED: Final = 0x80
TMP_OPTION: Final = 0x40
TMP_ADDRESSES: Final = Struct("request_id" / Int32ub, "dest" / Int32ub, "src" / Int32ub).compile()
_TMP_GROUP_ACK: Final = Struct(
    "request_id" / Int32ub, "dest" / Int32ub, "result" / Int8ub
).compile()
_U16: Final = Struct("value" / Int16ub).compile()
# The receive hot path reads these layouts with ``struct``: a profile of bench/hytera.py showed
# construct's parse at about 40 % of decoding a mixed LP/TMP stream. The construct structs stay
# the layouts as data (encoders use them; tests check both readings agree).
TMP_ADDRESSES_FAST: Final = struct.Struct(">III")


@dataclass(frozen=True, slots=True)
class TmpMessage:
    """A private (``A1``) or group (``B1``) text."""

    request_id: int
    dest: int
    src: int
    text: str
    group: bool = False
    flags: int = TMP_ACK_REQUESTED
    option: bytes = b""

    @property
    def ack_requested(self) -> bool:
        return bool(self.flags & TMP_ACK_REQUESTED)


@dataclass(frozen=True, slots=True)
class TmpAck:
    """The ack of a private (``A2``) or group (``B2``, no source) message."""

    request_id: int
    dest: int
    src: int | None
    result: int
    group: bool = False
    flags: int = TMP_ACK_REQUESTED
    option: bytes = b""


@dataclass(frozen=True, slots=True)
class TmpShortData:
    """Short data (``AE``/``BE``) or its ack (``AF``/``BF``, ``data`` then holds the rest)."""

    kind: int
    request_id: int
    dest: int
    src: int
    data: bytes
    flags: int = TMP_ACK_REQUESTED


def _decode_text(data: bytes) -> str:
    if len(data) & 1:
        raise HyteraError(f"TMP text of {len(data)} bytes is not UTF-16")
    try:
        return data.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise HyteraError(f"TMP text is not valid UTF-16LE: {exc.reason}") from None


def _decode_tmp(env: HdapEnvelope) -> TmpMessage | TmpAck | TmpShortData:
    flags, kind = env.opcode >> 8, env.opcode & 0xFF
    payload = env.payload
    option = b""
    if flags & TMP_OPTION:
        if len(payload) < 2:
            raise HyteraError("TMP option length missing")
        opt_len = _U16.parse(payload)["value"]
        payload = payload[2:]
        if opt_len > len(payload):
            raise HyteraError(f"TMP option of {opt_len} bytes in a {len(payload)}-byte body")
        if opt_len:
            payload, option = payload[:-opt_len], payload[-opt_len:]
    if kind == TmpKind.GROUP_ACK:
        if len(payload) != 9:
            raise HyteraError(f"TMP group ack of {len(payload)} bytes, not 9")
        g = _TMP_GROUP_ACK.parse(payload)
        return TmpAck(g["request_id"], g["dest"], None, g["result"], True, flags, option)
    if kind not in _TMP_KINDS:
        raise HyteraError(f"TMP PDU 0x{kind:02X} unknown")
    if len(payload) < 12:
        raise HyteraError(f"TMP body of {len(payload)} bytes is too short")
    request_id, dest, src = TMP_ADDRESSES_FAST.unpack_from(payload)
    rest = payload[12:]
    if kind in (TmpKind.PRIVATE_MESSAGE, TmpKind.GROUP_MESSAGE):
        text = _decode_text(rest)
        group = kind == TmpKind.GROUP_MESSAGE
        return TmpMessage(request_id, dest, src, text, group, flags, option)
    if kind == TmpKind.PRIVATE_ACK:
        if len(rest) != 1:
            raise HyteraError(f"TMP ack carries {len(rest)} bytes after the addresses, not 1")
        return TmpAck(request_id, dest, src, rest[0], False, flags, option)
    return TmpShortData(kind, request_id, dest, src, rest, flags)


_TMP_KINDS: Final = frozenset(int(k) for k in TmpKind)


def _encode_tmp(msg: TmpMessage | TmpAck | TmpShortData) -> HdapEnvelope:
    if isinstance(msg, TmpMessage):
        kind = TmpKind.GROUP_MESSAGE if msg.group else TmpKind.PRIVATE_MESSAGE
        body = TMP_ADDRESSES.build(
            {"request_id": msg.request_id, "dest": msg.dest, "src": msg.src}
        ) + msg.text.encode("utf-16-le", "surrogatepass")
        flags, option = msg.flags, msg.option
    elif isinstance(msg, TmpAck):
        if msg.group:
            kind = TmpKind.GROUP_ACK
            body = _TMP_GROUP_ACK.build(
                {"request_id": msg.request_id, "dest": msg.dest, "result": msg.result}
            )
        else:
            kind = TmpKind.PRIVATE_ACK
            src = 0 if msg.src is None else msg.src
            body = TMP_ADDRESSES.build(
                {"request_id": msg.request_id, "dest": msg.dest, "src": src}
            ) + bytes((msg.result,))
        flags, option = msg.flags, msg.option
    else:
        kind = TmpKind(msg.kind)
        body = (
            TMP_ADDRESSES.build({"request_id": msg.request_id, "dest": msg.dest, "src": msg.src})
            + msg.data
        )
        flags, option = msg.flags, b""
    if option:
        flags |= TMP_OPTION
        body = len(option).to_bytes(2, "big") + body + option
    elif flags & TMP_OPTION:
        body = b"\x00\x00" + body
    return HdapEnvelope(Service.TMP, (flags << 8) | kind, body)


# --- LP --------------------------------------------------------------------------------------


class LpOpcode(enum.IntEnum):
    IMMEDIATE_REQUEST = 0xA001
    IMMEDIATE_ANSWER = 0xA002
    IMMEDIATE_ANSWER_RSSI = 0xA003
    EMERGENCY_STOP_REQUEST = 0xB001
    EMERGENCY_STOP_ANSWER = 0xB002
    EMERGENCY_REPORT = 0xB003
    TRIGGERED_REQUEST = 0xC001
    TRIGGERED_ANSWER = 0xC002
    TRIGGERED_REPORT = 0xC003
    TRIGGERED_STOP_REQUEST = 0xC004
    TRIGGERED_STOP_ANSWER = 0xC005
    CONDITION_REQUEST = 0xD001
    CONDITION_ANSWER = 0xD002
    CONDITION_REPORT = 0xD003
    CONDITION_REPORT_RSSI = 0xD004


GPS_BYTES: Final = 40
GPS: Final = Struct(
    "status" / Bytes(1),
    "time" / Bytes(6),
    "date" / Bytes(6),
    "ns" / Bytes(1),
    "lat" / Bytes(9),
    "ew" / Bytes(1),
    "lon" / Bytes(10),
    "speed" / Bytes(3),
    "direction" / Bytes(3),
).compile()
"""The 40-byte ASCII GPS block (notes section 6; dmr-kaitai ``gpsdata.ksy``)."""
GPS_FAST: Final = struct.Struct("1s6s6s1s9s1s10s3s3s")
"""The same layout for the receive path (see :data:`TMP_ADDRESSES_FAST`)."""
REQ_IP_FAST: Final = struct.Struct(">II")
_REQ_IP: Final = Struct("request_id" / Int32ub, "radio" / Int32ub).compile()
_REQ_IP_RESULT: Final = Struct(
    "request_id" / Int32ub, "radio" / Int32ub, "result" / Int16ub
).compile()
_S16: Final = Struct("value" / Int16sb).compile()


def _ascii(field_bytes: bytes) -> str:
    """An ASCII field; NUL bytes (no fix, ok-dmrlib d9226ae) read as empty."""
    text = field_bytes.replace(b"\x00", b"").decode("ascii", "replace").strip()
    return text


def _degrees(text: str, hemisphere: str, degree_digits: int, negative: str) -> float | None:
    """``DDMM.MMMM`` (``DDDMM.MMMM``) and N/S (E/W) to signed degrees; None if unreadable."""
    if len(text) < degree_digits + 2 or not text[:degree_digits].isdigit():
        return None
    try:
        minutes = float(text[degree_digits:])
    except ValueError:
        return None
    if not math.isfinite(minutes) or not 0 <= minutes < 60:
        return None
    value = int(text[:degree_digits]) + minutes / 60
    return -value if hemisphere == negative else value


@dataclass(frozen=True, slots=True)
class GpsFix:
    """The GPS block as the radio sent it, with the numbers read where they are readable."""

    status: str
    time: str | None
    date: str | None
    lat: float | None
    lon: float | None
    speed_knots: float | None
    direction: int | None
    raw: bytes = b""

    @property
    def valid(self) -> bool:
        """A fix is a position only with status ``A`` and both coordinates in range."""
        return (
            self.status == "A"
            and self.lat is not None
            and self.lon is not None
            and -90 <= self.lat <= 90
            and -180 <= self.lon <= 180
        )

    @staticmethod
    def decode(data: bytes) -> GpsFix:
        if len(data) != GPS_BYTES:
            raise HyteraError(f"GPS block of {len(data)} bytes, not {GPS_BYTES}")
        status, time_b, date_b, ns, lat_b, ew, lon_b, speed_b, dir_b = GPS_FAST.unpack(data)
        time_s, date_s = _ascii(time_b), _ascii(date_b)
        speed_s, dir_s = _ascii(speed_b), _ascii(dir_b)
        try:
            speed = float(speed_s) if speed_s else None
            if speed is not None and not math.isfinite(speed):
                speed = None
        except ValueError:
            speed = None
        direction = int(dir_s) if dir_s.isdigit() and int(dir_s) < 360 else None
        return GpsFix(
            status=_ascii(status),
            time=time_s if len(time_s) == 6 and time_s.isdigit() else None,
            date=date_s if len(date_s) == 6 and date_s.isdigit() else None,
            lat=_degrees(_ascii(lat_b), _ascii(ns), 2, "S"),
            lon=_degrees(_ascii(lon_b), _ascii(ew), 3, "W"),
            speed_knots=speed,
            direction=direction,
            raw=data,
        )

    @staticmethod
    def build(
        lat: float,
        lon: float,
        *,
        time: str = "000000",
        date: str = "000000",
        speed_knots: float = 0.0,
        direction: int = 0,
        valid: bool = True,
    ) -> bytes:
        """A 40-byte block for ``lat``/``lon`` (used by the stub and tests)."""
        lat_deg, lat_min = divmod(abs(lat) * 60, 60)
        lon_deg, lon_min = divmod(abs(lon) * 60, 60)
        lat_s = f"{int(lat_deg):02d}{lat_min:07.4f}"
        lon_s = f"{int(lon_deg):03d}{lon_min:07.4f}"
        speed = f"{speed_knots:.1f}"[:3].rjust(3, "0")
        text = (
            ("A" if valid else "V") + time + date + ("S" if lat < 0 else "N") + lat_s
            + ("W" if lon < 0 else "E") + lon_s + speed + f"{direction % 360:03d}"
        )  # fmt: skip
        data = text.encode("ascii")
        if len(data) != GPS_BYTES:
            raise HyteraError(f"GPS block came out {len(data)} bytes")
        return data


@dataclass(frozen=True, slots=True)
class LpLocation:
    """A location from a radio: an immediate answer (``A002``/``A003``), a periodic or
    conditional report (``C003``, ``D003``, ``D004``) or an emergency report (``B003``, no
    request id, with the radio's ``emergency_type``)."""

    opcode: int
    request_id: int | None
    radio: int
    gps: GpsFix
    result: int = 0
    rssi: int | None = None
    emergency_type: int | None = None
    time_remaining: str | None = None


@dataclass(frozen=True, slots=True)
class LpAnswer:
    """The answer to a request that carries no position (``B002``, ``C002``, ``C005``,
    ``D002``), or an immediate answer whose result is not OK (``A002`` without a fix)."""

    opcode: int
    request_id: int
    radio: int
    result: int
    trigger: int | None = None


@dataclass(frozen=True, slots=True)
class LpRequest:
    """A request to a radio: immediate (``A001``), periodic (``C001`` with ``interval``),
    conditional (``D001``: trigger 0 cancel, 1 distance, 2 time, 3 AND, 4 OR) or a stop
    (``B001``, ``C004``). Times ``yyyyMMddhhmmss`` GMT (zeros: unset), intervals ``ddhhmmss``."""

    opcode: int
    request_id: int
    radio: int
    interval: str = "00000000"
    trigger: int = 0
    distance_m: int = 0
    max_interval: str = "00000000"
    start: str = "0" * 14
    stop: str = "0" * 14
    extra: bytes = b""


def interval_text(seconds: float) -> str:
    """Seconds as the LP interval ``ddhhmmss`` (at least 1 s, at most 99 days)."""
    total = max(1, min(round(seconds), 99 * 86400 + 86399))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days:02d}{hours:02d}{minutes:02d}{secs:02d}"


def interval_seconds(text: str) -> int | None:
    if len(text) != 8 or not text.isdigit():
        return None
    return int(text[:2]) * 86400 + int(text[2:4]) * 3600 + int(text[4:6]) * 60 + int(text[6:])


_LOCATIONS: Final = frozenset({0xA002, 0xA003, 0xC003, 0xD003, 0xD004})


def _decode_lp(env: HdapEnvelope) -> LpLocation | LpAnswer | LpRequest:  # noqa: PLR0911, PLR0912 - one branch per opcode of the notes' table
    op, p = env.opcode, env.payload
    if op == LpOpcode.EMERGENCY_REPORT:
        if len(p) < 5 + GPS_BYTES:
            raise HyteraError(f"LP emergency report of {len(p)} bytes is too short")
        radio = int.from_bytes(p[:4], "big")
        return LpLocation(op, None, radio, GpsFix.decode(p[5 : 5 + GPS_BYTES]),
                          emergency_type=p[4])  # fmt: skip
    if len(p) < 8:
        raise HyteraError(f"LP 0x{op:04X} of {len(p)} bytes is too short")
    req, radio = REQ_IP_FAST.unpack_from(p)
    if op in (0xA002, 0xA003, 0xD004):
        if len(p) == 10 and op == 0xA002:  # an answer without the GPS block: a failure
            return LpAnswer(op, req, radio, _U16.parse(p[8:])["value"])
        want = 10 + GPS_BYTES + (2 if op != 0xA002 else 0)
        if len(p) != want:
            raise HyteraError(f"LP 0x{op:04X} of {len(p)} bytes, not {want}")
        result = int.from_bytes(p[8:10], "big")
        rssi = _S16.parse(p[50:])["value"] if op != 0xA002 else None
        return LpLocation(op, req, radio, GpsFix.decode(p[10:50]), result, rssi)
    if op == 0xC003:
        if len(p) != 16 + GPS_BYTES:
            raise HyteraError(f"LP periodic report of {len(p)} bytes, not {16 + GPS_BYTES}")
        return LpLocation(op, req, radio, GpsFix.decode(p[16:]),
                          time_remaining=_ascii(p[8:16]))  # fmt: skip
    if op == 0xD003:
        if len(p) != 8 + GPS_BYTES:
            raise HyteraError(f"LP condition report of {len(p)} bytes, not {8 + GPS_BYTES}")
        return LpLocation(op, req, radio, GpsFix.decode(p[8:]))
    if op in (0xB002, 0xC002, 0xC005):
        if len(p) != 10:
            raise HyteraError(f"LP 0x{op:04X} of {len(p)} bytes, not 10")
        return LpAnswer(op, req, radio, _REQ_IP_RESULT.parse(p)["result"])
    if op == 0xD002:
        if len(p) != 11:
            raise HyteraError(f"LP condition answer of {len(p)} bytes, not 11")
        return LpAnswer(op, req, radio, _U16.parse(p[9:])["value"], trigger=p[8])
    if op in (0xA001, 0xB001, 0xC004):
        return LpRequest(op, req, radio, extra=p[8:])
    if op == 0xC001:
        if len(p) != 44:
            raise HyteraError(f"LP periodic request of {len(p)} bytes, not 44")
        return LpRequest(op, req, radio, interval=_ascii(p[36:44]), start=_ascii(p[8:22]),
                         stop=_ascii(p[22:36]))  # fmt: skip
    if op == 0xD001:
        if len(p) != 57:
            raise HyteraError(f"LP condition request of {len(p)} bytes, not 57")
        return LpRequest(
            op, req, radio, trigger=p[8], distance_m=int.from_bytes(p[9:13], "big"),
            start=_ascii(p[13:27]), stop=_ascii(p[27:41]), interval=_ascii(p[41:49]),
            max_interval=_ascii(p[49:57]),
        )  # fmt: skip
    raise HyteraError(f"LP opcode 0x{op:04X} unknown")


def _fixed(text: str, size: int) -> bytes:
    data = text.encode("ascii")
    if len(data) != size or not data.isdigit():
        raise HyteraError(f"LP field {text!r} is not {size} digits")
    return data


def _encode_lp(msg: LpLocation | LpAnswer | LpRequest) -> HdapEnvelope:  # noqa: PLR0912 - one branch per opcode
    if isinstance(msg, LpRequest):
        head = _REQ_IP.build({"request_id": msg.request_id, "radio": msg.radio})
        if msg.opcode == LpOpcode.TRIGGERED_REQUEST:
            body = head + _fixed(msg.start, 14) + _fixed(msg.stop, 14) + _fixed(msg.interval, 8)
        elif msg.opcode == LpOpcode.CONDITION_REQUEST:
            body = (
                head + bytes((msg.trigger,)) + msg.distance_m.to_bytes(4, "big")
                + _fixed(msg.start, 14) + _fixed(msg.stop, 14) + _fixed(msg.interval, 8)
                + _fixed(msg.max_interval, 8)
            )  # fmt: skip
        else:
            body = head + msg.extra
        return HdapEnvelope(Service.LP, msg.opcode, body)
    if isinstance(msg, LpAnswer):
        head = _REQ_IP.build({"request_id": msg.request_id, "radio": msg.radio})
        if msg.opcode == LpOpcode.CONDITION_ANSWER:
            body = head + bytes((msg.trigger or 0,)) + msg.result.to_bytes(2, "big")
        else:
            body = head + msg.result.to_bytes(2, "big")
        return HdapEnvelope(Service.LP, msg.opcode, body)
    gps = msg.gps.raw
    if len(gps) != GPS_BYTES:
        raise HyteraError("an LP location to encode needs its 40-byte GPS block in gps.raw")
    if msg.opcode == LpOpcode.EMERGENCY_REPORT:
        body = msg.radio.to_bytes(4, "big") + bytes((msg.emergency_type or 0,)) + gps
        return HdapEnvelope(Service.LP, msg.opcode, body)
    head = _REQ_IP.build({"request_id": msg.request_id or 0, "radio": msg.radio})
    if msg.opcode == LpOpcode.TRIGGERED_REPORT:
        body = head + _fixed(msg.time_remaining or "00000000", 8) + gps
    elif msg.opcode == LpOpcode.CONDITION_REPORT:
        body = head + gps
    else:
        body = head + msg.result.to_bytes(2, "big") + gps
        if msg.opcode != LpOpcode.IMMEDIATE_ANSWER:
            body += (msg.rssi or 0).to_bytes(2, "big", signed=True)
    return HdapEnvelope(Service.LP, msg.opcode, body)


# --- RRS -------------------------------------------------------------------------------------


class RrsOpcode(enum.IntEnum):
    DEREGISTRATION = 0x0001
    ONLINE_CHECK = 0x0002
    REGISTRATION = 0x0003
    REGISTRATION_ANSWER = 0x0080
    ONLINE_CHECK_ANSWER = 0x0082


@dataclass(frozen=True, slots=True)
class RrsMessage:
    """Registration traffic; ``result``/``renew_s`` on an answer, ``online`` on a check answer."""

    opcode: int
    radio: int
    result: int | None = None
    renew_s: int | None = None
    online: bool | None = None


_RRS_ANSWER: Final = Struct("radio" / Int32ub, "result" / Int8ub, "renew_s" / Int32ub).compile()


def _decode_rrs(env: HdapEnvelope) -> RrsMessage:
    op, p = env.opcode, env.payload
    if op in (RrsOpcode.REGISTRATION, RrsOpcode.DEREGISTRATION, RrsOpcode.ONLINE_CHECK):
        if len(p) != 4:
            raise HyteraError(f"RRS 0x{op:04X} of {len(p)} bytes, not 4")
        return RrsMessage(op, int.from_bytes(p, "big"))
    if op == RrsOpcode.REGISTRATION_ANSWER:
        if len(p) != 9:
            raise HyteraError(f"RRS answer of {len(p)} bytes, not 9")
        a = _RRS_ANSWER.parse(p)
        return RrsMessage(op, a["radio"], a["result"], a["renew_s"])
    if op == RrsOpcode.ONLINE_CHECK_ANSWER:
        if len(p) != 5:
            raise HyteraError(f"RRS check answer of {len(p)} bytes, not 5")
        return RrsMessage(op, int.from_bytes(p[:4], "big"), online=p[4] == 0)
    raise HyteraError(f"RRS opcode 0x{op:04X} unknown")


def _encode_rrs(msg: RrsMessage) -> HdapEnvelope:
    if msg.opcode == RrsOpcode.REGISTRATION_ANSWER:
        body = _RRS_ANSWER.build(
            {"radio": msg.radio, "result": msg.result or 0, "renew_s": msg.renew_s or 0}
        )
    elif msg.opcode == RrsOpcode.ONLINE_CHECK_ANSWER:
        body = msg.radio.to_bytes(4, "big") + bytes((0 if msg.online else 1,))
    else:
        body = msg.radio.to_bytes(4, "big")
    return HdapEnvelope(Service.RRS, msg.opcode, body)


# --- RCP -------------------------------------------------------------------------------------


class RcpOpcode(enum.IntEnum):
    RADIO_ID_REQUEST = 0x0452
    RADIO_ID_REPLY = 0x8452
    BROADCAST_MESSAGE_CONFIG = 0x1847
    BROADCAST_MESSAGE_CONFIG_REPLY = 0x8847
    CALL_REQUEST = 0x0841
    CALL_REPLY = 0x8841


RCP_TARGET_ID: Final = 0
RCP_TARGET_IP: Final = 1
_RCP_CALL: Final = Struct("call_type" / Int8ub, "target" / Int32ul).compile()


@dataclass(frozen=True, slots=True)
class RcpMessage:
    """Radio control. ``value`` is the radio id (target 0) or its IP (target 1, as one int,
    the four bytes in order) of an id reply; ``flags`` of a message-forwarding config;
    ``target`` the id of a call request. Other opcodes keep their ``payload``."""

    opcode: int
    result: int | None = None
    target: int | None = None
    value: int | None = None
    flags: int | None = None
    call_type: int | None = None
    payload: bytes = b""


def _decode_rcp(env: HdapEnvelope) -> RcpMessage:
    op, p = env.opcode, env.payload
    if op == RcpOpcode.RADIO_ID_REQUEST and len(p) == 1:
        return RcpMessage(op, target=p[0], payload=p)
    if op == RcpOpcode.RADIO_ID_REPLY:
        if len(p) != 6:
            raise HyteraError(f"RCP radio id reply of {len(p)} bytes, not 6")
        value = int.from_bytes(p[2:], "little" if p[1] == RCP_TARGET_ID else "big")
        return RcpMessage(op, result=p[0], target=p[1], value=value, payload=p)
    if op == RcpOpcode.BROADCAST_MESSAGE_CONFIG and len(p) >= 1:
        return RcpMessage(op, flags=p[0], payload=p)
    if op == RcpOpcode.CALL_REQUEST and len(p) == 5:
        c = _RCP_CALL.parse(p)
        return RcpMessage(op, call_type=c["call_type"], target=c["target"], payload=p)
    if op in (RcpOpcode.CALL_REPLY, RcpOpcode.BROADCAST_MESSAGE_CONFIG_REPLY) and len(p) >= 1:
        return RcpMessage(op, result=p[0], payload=p)
    return RcpMessage(op, payload=p)


def _encode_rcp(msg: RcpMessage) -> HdapEnvelope:
    if msg.opcode == RcpOpcode.RADIO_ID_REQUEST:
        body = bytes((msg.target or 0,))
    elif msg.opcode == RcpOpcode.RADIO_ID_REPLY:
        value = (msg.value or 0).to_bytes(4, "little" if msg.target == RCP_TARGET_ID else "big")
        body = bytes((msg.result or 0, msg.target or 0)) + value
    elif msg.opcode == RcpOpcode.BROADCAST_MESSAGE_CONFIG:
        body = bytes((msg.flags or 0,)) + bytes(7)
    elif msg.opcode == RcpOpcode.CALL_REQUEST:
        body = _RCP_CALL.build({"call_type": msg.call_type or 0, "target": msg.target or 0})
    elif msg.opcode in (RcpOpcode.CALL_REPLY, RcpOpcode.BROADCAST_MESSAGE_CONFIG_REPLY):
        body = bytes((msg.result or 0,))
    else:
        body = msg.payload
    return HdapEnvelope(Service.RCP, msg.opcode, body)


# --- DDS -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DdsReport:
    """The network's delivery state of a PDU to a radio (about ``service``)."""

    service: int
    radio: int
    protocol_opcode: int
    result: int


DDS_RESULTS: Final = {
    0: "ok", 1: "fail", 4: "limited timeout", 5: "no ack", 6: "error ack",
    7: "repeater wakeup fail", 8: "tx interrupted", 9: "tx deny", 10: "invalid params",
}  # fmt: skip


def _decode_dds(env: HdapEnvelope) -> DdsReport:
    p = env.payload
    if len(p) != 7:
        raise HyteraError(f"DDS report of {len(p)} bytes, not 7")
    return DdsReport(env.opcode & 0xFF, int.from_bytes(p[:4], "big"),
                     int.from_bytes(p[4:6], "big"), p[6])  # fmt: skip


def _encode_dds(msg: DdsReport) -> HdapEnvelope:
    body = msg.radio.to_bytes(4, "big") + msg.protocol_opcode.to_bytes(2, "big")
    return HdapEnvelope(Service.DDS, msg.service & 0xFF, body + bytes((msg.result,)))


# --- dispatch --------------------------------------------------------------------------------

ServiceMessage = (
    TmpMessage | TmpAck | TmpShortData | LpLocation | LpAnswer | LpRequest | RrsMessage
    | RcpMessage | DdsReport
)  # fmt: skip


_DECODERS: Final[dict[int, Callable[[HdapEnvelope], ServiceMessage]]] = {
    Service.TMP: _decode_tmp,
    Service.LP: _decode_lp,
    Service.RRS: _decode_rrs,
    Service.RCP: _decode_rcp,
    Service.DDS: _decode_dds,
}


def decode_service(env: HdapEnvelope) -> ServiceMessage:
    """The typed message an envelope carries; :class:`HyteraError` for anything unknown or
    malformed (TP and DTP are not spoken)."""
    decoder = _DECODERS.get(env.service)
    if decoder is None:
        raise HyteraError(f"HDAP service 0x{env.service:02X} is not spoken here")
    try:
        return decoder(env)
    except ConstructError as exc:  # a layout that did not fit: the lengths are checked first
        raise HyteraError(f"HDAP service 0x{env.service:02X}: {exc}") from None


def encode_service(msg: ServiceMessage, *, reliable: bool = False) -> HdapEnvelope:
    """The envelope carrying ``msg``."""
    try:
        if isinstance(msg, TmpMessage | TmpAck | TmpShortData):
            env = _encode_tmp(msg)
        elif isinstance(msg, LpLocation | LpAnswer | LpRequest):
            env = _encode_lp(msg)
        elif isinstance(msg, RrsMessage):
            env = _encode_rrs(msg)
        elif isinstance(msg, RcpMessage):
            env = _encode_rcp(msg)
        else:
            env = _encode_dds(msg)
    except HyteraError:
        raise
    except (OverflowError, ValueError, struct.error, ConstructError) as exc:  # out of its field
        raise HyteraError(f"cannot encode {type(msg).__name__}: {exc}") from None
    if reliable:
        return HdapEnvelope(env.service, env.opcode, env.payload, True)
    return env
