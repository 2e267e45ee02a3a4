"""NMEA 0183 framing: a byte stream in, checked sentences (or reasons for rejection) out.

Pure and sans-IO. The splitter accepts any chunking (one byte at a time included), CRLF, LF or
bare CR line ends, resynchronises on the last ``$`` or ``!`` before a line end (``$$GPRMC``,
leading garbage, NULs), verifies the ``*hh`` checksum (upper or lower case hex) and keeps its buffer
bounded whatever it is fed: a run of bytes that cannot become a sentence of at most
``max_line_bytes`` is reported once as ``oversize`` and dropped while it streams in.

Rejection reasons (stable words, for counters and logs):

``checksum``     the ``*hh`` field does not match the XOR of the body
``no-checksum``  no ``*hh`` field and ``require_checksum`` is set
``oversize``     a line (or a run without a line end) whose sentence, or the garbage before it, is
                 longer than ``max_line_bytes``; one per line (a good sentence ending it is kept)
``garbage``      bytes outside any sentence, unless only whitespace or stray ``$``; one per line
``malformed``    non-printable or non-ASCII byte inside a sentence, bad address (talker/type) field
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from protocols import ProtocolError
from protocols.nmea.records import positional_constructor

__all__ = [
    "REJECT_CHECKSUM",
    "REJECT_GARBAGE",
    "REJECT_MALFORMED",
    "REJECT_NO_CHECKSUM",
    "REJECT_OVERSIZE",
    "NmeaError",
    "RawSentence",
    "Rejected",
    "SentenceSplitter",
    "checksum",
    "encode_sentence",
]

REJECT_CHECKSUM: Final = "checksum"
REJECT_NO_CHECKSUM: Final = "no-checksum"
REJECT_OVERSIZE: Final = "oversize"
REJECT_GARBAGE: Final = "garbage"
REJECT_MALFORMED: Final = "malformed"

#: How much of the offending input a rejection keeps (enough for a one-line hex dump).
REJECT_DATA_BYTES: Final = 64

# "*hh" lookup accepting upper, lower and mixed case hex digits.
_HEX: Final[dict[bytes, int]] = {
    (hi + lo).encode(): int(hi + lo, 16)
    for hi in "0123456789abcdefABCDEF"
    for lo in "0123456789abcdefABCDEF"
}

# Bytes allowed inside a sentence body: printable ASCII. Deleting them leaves only the offenders.
_PRINTABLE: Final = bytes(range(0x20, 0x7F))
# Standard address: 2-character talker + 3-character type; proprietary: "P" + maker (+ type).
_STANDARD_ADDRESS: Final = re.compile(r"[A-Z0-9]{2}[A-Z0-9]{3}")
_PROPRIETARY_ADDRESS: Final = re.compile(r"P[A-Z0-9]{2,24}")
# Whitespace and stray start characters ("$$GPRMC") are not worth a garbage report.
_NOT_GARBAGE: Final = b" \t\n\r\x0b\x0c$!"
# Standard types that may follow a talker starting with "P" (Quectel sends "$PQGSV" for QZSS).
_STANDARD_KINDS: Final = frozenset({"RMC", "GGA", "GLL", "VTG", "GSA", "GSV", "ZDA", "TXT", "GNS"})


class NmeaError(ProtocolError):
    """A sentence that framed correctly but whose fields make no sense (or cannot be encoded)."""


@dataclass(frozen=True, slots=True)
class RawSentence:
    """One framed sentence whose checksum (if any) matched.

    ``talker`` is the 2-character talker ("GP", "GN", "BD", ...) or "P" for a proprietary sentence,
    whose maker and type are then in ``kind`` ("SRFEPE", "GLOR"). ``fields`` are the comma-separated
    fields after the address field; ``raw`` is the line from the start character to the checksum.
    """

    talker: str
    kind: str
    fields: tuple[str, ...]
    raw: bytes


_raw_sentence: Final = positional_constructor(RawSentence)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that did not make a sentence: a stable ``reason`` and at most 64 bytes of the input."""

    reason: str
    data: bytes


def checksum(body: bytes) -> int:
    """XOR of every byte of ``body`` (the bytes between ``$`` and ``*``, both excluded)."""
    # Fold the body as one big integer: ``v ^= v >> s`` XORs byte i + s/8 into byte i, so after
    # shifts of 512, 256, ..., 8 bits the low byte is the XOR of the first 128 bytes (bits above
    # it are left-over garbage, masked off). Seven big-int operations instead of a per-byte loop.
    value = int.from_bytes(body, "little")
    if len(body) > 128:  # longer than any real sentence: fold it down to 128 bytes first
        shift = 1024
        while shift < len(body) * 8:
            shift <<= 1
        while shift > 512:
            shift >>= 1
            value = (value >> shift) ^ (value & ((1 << shift) - 1))
    value ^= value >> 512
    value ^= value >> 256
    value ^= value >> 128
    value ^= value >> 64
    value ^= value >> 32
    value ^= value >> 16
    value ^= value >> 8
    return value & 0xFF


