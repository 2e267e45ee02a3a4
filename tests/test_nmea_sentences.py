"""Field decoding of hand-made sentences (checksums computed by our own encoder)."""

from __future__ import annotations

from datetime import date, time

import pytest

from protocols.nmea import (
    GGA,
    GLL,
    GNS,
    GSA,
    GSV,
    RMC,
    TXT,
    VTG,
    ZDA,
    Message,
    NmeaError,
    RawSentence,
    SatelliteInView,
    SentenceSplitter,
    encode_sentence,
    parse,
)


def raw(line: str) -> RawSentence:
    """Frame one sentence given without checksum, e.g. ``"GPRMC,..."``."""
    address, *fields = line.split(",")
    talker, kind = (
        (address[:1], address[1:]) if address.startswith("P") else (address[:2], address[2:])
    )
    (item,) = SentenceSplitter().feed(encode_sentence(talker, kind, fields))
    assert isinstance(item, RawSentence)
    return item


def msg(line: str) -> Message | None:
    return parse(raw(line))


def test_rmc_valid() -> None:
    m = msg("GNRMC,074159.80,A,3114.89430,N,12135.24441,E,0.02,,250215,,,A,V")
    assert isinstance(m, RMC)
    assert m.talker == "GN"
    assert m.status == "A"
    assert m.mode == "A"
    assert m.nav_status == "V"
    assert m.time == time(7, 41, 59, 800000)
    assert m.date == date(2015, 2, 25)
    assert m.lat == pytest.approx(31 + 14.8943 / 60, abs=1e-9)
    assert m.lon == pytest.approx(121 + 35.24441 / 60, abs=1e-9)
    assert m.speed_knots == 0.02
    assert m.course_deg is None
    assert m.mag_var_deg is None
    assert m.has_fix


def test_rmc_void_empty_fields_are_none() -> None:
    m = msg("GPRMC,,V,,,,,,,,,,N")
    assert isinstance(m, RMC)
    assert m.lat is None
    assert m.lon is None
    assert m.time is None
    assert m.date is None
    assert not m.has_fix


def test_rmc_south_west_magvar() -> None:
    m = msg("GPRMC,223251.00,A,3757.92653,S,12231.94543,W,0.068,338.51,210416,6.1,W,A")
    assert isinstance(m, RMC)
    assert m.lat is not None
    assert m.lat < 0
    assert m.lon is not None
    assert m.lon < 0
    assert m.mag_var_deg == -6.1
    assert m.course_deg == 338.51


def test_leap_second() -> None:
    m = msg("GPRMC,235960.00,A,3114.8943,N,12135.2444,E,0.0,,311216,,,A")
    assert isinstance(m, RMC)
    assert m.time == time(23, 59, 59, 999999)


def test_gga() -> None:
    m = msg("GNGGA,120213.000,5957.0062,N,01100.6429,E,2,11,1.3,168.9,M,39.5,M,2.5,0120")
    assert isinstance(m, GGA)
    assert (m.quality, m.satellites, m.hdop, m.altitude_m, m.geoid_sep_m) == (
        2,
        11,
        1.3,
        168.9,
        39.5,
    )
    assert m.dgps_age_s == 2.5
    assert m.dgps_station == "0120"
    assert m.has_fix
    void = msg("GPGGA,,,,,,0,00,99.99,,,,,,")
    assert isinstance(void, GGA)
    assert void.quality == 0
    assert void.lat is None
    assert not void.has_fix


def test_gll_vtg() -> None:
    m = msg("GPGLL,3757.92653,N,12231.94543,W,223251.00,A,A")
    assert isinstance(m, GLL)
    assert m.has_fix
    assert m.time == time(22, 32, 51)
    v = msg("GPVTG,338.51,T,0.00,M,0.068,N,0.126,K,A")
    assert isinstance(v, VTG)
    assert (v.course_true_deg, v.course_mag_deg, v.speed_knots, v.speed_kmh, v.mode) == (
        338.51, 0.0, 0.068, 0.126, "A",
    )  # fmt: skip
    old = msg("GPVTG,054.7,034.4,005.5,010.2")
    assert isinstance(old, VTG)
    assert old.speed_kmh == 10.2
    assert old.mode is None
    empty = msg("GNVTG,,T,,M,0.040,N,0.075,K,D")
    assert isinstance(empty, VTG)
    assert empty.course_true_deg is None
    assert empty.speed_knots == 0.04


