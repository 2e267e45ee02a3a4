"""Hypothesis: nothing but NmeaError ever escapes the splitter, the parser or the assembler."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.nmea import (
    FixAssembler,
    NmeaError,
    RawSentence,
    Rejected,
    SentenceSplitter,
    encode_sentence,
    parse,
)

KINDS = ["RMC", "GGA", "GLL", "VTG", "GSA", "GSV", "ZDA", "TXT", "GNS"]
FIELD = st.text(alphabet="0123456789.,-+NSEWAVMTKDnaef ", max_size=12)


def run(chunks: list[bytes]) -> None:
    splitter, assembler = SentenceSplitter(), FixAssembler()
    for chunk in chunks:
        for item in splitter.feed(chunk):
            assert isinstance(item, RawSentence | Rejected)
            if isinstance(item, Rejected):
                assert len(item.data) <= 64
                continue
            try:
                msg = parse(item)
            except NmeaError:
                continue
            if msg is not None:
                assembler.feed(msg)
        assert splitter.pending_bytes <= 82 + 64
    assembler.flush()


@settings(deadline=None, max_examples=300)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_bytes(chunks: list[bytes]) -> None:
    run(chunks)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["GP", "GN", "BD", "GB"]), st.sampled_from(KINDS),
                  st.lists(FIELD, max_size=20)),
        min_size=1,
        max_size=15,
    ),
    st.integers(min_value=1, max_value=50),
)  # fmt: skip
def test_well_framed_random_fields(sentences: list[tuple[str, str, list[str]]], chunk: int) -> None:
    stream = b"".join(encode_sentence(t, k, f) for t, k, f in sentences)
    run([stream[i : i + chunk] for i in range(0, len(stream), chunk)])


@settings(deadline=None, max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=len(KINDS) - 1), max_size=10), st.data())
def test_real_shapes_with_mutations(kinds: list[int], data: st.DataObject) -> None:
    base = {
        "RMC": "074159.80,A,3114.89430,N,12135.24441,E,0.02,,250215,,,A,V",
        "GGA": "074156.799,3114.8950,N,12135.2442,E,1,07,1.1,190.7,M,8.3,M,,0000",
        "GLL": "3757.92653,N,12231.94543,W,223251.00,A,A",
        "VTG": "338.51,T,0.00,M,0.068,N,0.126,K,A",
        "GSA": "A,3,10,11,,,,,,,,,,,1.5,0.9,1.2,4",
        "GSV": "1,1,02,10,45,120,38,11,30,200,35,1",
        "ZDA": "223251.00,21,04,2016,-00,00",
        "TXT": "01,01,01,ANTENNA OK",
        "GNS": "120213.000,5957.0062,N,01100.6429,E,NDD,11,1.3,168.9,39.5,,,V",
    }
    stream = b""
    for index in kinds:
        fields = base[KINDS[index]].split(",")
        position = data.draw(st.integers(min_value=0, max_value=len(fields) - 1))
        fields[position] = data.draw(FIELD)
        stream += encode_sentence("GN", KINDS[index], fields)
    run([stream])
