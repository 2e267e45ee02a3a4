"""Typed NMEA sentences: ``parse(RawSentence) -> Message | None``.

Values are converted once, here: latitude/longitude to signed decimal degrees, empty fields to None,
times of day to ``datetime.time``, dates to ``datetime.date``. A field that is present but cannot be
read raises ``NmeaError`` (and nothing else does). Types we do not handle, proprietary sentences
included, give None.

Leap second: ``235960`` cannot be a ``datetime.time``; it is read as 23:59:59.999999 so that it
sorts last in its minute and stays distinct from ``235959.xx``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time
from math import isfinite as _isfinite
from typing import Final

from protocols.nmea.framing import NmeaError, RawSentence
from protocols.nmea.records import positional_constructor

__all__ = [
    "GGA",
    "GLL",
    "GNS",
    "GSA",
    "GSV",
    "RMC",
    "TXT",
    "VTG",
    "ZDA",
    "Message",
    "SatelliteInView",
    "parse",
]

Fields = tuple[str, ...]


# --- field readers --------------------------------------------------------------------------------
# Each takes the raw field text; "" means "no data" and gives None.


def _float(text: str) -> float | None:
    if not text:
        return None
    value = float(text)  # ValueError is turned into NmeaError by parse()
    if not _isfinite(value):
        raise ValueError(f"non-finite number {text!r}")
    return value


def _int(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        # Some receivers write integers as "12.0"; accept an integral decimal, nothing else.
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"not an integer: {text!r}")
        return int(value)
    return int(text)


def _str(text: str) -> str | None:
    return text or None


# Small memo caches for the fields every sentence of an epoch repeats (RMC and GGA carry the same
# time of day and position text): the first sentence converts, the next ones look it up. Only
# successful conversions are stored, keyed by the exact text, so results and errors are unchanged;
# a cache is simply emptied when full, which keeps it bounded whatever the input.
_CACHE_MAX: Final = 64
_TIME_CACHE: Final[dict[str, time]] = {}
_DATE_CACHE: Final[dict[str, date]] = {}
_LAT_CACHE: Final[dict[str, float]] = {}  # "ddmm.mmmm" -> unsigned degrees
_LON_CACHE: Final[dict[str, float]] = {}  # "dddmm.mmmm" -> unsigned degrees


def _time(text: str) -> time | None:
    """``hhmmss[.s...]`` -> time; second 60 (leap second) -> 59.999999."""
    if not text:
        return None
    cached = _TIME_CACHE.get(text)
    if cached is not None:
        return cached
    if len(text) < 6 or not text[:6].isdigit():
        raise ValueError(f"bad time of day {text!r}")
    hour, minute, second = int(text[0:2]), int(text[2:4]), int(text[4:6])
    micro = 0
    if len(text) > 6:
        frac = text[7:]
        if text[6] != "." or (frac and not frac.isdigit()):
            raise ValueError(f"bad time of day {text!r}")
        micro = int((frac + "000000")[:6])
    if second == 60:
        second, micro = 59, 999_999
    result = time(hour, minute, second, micro)  # ValueError on 25:00 etc.
    if len(_TIME_CACHE) >= _CACHE_MAX:
        _TIME_CACHE.clear()
    _TIME_CACHE[text] = result
    return result


def _year2(yy: int) -> int:
    # Two-digit years: GPS started in 1980, so 80..99 are 19xx and 00..79 are 20xx.
    return 1900 + yy if yy >= 80 else 2000 + yy


def _date6(text: str) -> date | None:
    """``ddmmyy`` -> date."""
    if not text:
        return None
    cached = _DATE_CACHE.get(text)
    if cached is not None:
        return cached
    if len(text) != 6 or not text.isdigit():
        raise ValueError(f"bad date {text!r}")
    result = date(_year2(int(text[4:6])), int(text[2:4]), int(text[0:2]))
    if len(_DATE_CACHE) >= _CACHE_MAX:
        _DATE_CACHE.clear()
    _DATE_CACHE[text] = result
    return result


def _degrees(value_text: str, max_degrees: int, cache: dict[str, float]) -> float:
    """``[d]ddmm.mmmm`` -> unsigned decimal degrees, at most ``max_degrees`` (memoised)."""
    cached = cache.get(value_text)
    if cached is not None:
        return cached
    dot = value_text.find(".")
    if dot < 0:
        dot = len(value_text)
    if dot < 3 or not value_text[: dot - 2].isdigit():
        raise ValueError(f"bad coordinate {value_text!r}")
    degrees = int(value_text[: dot - 2])
    minutes = float(value_text[dot - 2 :])
    if not 0.0 <= minutes < 60.0:
        raise ValueError(f"bad minutes in {value_text!r}")
    result = degrees + minutes / 60.0
    if result > max_degrees:
        raise ValueError(f"coordinate out of range {value_text!r}")
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[value_text] = result
    return result


def _coordinate(
    value_text: str,
    hemisphere: str,
    hemispheres: tuple[str, str, str],
    max_degrees: int,
    cache: dict[str, float],
) -> float | None:
    """A coordinate field pair -> signed decimal degrees; None when either part is empty.

    ``hemispheres`` is (positive, negative, axis name): ("N", "S", "latitude").
    """
    positive, negative, axis = hemispheres
    if hemisphere == positive:
        sign = 1.0
    elif hemisphere == negative:
        sign = -1.0
    elif hemisphere:
        raise ValueError(f"bad {axis} hemisphere {hemisphere!r}")
    else:
        if value_text:
            raise ValueError(f"coordinate {value_text!r} without hemisphere")
        return None
    if not value_text:
        return None
    return sign * _degrees(value_text, max_degrees, cache)


_LATITUDE: Final = ("N", "S", "latitude")
_LONGITUDE: Final = ("E", "W", "longitude")


def _lat(value_text: str, hemisphere: str) -> float | None:
    # Fast path: text converted before (this epoch's other sentence, a receiver standing
    # still) with a valid hemisphere; anything else takes the checked path.
    cached = _LAT_CACHE.get(value_text)
    if cached is not None:
        if hemisphere == "N":
            return cached
        if hemisphere == "S":
            return -cached
    return _coordinate(value_text, hemisphere, _LATITUDE, 90, _LAT_CACHE)


def _lon(value_text: str, hemisphere: str) -> float | None:
    cached = _LON_CACHE.get(value_text)
    if cached is not None:
        if hemisphere == "E":
            return cached
        if hemisphere == "W":
            return -cached
    return _coordinate(value_text, hemisphere, _LONGITUDE, 180, _LON_CACHE)


def _at(fields: Fields, index: int) -> str:
    """Optional trailing field: "" when the sentence is too short to carry it."""
    return fields[index] if index < len(fields) else ""


def _need(fields: Fields, count: int, kind: str) -> None:
    if len(fields) < count:
        raise ValueError(f"{kind} needs {count} fields, got {len(fields)}")


# --- messages -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RMC:
    """Recommended minimum: time, status, position, speed, course, date."""

    talker: str
    time: time | None
    status: str | None  # "A" valid, "V" void
    lat: float | None
    lon: float | None
    speed_knots: float | None
    course_deg: float | None
    date: date | None
    mag_var_deg: float | None  # east positive
    mode: str | None  # FAA mode (NMEA 2.3+): A D E F M N P R S
    nav_status: str | None  # NMEA 4.1+

    @property
    def has_fix(self) -> bool:
        """Status A and an FAA mode (which "dominates" the status) other than N, with a position."""
        return (
            self.status == "A"
            and self.mode != "N"
            and self.lat is not None
            and self.lon is not None
        )


@dataclass(frozen=True, slots=True)
class GGA:
    """Fix data: time, position, quality, satellites, HDOP, altitude."""

    talker: str
    time: time | None
    lat: float | None
    lon: float | None
    quality: int | None  # 0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning...
    satellites: int | None
    hdop: float | None
    altitude_m: float | None  # above mean sea level
    geoid_sep_m: float | None
    dgps_age_s: float | None
    dgps_station: str | None

    @property
    def has_fix(self) -> bool:
        return bool(self.quality) and self.lat is not None and self.lon is not None


@dataclass(frozen=True, slots=True)
class GLL:
    """Geographic position: position, time, status, FAA mode."""

    talker: str
    lat: float | None
    lon: float | None
    time: time | None
    status: str | None
    mode: str | None

    @property
    def has_fix(self) -> bool:
        return (
            self.status == "A"
            and self.mode != "N"
            and self.lat is not None
            and self.lon is not None
        )


@dataclass(frozen=True, slots=True)
class VTG:
    """Course and speed over ground (3.01+ form with T/M/N/K markers, or the older 4-field form)."""

    talker: str
    course_true_deg: float | None
    course_mag_deg: float | None
    speed_knots: float | None
    speed_kmh: float | None
    mode: str | None


@dataclass(frozen=True, slots=True)
class GSA:
    """DOP and active satellites; multi-GNSS receivers send one per constellation."""

    talker: str
    mode: str | None  # M manual, A automatic
    fix_type: int | None  # 1 none, 2 2D, 3 3D
    prns: tuple[int, ...]
    pdop: float | None
    hdop: float | None
    vdop: float | None
    system_id: int | None  # NMEA 4.10+: 1 GPS, 2 GLONASS, 3 Galileo, 4 BeiDou, 5 QZSS, 6 NavIC


@dataclass(frozen=True, slots=True)
class SatelliteInView:
    prn: int
    elevation_deg: int | None
    azimuth_deg: int | None
    snr_db: int | None


@dataclass(frozen=True, slots=True)
class GSV:
    """Satellites in view, one part of a multi-sentence group."""

    talker: str
    total_msgs: int
    msg_num: int
    sats_in_view: int | None
    satellites: tuple[SatelliteInView, ...]
    signal_id: int | None  # NMEA 4.10+


@dataclass(frozen=True, slots=True)
class ZDA:
    """Time and date (the only standard sentence with a 4-digit year)."""

    talker: str
    time: time | None
    day: int | None
    month: int | None
    year: int | None
    zone_hours: int | None
    zone_minutes: int | None

    @property
    def date(self) -> date | None:
        if self.day is None or self.month is None or self.year is None:
            return None
        return date(self.year, self.month, self.day)


@dataclass(frozen=True, slots=True)
class TXT:
    """Text transmission; ``text`` keeps every comma of the payload."""

    talker: str
    total: int | None
    number: int | None
    text_id: int | None  # 00 error, 01 warning, 02 notice, 07 user
    text: str


@dataclass(frozen=True, slots=True)
class GNS:
    """Multi-GNSS fix data with one mode character per constellation (e.g. ``AANN``)."""

    talker: str
    time: time | None
    lat: float | None
    lon: float | None
    mode: str | None
    satellites: int | None
    hdop: float | None
    altitude_m: float | None
    geoid_sep_m: float | None
    dgps_age_s: float | None
    dgps_station: str | None
    nav_status: str | None

    @property
    def has_fix(self) -> bool:
        return (
            self.mode is not None
            and self.mode.strip("N") != ""
            and self.lat is not None
            and self.lon is not None
        )


Message = RMC | GGA | GLL | VTG | GSA | GSV | ZDA | TXT | GNS

# Most of the traffic, built by the fast constructor (the same objects, see records.py).
_new_rmc: Final = positional_constructor(RMC)
_new_gga: Final = positional_constructor(GGA)


# --- decoders (field positions: docs/protocols/nmea.md section 2) ---------------------------------


# RMC and GGA are most of the traffic: their optional trailing fields are read after padding the
# fields once to full length (one tuple concatenation instead of a bounds check per field).
_PAD: Final = ("",) * 14


def _rmc(talker: str, f: Fields) -> RMC:
    if len(f) < 13:
        _need(f, 9, "RMC")
        f += _PAD[: 13 - len(f)]
    var = _float(f[9])
    if var is not None and f[10] == "W":
        var = -var
    return _new_rmc(
        talker,
        _time(f[0]),
        f[1] or None,
        _lat(f[2], f[3]),
        _lon(f[4], f[5]),
        _float(f[6]),
        _float(f[7]),
        _date6(f[8]),
        var,
        f[11] or None,
        f[12] or None,
    )


def _gga(talker: str, f: Fields) -> GGA:
    if len(f) < 14:
        _need(f, 9, "GGA")
        f += _PAD[: 14 - len(f)]
    return _new_gga(
        talker,
        _time(f[0]),
        _lat(f[1], f[2]),
        _lon(f[3], f[4]),
        _int(f[5]),
        _int(f[6]),
        _float(f[7]),
        _float(f[8]),
        _float(f[10]),
        _float(f[12]),
        f[13] or None,
    )


def _gll(talker: str, f: Fields) -> GLL:
    _need(f, 4, "GLL")
    return GLL(
        talker,
        _lat(f[0], f[1]),
        _lon(f[2], f[3]),
        _time(_at(f, 4)),
        _str(_at(f, 5)),
        _str(_at(f, 6)),
    )


def _vtg(talker: str, f: Fields) -> VTG:
    if len(f) >= 8 and f[1] in ("T", ""):
        # 3.01+: course,T,course,M,knots,N,kmh,K[,mode]
        return VTG(talker, _float(f[0]), _float(f[2]), _float(f[4]), _float(f[6]), _str(_at(f, 8)))
    _need(f, 4, "VTG")  # older form: course true, course magnetic, knots, km/h
    return VTG(talker, _float(f[0]), _float(f[1]), _float(f[2]), _float(f[3]), None)


def _gsa(talker: str, f: Fields) -> GSA:
    _need(f, 17, "GSA")
    prns = tuple(int(p) for p in f[2:14] if p)
    # Field 18 is the 4.10 system ID; a SiRF-TriG puts a float there (gpsd beidou-bd.log): ignored.
    system = _at(f, 17)
    return GSA(
        talker,
        _str(f[0]),
        _int(f[1]),
        prns,
        _float(f[14]),
        _float(f[15]),
        _float(f[16]),
        int(system) if system.isdigit() else None,
    )


def _gsv(talker: str, f: Fields) -> GSV:
    _need(f, 3, "GSV")
    # 3 header fields, then 4 per satellite, then (4.10+) one signal ID: the count modulo 4 tells.
    # With fewer than 4 satellites the group is short, so the signal ID must not be read as a PRN.
    body = len(f) - 3
    signal_id: int | None = None
    if body % 4 == 1:
        signal_id = int(f[-1], 16) if f[-1] else None  # one hex digit in 4.11 (ST sends "B")
        body -= 1
    elif body % 4:
        raise ValueError(f"GSV with {len(f)} fields")
    sats = []
    for i in range(3, 3 + body, 4):
        prn = _int(f[i])
        if prn is None:
            continue  # padding quad (some receivers always send four)
        sats.append(SatelliteInView(prn, _int(f[i + 1]), _int(f[i + 2]), _int(f[i + 3])))
    total, num = _int(f[0]), _int(f[1])
    if total is None or num is None:
        raise ValueError("GSV without message count")
    return GSV(talker, total, num, _int(f[2]), tuple(sats), signal_id)


def _zda(talker: str, f: Fields) -> ZDA:
    _need(f, 4, "ZDA")
    zone = _at(f, 4)
    msg = ZDA(
        talker,
        _time(f[0]),
        _int(f[1]),
        _int(f[2]),
        _int(f[3]),
        int(zone) if zone else None,  # "+08", "-05", "00"
        _int(_at(f, 5)),
    )
    _ = msg.date  # validate day/month/year now (ValueError -> NmeaError)
    return msg


def _txt(talker: str, f: Fields) -> TXT:
    if len(f) >= 4:
        return TXT(talker, _int(f[0]), _int(f[1]), _int(f[2]), ",".join(f[3:]))
    # Non-standard short form ("$GPTXT,DEFAULT PVT CONFIGURATION", ST Teseo): all of it is text.
    return TXT(talker, None, None, None, ",".join(f))


def _gns(talker: str, f: Fields) -> GNS:
    _need(f, 12, "GNS")
    return GNS(
        talker,
        _time(f[0]),
        _lat(f[1], f[2]),
        _lon(f[3], f[4]),
        _str(f[5]),
        _int(f[6]),
        _float(f[7]),
        _float(f[8]),
        _float(f[9]),
        _float(f[10]),
        _str(f[11]),
        _str(_at(f, 12)),
    )


#: Schema: sentence type -> decoder. Talkers are metadata, any 2-character talker is accepted.
DECODERS: Final[dict[str, Callable[[str, Fields], Message]]] = {
    "RMC": _rmc,
    "GGA": _gga,
    "GLL": _gll,
    "VTG": _vtg,
    "GSA": _gsa,
    "GSV": _gsv,
    "ZDA": _zda,
    "TXT": _txt,
    "GNS": _gns,
}


def parse(raw: RawSentence) -> Message | None:
    """Decode a framed sentence: None for types we do not handle, ``NmeaError`` on a bad field."""
    talker = raw.talker
    if talker == "P":
        return None
    decoder = DECODERS.get(raw.kind)
    if decoder is None:
        return None
    try:
        return decoder(talker, raw.fields)
    except NmeaError:
        raise
    except (ValueError, IndexError, OverflowError) as exc:
        raise NmeaError(f"bad {talker}{raw.kind} sentence: {exc}") from exc
