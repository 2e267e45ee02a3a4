"""Assemble one position fix per receiver epoch from the sentences of that epoch (pure).

A receiver sends a burst of sentences per epoch (RMC, GGA, VTG, GSA, GSV, ...); those carrying a
time of day share it. ``FixAssembler.feed`` merges them and returns a ``Fix`` as soon as the epoch
is complete, which is when

* a position has arrived from RMC (or, for a receiver never seen to send RMC, from GGA/GNS/GLL),
* and, if this receiver has been seen to send GGA, this epoch's GGA has arrived too,
* and a date is known: from this epoch's valid RMC or ZDA, or carried forward from an earlier one
  (moved across midnight when the time of day wraps). A date is never invented.

Whichever of RMC and GGA comes second triggers the emit. If a sentence with another time of day
arrives before the epoch is complete, the previous epoch is emitted as it stands (if valid). An
epoch is emitted at most once. An epoch in which any sentence says "no fix" (RMC/GLL status V,
FAA mode N, GGA quality 0, GNS mode all N) is never emitted, nor one without a position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from protocols.nmea.records import positional_constructor
from protocols.nmea.sentences import GGA, GLL, GNS, GSA, GSV, RMC, TXT, VTG, ZDA, Message

__all__ = ["KMH_PER_KNOT", "Fix", "FixAssembler"]

KMH_PER_KNOT = 1.852
_HALF_DAY = timedelta(hours=12)

# Which sentence's position wins when several in one epoch carry one (RMC is the source of truth).
_RANK_RMC, _RANK_GGA, _RANK_GNS, _RANK_GLL = 4, 3, 2, 1


@dataclass(frozen=True, slots=True)
class Fix:
    """One position of one receiver epoch. ``fix_time`` is the receiver's UTC time (aware)."""

    fix_time: datetime
    lat: float
    lon: float
    alt_m: float | None
    speed_kmh: float | None
    course_deg: float | None
    satellites: int | None
    hdop: float | None
    talker: str


_new_fix: Final = positional_constructor(Fix)  # Fix(...), faster (see records.py)


class _Epoch:
    """What the sentences of one time of day said so far (mutable, private)."""

    __slots__ = (
        "alt_m",
        "course_deg",
        "date",
        "emitted",
        "has_gga",
        "has_rmc",
        "hdop",
        "lat",
        "lon",
        "rank",
        "satellites",
        "speed_kmh",
        "talker",
        "time",
        "void",
    )

    def __init__(self, time_of_day: time) -> None:
        self.time = time_of_day
        self.date: date | None = None
        self.lat: float | None = None
        self.lon: float | None = None
        self.rank = 0
        self.talker = ""
        self.alt_m: float | None = None
        self.speed_kmh: float | None = None
        self.course_deg: float | None = None
        self.satellites: int | None = None
        self.hdop: float | None = None
        self.has_rmc = False
        self.has_gga = False
        self.void = False
        self.emitted = False

    def position(self, lat: float | None, lon: float | None, rank: int, talker: str) -> None:
        if lat is not None and lon is not None and rank >= self.rank:
            self.lat, self.lon, self.rank, self.talker = lat, lon, rank, talker


# Sentence kinds the assembler uses, by exact type (one dict lookup instead of isinstance chains).
_VTG, _RMC, _GGA, _GNS, _GLL, _ZDA = range(6)
_KINDS: dict[type, int] = {VTG: _VTG, RMC: _RMC, GGA: _GGA, GNS: _GNS, GLL: _GLL, ZDA: _ZDA}
# Types parse() makes that carry nothing for a position: known at once, too.
_IGNORED: dict[type, None] = {GSA: None, GSV: None, TXT: None}
_TIMED = (RMC, GGA, GLL, GNS, ZDA)


def _kind_of(msg: Message) -> int | None:
    """The assembler's kind of ``msg``, or None for GSA, GSV, TXT (nothing for a position)."""
    kind = _KINDS.get(type(msg))
    if kind is None and type(msg) not in _IGNORED:
        # A subclass (never made by parse): classify it the slow way.
        for cls, cls_kind in _KINDS.items():
            if isinstance(msg, cls):
                return cls_kind
    return kind


