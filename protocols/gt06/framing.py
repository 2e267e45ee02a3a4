"""GT06 packets on a byte stream: ``78 78`` / ``79 79`` framing, length checks, CRC-16/X-25.

Packet (``../shared/notes/gt06.md`` section 1)::

    start(2: 78 78 | 79 79) length(1 | 2) protocol(1) content(N) serial(2) crc(2) stop(2: 0D 0A)

``length`` counts protocol, content, serial and CRC (``N + 5``); the CRC covers ``length``
through ``serial``. ``78 78`` has a one-byte length, ``79 79`` a two-byte one.

:class:`FrameSplitter` is push style: ``feed(bytes) -> list[Frame | Rejected]``. A TCP read is
never taken to be one packet. What it rejects, with a fixed reason word each:

* ``garbage``: bytes before a start marker (one reject per run of them);
* ``length``: a length below 5, which cannot hold protocol, serial and CRC;
* ``oversize``: a frame longer than ``max_frame_bytes`` (a 64 KB ``79 79`` length must not make
  the gateway buffer 64 KB per connection);
* ``stop``: the bytes where ``0D 0A`` should be are something else (a wrong length, or a stray
  start marker inside garbage);
* ``crc``: the CRC does not verify (the vendor rule: a packet with a CRC error is ignored).

After ``length``, ``oversize`` and ``stop`` the splitter resyncs on the next start marker after
the one it tried, so a good packet that followed a false start is still found. A false start
whose length field points beyond the data so far does not hold back a complete, valid packet
after it: that start is rejected (``stop``) at once. After ``crc``
the frame's bounds were right (its stop bytes were there), so the whole frame is skipped.

The buffer holds at most one incomplete frame (``max_frame_bytes``) plus one read: bounded.
The header is read with :mod:`struct` (two precompiled ``Struct`` objects): this runs on every
packet of every tracker, and the notes measure ``unpack_from`` far above construct.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from protocols.gt06.crc import crc_x25

__all__ = [
    "LONG_START",
    "MAX_FRAME_BYTES",
    "SHORT_START",
    "STOP",
    "Frame",
    "FrameSplitter",
    "Gt06Error",
    "Rejected",
    "encode_frame",
    "parse_frame",
]

SHORT_START: Final = b"\x78\x78"
LONG_START: Final = b"\x79\x79"
STOP: Final = b"\r\n"
MIN_LENGTH: Final = 5
"""protocol(1) + serial(2) + crc(2): the smallest length field a packet can have."""
MAX_FRAME_BYTES: Final = 1024
"""Default cap on one packet, start to stop: every packet the notes list fits in 300 bytes."""
_SHORT_MAX_LENGTH: Final = 0xFF
_LONG_MAX_LENGTH: Final = 0xFFFF

_U8: Final = struct.Struct(">B")
_U16: Final = struct.Struct(">H")


class Gt06Error(ValueError):
    """Anything the GT06 codec cannot read or write; the only error it raises."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One packet whose length, stop bytes and CRC checked out; ``raw`` is all of its bytes."""

    protocol: int
    content: bytes
    serial: int
    long: bool
    raw: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """Bytes the splitter threw away, and why (a fixed word)."""

    reason: str
    data: bytes


def encode_frame(protocol: int, content: bytes, serial: int, *, long: bool = False) -> bytes:
    """A complete packet with its CRC; ``long`` picks ``79 79`` with a two-byte length."""
    if not 0 <= protocol <= 0xFF:
        raise Gt06Error(f"protocol number {protocol} is not a byte")
    if not 0 <= serial <= 0xFFFF:
        raise Gt06Error(f"serial {serial} is not a 16-bit number")
    length = len(content) + MIN_LENGTH
    if long:
        if length > _LONG_MAX_LENGTH:
            raise Gt06Error(f"content of {len(content)} bytes is too long for a packet")
        head = _U16.pack(length)
        start = LONG_START
    else:
        if length > _SHORT_MAX_LENGTH:
            raise Gt06Error(f"content of {len(content)} bytes is too long for a 78 78 packet")
        head = _U8.pack(length)
        start = SHORT_START
    body = head + bytes((protocol,)) + content + _U16.pack(serial)
    return start + body + _U16.pack(crc_x25(body)) + STOP


