"""Mic-E positions: latitude and message bits in the AX.25 destination, the rest in the info field.

Sources (facts only, no code taken), APRS101 ch.10 "Mic-E Data Format"
(https://op-co.de/tmp/APRS101/APRS.html) and ``docs/protocols/aprs.md`` section 4.3:

- Destination characters 1-6: latitude digits ``DDMMhh``; ``0``-``9`` digit with bit 0, ``A``-``J``
  digit with custom bit 1, ``P``-``Y`` digit with standard bit 1, ``K`` (custom 1), ``L`` (0) and
  ``Z`` (standard 1) a blank (ambiguity). Character 4 ``P``-``Z`` = North, 5 = longitude offset
  +100, 6 = West. Message bits from characters 1-3: 111 Off Duty (M0) ... 001 Priority (M6), 000
  Emergency; custom bits name Custom-0 .. Custom-6; standard and custom ones mixed: unknown.
- Info: ``` ` ``` current / ``'`` old fix; longitude degrees ``d+28`` (with the offset: 180-189 ->
  -80, 190-199 -> -190), minutes ``m+28`` (>= 60: -60), hundredths ``h+28``; ``SP+28 DC+28 SE+28``:
  speed ``SP*10 + DC//10`` knots (>= 800: -800), course ``(DC%10)*100 + SE`` (>= 400: -400); symbol
  code, symbol table; optional altitude ``xxx}`` (base-91, metres + 10000) at the start of the
  status text, possibly after a one-character radio type prefix (Kenwood ``]``/``>``).
- Worked example: destination ``S32U6T``, info `` `(_fn"Oj/]"4T}= `` -> 33.42733, -12.129, 20 kn,
  course 251, 61 m, Returning.

Decisions: course 0 means unknown (``None``), north travels as 360; the longitude takes the
latitude's ambiguity; the radio type characters stay in ``comment`` (aprslib does the same); the
encoder writes speeds below 200 knots in the ``l``..DEL range and adds 400 to the course (as the
Kenwood example does), so ``SP`` and ``DC`` are never control characters.
"""

from __future__ import annotations

from protocols.aprs.common import (
    KMH_PER_KNOT,
    base91_decode,
    base91_encode,
    check_text,
    decode_text,
)
from protocols.aprs.model import AprsError, AprsPosition
from protocols.aprs.position import (
    check_symbol,
    course_on_wire,
    lat_lon_from_digits,
    speed_knots,
)

__all__ = ["MIC_E_STATUSES", "decode_mic_e", "encode_mic_e"]

_STANDARD = {
    7: "Off Duty",
    6: "En Route",
    5: "In Service",
    4: "Returning",
    3: "Committed",
    2: "Special",
    1: "Priority",
}
_CUSTOM = {bits: f"Custom-{7 - bits}" for bits in range(1, 8)}
EMERGENCY = "Emergency"
UNKNOWN = "Unknown"
MIC_E_STATUSES: tuple[str, ...] = (*_STANDARD.values(), *_CUSTOM.values(), EMERGENCY)
_STATUS_BITS = {name: (bits, False) for bits, name in _STANDARD.items()}
_STATUS_BITS.update({name: (bits, True) for bits, name in _CUSTOM.items()})
_STATUS_BITS[EMERGENCY] = (0, False)