def encode_sentence(talker: str, kind: str, fields: Sequence[str]) -> bytes:
    """Build ``$<talker><kind>,<fields...>*HH\\r\\n``.

    Fields may contain commas (TXT text) but not ``$ ! *``, line ends or non-printable bytes.
    """
    address = talker + kind
    if not (_STANDARD_ADDRESS.fullmatch(address) or _PROPRIETARY_ADDRESS.fullmatch(address)):
        raise NmeaError(f"invalid address field {address!r}")
    body_text = ",".join((address, *fields))
    try:
        body = body_text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise NmeaError(f"non-ASCII field in {address} sentence") from exc
    if body.translate(None, _PRINTABLE) or b"$" in body or b"!" in body or b"*" in body:
        raise NmeaError(f"reserved or non-printable character in {address} sentence")
    return b"$%s*%02X\r\n" % (body, checksum(body))


class SentenceSplitter:
    """Push-style NMEA line splitter: ``feed(bytes) -> list[RawSentence | Rejected]``.

    The internal buffer never holds more than about ``max_line_bytes`` bytes between calls.
    """

    __slots__ = (
        "_buf",
        "_junk_head",
        "_junk_len",
        "_junk_text",
        "_limit",
        "_oversize",
        "max_line_bytes",
        "require_checksum",
    )

    def __init__(self, max_line_bytes: int = 82, *, require_checksum: bool = True) -> None:
        if max_line_bytes < 8:
            raise ValueError(f"max_line_bytes must be at least 8, got {max_line_bytes}")
        self.max_line_bytes = max_line_bytes
        self.require_checksum = require_checksum
        # The limit counts the start character and the CRLF, the line in the buffer has no CRLF.
        # A line is oversize iff the garbage before its last start character, or what follows that
        # start character, is longer than the limit. Both only grow as the line streams in, so the
        # verdict can be given (once) as early as it is true and does not depend on the chunking.
        self._limit = max_line_bytes - 2
        self._buf = b""  # bytes of the current line not yet summarised (bounded)
        self._junk_head = b""  # first bytes of the garbage already dropped from this line
        self._junk_text = False  # that dropped garbage had non-whitespace bytes
        self._junk_len = 0  # how many bytes of garbage were dropped from this line
        self._oversize = False  # this line was already reported as oversize

    @property
    def pending_bytes(self) -> int:
        """Bytes held while waiting for a line end (bounded by about ``max_line_bytes``)."""
        return len(self._buf) + len(self._junk_head)

    def feed(self, data: bytes) -> list[RawSentence | Rejected]:
        """Consume ``data`` (any chunk of the stream); return what it completed, in stream order."""
        out: list[RawSentence | Rejected] = []
        if not data:
            return out
        # A bare CR ends a line too; CRLF then yields an empty line, which is skipped.
        data = bytes(data).replace(b"\r", b"\n")
        if self._buf:
            data = self._buf + data
        lines = data.split(b"\n")
        tail = lines.pop()
        self._buf = b""
        if lines and (self._oversize or self._junk_len):
            # Only the first line can continue a run summarised by an earlier feed; once it has
            # ended the line state is clean again, which the fast path below relies on.
            self._scan(lines[0], out, True)
            del lines[0]
        limit = self._limit
        append = out.append
        hex_value = _HEX.get
        for line in lines:
            if not line:
                continue
            # Fast path, the common case: "$...*hh" with a valid hex checksum, no other start
            # character, short enough. For such a line _scan() finds no garbage and no oversize,
            # and _sentence() strips nothing, so checking it here gives the very same result.
            expected = hex_value(line[-2:])
            if (
                expected is not None
                and line[0] == 0x24  # "$"
                and line[-3] == 0x2A  # "*"
                and len(line) <= limit
                and line.rfind(b"$") == 0
                and b"!" not in line
            ):
                body = line[1:-3]
                if checksum(body) == expected:
                    append(_checked(line, body))
                else:
                    append(Rejected(REJECT_CHECKSUM, line[:REJECT_DATA_BYTES]))
            else:
                self._scan(line, out, True)
        if tail:
            self._scan(tail, out, False)
        return out

    def _scan(  # noqa: PLR0912 - the line state machine reads best in one place
        self, seg: bytes, out: list[RawSentence | Rejected], at_end: bool
    ) -> None:
        """Handle ``seg``, the unsummarised rest of the line (``at_end``: a line end follows)."""
        start = max(seg.rfind(b"$"), seg.rfind(b"!"))
        if start < 0:
            junk, cand = seg, b""
        else:
            junk, cand = seg[:start], seg[start:]
        if not self._oversize and (
            len(cand) > self._limit or self._junk_len + len(junk) > self._limit
        ):
            out.append(Rejected(REJECT_OVERSIZE, (self._junk_head + seg)[:REJECT_DATA_BYTES]))
            self._oversize = True
        if self._oversize:
            # Drop everything but a candidate sentence at the end of the run that is short enough;
            # it is delivered if it is good, and silently part of the rejected run if not.
            if len(cand) > self._limit:
                cand = b""
            if at_end:
                self._reset_line()
                if cand:
                    found: list[RawSentence | Rejected] = []
                    self._sentence(cand, found)
                    out.extend(item for item in found if isinstance(item, RawSentence))
            else:
                self._buf = cand
            return
        if at_end:
            if self._junk_text or junk.strip(_NOT_GARBAGE):
                out.append(Rejected(REJECT_GARBAGE, (self._junk_head + junk)[:REJECT_DATA_BYTES]))
            self._reset_line()
            if cand:
                self._sentence(cand, out)
        elif len(seg) > self._limit:
            # Bound the buffer: keep only the candidate, summarise the garbage before it.
            if len(self._junk_head) < REJECT_DATA_BYTES:
                self._junk_head = (self._junk_head + junk)[:REJECT_DATA_BYTES]
            self._junk_text = self._junk_text or bool(junk.strip(_NOT_GARBAGE))
            self._junk_len += len(junk)
            self._buf = cand
        else:
            self._buf = seg

    def _reset_line(self) -> None:
        self._oversize = False
        self._junk_head = b""
        self._junk_text = False
        self._junk_len = 0

    def _sentence(self, line: bytes, out: list[RawSentence | Rejected]) -> None:
        """Check one candidate line (start character first, no line end) and append the result."""
        line = line.rstrip(b" \t")
        if len(line) >= 4 and line[-3] == 0x2A:  # "*hh"
            body = line[1:-3]
            expected = _HEX.get(line[-2:])
            if expected is None or checksum(body) != expected:
                out.append(Rejected(REJECT_CHECKSUM, line[:REJECT_DATA_BYTES]))
                return
        elif self.require_checksum:
            out.append(Rejected(REJECT_NO_CHECKSUM, line[:REJECT_DATA_BYTES]))
            return
        else:
            body = line[1:]
        out.append(_checked(line, body))


