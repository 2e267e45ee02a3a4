"""NMEA 0183 codec: framing, typed sentences and fix assembly (pure, sans-IO)."""

from protocols.nmea.fix import Fix, FixAssembler
from protocols.nmea.framing import (
    NmeaError,
    RawSentence,
    Rejected,
    SentenceSplitter,
    checksum,
    encode_sentence,
)
from protocols.nmea.sentences import (
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
    SatelliteInView,
    parse,
)

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
    "Fix",
    "FixAssembler",
    "Message",
    "NmeaError",
    "RawSentence",
    "Rejected",
    "SatelliteInView",
    "SentenceSplitter",
    "checksum",
    "encode_sentence",
    "parse",
]
