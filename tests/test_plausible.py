"""The plausibility check: absurd values, boundaries, non-finite numbers, odd datetimes, NMEA."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import DeviceRef, Position
from gateway.plausible import (
    ALT_M_MAX,
    ALT_M_MIN,
    COURSE_DEG_MAX,
    DEFAULT_MAX_FIX_AGE_S,
    FIELD_REASONS,
    HDOP_MAX,
    LAT_MAX,
    LON_MAX,
    MAX_FUTURE_S,
    POSITION_REASONS,
    REASONS,
    SATELLITES_MAX,
    SPEED_KMH_MAX,
    Verdict,
    check,
)
from protocols.nmea import FixAssembler, NmeaError, RawSentence, SentenceSplitter, parse
from protocols.nmea import checksum as nmea_checksum

NOW = datetime(2025, 2, 25, 12, 0, 5, tzinfo=UTC)
DAY = DEFAULT_MAX_FIX_AGE_S
NAN, INF = math.nan, math.inf
NON_FINITE = (NAN, INF, -INF)
FIELDS = ("alt_m", "speed_kmh", "course_deg", "satellites", "hdop")
REASON_OF = dict(zip(FIELDS, FIELD_REASONS, strict=True))


def pos(**changes: Any) -> Position:
    """A clean position two seconds old with every optional field set; ``changes`` override."""
    base = Position(
        device=DeviceRef("gps1"),
        lat=48.1173,
        lon=11.5167,
        fix_time=NOW - timedelta(seconds=2),
        received_at=NOW,
        source="test",
        alt_m=545.4,
        speed_kmh=41.5,
        course_deg=84.4,
        satellites=8,
        hdop=0.9,
    )
    return replace(base, **changes)


def with_field(position: Position, field: str, value: object) -> Position:
    changes: dict[str, Any] = {field: value}
    return replace(position, **changes)


def run(position: Position, now: datetime = NOW, live: bool = True) -> Verdict:
    return check(position, now, max_fix_age_s=DAY, live=live)


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment


def assert_plausible(
    verdict: Verdict, original: Position, now: datetime, max_fix_age_s: float, live: bool
) -> None:
    """What ``check`` returns passes its own ranges, and its reasons tell what it did."""
    out = verdict.position
    if out is None:
        assert len(verdict.dropped) == 1
        assert verdict.dropped[0] in POSITION_REASONS
        return
    assert set(verdict.dropped) <= set(FIELD_REASONS)
    assert len(set(verdict.dropped)) == len(verdict.dropped)
    assert list(verdict.dropped) == [r for r in FIELD_REASONS if r in verdict.dropped]  # in order
    assert -LAT_MAX <= out.lat <= LAT_MAX
    assert -LON_MAX <= out.lon <= LON_MAX
    assert not (out.lat == 0 and out.lon == 0)
    assert out.fix_time.utcoffset() is not None
    ahead = out.fix_time - as_utc(now)
    assert ahead <= timedelta(seconds=MAX_FUTURE_S)
    if live:
        assert not (-ahead.total_seconds() > max_fix_age_s)
    assert out.alt_m is None or ALT_M_MIN <= out.alt_m <= ALT_M_MAX
    assert out.speed_kmh is None or 0 <= out.speed_kmh <= SPEED_KMH_MAX
    assert out.course_deg is None or 0 <= out.course_deg < COURSE_DEG_MAX
    assert out.satellites is None or 0 <= out.satellites <= SATELLITES_MAX
    assert out.hdop is None or 0 < out.hdop <= HDOP_MAX
    # Nothing else changed: a dropped field was set and is now None, the others are kept
    # (course 360 becomes 0; a naive fix time gets tzinfo=UTC).
    for name in FIELDS:
        before, after = getattr(original, name), getattr(out, name)
        if REASON_OF[name] in verdict.dropped:
            assert before is not None
            assert after is None
        elif name == "course_deg" and before == 360:
            assert after == 0.0
        else:
            assert after is before
    assert (out.lat, out.lon, out.device, out.source) == (
        original.lat,
        original.lon,
        original.device,
        original.source,
    )
    assert out.fix_time == as_utc(original.fix_time)
    clean = not verdict.dropped and original.course_deg != 360
    if clean and original.fix_time.utcoffset() is not None:
        assert out is original  # the hot path returns the very object it was given


# --- the clean path ---------------------------------------------------------------------------


def test_clean_position_is_returned_as_is() -> None:
    p = pos()
    verdict = run(p)
    assert verdict.position is p
    assert verdict.dropped == ()


def test_clean_position_without_optional_fields_is_returned_as_is() -> None:
    p = pos(alt_m=None, speed_kmh=None, course_deg=None, satellites=None, hdop=None)
    assert run(p) == Verdict(p, ())
    assert run(p).position is p


def test_reason_words_are_fixed() -> None:
    assert REASONS == POSITION_REASONS + FIELD_REASONS
    assert FIELD_REASONS == ("alt", "speed", "course", "satellites", "hdop")
    assert POSITION_REASONS == ("lat", "lon", "null_island", "fix_future", "fix_old")


# --- absurd values seen in the wild -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("speed_kmh", 1.852e9),
        ("course_deg", 720.0),
        ("alt_m", 1e9),
        ("satellites", 99_999),
        ("hdop", -5.0),
    ],
)
def test_absurd_field_is_dropped_and_the_fix_kept(field: str, value: float) -> None:
    original = pos(**{field: value})
    verdict = run(original)
    assert verdict.dropped == (REASON_OF[field],)
    assert verdict.position == with_field(original, field, None)
    assert_plausible(verdict, original, NOW, DAY, True)


def test_every_absurd_field_at_once_gives_every_reason_in_order() -> None:
    original = pos(alt_m=1e9, speed_kmh=1.852e9, course_deg=720.0, satellites=99_999, hdop=-5.0)
    verdict = run(original)
    assert verdict.dropped == ("alt", "speed", "course", "satellites", "hdop")
    assert verdict.position == replace(
        original, alt_m=None, speed_kmh=None, course_deg=None, satellites=None, hdop=None
    )


@pytest.mark.parametrize(
    ("fix_time", "live_reason", "historic_reason"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), "fix_old", None),
        (datetime(2070, 1, 1, 12, tzinfo=UTC), "fix_future", "fix_future"),
        (datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "fix_future", "fix_future"),
        (datetime(1, 1, 1, tzinfo=UTC), "fix_old", None),
        (datetime.min.replace(tzinfo=timezone(timedelta(hours=23, minutes=59))), "fix_old", None),
        (
            datetime.max.replace(tzinfo=timezone(-timedelta(hours=23, minutes=59))),
            "fix_future",
            "fix_future",
        ),
    ],
)
def test_absurd_fix_times(
    fix_time: datetime, live_reason: str, historic_reason: str | None
) -> None:
    original = pos(fix_time=fix_time)
    assert run(original) == Verdict(None, (live_reason,))
    historic = run(original, live=False)
    if historic_reason is None:
        assert historic.position is original  # live=False: only the future check
        assert historic.dropped == ()
    else:
        assert historic == Verdict(None, (historic_reason,))


def test_a_whole_position_reason_wins_over_field_reasons() -> None:
    p = pos(lat=NAN, lon=NAN, fix_time=datetime(9999, 1, 1, tzinfo=UTC), speed_kmh=1e9)
    assert run(p) == Verdict(None, ("lat",))
    assert run(replace(p, lat=1.0)) == Verdict(None, ("lon",))
    assert run(replace(p, lat=1.0, lon=1.0)) == Verdict(None, ("fix_future",))


# --- boundaries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon", "reason"),
    [
        (90.0, 11.5, None),
        (-90.0, 11.5, None),
        (90.000001, 11.5, "lat"),
        (-90.000001, 11.5, "lat"),
        (48.1, 180.0, None),
        (48.1, -180.0, None),
        (48.1, 180.000001, "lon"),
        (48.1, -180.000001, "lon"),
        (0.0, 0.0, "null_island"),
        (-0.0, 0.0, "null_island"),
        (0, 0, "null_island"),
        (0.0, 11.5, None),
        (48.1, 0.0, None),
        (1e-9, 0.0, None),
        (95, 11.5, "lat"),
        (10**400, 11.5, "lat"),
        (48.1, -(10**400), "lon"),
    ],
)
def test_lat_lon_boundaries(lat: float, lon: float, reason: str | None) -> None:
    original = pos(lat=lat, lon=lon)
    verdict = run(original)
    if reason is None:
        assert verdict.position is original
        assert verdict.dropped == ()
    else:
        assert verdict == Verdict(None, (reason,))


@pytest.mark.parametrize(
    ("ahead", "kept"),
    [
        (timedelta(seconds=MAX_FUTURE_S - 1), True),
        (timedelta(seconds=MAX_FUTURE_S), True),
        (timedelta(seconds=MAX_FUTURE_S, microseconds=1), False),
        (timedelta(seconds=MAX_FUTURE_S + 1), False),
    ],
)
def test_fix_ahead_of_the_clock(ahead: timedelta, kept: bool) -> None:
    for live in (True, False):
        original = pos(fix_time=NOW + ahead)
        verdict = run(original, live=live)
        assert verdict == (Verdict(original, ()) if kept else Verdict(None, ("fix_future",)))


@pytest.mark.parametrize(
    ("age", "kept"),
    [
        (timedelta(seconds=DAY - 1), True),
        (timedelta(seconds=DAY), True),
        (timedelta(seconds=DAY, microseconds=1), False),
        (timedelta(seconds=DAY + 1), False),
    ],
)
def test_fix_age(age: timedelta, kept: bool) -> None:
    original = pos(fix_time=NOW - age)
    assert run(original) == (Verdict(original, ()) if kept else Verdict(None, ("fix_old",)))
    assert run(original, live=False).position is original  # historic: no age limit


def test_max_fix_age_is_the_callers() -> None:
    original = pos(fix_time=NOW - timedelta(seconds=61))
    assert check(original, NOW, max_fix_age_s=60.0) == Verdict(None, ("fix_old",))
    assert check(original, NOW, max_fix_age_s=61).position is original
    assert check(original, NOW, max_fix_age_s=INF).position is original
    assert check(original, NOW, max_fix_age_s=NAN).position is original  # NaN limits nothing
    assert check(original, NOW, max_fix_age_s=10**400).position is original
    assert check(original, NOW, max_fix_age_s=-INF) == Verdict(None, ("fix_old",))


@pytest.mark.parametrize(
    ("field", "value", "kept"),
    [
        ("speed_kmh", 0.0, True),
        ("speed_kmh", SPEED_KMH_MAX, True),
        ("speed_kmh", SPEED_KMH_MAX + 0.001, False),
        ("speed_kmh", -0.001, False),
        ("course_deg", 0.0, True),
        ("course_deg", 359.999, True),
        ("course_deg", 360.001, False),
        ("course_deg", -0.001, False),
        ("course_deg", -90.0, False),
        ("alt_m", ALT_M_MIN, True),
        ("alt_m", -430.0, True),  # Dead Sea shore
        ("alt_m", ALT_M_MIN - 0.1, False),
        ("alt_m", 8848.9, True),  # Everest
        ("alt_m", ALT_M_MAX, True),
        ("alt_m", ALT_M_MAX + 0.1, False),
        ("satellites", 0, True),
        ("satellites", SATELLITES_MAX, True),
        ("satellites", SATELLITES_MAX + 1, False),
        ("satellites", -1, False),
        ("hdop", 0.0, False),
        ("hdop", 0.01, True),
        ("hdop", HDOP_MAX, True),
        ("hdop", HDOP_MAX + 0.01, False),
        ("hdop", 99.99, False),  # the NMEA "unknown" value
    ],
)
def test_field_boundaries(field: str, value: float, kept: bool) -> None:
    original = pos(**{field: value})
    verdict = run(original)
    if kept:
        assert verdict == Verdict(original, ())
        assert verdict.position is original
    else:
        assert verdict == Verdict(with_field(original, field, None), (REASON_OF[field],))


def test_course_360_is_normalised_to_north_without_a_reason() -> None:
    original = pos(course_deg=360.0)
    verdict = run(original)
    assert verdict == Verdict(replace(original, course_deg=0.0), ())
    assert_plausible(verdict, original, NOW, DAY, True)


# --- NaN and infinities -------------------------------------------------------------------------


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize(("field", "reason"), [("lat", "lat"), ("lon", "lon")])
def test_non_finite_coordinates_drop_the_position(field: str, reason: str, value: float) -> None:
    assert run(pos(**{field: value})) == Verdict(None, (reason,))


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("field", FIELDS)
def test_non_finite_fields_are_dropped(field: str, value: float) -> None:
    # satellites is an int by type; a driver that let a float through must not break the check.
    original = pos(**{field: cast(int, value) if field == "satellites" else value})
    verdict = run(original)
    assert verdict.dropped == (REASON_OF[field],)
    assert verdict.position == with_field(original, field, None)
    assert_plausible(verdict, original, NOW, DAY, True)


# --- naive and odd datetimes --------------------------------------------------------------------


def test_naive_fix_time_is_taken_as_utc_and_published_aware() -> None:
    naive = (NOW - timedelta(seconds=2)).replace(tzinfo=None)
    original = pos(fix_time=naive)
    verdict = run(original)
    assert verdict.dropped == ()
    assert verdict.position == replace(original, fix_time=naive.replace(tzinfo=UTC))
    assert verdict.position is not None
    assert verdict.position.fix_time.tzinfo is UTC
    assert_plausible(verdict, original, NOW, DAY, True)


def test_naive_fix_time_with_a_dropped_field() -> None:
    original = pos(fix_time=NOW.replace(tzinfo=None), hdop=-5.0)
    verdict = run(original)
    assert verdict == Verdict(replace(original, fix_time=NOW, hdop=None), ("hdop",))


def test_naive_times_are_compared_as_utc() -> None:
    naive_now = NOW.replace(tzinfo=None)
    assert run(pos(fix_time=naive_now + timedelta(minutes=11))) == Verdict(None, ("fix_future",))
    assert run(pos(fix_time=naive_now - timedelta(days=2))) == Verdict(None, ("fix_old",))
    aware = pos(fix_time=NOW - timedelta(minutes=1))
    assert run(aware, now=naive_now).position is aware
    assert run(pos(fix_time=NOW + timedelta(hours=1)), now=naive_now).dropped == ("fix_future",)
    both_naive = pos(fix_time=naive_now)
    assert run(both_naive, now=naive_now).position == replace(both_naive, fix_time=NOW)


def test_aware_non_utc_times_are_compared_as_instants_and_kept() -> None:
    plus2 = timezone(timedelta(hours=2))
    original = pos(fix_time=NOW.astimezone(plus2))  # same instant, other zone
    verdict = run(original)
    assert verdict.position is original
    # The wall clock says 12:00 but in +02:00 that is 10:00 UTC: two hours old, kept.
    assert run(pos(fix_time=NOW.replace(tzinfo=plus2))).dropped == ()
    # 12:00 at -05:00 is 17:00 UTC: five hours ahead.
    assert run(pos(fix_time=NOW.replace(tzinfo=timezone(timedelta(hours=-5))))).dropped == (
        "fix_future",
    )
    assert run(original, now=NOW.astimezone(timezone(timedelta(hours=-7)))).position is original


@pytest.mark.parametrize(
    "now",
    [
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
        datetime.min,
        datetime.max,
        datetime.min.replace(tzinfo=timezone(timedelta(hours=23, minutes=59))),
        datetime.max.replace(tzinfo=timezone(-timedelta(hours=23, minutes=59))),
    ],
)
@pytest.mark.parametrize(
    "fix_time",
    [
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
        datetime.min,
        datetime.max,
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-23, minutes=-59))),
    ],
)
@pytest.mark.parametrize("live", [True, False])
def test_extreme_clocks_never_raise(now: datetime, fix_time: datetime, live: bool) -> None:
    original = pos(fix_time=fix_time)
    for max_age in (DAY, INF, NAN, 0.0, -1.0, 10**400):
        assert_plausible(
            check(original, now, max_fix_age_s=max_age, live=live), original, now, max_age, live
        )


# --- any input ----------------------------------------------------------------------------------

ZONES: st.SearchStrategy[tzinfo] = st.one_of(
    st.just(UTC),
    st.builds(
        timezone,
        st.timedeltas(
            min_value=-timedelta(hours=23, minutes=59, seconds=59),
            max_value=timedelta(hours=23, minutes=59, seconds=59),
        ),
    ),
)
ANY_TIME = st.datetimes() | st.datetimes(timezones=ZONES)  # naive or aware
NUMBERS: st.SearchStrategy[float] = st.one_of(
    st.floats(),  # NaN and infinities included
    st.integers(),
    st.sampled_from([0.0, -0.0, 90.0, -90.0, 180.0, -180.0, 360.0, 99.99, 1e308, -1e308, 10**400]),
)


def numbers_within(low: float, high: float) -> st.SearchStrategy[float]:
    """Mostly plausible values (so the later checks are reached), sometimes anything."""
    return st.one_of(st.floats(low, high), NUMBERS)


@st.composite
def clocks(draw: st.DrawFn) -> tuple[datetime, datetime]:
    """(fix_time, now): anything at all, or a fix near a recent clock in any zone."""
    if draw(st.booleans()):
        return draw(ANY_TIME), draw(ANY_TIME)
    now = draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)))
    fix = now + draw(st.timedeltas(-timedelta(days=3), timedelta(days=3)))
    now_zone, fix_zone = draw(st.none() | ZONES), draw(st.none() | ZONES)
    return fix.replace(tzinfo=fix_zone), now.replace(tzinfo=now_zone)


@settings(max_examples=500, deadline=None)
@given(
    lat=numbers_within(-95, 95),
    lon=numbers_within(-185, 185),
    times=clocks(),
    alt=st.none() | numbers_within(-600, 21000),
    speed=st.none() | numbers_within(-10, 2100),
    course=st.none() | numbers_within(-10, 370),
    satellites=st.none() | st.integers() | st.integers(-2, 110),
    hdop=st.none() | numbers_within(-1, 100),
    max_age=st.one_of(st.just(DAY), st.floats(), st.integers()),
    live=st.booleans(),
)
def test_check_never_raises_and_passes_its_own_ranges(
    lat: float,
    lon: float,
    times: tuple[datetime, datetime],
    alt: float | None,
    speed: float | None,
    course: float | None,
    satellites: int | None,
    hdop: float | None,
    max_age: float,
    live: bool,
) -> None:
    fix_time, now = times
    original = Position(
        device=DeviceRef("any", "x"),
        lat=lat,
        lon=lon,
        fix_time=fix_time,
        received_at=now,
        source="hypothesis",
        alt_m=alt,
        speed_kmh=speed,
        course_deg=course,
        satellites=satellites,
        hdop=hdop,
    )
    verdict = check(original, now, max_fix_age_s=max_age, live=live)
    assert_plausible(verdict, original, now, max_age, live)


# --- through the project's own NMEA codec -------------------------------------------------------


def sentence(body: str) -> bytes:
    """``$body*hh\\r\\n`` with a valid checksum: the XOR of the bytes between ``$`` and ``*``."""
    xor = 0
    for byte in body.encode("ascii"):
        xor ^= byte
    assert xor == nmea_checksum(body.encode("ascii"))
    return f"${body}*{xor:02X}\r\n".encode("ascii")


def through_nmea(bodies: list[str]) -> tuple[list[Verdict], list[str]]:
    """Frame, parse and assemble like the NMEA driver, then check; also the codec's refusals."""
    splitter = SentenceSplitter(max_line_bytes=120)
    assembler = FixAssembler()
    fixes = []
    refused: list[str] = []
    for body in bodies:
        for item in splitter.feed(sentence(body)):
            assert isinstance(item, RawSentence), item  # the checksums are valid
            try:
                message = parse(item)
            except NmeaError as exc:
                refused.append(str(exc))
                continue
            assert message is not None
            if (fix := assembler.feed(message)) is not None:
                fixes.append(fix)
    if (fix := assembler.flush()) is not None:
        fixes.append(fix)
    verdicts = []
    for fix in fixes:
        position = Position(
            device=DeviceRef("gps1"),
            lat=fix.lat,
            lon=fix.lon,
            fix_time=fix.fix_time,
            received_at=NOW,
            source="nmea",
            alt_m=fix.alt_m,
            speed_kmh=fix.speed_kmh,
            course_deg=fix.course_deg,
            satellites=fix.satellites,
            hdop=fix.hdop,
        )
        verdict = check(position, NOW, max_fix_age_s=DAY)
        assert_plausible(verdict, position, NOW, DAY, True)
        verdicts.append(verdict)
    return verdicts, refused


