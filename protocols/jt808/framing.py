"""JT/T 808 framing: 0x7E flags, 0x7D escaping, the XOR check code and the message header.

Facts from ``../shared/notes/jt808.md``: section 1 (frame, escaping, check code: G10LS 1.4,
QuecPython, rootcastleco for the strict escape rule) and section 2 (header 2011/2013 and 2019:
yezhihao JTMessage, SmallChi JT808HeaderMessageBodyProperty, EMQX, G10LS).

Receive: :class:`FrameSplitter` cuts a byte stream into frames (flags stripped, still escaped),
bounded in size; :func:`decode_frame` unescapes, verifies the check code and the body length,
and parses the header. Send: :func:`encode_frame` builds header and body, computes the check
code, escapes and adds the flags.

Hot path: every 0x0200 from every terminal goes through :func:`decode_frame` and every ack
through :func:`encode_frame`, so both use ``struct`` and ``bytes`` methods rather than
``construct`` (performance notes: construct parses about 57k structs/s plain, 266k/s compiled;
struct about 9.6M/s; at 5,000 terminals the header costs more than everything else per frame).
"""

from __future__ import annotations

import functools
import operator
import struct
from dataclasses import dataclass
from typing import Final

from protocols import ProtocolError

__all__ = [
    "FLAG",
    "MAX_BODY_BYTES",
    "MAX_WIRE_FRAME_BYTES",
    "Frame",
    "FrameSplitter",
    "Header",
    "Jt808Error",
    "Rejected",
    "decode_bcd_phone",
    "decode_frame",
    "encode_bcd_phone",
    "encode_frame",
    "escape",
    "unescape",
    "xor_check",
]

FLAG: Final = 0x7E
ESCAPE: Final = 0x7D
MAX_BODY_BYTES: Final = 1023
"""Bits 0-9 of the body properties: the longest body of one frame (notes section 2)."""
MAX_CONTENT_BYTES: Final = 21 + MAX_BODY_BYTES + 1
"""The largest 2019 subpackage header, the largest body and the check code, unescaped."""
MAX_WIRE_FRAME_BYTES: Final = 2 * MAX_CONTENT_BYTES
"""Every byte escaped: nothing longer between two flags is a frame (a 64 KB "frame" is dropped
as soon as it passes this, so one peer can never make the gateway buffer more)."""

ATTR_LENGTH_MASK: Final = 0x03FF
ATTR_ENCRYPT_SHIFT: Final = 10
ATTR_SUBPACKAGE: Final = 1 << 13
ATTR_VERSION: Final = 1 << 14

_HEADER_2013 = struct.Struct(">HH6sH")
_HEADER_2019 = struct.Struct(">HHB10sH")
_PARTS = struct.Struct(">HH")


