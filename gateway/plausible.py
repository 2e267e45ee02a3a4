"""The plausibility check every decoded position goes through before it is published.

One filter for every protocol (Traccar runs such a filter on every decoded position). Values seen
in the wild inside sentences with valid checksums: 1.852e9 km/h, course 720°, altitude 1e9 m,
99,999 satellites, HDOP -5, fix times in 1970, 2070 and 9999. ``check`` never raises for any
number (NaN, ±inf, huge, negative, ``int`` or ``float``) or any ``datetime`` (naive, aware, year 1
or 9999).

The position is **not published** (``Verdict.position is None``, exactly one reason) when

* ``lat``: latitude is not a finite number in -90..90;
* ``lon``: longitude is not a finite number in -180..180;
* ``null_island``: lat and lon are both exactly 0, the value trackers without a fix send (the
  Gulf of Guinea spot is open sea; a unit really standing there is not worth the false positives);
* ``fix_future``: the fix time is more than ``MAX_FUTURE_S`` ahead of the gateway clock ``now``
  (clock drift and GPS week rollovers send fixes into the future; 10 minutes tolerates a slow
  gateway clock);
* ``fix_old``: a *live* position whose fix time is more than ``max_fix_age_s`` before ``now``
  (a back-filled or historic position, ``live=False``, only gets the future check).

An optional field outside its physical range, or not finite, is **dropped from the payload** (set
to None, the fix kept) and its reason is added: ``alt``, ``speed``, ``course``, ``satellites``,
``hdop`` (in that order). The ranges are the ``*_MIN``/``*_MAX`` constants below.

Normalisations (no reason added, the position is a new object):

* a course of exactly 360.0 becomes 0.0 (some receivers say 360 for north);
* a naive ``fix_time`` is taken as UTC (every protocol we speak gives UTC, and the model says so)
  and published with ``tzinfo=UTC``, so it is not later read as local time. A naive ``now`` is
  also taken as UTC. Aware non-UTC times are compared as the instants they are and left as they
  are.

The clean case (nothing wrong) returns the very same ``Position`` object with ``dropped == ()``:
a handful of comparisons and one ``timedelta``, on the hot path of every fix. ``clean`` is that
case alone, as a bool (no ``Verdict`` made): the gateway asks it first and ``check`` only when
it says no; ``check`` asks it first too, so the two cannot disagree. Times are compared
by subtracting two datetimes (a ``timedelta`` always holds the difference, even between year 1
and 9999), never by adding a ``timedelta`` to one, which can overflow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gateway.model import Position

__all__ = [
    "ALT_M_MAX",
    "ALT_M_MIN",
    "COURSE_DEG_MAX",
    "DEFAULT_MAX_FIX_AGE_S",
    "FIELD_REASONS",
    "HDOP_MAX",
    "LAT_MAX",
    "LON_MAX",
    "MAX_FUTURE_S",
    "POSITION_REASONS",
    "REASONS",
    "SATELLITES_MAX",
    "SPEED_KMH_MAX",
    "Verdict",
    "check",
    "clean",
]

# --- limits ---------------------------------------------------------------------------------------

MAX_FUTURE_S: Final = 600.0
"""A fix may be this far ahead of the gateway clock (receiver and gateway clocks disagree)."""
DEFAULT_MAX_FIX_AGE_S: Final = 86400.0
"""The spec's default for ``max_fix_age_s`` (one day); the gateway config carries the real one."""

LAT_MAX: Final = 90.0
"""Latitude is within -90..90 (the poles included)."""
LON_MAX: Final = 180.0
"""Longitude is within -180..180 (both antimeridian spellings included)."""

SPEED_KMH_MAX: Final = 2000.0
"""0..2000 km/h: faster than anything a field team rides, airliners included; civil GNSS receivers
stop giving fixes at 1,000 kn = 1,852 km/h anyway (CoCom export limit)."""
COURSE_DEG_MAX: Final = 360.0
"""Course over ground is within [0, 360) degrees; exactly 360.0 is normalised to 0.0."""
ALT_M_MIN: Final = -500.0
"""-500..20000 m: the lowest dry land is the Dead Sea shore at -430 m (plus a margin for an
ellipsoidal height or a poor vertical fix)..."""
ALT_M_MAX: Final = 20000.0
"""...and the highest is an airliner (cruise below 13 km, business jets 15.5 km); civil GNSS
receivers stop giving fixes above 18,000 m anyway (CoCom export limit)."""
SATELLITES_MAX: Final = 99
"""0..99 satellites used: a receiver tracking every constellation (GPS, GLONASS, Galileo, BeiDou,
QZSS, NavIC, SBAS) sees at most about 70 above the horizon, and NMEA gives the count two digits.
0 stays valid: a dead-reckoning fix uses no satellite."""
HDOP_MAX: Final = 50.0
"""0 < HDOP <= 50: a DOP is never 0 (about 0.5 with every satellite in view), above 20 it is
already rated "poor", and 99.9/99.99 is the NMEA "unknown" value some receivers send with a fix."""

# --- reasons --------------------------------------------------------------------------------------

POSITION_REASONS: Final = ("lat", "lon", "null_island", "fix_future", "fix_old")
"""Reasons a position is not published at all (a Verdict with position None has exactly one)."""
FIELD_REASONS: Final = ("alt", "speed", "course", "satellites", "hdop")
"""Reasons an optional field is dropped from the payload (the fix kept); in this order."""
REASONS: Final = POSITION_REASONS + FIELD_REASONS
"""Every reason word ``check`` can give (for counters set up ahead)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``check`` made of a position.

    ``position`` is what to publish, or None when nothing is to be published. ``dropped`` holds
    short fixed reason words (see ``REASONS``): exactly one when ``position`` is None, else one per
    optional field that was set to None (empty when the position was clean).
    """

    position: Position | None
    dropped: tuple[str, ...]