def test_gsa_system_id() -> None:
    m = msg("GNGSA,A,3,10,11,,,,,,,,,,,1.5,0.9,1.2,4")
    assert isinstance(m, GSA)
    assert (m.mode, m.fix_type, m.prns, m.pdop, m.hdop, m.vdop, m.system_id) == (
        "A", 3, (10, 11), 1.5, 0.9, 1.2, 4,
    )  # fmt: skip
    bd = msg("BDGSA,A,3,01,02,03,,,,,,,,,,2.0,1.0,1.7")
    assert isinstance(bd, GSA)
    assert bd.talker == "BD"
    assert bd.system_id is None
    # SiRF-TriG puts a float in the system ID field (gpsd beidou-bd.log): not a system ID.
    sirf = msg("BDGSA,A,3,02,03,04,,,,,,,,,,5.1,1.3,4.9,3.3")
    assert isinstance(sirf, GSA)
    assert sirf.system_id is None


def test_gsv_signal_id_with_fewer_than_four_sats() -> None:
    m = msg("GBGSV,1,1,02,10,45,120,38,11,30,200,35,1")
    assert isinstance(m, GSV)
    assert m.signal_id == 1
    assert m.sats_in_view == 2
    assert m.satellites == (SatelliteInView(10, 45, 120, 38), SatelliteInView(11, 30, 200, 35))
    old = msg("GPGSV,7,7,25,04,08,012,")
    assert isinstance(old, GSV)
    assert old.signal_id is None
    assert old.satellites == (SatelliteInView(4, 8, 12, None),)
    padded = msg("GPGSV,1,1,01,36,19,156,51,,,,,,,,,,,,,1")  # Furuno pads to four satellites
    assert isinstance(padded, GSV)
    assert len(padded.satellites) == 1
    assert padded.signal_id == 1
    hexsig = msg("BDGSV,2,2,06,38,11,027,23,B")  # ST Teseo: hex signal ID (4.11)
    assert isinstance(hexsig, GSV)
    assert hexsig.signal_id == 11
    noazel = msg("GAGSV,2,2,04,102,,,40,103,,,29,1")
    assert isinstance(noazel, GSV)
    assert noazel.satellites[0] == SatelliteInView(102, None, None, 40)


def test_zda_txt_gns() -> None:
    z = msg("GPZDA,223251.00,21,04,2016,-07,00")
    assert isinstance(z, ZDA)
    assert z.date == date(2016, 4, 21)
    assert z.zone_hours == -7
    t = msg("GNTXT,01,01,01,0,000222,x")
    assert isinstance(t, TXT)
    assert t.text == "0,000222,x"
    assert t.text_id == 1
    t2 = msg("GPTXT,01,01,01,ANTENNA OK")
    assert isinstance(t2, TXT)
    assert t2.text == "ANTENNA OK"
    short = msg("GPTXT,DEFAULT PVT CONFIGURATION")
    assert isinstance(short, TXT)
    assert short.text == "DEFAULT PVT CONFIGURATION"
    g = msg("GNGNS,120213.000,5957.0062,N,01100.6429,E,NDD,11,1.3,168.9,39.5,,,V")
    assert isinstance(g, GNS)
    assert g.mode == "NDD"
    assert g.has_fix
    assert g.nav_status == "V"
    gv = msg("GNGNS,074150.799,,,,,NNNN,00,,,0.0,,0000")
    assert isinstance(gv, GNS)
    assert not gv.has_fix


def test_unhandled_types_give_none() -> None:
    assert msg("PSRFEPE,074150.799,V,,,,,") is None
    assert msg("GPRMB,V,,,,,,,,,,,,V") is None


@pytest.mark.parametrize(
    "line",
    [
        "GPRMC,xx,A,3114.8943,N,12135.2444,E,0.0,,250215",
        "GPRMC,250000,A,3114.8943,N,12135.2444,E,0.0,,250215",
        "GPRMC,074159,A,3114.8943,X,12135.2444,E,0.0,,250215",
        "GPRMC,074159,A,3174.8943,N,12135.2444,E,0.0,,250215",
        "GPRMC,074159,A,9114.8943,N,12135.2444,E,0.0,,250215",
        "GPRMC,074159,A,3114.8943,,12135.2444,E,0.0,,250215",
        "GPRMC,074159,A,3114.8943,N,12135.2444,E,fast,,250215",
        "GPRMC,074159,A,3114.8943,N,12135.2444,E,nan,,250215",
        "GPRMC,074159,A,3114.8943,N,12135.2444,E,0.0,,320215",
        "GPRMC,074159,A,3114.8943,N",
        "GPGGA,074159,3114.8943,N,12135.2444,E,one,05,1.0,1.0,M",
        "GPGSV,3,3,12,2,40,16,00,090,",
        "GPGSA,A,3,x1,,,,,,,,,,,,1,1,1",
        "GPZDA,074159,31,02,2015,00,00",
    ],
)
def test_malformed_fields_raise_nmea_error(line: str) -> None:
    with pytest.raises(NmeaError):
        msg(line)