_SYMBOL_TABLES = b"/\\0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_RADIO_PREFIXES = b"]>`' "

# Destination character -> (digit byte, message bit, custom, N/+100/W flag); None: invalid.
_DEST: dict[int, tuple[int, int, bool, bool]] = {}
for _i in range(10):
    _DEST[ord("0") + _i] = (ord("0") + _i, 0, False, False)
    _DEST[ord("A") + _i] = (ord("0") + _i, 1, True, False)
    _DEST[ord("P") + _i] = (ord("0") + _i, 1, False, True)
_DEST[ord("K")] = (0x20, 1, True, False)
_DEST[ord("L")] = (0x20, 0, False, False)
_DEST[ord("Z")] = (0x20, 1, False, True)


def _status_name(bits: int, standard: bool, custom: bool) -> str:
    if bits == 0:
        return EMERGENCY
    if standard and custom:
        return UNKNOWN
    return _CUSTOM[bits] if custom else _STANDARD[bits]


def _decode_dest(dest: str) -> tuple[bytes, bool, bool, bool, str]:
    """Latitude digits, North, longitude offset, West and the status name from the destination."""
    call = dest.partition("-")[0].encode("ascii", "replace")
    if len(call) != 6:
        raise AprsError(f"Mic-E destination must have 6 characters: {dest!r}")
    entries = [_DEST.get(ch) for ch in call]
    digits = bytearray()
    for i, entry in enumerate(entries):
        if entry is None or (i >= 3 and entry[2]):
            raise AprsError(f"invalid Mic-E destination character at {i + 1} in {dest!r}")
        digits.append(entry[0])
    msg = [e for e in entries[:3] if e is not None]
    bits = msg[0][1] << 2 | msg[1][1] << 1 | msg[2][1]
    custom = any(e[1] and e[2] for e in msg)
    standard = any(e[1] and not e[2] for e in msg)
    flags = [e[3] for e in entries[3:] if e is not None]
    return bytes(digits), flags[0], flags[1], flags[2], _status_name(bits, standard, custom)


def _decode_lon_digits(data: bytes, offset: bool) -> bytes:
    """``DDDMMhh`` from info bytes 1-3 (APRS101 ch.10 "Longitude" decoding rules)."""
    deg = data[1] - 28 + (100 if offset else 0)
    if 180 <= deg <= 189:
        deg -= 80
    elif 190 <= deg <= 199:
        deg -= 190
    minutes = data[2] - 28
    if minutes >= 60:
        minutes -= 60
    hundredths = data[3] - 28
    if not (0 <= deg <= 179 and 0 <= minutes <= 59 and 0 <= hundredths <= 99):
        raise AprsError(f"Mic-E longitude out of range: {data[1:4]!r}")
    return f"{deg:03d}{minutes:02d}{hundredths:02d}".encode("ascii")


def _decode_motion(data: bytes) -> tuple[int, int]:
    """``(knots, course)`` from info bytes 4-6."""
    sp, dc, se = data[4] - 28, data[5] - 28, data[6] - 28
    if sp < 0 or dc < 0 or se < 0:
        raise AprsError(f"Mic-E speed/course bytes out of range: {data[4:7]!r}")
    knots = sp * 10 + dc // 10
    if knots >= 800:
        knots -= 800
    course = (dc % 10) * 100 + se
    if course >= 400:
        course -= 400
    if course > 360:
        raise AprsError(f"Mic-E course {course} out of range")
    return knots, course


def _split_altitude(status: bytes) -> tuple[float | None, bytes]:
    if status[3:4] == b"}":
        return base91_decode(status[:3]) - 10000.0, status[4:]
    if status[4:5] == b"}" and status[:1] in _RADIO_PREFIXES:
        return base91_decode(status[1:4]) - 10000.0, status[:1] + status[5:]
    return None, status


def decode_mic_e(dest: str, data: bytes, raw: bytes) -> AprsPosition:
    """Decode a Mic-E info field (trailing whitespace stripped) with its AX.25 destination."""
    lat_digits, north, lon_offset, west, status_name = _decode_dest(dest)
    if len(data) < 9:
        raise AprsError(f"Mic-E info field truncated: {data!r}")
    lon_digits = _decode_lon_digits(data, lon_offset)
    lat, lon, amb = lat_lon_from_digits(lat_digits, north, lon_digits, not west)
    knots, course = _decode_motion(data)
    code, table = data[7], data[8:9]
    if table not in _SYMBOL_TABLES or not 33 <= code <= 126:
        raise AprsError(f"invalid Mic-E symbol {data[7:9]!r}")
    alt, status = _split_altitude(data[9:])
    return AprsPosition(
        lat,
        lon,
        table.decode("ascii"),
        chr(code),
        "mic-e",
        False,
        None,
        course or None,
        knots * KMH_PER_KNOT,
        alt,
        decode_text(status).strip(),
        status_name,
        amb,
        raw,
    )


def _encode_dest(lat: float, lon: float, lon_offset: bool, status: str) -> str:
    bits, custom = _STATUS_BITS[status]
    hundredths = round(abs(lat) * 6000)
    digits = f"{hundredths // 6000:02d}{hundredths % 6000:04d}"
    flags = (lat >= 0, lon_offset, lon < 0)
    dest = []
    for i, ch in enumerate(digits):
        if i < 3:
            base = ("A" if custom else "P") if bits >> (2 - i) & 1 else "0"
        else:
            base = "P" if flags[i - 3] else "0"
        dest.append(chr(ord(base) + ord(ch) - ord("0")))
    return "".join(dest)


def _lon_degree_byte(deg: int) -> int:
    """APRS101 ch.10 longitude degrees byte; the +100 offset flag is set below 10 and >= 100."""
    if deg < 10:
        return deg + 118
    if deg < 100:
        return deg + 28
    if deg < 110:
        return deg + 8
    return deg - 72


def encode_mic_e(
    lat: float,
    lon: float,
    *,
    symbol_table: str = "/",
    symbol_code: str = ">",
    speed_kmh: float = 0.0,
    course_deg: int | None = None,
    alt_m: float | None = None,
    status: str = "Off Duty",
    comment: str = "",
    current: bool = True,
) -> tuple[str, bytes]:
    """Encode a Mic-E position; returns ``(destination callsign, info field)``.

    ``status`` is one of :data:`MIC_E_STATUSES` (``"Emergency"`` sends message bits 000). Speed up
    to 799 knots; ``course_deg`` ``None`` is sent as unknown. Raises :class:`AprsError`.
    """
    if not (-90 <= lat <= 90 and -180 < lon < 180):
        raise AprsError(f"position out of range for Mic-E: {lat}, {lon}")
    if status not in _STATUS_BITS:
        raise AprsError(f"unknown Mic-E status {status!r}; one of {MIC_E_STATUSES}")
    check_symbol(symbol_table, symbol_code)
    lon_deg, lon_rest = divmod(round(abs(lon) * 6000), 6000)
    if lon_deg >= 180:
        raise AprsError(f"longitude {lon} rounds to 180 degrees, which Mic-E cannot carry")
    lon_min, lon_hun = divmod(lon_rest, 100)
    dest = _encode_dest(lat, lon, lon_deg < 10 or lon_deg >= 100, status)
    knots = speed_knots(speed_kmh, 799)
    course = course_on_wire(course_deg)
    sp = knots // 10
    info = bytearray(b"`" if current else b"'")
    info += bytes(
        (
            _lon_degree_byte(lon_deg),
            lon_min + 88 if lon_min < 10 else lon_min + 28,
            lon_hun + 28,
            sp + 108 if sp < 20 else sp + 28,
            (knots % 10) * 10 + course // 100 + 4 + 28,  # +400 course: never a control
            course % 100 + 28,
        )
    )
    info += symbol_code.encode("ascii") + symbol_table.encode("ascii")
    text = check_text(comment.strip(), "Mic-E comment", None)
    if alt_m is not None:
        info += base91_encode(round(alt_m) + 10000, 3) + b"}"
    elif text[3:4] == b"}" or (text[4:5] == b"}" and text[:1] in _RADIO_PREFIXES):
        raise AprsError("comment would be read as a Mic-E altitude")
    return dest, bytes(info + text)
