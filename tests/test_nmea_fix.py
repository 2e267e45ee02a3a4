"""FixAssembler rules: void fixes, sentence orders, missing date, epoch change, midnight."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocols.nmea import (
    Fix,
    FixAssembler,
    Message,
    RawSentence,
    SentenceSplitter,
    encode_sentence,
    parse,
)

POS = "3114.89430,N,12135.24441,E"
LAT, LON = 31 + 14.8943 / 60, 121 + 35.24441 / 60


def m(line: str) -> Message:
    address, *fields = line.split(",")
    (item,) = SentenceSplitter().feed(encode_sentence(address[:2], address[2:], fields))
    assert isinstance(item, RawSentence)
    msg = parse(item)
    assert msg is not None
    return msg


def rmc(t: str, status: str = "A", date: str = "250215", pos: str = POS, mode: str = "A") -> str:
    return f"GNRMC,{t},{status},{pos},10.0,45.0,{date},,,{mode}"


def gga(t: str, quality: int = 1, pos: str = POS) -> str:
    return f"GNGGA,{t},{pos},{quality},07,1.1,190.7,M,8.3,M,,"


def run(lines: list[str], flush: bool = True) -> list[Fix]:
    fa = FixAssembler()
    out = [f for line in lines if (f := fa.feed(m(line))) is not None]
    if flush and (f := fa.flush()) is not None:
        out.append(f)
    return out


def test_rmc_only_receiver_emits_at_once() -> None:
    fa = FixAssembler()
    f = fa.feed(m(rmc("074159.80")))
    assert f is not None
    assert f.fix_time == datetime(2015, 2, 25, 7, 41, 59, 800000, tzinfo=UTC)
    assert f.lat == pytest.approx(LAT)
    assert f.lon == pytest.approx(LON)
    assert f.speed_kmh == pytest.approx(18.52)
    assert f.course_deg == 45.0
    assert f.alt_m is None
    assert f.talker == "GN"
    assert fa.flush() is None  # at most once


@pytest.mark.parametrize("rmc_first", [True, False])
def test_gga_and_rmc_either_order_second_one_emits(rmc_first: bool) -> None:
    fa = FixAssembler()
    # Epoch 1 teaches the assembler that this receiver sends GGA.
    for line in (gga("000001"), rmc("000001")):
        fa.feed(m(line))
    pair = [rmc("000002"), gga("000002")] if rmc_first else [gga("000002"), rmc("000002")]
    assert fa.feed(m(pair[0])) is None
    assert fa.feed(m("GNGSA,A,3,10,11,,,,,,,,,,,1.5,0.9,1.2,4")) is None
    f = fa.feed(m(pair[1]))
    assert f is not None
    assert f.fix_time.second == 2
    assert (f.alt_m, f.satellites, f.hdop) == (190.7, 7, 1.1)
    assert f.speed_kmh == pytest.approx(18.52)
    assert fa.feed(m("GNVTG,45.0,T,,M,10.0,N,18.5,K,A")) is None
    assert fa.flush() is None


@pytest.mark.parametrize(
    "lines",
    [
        [rmc("000001", status="V")],
        [rmc("000001", mode="N")],
        [rmc("000001", pos=",,,")],
        [gga("000001", quality=0), rmc("000001")],
        # Once GGA is known to come, an RMC waits for it, and a void GGA voids the epoch.
        [gga("000000", quality=0), rmc("000001"), gga("000001", quality=0)],
        [
            gga("000000", quality=0),
            rmc("000001"),
            "GNGLL,3114.89430,N,12135.24441,E,000001,V,N",
            gga("000001"),
        ],
        ["GNRMC,,V,,,,,,,,,,N", "GNGGA,,,,,,0,00,99.99,,,,,,"],
    ],
)
def test_never_a_fix_from_a_no_fix_sentence(lines: list[str]) -> None:  # fmt: skip
    assert run(lines) == []


def test_no_date_no_fix() -> None:
    # GGA and GLL carry no date: nothing until an RMC or ZDA says which day it is.
    assert run([gga("000001"), gga("000002"), "GNGLL,3114.89430,N,12135.24441,E,000003,A,A"]) == []
    fixes = run([gga("000001"), "GNZDA,000001,25,02,2015,00,00", gga("000002")])
    assert [f.fix_time for f in fixes] == [
        datetime(2015, 2, 25, 0, 0, 1, tzinfo=UTC),
        datetime(2015, 2, 25, 0, 0, 2, tzinfo=UTC),
    ]


def test_void_rmc_date_is_not_trusted() -> None:
    assert run([rmc("000001", status="V", pos=",,,"), gga("000001"), gga("000002")]) == []


def test_epoch_change_emits_incomplete_previous_epoch() -> None:
    fa = FixAssembler()
    for line in (gga("000001"), rmc("000001"), rmc("000002")):
        fa.feed(m(line))
    # Epoch 2's GGA is lost; epoch 3 starts: epoch 2 goes out without altitude.
    f = fa.feed(m(gga("000003")))
    assert f is not None
    assert f.fix_time.second == 2
    assert f.alt_m is None
    f3 = fa.feed(m(rmc("000003")))
    assert f3 is not None
    assert f3.fix_time.second == 3
    assert f3.alt_m == 190.7


def test_each_epoch_once_and_gga_only_receiver_with_zda() -> None:
    lines = ["GPZDA,000001,25,02,2015,00,00"]
    lines += [gga(f"00000{i}") for i in range(1, 4)]
    fixes = run(lines)
    assert [f.fix_time.second for f in fixes] == [1, 2, 3]


def test_midnight_rollover() -> None:
    lines = [gga("235959.50"), rmc("235959.50", date="311224"), gga("000000.00"),
             rmc("000000.00", date="010125"), gga("000000.50")]  # fmt: skip
    fixes = run(lines)
    assert [f.fix_time for f in fixes] == [
        datetime(2024, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),
    ]
    # Date carried forward by GGA alone across midnight (the RMC of the new day was lost).
    fixes = run([gga("235959"), rmc("235959", date="311224"), gga("000000")])
    assert fixes[-1].fix_time == datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)


def test_leap_second_epoch() -> None:
    fixes = run([rmc("235960.00", date="311216"), rmc("000000.00", date="010117")])
    assert [f.fix_time.isoformat() for f in fixes] == [
        "2016-12-31T23:59:59.999999+00:00",
        "2017-01-01T00:00:00+00:00",
    ]


def test_vtg_fills_speed_when_rmc_has_none() -> None:
    fa = FixAssembler()
    fa.feed(m(gga("000001")))
    fa.feed(m("GNRMC,000002,A,3114.89430,N,12135.24441,E,,,250215,,,A"))
    fa.feed(m("GNVTG,45.0,T,,M,10.0,N,18.5,K,A"))
    f = fa.feed(m(gga("000002")))
    assert f is not None
    assert f.speed_kmh == 18.5
    assert f.course_deg == 45.0


def test_gll_with_known_date_completes_for_gll_receiver() -> None:
    fixes = run(["GPZDA,000001,25,02,2015,00,00", "GPGLL,3114.89430,N,12135.24441,E,000001,A,A"])
    assert len(fixes) == 1
    assert fixes[0].talker == "GP"
    assert fixes[0].lat == pytest.approx(LAT)