# Verdicts that drop the whole position are the same every time: made once.
_DROP_LAT: Final = Verdict(None, ("lat",))
_DROP_LON: Final = Verdict(None, ("lon",))
_DROP_NULL_ISLAND: Final = Verdict(None, ("null_island",))
_DROP_FUTURE: Final = Verdict(None, ("fix_future",))
_DROP_OLD: Final = Verdict(None, ("fix_old",))

_MAX_FUTURE: Final = timedelta(seconds=MAX_FUTURE_S)
_CLEAN: Final[tuple[str, ...]] = ()


def clean(position: Position, now: datetime, *, max_fix_age_s: float, live: bool = True) -> bool:
    """True when nothing is wrong with ``position``: ``check`` would return it unchanged,
    with no reason. The hot path of every fix, and no object made for it.

    False only means "ask ``check``": it is also False for what ``check`` merely normalises
    (a course of 360, a time that is not in ``datetime.UTC``).
    """
    # Range comparisons are False for NaN, so they reject non-finite values too.
    lat = position.lat
    lon = position.lon
    fix = position.fix_time
    if (
        not (-LAT_MAX <= lat <= LAT_MAX and -LON_MAX <= lon <= LON_MAX)
        or (lat == 0 and lon == 0)
        or fix.tzinfo is not UTC
        or now.tzinfo is not UTC
    ):
        return False
    ahead = fix - now
    if ahead > _MAX_FUTURE or (live and ahead.total_seconds() < -max_fix_age_s):
        return False
    return _fields_in_range(position)


def _fields_in_range(position: Position) -> bool:
    """Every optional field is None or within its physical range (NaN is not)."""
    alt = position.alt_m
    speed = position.speed_kmh
    course = position.course_deg
    satellites = position.satellites
    hdop = position.hdop
    return (
        (alt is None or ALT_M_MIN <= alt <= ALT_M_MAX)
        and (speed is None or 0 <= speed <= SPEED_KMH_MAX)
        and (course is None or 0 <= course < COURSE_DEG_MAX)
        and (satellites is None or 0 <= satellites <= SATELLITES_MAX)
        and (hdop is None or 0 < hdop <= HDOP_MAX)
    )


def check(position: Position, now: datetime, *, max_fix_age_s: float, live: bool = True) -> Verdict:  # noqa: PLR0911 - one early return per reason, on the hot path
    """Decide whether ``position`` is published, and with which fields (see the module doc).

    ``now`` is the gateway clock (aware UTC; naive is taken as UTC). A live position older than
    ``max_fix_age_s`` seconds is dropped; a NaN ``max_fix_age_s`` drops nothing for age, +inf
    neither. Never raises for any float/int values (NaN, inf, huge, negative), any datetime.
    """
    if clean(position, now, max_fix_age_s=max_fix_age_s, live=live):
        return Verdict(position, _CLEAN)
    # Position: range comparisons are False for NaN, so they reject non-finite values too.
    lat = position.lat
    if not -LAT_MAX <= lat <= LAT_MAX:
        return _DROP_LAT
    lon = position.lon
    if not -LON_MAX <= lon <= LON_MAX:
        return _DROP_LON
    if lat == 0 and lon == 0:
        return _DROP_NULL_ISLAND

    fix = position.fix_time
    naive_fix = False
    if fix.tzinfo is not UTC or now.tzinfo is not UTC:  # rare: only this path pays for it
        if fix.utcoffset() is None:
            fix = fix.replace(tzinfo=UTC)
            naive_fix = True
        if now.utcoffset() is None:
            now = now.replace(tzinfo=UTC)
    # Aware minus aware is always representable (at most ~3.65 million days): no overflow.
    ahead = fix - now
    if ahead > _MAX_FUTURE:
        return _DROP_FUTURE
    # Float seconds: no timedelta is built from max_fix_age_s (NaN or inf would raise there).
    if live and ahead.total_seconds() < -max_fix_age_s:
        return _DROP_OLD

    # Optional fields: None or within range, else the slow path below.
    if _fields_in_range(position) and not naive_fix:
        return Verdict(position, _CLEAN)
    return _repair(position, fix if naive_fix else None)


def _repair(position: Position, aware_fix: datetime | None) -> Verdict:
    """The slow path: drop the fields out of range, normalise course 360 and a naive fix time."""
    changes: dict[str, Any] = {}
    dropped: list[str] = []
    alt = position.alt_m
    if alt is not None and not ALT_M_MIN <= alt <= ALT_M_MAX:
        changes["alt_m"] = None
        dropped.append("alt")
    speed = position.speed_kmh
    if speed is not None and not 0 <= speed <= SPEED_KMH_MAX:
        changes["speed_kmh"] = None
        dropped.append("speed")
    course = position.course_deg
    if course is not None and not 0 <= course < COURSE_DEG_MAX:
        changes["course_deg"] = 0.0 if course == COURSE_DEG_MAX else None
        if course != COURSE_DEG_MAX:
            dropped.append("course")
    satellites = position.satellites
    if satellites is not None and not 0 <= satellites <= SATELLITES_MAX:
        changes["satellites"] = None
        dropped.append("satellites")
    hdop = position.hdop
    if hdop is not None and not 0 < hdop <= HDOP_MAX:
        changes["hdop"] = None
        dropped.append("hdop")
    if aware_fix is not None:
        changes["fix_time"] = aware_fix
    return Verdict(replace(position, **changes), tuple(dropped))
