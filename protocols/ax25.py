"""AX.25 frames as carried inside KISS (no flags, no bit stuffing, no FCS), UI frames first.

Sources (facts only, no code taken):

- AX.25 Link Access Protocol v2.2 (https://www.tapr.org/pdf/AX25.2.2.pdf): section 3.12 address
  field (6 callsign bytes shifted left one bit, space padded; SSID byte ``C/H R R S S S S X``,
  extension bit X set only on the last address), section 4.3.3 (UI control ``03``, P/F bit
  ``10``), section 3.4 (PID ``F0`` = no layer 3; PID present only in I and UI frames), section
  6.1.2 (command frames: destination C bit 1, source C bit 0). Up to 8 digipeaters as in v2.0
  (https://www.qsl.net/lz4ny/packet/ax25.htm).
- wb2osz/direwolf ``src/ax25_pad.c`` header comment (the same layout, and the TNC2 text form
  ``SRC>DST,DIGI1,DIGI2*:info`` with ``*`` after the last digipeater whose H bit is set).
- ``docs/protocols/aprs.md`` section 2 (worked frame; direwolf sets both C bits, stations use
  every combination, so decoders ignore them: http://www.aprs.org/aprs11/C-bits-SSID.txt).

Decisions:

- ``Address.h_bit`` is bit 7 of the SSID byte for digipeaters ("has been repeated"). On the
  destination and source that bit is the command/response bit, which decoders must ignore:
  :func:`decode` reports ``h_bit=False`` there (the original bits stay in ``raw``) and
  :func:`encode` always writes an AX.25 2.0 command (destination C=1, source C=0), whatever
  ``h_bit`` the caller set.
- The reserved ``RR`` SSID bits are not checked on decode (real stations send both values); encode
  writes ``11``.
- Frames other than UI are decoded, flagged by ``is_ui`` False; only I and UI frames carry a PID.
  Modulo-128 (two-byte) control fields are not supported: the first control byte is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from protocols import ProtocolError

__all__ = [
    "MAX_DIGIPEATERS",
    "PID_NO_LAYER3",
    "UI_CONTROL",
    "Address",
    "Ax25Error",
    "Ax25Frame",
    "decode",
    "encode",
    "parse_address",
    "parse_tnc2",
]

MAX_DIGIPEATERS = 8
UI_CONTROL = 0x03
PID_NO_LAYER3 = 0xF0
_PF_BIT = 0x10
_MAX_ADDRESSES = 2 + MAX_DIGIPEATERS

_CALL_RE = re.compile(r"[A-Z0-9]{1,6}")
_ADDR_TEXT_RE = re.compile(r"([A-Za-z0-9]{1,6})(?:-(\d{1,2}))?(\*?)")

# Shifted callsign byte -> ASCII character; 0x00 for anything but a shifted A-Z, 0-9 or space.
_VALID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
_DECODE_TABLE = bytes(
    (b >> 1) if (b & 1) == 0 and (b >> 1) in _VALID_CHARS else 0 for b in range(256)
)
_ENCODE_TABLE = bytes((b << 1) & 0xFF for b in range(256))


class Ax25Error(ProtocolError):
    """An AX.25 frame or address is malformed."""


@dataclass(frozen=True, slots=True)
class Address:
    """A callsign with SSID; ``h_bit`` is the "has been repeated" bit of a digipeater entry."""

    callsign: str
    ssid: int = 0
    h_bit: bool = False

    def __post_init__(self) -> None:
        if not _CALL_RE.fullmatch(self.callsign):
            raise Ax25Error(f"callsign must be 1-6 upper-case letters or digits: {self.callsign!r}")
        if not 0 <= self.ssid <= 15:
            raise Ax25Error(f"SSID must be 0..15: {self.ssid!r}")

    @property
    def call_ssid(self) -> str:
        """``CALL`` or ``CALL-SSID`` (``-0`` omitted), without the ``*`` marker."""
        return f"{self.callsign}-{self.ssid}" if self.ssid else self.callsign

    def __str__(self) -> str:
        return self.call_ssid + "*" if self.h_bit else self.call_ssid


@dataclass(frozen=True, slots=True)
class Ax25Frame:
    """An AX.25 frame without FCS; ``raw`` keeps the bytes it was decoded from."""

    dest: Address
    source: Address
    digipeaters: tuple[Address, ...] = ()
    control: int = UI_CONTROL
    pid: int | None = PID_NO_LAYER3
    info: bytes = b""
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def is_ui(self) -> bool:
        """Unnumbered information frame (control ``03``, poll/final bit ignored)."""
        return (self.control & ~_PF_BIT) == UI_CONTROL

    def tnc2(self) -> bytes:
        """TNC2 monitor text ``SRC>DST,DIGI,...:info``, ``*`` after the last repeated digi."""
        path = [self.source.call_ssid, ">", self.dest.call_ssid]
        last_used = -1
        for i, digi in enumerate(self.digipeaters):
            if digi.h_bit:
                last_used = i
        for i, digi in enumerate(self.digipeaters):
            path.append("," + digi.call_ssid + ("*" if i == last_used else ""))
        return "".join(path).encode("ascii") + b":" + self.info


def parse_address(text: str) -> Address:
    """``"BH4ABC-10"`` -> ``Address("BH4ABC", 10)``; a trailing ``*`` sets ``h_bit``.

    Case-insensitive; raises :class:`Ax25Error` on a bad callsign or an SSID outside 0..15.
    """
    m = _ADDR_TEXT_RE.fullmatch(text.strip())
    if m is None:
        raise Ax25Error(f"not a callsign[-SSID]: {text!r}")
    ssid = int(m.group(2)) if m.group(2) is not None else 0
    if ssid > 15:
        raise Ax25Error(f"SSID must be 0..15: {text!r}")
    return Address(m.group(1).upper(), ssid, m.group(3) == "*")


# Decoded addresses by their 7 wire bytes: a channel repeats a few dozen callsigns, and Address is
# immutable, so a small cache saves most of the decoding. Cleared when full, to stay bounded.
_CACHE_MAX = 1024
_digi_cache: dict[bytes, Address] = {}
_end_cache: dict[bytes, Address] = {}


def _decode_address(chunk: bytes, digi: bool) -> Address:
    """Decode 7 address bytes; ``digi`` False ignores bit 7 (the C bit of destination/source)."""
    cache = _digi_cache if digi else _end_cache
    cached = cache.get(chunk)
    if cached is not None:
        return cached
    call = chunk[:6].translate(_DECODE_TABLE)
    if b"\x00" in call:
        raise Ax25Error(f"invalid callsign byte in address {chunk.hex()}")
    call = call.rstrip(b" ")
    if not call or b" " in call:
        raise Ax25Error(f"callsign empty or with embedded space in address {chunk.hex()}")
    ssid_byte = chunk[6]
    address = Address(call.decode("ascii"), (ssid_byte >> 1) & 0x0F, digi and ssid_byte >= 0x80)
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[chunk] = address
    return address


def decode(data: bytes) -> Ax25Frame:
    """Decode one AX.25 frame (KISS payload, no FCS). Raises :class:`Ax25Error` when malformed."""
    n = len(data)
    end = 6  # index of the SSID byte of the current address
    count = 1
    while True:
        if end >= n:
            raise Ax25Error(f"address field truncated after {count - 1} addresses ({n} bytes)")
        if data[end] & 1:
            break
        if count == _MAX_ADDRESSES:
            raise Ax25Error(f"more than {MAX_DIGIPEATERS} digipeaters")
        end += 7
        count += 1
    if count < 2:
        raise Ax25Error("address field ends after the destination: no source address")
    dest = _decode_address(data[0:7], False)  # C bits ignored on purpose (module docstring)
    source = _decode_address(data[7:14], False)
    digis = tuple(_decode_address(data[i : i + 7], True) for i in range(14, end, 7))
    ctl_at = end + 1
    if ctl_at >= n:
        raise Ax25Error("frame ends before the control field")
    control = data[ctl_at]
    if (control & ~_PF_BIT) == UI_CONTROL or not control & 1:
        if ctl_at + 1 >= n:
            raise Ax25Error("UI or I frame ends before the PID")
        return Ax25Frame(dest, source, digis, control, data[ctl_at + 1], data[ctl_at + 2 :], data)
    return Ax25Frame(dest, source, digis, control, None, data[ctl_at + 1 :], data)


def _encode_address(addr: Address, ssid_bits: int) -> bytes:
    call = addr.callsign.encode("ascii").ljust(6).translate(_ENCODE_TABLE)
    return call + bytes((ssid_bits | 0x60 | (addr.ssid << 1),))


def encode(frame: Ax25Frame) -> bytes:
    """Encode ``frame`` (no FCS: the TNC adds it). Raises :class:`Ax25Error` on invalid fields."""
    digis = frame.digipeaters
    if len(digis) > MAX_DIGIPEATERS:
        raise Ax25Error(f"{len(digis)} digipeaters, at most {MAX_DIGIPEATERS} allowed")
    if not 0 <= frame.control <= 0xFF:
        raise Ax25Error(f"control must be one byte: {frame.control!r}")
    needs_pid = frame.is_ui or not frame.control & 1
    if needs_pid and frame.pid is None:
        raise Ax25Error("UI and I frames need a PID")
    if frame.pid is not None and (not needs_pid or not 0 <= frame.pid <= 0xFF):
        raise Ax25Error(f"PID {frame.pid!r} invalid for control {frame.control:#04x}")
    parts = [
        _encode_address(frame.dest, 0x80),
        _encode_address(frame.source, 0x00 if digis else 0x01),
    ]
    last = len(digis) - 1
    for i, digi in enumerate(digis):
        parts.append(_encode_address(digi, (0x80 if digi.h_bit else 0) | (1 if i == last else 0)))
    header = bytes((frame.control,)) if frame.pid is None else bytes((frame.control, frame.pid))
    parts.append(header)
    parts.append(frame.info)
    return b"".join(parts)


def parse_tnc2(line: bytes) -> Ax25Frame:
    """Parse TNC2 monitor text ``SRC>DST[,DIGI[*]...]:info`` into a UI frame.

    A ``*`` marks the last digipeater that repeated the frame, so it and every digipeater before it
    get ``h_bit``. The info field is kept byte for byte (trailing CR/LF included: strip it first if
    needed).
    """
    header, sep, info = line.partition(b":")
    if not sep:
        raise Ax25Error(f"TNC2 line without ':' {line[:80]!r}")
    try:
        text = header.decode("ascii")
    except UnicodeDecodeError as exc:
        raise Ax25Error(f"TNC2 header is not ASCII: {header[:80]!r}") from exc
    src_text, gt, rest = text.partition(">")
    if not gt:
        raise Ax25Error(f"TNC2 header without '>': {text!r}")
    path = rest.split(",")
    digis = [parse_address(p) for p in path[1:]]
    last_used = max((i for i, d in enumerate(digis) if d.h_bit), default=-1)
    digis = [Address(d.callsign, d.ssid, i <= last_used) for i, d in enumerate(digis)]
    source = parse_address(src_text)
    dest = parse_address(path[0])
    if source.h_bit or dest.h_bit:
        raise Ax25Error(f"'*' is only meaningful on digipeaters: {text!r}")
    if len(digis) > MAX_DIGIPEATERS:
        raise Ax25Error(f"{len(digis)} digipeaters, at most {MAX_DIGIPEATERS} allowed")
    return Ax25Frame(dest, source, tuple(digis), info=info)