class FixAssembler:
    """Feed parsed sentences of one receiver in order; get ``Fix`` values out (see module doc)."""

    __slots__ = ("_anchor_date", "_anchor_time", "_epoch", "_sends_gga", "_sends_rmc")

    def __init__(self) -> None:
        # Last known date, with the time of day it came with (combined only when it is needed).
        self._anchor_date: date | None = None
        self._anchor_time = time()
        self._epoch: _Epoch | None = None
        self._sends_rmc = False
        self._sends_gga = False

    def feed(self, msg: Message) -> Fix | None:
        """Merge one sentence; return the fix it completed (or the previous epoch's), else None."""
        kind = _kind_of(msg)
        if kind is None:
            return None  # GSA, GSV, TXT: nothing for a position
        if kind == _VTG:
            assert isinstance(msg, VTG)
            self._vtg(msg)
            return None
        assert isinstance(msg, _TIMED)
        if kind == _RMC:
            self._sends_rmc = True
        elif kind == _GGA:
            self._sends_gga = True
        msg_time = msg.time
        if msg_time is None:
            return None  # cannot be placed in an epoch

        out: Fix | None = None
        epoch = self._epoch
        if epoch is None or msg_time != epoch.time:
            out = self._close()  # epoch changed: emit the previous one if it is still pending
            epoch = self._epoch = _Epoch(msg_time)
        self._merge(epoch, kind, msg)
        # Complete: every sentence this receiver sends per epoch is in, and the epoch is valid.
        if (
            out is None
            and (epoch.has_rmc or not self._sends_rmc)
            and (epoch.has_gga or not self._sends_gga)
            and not epoch.emitted
            and not epoch.void
            and epoch.lat is not None
        ):
            fix_date = self._date_of(epoch)
            if fix_date is not None:
                out = self._emit(epoch, fix_date)
        # If the previous epoch was emitted just now and this one is complete already (rare), it
        # waits for its next sentence or the next epoch change: never two fixes from one call.
        return out

    def flush(self) -> Fix | None:
        """End of stream (or a gap): emit the pending epoch if it is valid, and forget it."""
        out = self._close()
        self._epoch = None
        return out

    # --- internals --------------------------------------------------------------------------------

    def _vtg(self, msg: VTG) -> None:
        # No time of day: belongs to the current epoch; fills speed/course when RMC had none.
        epoch = self._epoch
        if epoch is not None and not epoch.emitted:
            if epoch.speed_kmh is None:
                if msg.speed_kmh is not None:
                    epoch.speed_kmh = msg.speed_kmh
                elif msg.speed_knots is not None:
                    epoch.speed_kmh = msg.speed_knots * KMH_PER_KNOT
            if epoch.course_deg is None:
                epoch.course_deg = msg.course_true_deg

    def _merge(self, epoch: _Epoch, kind: int, msg: RMC | GGA | GLL | GNS | ZDA) -> None:  # noqa: PLR0912 - one branch per sentence kind reads best
        # ``kind`` is _kind_of(msg); the asserts tell the type checker (and cost next to nothing).
        if kind == _RMC:
            assert isinstance(msg, RMC)
            epoch.has_rmc = True
            # RMC.has_fix, inlined: status A, FAA mode not N, a position.
            lat, lon = msg.lat, msg.lon
            if msg.status != "A" or msg.mode == "N" or lat is None or lon is None:
                epoch.void = True
                return
            if epoch.rank <= _RANK_RMC:
                epoch.lat, epoch.lon, epoch.rank, epoch.talker = lat, lon, _RANK_RMC, msg.talker
            if msg.speed_knots is not None:
                epoch.speed_kmh = msg.speed_knots * KMH_PER_KNOT
            if msg.course_deg is not None:
                epoch.course_deg = msg.course_deg
            if msg.date is not None:
                epoch.date = msg.date
                self._anchor_date, self._anchor_time = msg.date, epoch.time
        elif kind == _GGA:
            assert isinstance(msg, GGA)
            epoch.has_gga = True
            # GGA.has_fix, inlined: a non-zero quality and a position.
            lat, lon = msg.lat, msg.lon
            if not msg.quality or lat is None or lon is None:
                epoch.void = True
                return
            if epoch.rank <= _RANK_GGA:
                epoch.lat, epoch.lon, epoch.rank, epoch.talker = lat, lon, _RANK_GGA, msg.talker
            epoch.alt_m = msg.altitude_m
            epoch.satellites = msg.satellites
            epoch.hdop = msg.hdop
        elif kind == _GNS:
            assert isinstance(msg, GNS)
            if not msg.has_fix:
                epoch.void = True
                return
            epoch.position(msg.lat, msg.lon, _RANK_GNS, msg.talker)
            if epoch.alt_m is None:
                epoch.alt_m = msg.altitude_m
            if epoch.satellites is None:
                epoch.satellites = msg.satellites
            if epoch.hdop is None:
                epoch.hdop = msg.hdop
        elif kind == _GLL:
            assert isinstance(msg, GLL)
            if not msg.has_fix:
                epoch.void = True
                return
            epoch.position(msg.lat, msg.lon, _RANK_GLL, msg.talker)
        else:
            assert isinstance(msg, ZDA)
            zda_date = msg.date
            if zda_date is not None:
                epoch.date = zda_date
                self._anchor_date, self._anchor_time = zda_date, epoch.time

    def _date_of(self, epoch: _Epoch) -> date | None:
        """This epoch's date, or the last known one moved across midnight if the time wrapped."""
        if epoch.date is not None:
            return epoch.date
        if self._anchor_date is None:
            return None
        anchor = datetime.combine(self._anchor_date, self._anchor_time)
        candidate = datetime.combine(self._anchor_date, epoch.time)
        if candidate - anchor < -_HALF_DAY:  # 23:59:59 -> 00:00:00: next day
            candidate += timedelta(days=1)
        elif candidate - anchor > _HALF_DAY:  # a late sentence from before midnight
            candidate -= timedelta(days=1)
        return candidate.date()

    def _close(self) -> Fix | None:
        epoch = self._epoch
        if epoch is not None and not epoch.emitted and not epoch.void and epoch.lat is not None:
            fix_date = self._date_of(epoch)
            if fix_date is not None:
                return self._emit(epoch, fix_date)
        return None

    def _emit(self, epoch: _Epoch, fix_date: date) -> Fix:
        assert epoch.lat is not None
        assert epoch.lon is not None
        epoch.emitted = True
        return _new_fix(
            datetime.combine(fix_date, epoch.time, tzinfo=UTC),
            epoch.lat,
            epoch.lon,
            epoch.alt_m,
            epoch.speed_kmh,
            epoch.course_deg,
            epoch.satellites,
            epoch.hdop,
            epoch.talker,
        )
