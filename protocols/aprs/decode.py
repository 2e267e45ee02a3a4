"""Dispatch an AX.25 information field to the APRS decoder for its data type identifier.

Source: APRS101 ch.5 "APRS Data Type Identifiers" (https://op-co.de/tmp/APRS101/APRS.html), and
``docs/protocols/aprs.md`` section 3 (strip trailing whitespace and CR/LF first: TNCs and
``gen_packets`` add them, and a trailing space must not turn an ack into a message).
"""

from __future__ import annotations

from datetime import datetime

from protocols.aprs.messages import decode_message, decode_status
from protocols.aprs.mice import decode_mic_e
from protocols.aprs.model import AprsError, AprsPacket, AprsUnknown
from protocols.aprs.position import decode_position
from protocols.ax25 import Ax25Frame

__all__ = ["decode_frame", "decode_info"]

_POSITION_DTIS = frozenset(b"!=/@")
_MIC_E_DTIS = frozenset(b"`'")


def decode_info(source: str, dest: str, info: bytes, *, now: datetime | None = None) -> AprsPacket:
    """Decode one information field; ``dest`` matters for Mic-E, ``source`` for nothing yet.

    ``now`` (aware) anchors timestamps that carry only day or time; the current time when ``None``.
    Raises :class:`AprsError` when malformed; data types not decoded here give :class:`AprsUnknown`.
    """
    data = info.rstrip()
    if not data:
        raise AprsError(f"empty information field from {source!r}")
    dti = data[0]
    if dti == 0x3A:  # ":"
        return decode_message(data, info)
    if dti in _POSITION_DTIS:
        return decode_position(data, info, now)
    if dti in _MIC_E_DTIS:
        return decode_mic_e(dest, data, info)
    if dti == 0x3E:  # ">"
        return decode_status(data, info, now)
    return AprsUnknown(chr(dti), info)


def decode_frame(frame: Ax25Frame, *, now: datetime | None = None) -> AprsPacket:
    """:func:`decode_info` with the frame's own source and destination."""
    return decode_info(frame.source.call_ssid, frame.dest.call_ssid, frame.info, now=now)