class Jt808Error(ProtocolError):
    """A JT/T 808 frame or body is malformed, truncated or oversize, or cannot be encoded.

    ``reason`` is a short fixed word for counters: ``check`` (check code), ``escape``,
    ``length`` (body length field), ``malformed`` (anything else)."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Header:
    """The message header.

    ``version`` is ``None`` for a 2011/2013 frame, else the 2019 protocol version byte (1).
    ``phone`` is the BCD terminal phone as decimal digits (12 in 2013, 20 in 2019; a binary
    IMEI is rendered as its digits, see :func:`decode_bcd_phone`). ``parts`` is ``(total,
    index)`` for a subpackage, index 1-based.
    """

    msg_id: int
    phone: str
    serial: int
    version: int | None = None
    encrypt: int = 0
    parts: tuple[int, int] | None = None

    @property
    def edition_2019(self) -> bool:
        return self.version is not None


@dataclass(frozen=True, slots=True)
class Frame:
    """One verified frame: its header, its body (a fragment when subpackaged) and the raw
    phone bytes (replies carry them back unchanged)."""

    header: Header
    body: bytes
    phone_bcd: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """Bytes the splitter threw away, and why (``garbage``, ``oversize``)."""

    reason: str
    data: bytes


def escape(content: bytes) -> bytes:
    """``7D -> 7D 01`` first, then ``7E -> 7D 02`` (the other order would escape twice)."""
    if b"\x7d" in content:
        content = content.replace(b"\x7d", b"\x7d\x01")
    if b"\x7e" in content:
        content = content.replace(b"\x7e", b"\x7d\x02")
    return content


def unescape(data: bytes) -> bytes:
    """Undo :func:`escape`; a ``7D`` not followed by ``01`` or ``02`` is an error.

    ``7D 02`` is replaced first: the pass for ``7D 01`` then cannot see a ``7D`` that a
    replacement produced (``7D 01 02`` is ``7D 02``, never ``7E``)."""
    if b"\x7d" not in data:
        return data
    escapes = data.count(b"\x7d")
    if escapes != data.count(b"\x7d\x01") + data.count(b"\x7d\x02"):
        at = next(
            i
            for i in range(len(data))
            if data[i] == ESCAPE and data[i + 1 : i + 2] not in (b"\x01", b"\x02")
        )
        raise Jt808Error(
            f"invalid escape 7D {data[at + 1 : at + 2].hex() or 'at the end'}", "escape"
        )
    return data.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


def xor_check(data: bytes) -> int:
    """XOR of every byte. ``functools.reduce`` over the bytes: measured 0.7 us for a 40-byte
    0x0200 frame, faster than folding the bytes as one big integer (1.1 us)."""
    return functools.reduce(operator.xor, data, 0)


def decode_bcd_phone(raw: bytes) -> str:
    """BCD digits; a terminal that puts a binary IMEI in the 6 bytes (hex not all decimal,
    notes section 2 after Traccar ``decodeId``) gets the 48-bit number plus its Luhn digit."""
    digits = raw.hex()
    if digits.isdigit():
        return digits
    number = str(int.from_bytes(raw, "big"))
    return number + _luhn_digit(number)


def _luhn_digit(number: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def encode_bcd_phone(phone: str, edition_2019: bool) -> bytes:
    """Left-padded with zeros to 12 (2013) or 20 (2019) digits."""
    width = 20 if edition_2019 else 12
    if not phone.isascii() or not phone.isdigit() or len(phone) > width:
        raise Jt808Error(f"{phone!r} is not a phone number of up to {width} digits")
    return bytes.fromhex(phone.rjust(width, "0"))


def decode_frame(data: bytes) -> Frame:
    """One frame as :class:`FrameSplitter` yields it (flags stripped, escaped): unescape,
    verify the check code and the body length, parse the header."""
    content = unescape(data)
    if len(content) < _HEADER_2013.size + 1:
        raise Jt808Error(f"frame of {len(content)} bytes is shorter than a header")
    if len(content) > MAX_CONTENT_BYTES:
        raise Jt808Error(f"frame of {len(content)} bytes is longer than any frame")
    check = content[-1]
    if xor_check(content[:-1]) != check:
        raise Jt808Error(f"check code {check:02x}, computed {xor_check(content[:-1]):02x}", "check")
    msg_id, attr = content[0] << 8 | content[1], content[2] << 8 | content[3]
    if attr & ATTR_VERSION:
        if len(content) < _HEADER_2019.size + 1:
            raise Jt808Error("2019 frame shorter than its header")
        _, _, version, phone_bcd, serial = _HEADER_2019.unpack_from(content)
        offset = _HEADER_2019.size
        version_out: int | None = version
    else:
        _, _, phone_bcd, serial = _HEADER_2013.unpack_from(content)
        offset = _HEADER_2013.size
        version_out = None
    parts: tuple[int, int] | None = None
    if attr & ATTR_SUBPACKAGE:
        if len(content) < offset + _PARTS.size + 1:
            raise Jt808Error("subpackage frame shorter than its header")
        total, index = _PARTS.unpack_from(content, offset)
        if total == 0 or not 1 <= index <= total:
            raise Jt808Error(f"subpackage {index} of {total}")
        parts = (total, index)
        offset += _PARTS.size
    body = content[offset:-1]
    if len(body) != attr & ATTR_LENGTH_MASK:
        raise Jt808Error(
            f"body of {len(body)} bytes, header says {attr & ATTR_LENGTH_MASK}", "length"
        )
    header = Header(
        msg_id, decode_bcd_phone(phone_bcd), serial, version_out,
        (attr >> ATTR_ENCRYPT_SHIFT) & 0x7, parts,
    )  # fmt: skip
    return Frame(header, body, phone_bcd)


def encode_frame(
    msg_id: int,
    phone_bcd: bytes,
    serial: int,
    body: bytes,
    *,
    version: int | None = None,
    parts: tuple[int, int] | None = None,
) -> bytes:
    """A whole wire frame, flags included. ``version`` not None makes a 2019 header (then
    ``phone_bcd`` has 10 bytes, else 6)."""
    if len(body) > MAX_BODY_BYTES:
        raise Jt808Error(f"body of {len(body)} bytes is longer than {MAX_BODY_BYTES}")
    if not 0 <= serial <= 0xFFFF or not 0 <= msg_id <= 0xFFFF:
        raise Jt808Error("message id and serial are 16-bit")
    attr = len(body)
    if parts is not None:
        attr |= ATTR_SUBPACKAGE
    if version is None:
        if len(phone_bcd) != 6:
            raise Jt808Error("a 2013 header carries a 6-byte phone")
        head = _HEADER_2013.pack(msg_id, attr, phone_bcd, serial)
    else:
        if len(phone_bcd) != 10:
            raise Jt808Error("a 2019 header carries a 10-byte phone")
        head = _HEADER_2019.pack(msg_id, attr | ATTR_VERSION, version & 0xFF, phone_bcd, serial)
    if parts is not None:
        head += _PARTS.pack(*parts)
    content = head + body
    content += bytes((xor_check(content),))
    return b"\x7e" + escape(content) + b"\x7e"


class FrameSplitter:
    """Push-style: ``feed(bytes)`` returns the complete frames (escaped, flags stripped) and
    what it threw away. Each ``7E`` ends the frame in progress and starts the next (``7E 7E``
    between two frames is an end and a start). Bytes before the first flag are ``garbage``; a
    frame growing past ``max_frame_bytes`` is dropped whole as ``oversize`` (reported once)
    and everything up to the next flag with it."""

    __slots__ = ("_buffer", "_discarding", "_in_frame", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = MAX_WIRE_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = b""
        self._in_frame = False
        self._discarding = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | Rejected]:
        out: list[bytes | Rejected] = []
        pieces = data.split(b"\x7e")
        first = pieces[0]
        if not self._in_frame:
            if first:
                out.append(Rejected("garbage", first[:64]))
        elif not self._discarding:
            self._grow(first, out)
        for piece in pieces[1:]:
            # a flag: the frame in progress ends here, and the next one starts
            if self._in_frame and not self._discarding and self._buffer:
                out.append(self._buffer)
            self._in_frame = True
            self._discarding = False
            self._buffer = b""
            self._grow(piece, out)
        return out

    def _grow(self, piece: bytes, out: list[bytes | Rejected]) -> None:
        if not piece:
            return
        if len(self._buffer) + len(piece) > self.max_frame_bytes:
            out.append(Rejected("oversize", self._buffer[:32] + piece[:32]))
            self._buffer = b""
            self._discarding = True
            return
        self._buffer = self._buffer + piece if self._buffer else piece