# Address field -> (talker, kind), or () when it is invalid. Receivers send a handful of addresses
# over and over, so each is checked once; the cache stops growing at _ADDRESS_CACHE_MAX entries
# (random input can make any number of distinct ones).
_ADDRESS_CACHE: Final[dict[str, tuple[str, str] | tuple[()]]] = {}
_ADDRESS_CACHE_MAX: Final = 512


def _address(address: str) -> tuple[str, str] | tuple[()]:
    """Split an address field into (talker, kind); () if it is neither standard nor proprietary."""
    result: tuple[str, str] | tuple[()]
    if (
        len(address) == 5
        and (address[0] != "P" or address[2:] in _STANDARD_KINDS)
        and _STANDARD_ADDRESS.fullmatch(address)
    ):
        result = (address[:2], address[2:])
    elif _PROPRIETARY_ADDRESS.fullmatch(address):
        result = ("P", address[1:])
    else:
        result = ()
    if len(_ADDRESS_CACHE) < _ADDRESS_CACHE_MAX:
        _ADDRESS_CACHE[address] = result
    return result


def _checked(line: bytes, body: bytes) -> RawSentence | Rejected:
    """The sentence of ``line`` whose checksum (if any) matched ``body``, or why it is malformed."""
    # Deleting the printable bytes leaves only the offenders (if any): one C pass over the body.
    if body.translate(None, _PRINTABLE) or b"*" in body:
        return Rejected(REJECT_MALFORMED, line[:REJECT_DATA_BYTES])
    parts = body.decode("ascii").split(",")
    address = parts[0]
    talker_kind = _ADDRESS_CACHE.get(address)
    if talker_kind is None:
        talker_kind = _address(address)
    if not talker_kind:
        return Rejected(REJECT_MALFORMED, line[:REJECT_DATA_BYTES])
    return _raw_sentence(talker_kind[0], talker_kind[1], tuple(parts[1:]), line)
