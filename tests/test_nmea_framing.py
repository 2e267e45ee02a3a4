"""Framing torture: chunking, resync, checksums, garbage, oversize, bounded buffer."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.nmea import NmeaError, RawSentence, Rejected, SentenceSplitter, checksum
from protocols.nmea import encode_sentence as enc

RMC = enc(
    "GN",
    "RMC",
    [
        "074159.80",
        "A",
        "3114.89430",
        "N",
        "12135.24441",
        "E",
        "0.02",
        "",
        "250215",
        "",
        "",
        "A",
        "V",
    ],
)
GGA = enc(
    "GP",
    "GGA",
    [
        "193221.00",
        "2037.72792",
        "N",
        "08704.08478",
        "W",
        "1",
        "04",
        "1.7",
        "-30.40",
        "M",
        "-13.9",
        "M",
        "",
        "",
    ],
)


def feed_all(data: bytes, chunk: int | None = None, **kw: object) -> list[RawSentence | Rejected]:
    splitter = SentenceSplitter(**kw)  # type: ignore[arg-type]
    if chunk is None:
        return splitter.feed(data)
    out: list[RawSentence | Rejected] = []
    for i in range(0, len(data), chunk):
        out += splitter.feed(data[i : i + chunk])
    return out


def reasons(items: list[RawSentence | Rejected]) -> list[str]:
    return [i.reason if isinstance(i, Rejected) else i.talker + i.kind for i in items]


def test_checksum_matches_notes_examples() -> None:
    assert checksum(b"GPRMC,,V,,,,,,,,,,N") == 0x53
    assert checksum(b"GPGGA,,,,,,0,00,99.99,,,,,,") == 0x48
    assert checksum(b"GPTXT,01,01,01,ANTENNA OK") == 0x35
    assert checksum(b"") == 0
    assert checksum(b"A") == 0x41
    data = bytes(random.Random(1).randrange(256) for _ in range(300))
    for n in range(len(data)):
        expected = 0
        for b in data[:n]:
            expected ^= b
        assert checksum(data[:n]) == expected


def test_encode_sentence() -> None:
    assert (
        enc("GP", "TXT", ["01", "01", "01", "ANTENNA OK"]) == b"$GPTXT,01,01,01,ANTENNA OK*35\r\n"
    )
    assert enc(
        "GB", "GSV", ["1", "1", "02", "10", "45", "120", "38", "11", "30", "200", "35", "1"]
    ).endswith(b"*7B\r\n")
    for talker, kind, fields in [("G", "RMC", []), ("GP", "RMC", ["a*b"]), ("GP", "RMC", ["é"])]:
        with pytest.raises(NmeaError):
            enc(talker, kind, fields)


def test_single_sentence_fields() -> None:
    (s,) = feed_all(RMC)
    assert isinstance(s, RawSentence)
    assert (s.talker, s.kind) == ("GN", "RMC")
    assert s.fields[0] == "074159.80"
    assert s.fields[-1] == "V"
    assert len(s.fields) == 13
    assert s.raw == RMC.rstrip(b"\r\n")


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 7, 64, 1000])
def test_any_chunking_gives_same_result(chunk: int | None) -> None:
    stream = (
        b"\x00\x00" + RMC + b"junk" + GGA + b"$$" + RMC + b"\r\r\n" + GGA.replace(b"\r\n", b"\n")
        + b"x" * 300 + b"\n" + RMC[:30] + b"\r\n" + RMC + b"$GPRMC,,V,,,,,,,,,,N*00\r\n" + GGA
    )  # fmt: skip
    expected = [
        "garbage", "GNRMC", "garbage", "GPGGA", "GNRMC", "GPGGA", "oversize", "no-checksum",
        "GNRMC", "checksum", "GPGGA",
    ]  # fmt: skip
    assert reasons(feed_all(stream, chunk)) == expected


def test_resync_on_last_start() -> None:
    items = feed_all(
        b"$$GPRMC,,V,,,,,,,,,,N*53\r\n" + b"xx$GPTXT" + b"$GPTXT,01,01,01,ANTENNA OK*35\n"
    )
    assert reasons(items) == ["GPRMC", "garbage", "GPTXT"]
    assert isinstance(items[1], Rejected)
    assert items[1].data == b"xx$GPTXT"


def test_lower_case_checksum_and_wrong_checksum() -> None:
    assert reasons(feed_all(b"$GPRMC,205150.00,V,,,,,,,,,,,V*4a\r\n")) == ["GPRMC"]
    assert reasons(feed_all(b"$GPRMC,205150.00,V,,,,,,,,,,,V*4b\r\n")) == ["checksum"]
    assert reasons(feed_all(b"$GPRMC,205150.00,V,,,,,,,,,,,V*zz\r\n")) == ["checksum"]


def test_no_checksum_policy() -> None:
    line = b"$GPRMC,,V,,,,,,,,,,N\r\n"
    assert reasons(feed_all(line)) == ["no-checksum"]
    assert reasons(feed_all(line, require_checksum=False)) == ["GPRMC"]


def test_malformed_inside_sentence() -> None:
    bad_byte = b"GPRMC,\xe9,V"
    line = b"$" + bad_byte + b"*%02X\r\n" % checksum(bad_byte)
    assert reasons(feed_all(line)) == ["malformed"]
    for address in (b"GPRM", b"gprmc", b"GYOACC", b"G-RMC"):
        body = address + b",1"
        assert reasons(feed_all(b"$%s*%02X\r\n" % (body, checksum(body)))) == ["malformed"]


def test_proprietary_and_ais() -> None:
    body = b"PSRFEPE,074150.799,V,,,,,"
    (s,) = feed_all(b"$%s*%02X\r\n" % (body, checksum(body)))
    assert isinstance(s, RawSentence)
    assert (s.talker, s.kind) == ("P", "SRFEPE")
    body = b"AIVDM,1,1,,A,13aG?P0P00PD;88MD5MTDww@2<0L,0"
    (s,) = feed_all(b"!%s*%02X\r\n" % (body, checksum(body)))
    assert isinstance(s, RawSentence)
    assert (s.talker, s.kind) == ("AI", "VDM")
    body = b"PQGSV,1,1,01,02,05,042,29"  # Quectel talker "PQ" for QZSS, not proprietary
    (s,) = feed_all(b"$%s*%02X\r\n" % (body, checksum(body)))
    assert isinstance(s, RawSentence)
    assert (s.talker, s.kind) == ("PQ", "GSV")


def test_whitespace_and_cr_only_junk_is_silent() -> None:
    assert feed_all(b"\r\r\r\n \t\r\n\n\r" + RMC + b"\r\r") != []
    assert reasons(feed_all(b"\r\r\r\n \t\r\n\n\r" + RMC + b"\r\r")) == ["GNRMC"]
    # Bare CR also ends a sentence.
    assert reasons(feed_all(RMC.replace(b"\r\n", b"\r") * 3)) == ["GNRMC"] * 3


def test_truncated_sentences() -> None:
    items = feed_all(RMC[:20] + GGA[:10] + b"\r\n" + RMC[:-5] + RMC)
    # Line 1: a cut RMC (garbage before the last "$") and a cut GGA (no checksum);
    # line 2: an RMC cut before its checksum, glued to a whole one.
    assert reasons(items) == ["garbage", "no-checksum", "garbage", "GNRMC"]


def test_oversize_line() -> None:
    body = b"GPTXT,01,01,02," + b"A" * 70
    line = b"$%s*%02X\r\n" % (body, checksum(body))
    assert len(line) > 82
    assert reasons(feed_all(line + RMC)) == ["oversize", "GNRMC"]
    assert reasons(feed_all(line + RMC, max_line_bytes=120)) == ["GPTXT", "GNRMC"]
    exactly = b"GPTXT,01,01,02," + b"A" * 61
    line82 = b"$%s*%02X\r\n" % (exactly, checksum(exactly))
    assert len(line82) == 82
    assert reasons(feed_all(line82)) == ["GPTXT"]
    longer = exactly + b"A"
    assert reasons(feed_all(b"$%s*%02X\r\n" % (longer, checksum(longer)))) == ["oversize"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("filler", [b"A", b"$GPGGA,1", b"\x00\xff"])
def test_ten_megabytes_without_newline_is_one_oversize(filler: bytes) -> None:
    splitter = SentenceSplitter()
    out: list[RawSentence | Rejected] = []
    chunk = filler * (65536 // len(filler))
    total = 0
    while total < 10_000_000:
        out += splitter.feed(chunk)
        total += len(chunk)
        assert splitter.pending_bytes <= 200
    out += splitter.feed(b"\r\n" + RMC)
    assert reasons(out) == ["oversize", "GNRMC"]
    assert isinstance(out[0], Rejected)
    assert len(out[0].data) <= 64


def test_sentence_glued_after_runaway_line_is_delivered() -> None:
    # The last "$" before the line end starts a sentence even after an oversize run.
    assert reasons(feed_all(b"B" * 500 + RMC, 13)) == ["oversize", "GNRMC"]


def test_binary_noise_then_sentences() -> None:
    rnd = random.Random(7)
    noise = bytes(rnd.randrange(256) for _ in range(5000)).replace(b"\n", b"").replace(b"\r", b"")
    items = feed_all(noise + b"\r\n" + RMC + GGA, 97)
    assert reasons(items)[-2:] == ["GNRMC", "GPGGA"]
    assert all(len(i.data) <= 64 for i in items if isinstance(i, Rejected))
    assert sum(isinstance(i, RawSentence) for i in items) == 2


def test_buffer_bounded_byte_by_byte() -> None:
    splitter = SentenceSplitter()
    rnd = random.Random(3)
    for _ in range(20000):
        splitter.feed(bytes([rnd.choice(b"$GPRMC,0123456789*\x00")]))
        assert splitter.pending_bytes <= 82 + 64


@given(st.binary(max_size=1200))
def test_checksum_is_the_xor_of_every_byte(body: bytes) -> None:
    expected = 0
    for byte in body:
        expected ^= byte
    assert checksum(body) == expected
