"""Typed APRS packets decoded from an AX.25 information field, and the APRS codec error.

Every packet keeps ``raw``: the information field exactly as received (before any normalisation).
Units: degrees (WGS84, north and east positive), km/h, metres, degrees clockwise from true north.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from protocols import ProtocolError

__all__ = [
    "AprsAck",
    "AprsBulletin",
    "AprsError",
    "AprsMessage",
    "AprsPacket",
    "AprsPosition",
    "AprsRej",
    "AprsStatus",
    "AprsUnknown",
    "PositionFormat",
]


class AprsError(ProtocolError):
    """An APRS information field is malformed, or an encoder argument cannot be encoded."""


@dataclass(frozen=True, slots=True)
class AprsMessage:
    """``:ADDRESSEE:text{msgno`` (APRS101 ch.14), with the APRS 1.1 reply-ack ``{MM}AA``.

    ``addressee`` has its wire padding stripped. ``reply_ack`` is ``None`` for a plain message,
    ``""`` for ``{MM}`` (the sender speaks reply-acks but has nothing to ack) and ``"AA"`` for
    ``{MM}AA``.
    """

    addressee: str
    text: str
    msgno: str | None = None
    reply_ack: str | None = None
    raw: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AprsAck:
    """``:ADDRESSEE:ackMSGNO`` (APRS101 ch.14); reply-ack form ``ackMM}AA`` sets ``reply_ack``."""

    addressee: str
    msgno: str
    reply_ack: str | None = None
    raw: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AprsRej:
    """``:ADDRESSEE:rejMSGNO`` (APRS101 ch.14): the addressee refuses the message; terminal."""

    addressee: str
    msgno: str
    reply_ack: str | None = None
    raw: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AprsBulletin:
    """``:BLNn     :text`` (APRS101 ch.14 "Bulletins"/"Announcements"); never acknowledged."""

    addressee: str
    text: str
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def bulletin_id(self) -> str:
        """What follows ``BLN``: ``0``-``9`` bulletin, ``A``-``Z`` announcement, or a group."""
        return self.addressee[3:]


@dataclass(frozen=True, slots=True)
class AprsStatus:
    """``>[DDHHMMz]text`` (APRS101 ch.16); ``timestamp`` is UTC when present."""

    text: str
    timestamp: datetime | None = None
    raw: bytes = field(default=b"", repr=False, compare=False)


PositionFormat = Literal["uncompressed", "compressed", "mic-e"]


@dataclass(frozen=True, slots=True)
class AprsPosition:
    """A position report in any of the three APRS encodings.

    ``timestamp`` is an aware UTC datetime for ``z``/``h`` timestamps and a naive datetime for the
    sender-local ``/`` form (its zone is unknown). ``ambiguity`` is the number of trailing digits
    the sender blanked (APRS101 ch.6 "Position Ambiguity"); the position is then the centre of the
    box. ``mic_e_status`` is the Mic-E message name (``"Emergency"`` when all three bits are 0).
    """

    lat: float
    lon: float
    symbol_table: str
    symbol_code: str
    format: PositionFormat
    messaging: bool = False
    timestamp: datetime | None = None
    course_deg: int | None = None
    speed_kmh: float | None = None
    alt_m: float | None = None
    comment: str = ""
    mic_e_status: str | None = None
    ambiguity: int = 0
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def emergency(self) -> bool:
        """Mic-E message bits 000: the station declared an emergency."""
        return self.mic_e_status == "Emergency"


@dataclass(frozen=True, slots=True)
class AprsUnknown:
    """A data type this codec does not decode (objects, items, weather, telemetry, NMEA, ...)."""

    data_type: str
    raw: bytes = field(default=b"", repr=False, compare=False)


AprsPacket = (
    AprsMessage | AprsAck | AprsRej | AprsBulletin | AprsStatus | AprsPosition | AprsUnknown
)
