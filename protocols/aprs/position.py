"""APRS position reports: uncompressed and compressed (base-91), with and without timestamp.

Sources (facts only, no code taken), APRS101 (https://op-co.de/tmp/APRS101/APRS.html):

- ch.5 data type identifiers: ``!`` no timestamp, no messaging; ``=`` no timestamp, messaging; ``/``
  timestamp, no messaging; ``@`` timestamp, messaging.
- ch.6 latitude ``DDMM.hhN``, longitude ``DDDMM.hhE``; position ambiguity: trailing digits replaced
  by spaces, up to 4, and the longitude takes the latitude's ambiguity.
- ch.7 data extension ``CSE/SPD`` (course 001-360 degrees, ``000`` unknown; speed in knots) and the
  comment altitude ``/A=aaaaaa`` in feet (negative ``/A=-aaaaa`` as seen in practice).
- ch.9 compressed format ``T YYYY XXXX $ c s t``: ``lat = 90 - YYYY/380926``, ``lon = -180 +
  XXXX/190463``; overlay tables ``a``-``j`` for ``0``-``9``; ``c`` = space: no ``cs`` data;
  compression type bits 4-3 = ``10`` (GGA): ``cs`` is altitude, ``1.002^cs`` feet; else ``c`` in
  ``!``..``z``: course ``(c-33)*4`` and speed ``1.08^(s-33) - 1`` knots; ``c`` = ``{``: range.
- ``docs/protocols/aprs.md`` section 4 (the same facts with their sources; worked decodes in 4.4,
  verified with aprslib and direwolf).

Decisions: ambiguous positions decode to the centre of the ambiguity box (as aprslib does); comments
are stripped of surrounding whitespace; a compressed position's course ``0`` is north (the format
has no "unknown" course value), while ``000`` in ``CSE/SPD`` is unknown and decodes to ``None``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from protocols.aprs.common import (
    KMH_PER_KNOT,
    M_PER_FOOT,
    base91_decode,
    base91_encode,
    check_text,
    decode_text,
    decode_timestamp,
    encode_timestamp_dhm,
    encode_timestamp_hms,
)
from protocols.aprs.model import AprsError, AprsPosition

__all__ = ["decode_position", "encode_position"]

_SYMBOL_TABLES = b"/\\0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_COMPRESSED_TABLES = b"/\\ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
_OVERLAY_TO_DIGIT = bytes.maketrans(b"abcdefghij", b"0123456789")
_DIGIT_TO_OVERLAY = str.maketrans("0123456789", "abcdefghij")
_ALTITUDE_RE = re.compile(rb"/A=(-\d{5}|\d{6})")
_CSE_SPD_RE = re.compile(rb"(\d{3}|\.{3}| {3})/(\d{3}|\.{3}| {3})")
# Half the value, in minutes, of the last digit a given ambiguity level blanks (0 .. 4 digits).
_HALF_UNIT_MIN = (0.0, 0.05, 0.5, 5.0, 30.0)
_DTI = {(False, False): b"!", (False, True): b"=", (True, False): b"/", (True, True): b"@"}
_T_COURSE_SPEED = 33 + 0x3A  # current fix, RMC source, origin "software" (APRS101 ch.9 table)
_T_ALTITUDE = 33 + 0x32  # current fix, GGA source (cs is altitude), origin "software"


def _angle(digits: bytes, deg_len: int, amb: int, what: str) -> float:
    """``digits``: degrees then ``MMhh`` (spaces allowed in the last ``amb`` positions)."""
    blanks = len(digits) - len(digits.rstrip(b" "))
    if blanks > amb:
        raise AprsError(f"{what} has {blanks} blank digits, latitude ambiguity is {amb}")
    body = digits[: len(digits) - amb] + b"0" * amb
    if not body.isdigit():
        raise AprsError(f"{what} digits invalid: {digits!r}")
    minutes = int(body[deg_len : deg_len + 2]) + int(body[deg_len + 2 :]) / 100
    if minutes >= 60:
        raise AprsError(f"{what} minutes out of range: {digits!r}")
    return int(body[:deg_len]) + (minutes + _HALF_UNIT_MIN[amb]) / 60


def lat_lon_from_digits(
    lat_digits: bytes, north: bool, lon_digits: bytes, east: bool
) -> tuple[float, float, int]:
    """Latitude ``DDMMhh`` and longitude ``DDDMMhh`` digit strings (spaces for ambiguity).

    Returns ``(lat, lon, ambiguity)``; shared with Mic-E, whose latitude digits come from the
    destination address.
    """
    amb = len(lat_digits) - len(lat_digits.rstrip(b" "))
    if amb > 4:
        raise AprsError(f"latitude ambiguity {amb} exceeds 4: {lat_digits!r}")
    lat = _angle(lat_digits, 2, amb, "latitude")
    lon = _angle(lon_digits, 3, amb, "longitude")
    if lat > 90 or lon > 180:
        raise AprsError(f"position out of range: {lat_digits!r} {lon_digits!r}")
    return (lat if north else -lat), (lon if east else -lon), amb


def _altitude_from_comment(comment: bytes) -> tuple[float | None, bytes]:
    m = _ALTITUDE_RE.search(comment)
    if m is None:
        return None, comment
    return int(m.group(1)) * M_PER_FOOT, comment[: m.start()] + comment[m.end() :]


def decode_position(data: bytes, raw: bytes, now: datetime | None) -> AprsPosition:
    """Decode an info field starting with ``!``, ``=``, ``/`` or ``@`` (whitespace stripped)."""
    dti = data[0:1]
    messaging = dti in (b"=", b"@")
    timestamp = None
    body = data[1:]
    if dti in (b"/", b"@"):
        timestamp = decode_timestamp(body[:7], now)
        body = body[7:]
    if body[:1].isdigit():
        return _decode_uncompressed(body, raw, messaging, timestamp)
    return _decode_compressed(body, raw, messaging, timestamp)


def _decode_uncompressed(
    body: bytes, raw: bytes, messaging: bool, timestamp: datetime | None
) -> AprsPosition:
    if len(body) < 19:
        raise AprsError(f"uncompressed position truncated: {body!r}")
    ns, dot_lat, table = body[7:8], body[4:5], body[8:9]
    ew, dot_lon, code = body[17:18], body[14:15], body[18]
    if dot_lat != b"." or dot_lon != b"." or ns not in (b"N", b"S") or ew not in (b"E", b"W"):
        raise AprsError(f"malformed uncompressed position: {body[:19]!r}")
    if table not in _SYMBOL_TABLES or not 33 <= code <= 126:
        raise AprsError(f"invalid symbol {body[8:9]!r}{body[18:19]!r}")
    lat, lon, amb = lat_lon_from_digits(
        body[0:4] + body[5:7], ns == b"N", body[9:14] + body[15:17], ew == b"E"
    )
    rest = body[19:]
    course: int | None = None
    speed: float | None = None
    m = _CSE_SPD_RE.match(rest)
    if m is not None:
        rest = rest[7:]
        if m.group(1).isdigit():
            course = int(m.group(1)) or None
            if course is not None and course > 360:
                raise AprsError(f"course {course} out of range")
        if m.group(2).isdigit():
            speed = int(m.group(2)) * KMH_PER_KNOT
    alt, rest = _altitude_from_comment(rest)
    return AprsPosition(
        lat,
        lon,
        table.decode("ascii"),
        chr(code),
        "uncompressed",
        messaging,
        timestamp,
        course,
        speed,
        alt,
        decode_text(rest).strip(),
        None,
        amb,
        raw,
    )


def _decode_compressed(
    body: bytes, raw: bytes, messaging: bool, timestamp: datetime | None
) -> AprsPosition:
    if len(body) < 13:
        raise AprsError(f"compressed position truncated: {body!r}")
    table, code = body[0:1], body[9]
    if table not in _COMPRESSED_TABLES or not 33 <= code <= 126:
        raise AprsError(f"invalid symbol {body[0:1]!r}{body[9:10]!r}")
    lat = 90 - base91_decode(body[1:5]) / 380926
    lon = -180 + base91_decode(body[5:9]) / 190463
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise AprsError(f"compressed position out of range: {body[:13]!r}")
    c, s, t = body[10], body[11], body[12]
    course: int | None = None
    speed: float | None = None
    alt: float | None = None
    if c != 0x20:
        if not (33 <= c <= 123 and 33 <= s <= 123 and 33 <= t <= 123):
            raise AprsError(f"invalid compressed cs/type bytes {body[10:13]!r}")
        if ((t - 33) >> 3) & 0x03 == 0x02:
            alt = 1.002 ** ((c - 33) * 91 + (s - 33)) * M_PER_FOOT
        elif c <= 33 + 89:
            course = (c - 33) * 4 or 360
            speed = (1.08 ** (s - 33) - 1) * KMH_PER_KNOT
        # c == "{": pre-calculated radio range, not a position attribute: ignored.
    comment_alt, rest = _altitude_from_comment(body[13:])
    if alt is None:
        alt = comment_alt
    return AprsPosition(
        lat,
        lon,
        table.translate(_OVERLAY_TO_DIGIT).decode("ascii"),
        chr(code),
        "compressed",
        messaging,
        timestamp,
        course,
        speed,
        alt,
        decode_text(rest).strip(),
        None,
        0,
        raw,
    )


def check_symbol(symbol_table: str, symbol_code: str) -> None:
    if len(symbol_table) != 1 or symbol_table.encode("latin-1", "replace") not in _SYMBOL_TABLES:
        raise AprsError(f"symbol table must be '/', '\\\\', 0-9 or A-Z: {symbol_table!r}")
    if len(symbol_code) != 1 or not 33 <= ord(symbol_code) <= 126:
        raise AprsError(f"symbol code must be one printable ASCII character: {symbol_code!r}")


def _check_lat_lon(lat: float, lon: float) -> None:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # also rejects NaN
        raise AprsError(f"position out of range: {lat}, {lon}")


def format_dm(value: float, deg_digits: int, hemispheres: str) -> str:
    """Degrees as ``DDMM.hh`` (``deg_digits`` = 2) or ``DDDMM.hh`` plus the hemisphere letter."""
    hundredths = round(abs(value) * 6000)
    deg, rest = divmod(hundredths, 6000)
    return f"{deg:0{deg_digits}d}{rest // 100:02d}.{rest % 100:02d}{hemispheres[value < 0]}"


def speed_knots(speed_kmh: float, max_knots: int) -> int:
    knots = round(speed_kmh / KMH_PER_KNOT)
    if not 0 <= knots <= max_knots:
        raise AprsError(f"speed {speed_kmh} km/h outside 0..{max_knots} knots")
    return knots


def course_on_wire(course_deg: int | None) -> int:
    """0 is "unknown" on the wire: north travels as 360."""
    if course_deg is None:
        return 0
    if not 0 <= course_deg <= 360:
        raise AprsError(f"course must be 0..360 degrees: {course_deg}")
    return course_deg or 360


def _altitude_comment(alt_m: float) -> bytes:
    feet = round(alt_m / M_PER_FOOT)
    if not -99999 <= feet <= 999999:
        raise AprsError(f"altitude {alt_m} m does not fit /A=")
    return (f"/A=-{-feet:05d}" if feet < 0 else f"/A={feet:06d}").encode("ascii")


def _check_comment(comment: str, has_extension: bool) -> bytes:
    data = check_text(comment.strip(), "position comment", None)
    if _ALTITUDE_RE.search(data):
        raise AprsError("comment contains '/A=': pass the altitude as alt_m")
    if not has_extension and _CSE_SPD_RE.match(data):
        raise AprsError("comment would be read as course/speed")
    return data


def encode_position(
    lat: float,
    lon: float,
    *,
    symbol_table: str = "/",
    symbol_code: str = ">",
    messaging: bool = False,
    timestamp: datetime | None = None,
    timestamp_hms: bool = False,
    course_deg: int | None = None,
    speed_kmh: float | None = None,
    alt_m: float | None = None,
    comment: str = "",
    compressed: bool = False,
) -> bytes:
    """An uncompressed (default) or compressed position info field.

    The data type identifier follows ``timestamp`` and ``messaging`` (``!``, ``=``, ``/``, ``@``);
    the timestamp is ``DDHHMMz`` in UTC, or ``HHMMSSh`` with ``timestamp_hms``. Uncompressed: course
    and speed as ``CSE/SPD`` when either is given, altitude as ``/A=``. Compressed: ``cs`` carries
    course/speed when either is given (altitude then goes to ``/A=`` in the comment), else altitude
    when given and at least 1 ft; ``c`` = space otherwise. Raises :class:`AprsError` on values the
    format cannot carry.
    """
    _check_lat_lon(lat, lon)
    check_symbol(symbol_table, symbol_code)
    out = bytearray(_DTI[timestamp is not None, messaging])
    if timestamp is not None:
        out += encode_timestamp_hms(timestamp) if timestamp_hms else encode_timestamp_dhm(timestamp)
    has_motion = course_deg is not None or speed_kmh is not None
    if compressed:
        table = symbol_table.translate(_DIGIT_TO_OVERLAY).encode("ascii")
        y = min(round(380926 * (90 - lat)), 91**4 - 1)
        x = min(round(190463 * (180 + lon)), 91**4 - 1)
        out += table + base91_encode(y, 4) + base91_encode(x, 4) + symbol_code.encode("ascii")
        alt_in_cs = False
        if has_motion:
            c = round(course_on_wire(course_deg) / 4) % 90
            knots = (speed_kmh or 0.0) / KMH_PER_KNOT
            if not 0 <= knots <= 1.08**89 - 1:
                raise AprsError(f"speed {speed_kmh} km/h does not fit a compressed position")
            s = round(math.log(knots + 1) / math.log(1.08))
            out += bytes((33 + c, 33 + s, _T_COURSE_SPEED))
        elif alt_m is not None and alt_m >= M_PER_FOOT:
            cs = round(math.log(alt_m / M_PER_FOOT) / math.log(1.002))
            if cs > 91 * 91 - 1:
                raise AprsError(f"altitude {alt_m} m does not fit a compressed position")
            out += bytes((33 + cs // 91, 33 + cs % 91, _T_ALTITUDE))
            alt_in_cs = True
        else:
            out += b" sT"
        body = _check_comment(comment, True)
        if alt_m is not None and not alt_in_cs:
            out += _altitude_comment(alt_m)
        return bytes(out + body)
    out += format_dm(lat, 2, "NS").encode("ascii") + symbol_table.encode("ascii")
    out += format_dm(lon, 3, "EW").encode("ascii") + symbol_code.encode("ascii")
    if has_motion:
        course = course_on_wire(course_deg)
        knots = speed_knots(speed_kmh or 0.0, 999)
        out += f"{course:03d}/{knots:03d}".encode("ascii")
    body = _check_comment(comment, has_motion)
    if alt_m is not None:
        out += _altitude_comment(alt_m)
    return bytes(out + body)
