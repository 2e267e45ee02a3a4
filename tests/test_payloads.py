"""Payload builders agree with the contract and with plain json.dumps."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from gateway import payloads
from gateway.model import DeviceRef, Position, rfc3339

MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)


def test_rfc3339_is_utc_with_milliseconds() -> None:
    moment = datetime(2026, 11, 28, 8, 1, 2, 345678, tzinfo=timezone(timedelta(hours=8)))
    assert rfc3339(moment) == "2026-11-28T00:01:02.345Z"
    assert rfc3339(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"


@given(
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    alt=st.none() | st.floats(-500, 20000),
    speed=st.none() | st.floats(0, 2000),
    course=st.none() | st.floats(0, 359.9),
    sats=st.none() | st.integers(0, 99),
    hdop=st.none() | st.floats(0, 99.9),
    fix_time=MOMENTS,
)
def test_position_payload_is_the_json_it_claims(
    lat: float,
    lon: float,
    alt: float | None,
    speed: float | None,
    course: float | None,
    sats: int | None,
    hdop: float | None,
    fix_time: datetime,
) -> None:
    pos = Position(
        DeviceRef("gps-1"), lat, lon, fix_time, fix_time, "nmea", alt, speed, course, sats, hdop
    )
    body = json.loads(payloads.position(pos))
    assert math.isclose(body["lat"], lat, abs_tol=1e-7)
    assert math.isclose(body["lon"], lon, abs_tol=1e-7)
    for key, value in (("alt_m", alt), ("speed_kmh", speed), ("course_deg", course)):
        if value is None:
            assert key not in body
        else:
            assert math.isclose(body[key], value, abs_tol=0.06)
    assert body.get("satellites") == sats
    assert body["fix_time"] == rfc3339(fix_time)
    assert body["source"] == "nmea"
    assert body["link"] == "gps-1"