POS = "4807.038,N,01131.000,E"


def test_absurd_gga_and_rmc_values_with_valid_checksums() -> None:
    # GGA first (no date yet, so it waits), then the RMC of the same epoch completes it.
    verdicts, refused = through_nmea(
        [
            f"GPGGA,120000.00,{POS},1,99999,-5,1000000000,M,47.9,M,,",
            f"GPRMC,120000.00,A,{POS},999999999,720,250225,,,A",
        ]
    )
    assert refused == []
    (verdict,) = verdicts
    assert verdict.dropped == ("alt", "speed", "course", "satellites", "hdop")
    assert verdict.position is not None
    assert verdict.position.lat == pytest.approx(48.1173)
    assert verdict.position.fix_time == datetime(2025, 2, 25, 12, 0, tzinfo=UTC)


def test_absurd_vtg_values_with_valid_checksums() -> None:
    verdicts, refused = through_nmea(
        [
            f"GPGGA,120000.00,{POS},1,1e5,0.0,-100000,M,47.9,M,,",
            "GPVTG,720,T,,M,999999999,N,1e9,K,A",
            f"GPRMC,120000.00,A,{POS},,,250225,,,A",
        ]
    )
    assert refused == []
    assert [v.dropped for v in verdicts] == [("alt", "speed", "course", "satellites", "hdop")]


