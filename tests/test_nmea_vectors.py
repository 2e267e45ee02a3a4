"""Real receiver captures (gpsd test/daemon logs) against gpsd's own decoding and pynmea2.

gpsd's ``.chk`` files interleave the input with its JSON reports. Oracle rules used here:

* every fix we emit at a time of day for which gpsd reported a timed TPV matches one of gpsd's TPV
  positions at that time of day (within 1e-6 deg). Dates are not compared: gpsd shifts pre-2019 logs
  by 1024 GPS weeks, the time of day is unaffected;
* a fix at a time of day gpsd did not time (gpsd waits for the end of its reporting cycle, we emit
  when the epoch is complete) must still be a position gpsd reported (untimed TPV) - at most one
  such per log;
* every time of day gpsd reported a position for is one we emitted a fix for.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pynmea2
import pytest

from protocols.nmea import (
    GGA,
    GSA,
    GSV,
    RMC,
    TXT,
    ZDA,
    Fix,
    FixAssembler,
    NmeaError,
    RawSentence,
    Rejected,
    SentenceSplitter,
    parse,
)

pytestmark = pytest.mark.vectors

LOGS = [
    "beidou-bd.log", "beidou-gb.log", "bu353-glonass.log", "furuno_gl_ga.log",
    "gp-320fw-2019-04-07-coldboot.log", "magellan-ec10.log", "navika-100-fix.log",
    "quectelLC79D.log", "st-teseo-liv4f.log", "tcp-test.log", "ublox-neo-m9n-nmea.log",
    "unicore-um621.log",
]  # fmt: skip

# Sentences with a good checksum and bad fields, documented in the log headers.
KNOWN_BAD = {("gp-320fw-2019-04-07-coldboot.log", b"$GPGSV,3,3,12,2,40,16,00,090,*72")}


def decode(path: Path) -> tuple[list[RawSentence], list[Rejected], list[Fix], list[bytes]]:
    splitter, assembler = SentenceSplitter(), FixAssembler()
    sentences: list[RawSentence] = []
    rejected: list[Rejected] = []
    fixes: list[Fix] = []
    errors: list[bytes] = []
    for item in splitter.feed(path.read_bytes()):
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        sentences.append(item)
        try:
            msg = parse(item)
        except NmeaError:
            errors.append(item.raw)
            continue
        if msg is not None and (fix := assembler.feed(msg)) is not None:
            fixes.append(fix)
    if (fix := assembler.flush()) is not None:
        fixes.append(fix)
    return sentences, rejected, fixes, errors


def gpsd_tpvs(chk: Path) -> list[dict[str, Any]]:
    reports = (json.loads(line) for line in chk.read_text().splitlines() if line.startswith("{"))
    return [r for r in reports if r.get("class") == "TPV" and "lat" in r]


def near(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) < 1e-6 and abs(a[1] - b[1]) < 1e-6


@pytest.mark.parametrize("name", LOGS)
def test_log_matches_gpsd(name: str, vectors_dir: Path) -> None:
    log = vectors_dir / "nmea" / name
    sentences, _, fixes, errors = decode(log)
    assert sentences
    assert {(name, e) for e in errors} <= KNOWN_BAD
    tpvs = gpsd_tpvs(log.with_name(name + ".chk"))
    timed: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in tpvs:
        if "time" in r:
            timed[r["time"][11:23]].append((r["lat"], r["lon"]))
    every = [(r["lat"], r["lon"]) for r in tpvs]
    untimed_fixes = 0
    for fix in fixes:
        tod = fix.fix_time.strftime("%H:%M:%S.%f")[:12]
        here = (fix.lat, fix.lon)
        if tod in timed:
            assert any(near(here, p) for p in timed[tod]), (tod, here, timed[tod])
        else:
            untimed_fixes += 1
            assert any(near(here, p) for p in every), (tod, here)
        assert -90 <= fix.lat <= 90
        assert -180 <= fix.lon <= 180
        assert fix.fix_time.tzinfo is not None
    assert untimed_fixes <= 1
    ours = {f.fix_time.strftime("%H:%M:%S.%f")[:12] for f in fixes}
    assert set(timed) <= ours
    assert len(fixes) >= len(timed)


def test_whole_logs_byte_by_byte_same_as_at_once(vectors_dir: Path) -> None:
    for name in ("st-teseo-liv4f.log", "gp-320fw-2019-04-07-coldboot.log", "tcp-test.log"):
        data = (vectors_dir / "nmea" / name).read_bytes()
        whole = SentenceSplitter().feed(data)
        splitter = SentenceSplitter()
        pieces = [item for i in range(len(data)) for item in splitter.feed(data[i : i + 1])]
        assert pieces == whole


def _pynmea(line: bytes) -> Any:
    try:
        return pynmea2.parse(line.decode("ascii").lstrip("$"), check=False)
    except (pynmea2.ParseError, pynmea2.ChecksumError, AttributeError, ValueError, TypeError):
        return None


@pytest.mark.parametrize("name", LOGS)
def test_fields_agree_with_pynmea2(name: str, vectors_dir: Path) -> None:  # noqa: PLR0912 - one branch per type
    sentences, *_ = decode(vectors_dir / "nmea" / name)
    compared = 0
    for raw in sentences:
        try:
            ours = parse(raw)
        except NmeaError:
            continue
        if ours is None or (theirs := _pynmea(b"$" + raw.raw[1:])) is None:
            continue
        compared += 1
        if isinstance(ours, RMC):
            if ours.status == "A" and ours.lat is not None and ours.lon is not None:
                # pynmea2 gives 0.0 for empty coordinates (pitfall 1): only compare real ones.
                assert ours.lat == pytest.approx(theirs.latitude, abs=1e-9)
                assert ours.lon == pytest.approx(theirs.longitude, abs=1e-9)
            if ours.date is not None:
                assert ours.date == theirs.datestamp
            if ours.time is not None and ours.time.second != 59:
                assert ours.time == theirs.timestamp.replace(tzinfo=None)
            if ours.speed_knots is not None:
                assert ours.speed_knots == pytest.approx(theirs.spd_over_grnd)
        elif isinstance(ours, GGA):
            assert ours.quality == theirs.gps_qual
            if ours.satellites is not None:
                assert ours.satellites == int(theirs.num_sats)
            if ours.altitude_m is not None:
                assert ours.altitude_m == pytest.approx(theirs.altitude)
            if ours.lat is not None and ours.lon is not None:
                assert ours.lat == pytest.approx(theirs.latitude, abs=1e-9)
                assert ours.lon == pytest.approx(theirs.longitude, abs=1e-9)
        elif isinstance(ours, GSA):
            expected = [int(p) for p in theirs.data[2:14] if p]
            assert list(ours.prns) == expected
            if theirs.pdop:
                assert ours.pdop == pytest.approx(float(theirs.pdop))
        elif isinstance(ours, GSV):
            # pynmea2 reads a 4.10 signal ID as a PRN (pitfall 4): compare real quads only.
            for i, sat in enumerate(ours.satellites[:4], 1):
                prn = getattr(theirs, f"sv_prn_num_{i}", "")
                if prn.isdigit() and int(prn) == sat.prn:
                    elevation = getattr(theirs, f"elevation_deg_{i}")
                    azimuth = getattr(theirs, f"azimuth_{i}")
                    assert sat.elevation_deg == (int(elevation) if elevation else None)
                    assert sat.azimuth_deg == (int(azimuth) if azimuth else None)
            assert ours.total_msgs == int(theirs.num_messages)
        elif isinstance(ours, ZDA):
            assert ours.year == theirs.year
            assert ours.day == theirs.day
        elif isinstance(ours, TXT) and len(raw.fields) >= 4:
            assert ours.text == ",".join(theirs.data[3:])  # pynmea2 .text drops after a comma
    assert compared > 0