def parse_frame(data: bytes) -> Frame:
    """One complete packet (start to stop, nothing around it); :class:`Gt06Error` otherwise."""
    out = FrameSplitter(max_frame_bytes=max(len(data), MIN_LENGTH + 6)).feed(data)
    if len(out) == 1 and isinstance(out[0], Frame) and len(out[0].raw) == len(data):
        return out[0]
    reasons = [item.reason for item in out if isinstance(item, Rejected)]
    raise Gt06Error(f"not one GT06 packet: {', '.join(reasons) or 'incomplete'}")


class FrameSplitter:
    """Splits a byte stream into packets; see the module docstring."""

    __slots__ = ("_buffer", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < MIN_LENGTH + 6:
            raise Gt06Error(f"max_frame_bytes {max_frame_bytes} cannot hold a packet")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for a packet not complete yet (bounded by ``max_frame_bytes``)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame | Rejected]:
        buf = self._buffer
        buf += data
        out: list[Frame | Rejected] = []
        pos = 0
        end = len(buf)
        limit = self.max_frame_bytes
        while True:
            start = _find_start(buf, pos)
            if start < 0:
                # Keep a last 0x78/0x79: it may be the first half of a start marker.
                keep = 1 if end > pos and buf[end - 1] in (0x78, 0x79) else 0
                if end - keep > pos:
                    out.append(Rejected("garbage", bytes(buf[pos : end - keep])))
                pos = end - keep
                break
            if start > pos:
                out.append(Rejected("garbage", bytes(buf[pos:start])))
                pos = start
            long = buf[start] == 0x79
            head = 4 if long else 3
            if end - start < head:
                break  # the length field is not here yet
            length = _U16.unpack_from(buf, start + 2)[0] if long else buf[start + 2]
            total = head + length + 2
            if length < MIN_LENGTH:
                out.append(Rejected("length", bytes(buf[start : start + head])))
                pos = start + 2
                continue
            if total > limit:
                out.append(Rejected("oversize", bytes(buf[start : start + head])))
                pos = start + 2
                continue
            if end - start < total:
                # Wait for the rest (bounded: total <= limit), unless a complete, valid
                # packet starts further on: then this start was a stray one in garbage,
                # and a good packet must not wait behind it.
                later = _next_valid(buf, start + 2, end, limit)
                if later < 0:
                    break
                out.append(Rejected("stop", bytes(buf[start:later])))
                pos = later
                continue
            if buf[start + total - 2 : start + total] != STOP:
                out.append(Rejected("stop", bytes(buf[start : start + total])))
                pos = start + 2
                continue
            raw = bytes(buf[start : start + total])
            pos = start + total
            crc_at = total - 4
            if _U16.unpack_from(raw, crc_at)[0] != crc_x25(memoryview(raw)[2:crc_at]):
                out.append(Rejected("crc", raw))
                continue
            out.append(
                Frame(
                    protocol=raw[head],
                    content=raw[head + 1 : crc_at - 2],
                    serial=_U16.unpack_from(raw, crc_at - 2)[0],
                    long=long,
                    raw=raw,
                )
            )
        del buf[:pos]
        return out


def _next_valid(buf: bytearray, pos: int, end: int, limit: int) -> int:
    """Index of the first complete packet with good stop bytes and CRC at or after ``pos``,
    or -1. Runs only while a frame is incomplete, over at most ``limit`` bytes."""
    while True:
        start = _find_start(buf, pos)
        if start < 0:
            return -1
        long = buf[start] == 0x79
        head = 4 if long else 3
        if end - start < head:
            return -1
        length = _U16.unpack_from(buf, start + 2)[0] if long else buf[start + 2]
        total = head + length + 2
        if (
            length >= MIN_LENGTH
            and total <= limit
            and end - start >= total
            and buf[start + total - 2 : start + total] == STOP
            and _U16.unpack_from(buf, start + total - 4)[0]
            == crc_x25(memoryview(buf)[start + 2 : start + total - 4])
        ):
            return start
        pos = start + 1


def _find_start(buf: bytearray, pos: int) -> int:
    """Index of the first ``78 78`` or ``79 79`` at or after ``pos``, or -1."""
    short = buf.find(SHORT_START, pos)
    long = buf.find(LONG_START, pos)
    if short < 0:
        return long
    if long < 0:
        return short
    return min(short, long)