@pytest.mark.parametrize(
    ("bodies", "reason"),
    [
        ([f"GPRMC,120000.00,A,{POS},0.0,0.0,010170,,,A"], "fix_future"),  # yy 70 is 2070
        ([f"GPRMC,120000.00,A,{POS},0.0,0.0,,,,A", "GPZDA,120000.00,01,01,1970,00,00"], "fix_old"),
        ([f"GPRMC,120000.00,A,{POS},0.0,0.0,,,,A", "GPZDA,120000.00,31,12,9999,,"], "fix_future"),
        ([f"GPRMC,120000.00,A,{POS},0.0,0.0,,,,A", "GPZDA,120000.00,01,01,0001,,"], "fix_old"),
        (["GPRMC,120000.00,A,0000.000,N,00000.000,E,0.0,0.0,250225,,,A"], "null_island"),
    ],
)
def test_implausible_nmea_positions_are_not_published(bodies: list[str], reason: str) -> None:
    verdicts, refused = through_nmea(bodies)
    assert refused == []
    assert verdicts == [Verdict(None, (reason,))]


@pytest.mark.parametrize(
    "bodies",
    [
        [f"GPRMC,120000.00,A,{POS},nan,0.0,250225,,,A"],
        [f"GPRMC,120000.00,A,{POS},inf,-inf,250225,,,A"],
        [f"GPRMC,120000.00,A,{POS},1e400,0.0,250225,,,A"],
        [
            f"GPGGA,120000.00,{POS},1,08,NaN,Infinity,M,47.9,M,,",
            f"GPRMC,120000.00,A,{POS},,,250225,,,A",
        ],
        [
            f"GPGGA,120000.00,{POS},1,-1,1.0,5.0,M,47.9,M,,",
            f"GPRMC,120000.00,A,{POS},-5,-90,250225,,,A",
        ],
        ["GPRMC,120000.00,A,9100.000,N,01131.000,E,0.0,0.0,250225,,,A"],
        ["GPRMC,120000.00,A,4807.038,N,18100.000,E,0.0,0.0,250225,,,A"],
        ["GPRMC,120000.00,A,-4807.038,N,01131.000,E,0.0,0.0,250225,,,A"],
        [f"GPRMC,120000.00,A,{POS},0.0,0.0,,,,A", "GPZDA,120000.00,01,01,10000,,"],
        [f"GPRMC,120000.00,A,{POS},0.0,0.0,,,,A", "GPZDA,120000.00,01,01,0000,,"],
    ],
)
def test_nothing_implausible_survives_the_nmea_path(bodies: list[str]) -> None:
    """Whether the codec refuses a value (NmeaError) or check() drops it, none is published."""
    verdicts, refused = through_nmea(bodies)  # through_nmea asserts every verdict is plausible
    assert refused or verdicts
