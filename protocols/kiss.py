"""KISS framing between a host and a TNC: a streaming decoder and the encoders.

Sources (facts only, no code taken):

- K3MC/KA9Q, "The KISS TNC: A simple Host-to-TNC communications protocol"
  (http://www.ax25.net/kiss.aspx): FEND ``C0``, FESC ``DB``, TFEND ``DC``, TFESC ``DD``; the
  type byte's high nibble is the port, the low nibble the command (0 data, 1 TXDELAY, 2 P, 3
  SlotTime, 4 TXtail, 5 FullDuplex, 6 SetHardware, ``FF`` return from KISS); two FENDs in a row
  delimit no frame.
- ``docs/protocols/aprs.md`` section 1 (the same facts with their sources; direwolf 1.6 also
  skips ``C0 C0``).

Decisions the spec leaves open:

- Bytes before the first FEND are line noise and are dropped (the spec tells senders to start every
  frame with a FEND for exactly this reason).
- FESC followed by anything but TFEND/TFESC ("take no action" in the spec) rejects the whole frame:
  a corrupted escape means a corrupted payload, and AX.25 on the host link carries no FCS to catch
  it.
- ``max_frame_bytes`` bounds the unescaped payload (type byte excluded). The decoder never holds
  more than ``2 * max_frame_bytes + 2`` escaped bytes, the worst case of a legal frame; anything
  longer is rejected once, as soon as it is known to be too long, and the decoder resynchronises on
  the next FEND. This caps memory against a peer that never sends FEND.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from protocols import ProtocolError

__all__ = [
    "FEND",
    "FESC",
    "TFEND",
    "TFESC",
    "KissCommand",
    "KissDecoder",
    "KissError",
    "KissFrame",
    "KissRejected",
    "encode_frame",
    "encode_full_duplex",
    "encode_persistence",
    "encode_return",
    "encode_set_hardware",
    "encode_slot_time",
    "encode_tx_delay",
    "encode_tx_tail",
    "escape",
]

FEND = 0xC0
FESC = 0xDB
TFEND = 0xDC
TFESC = 0xDD

_FEND_B = b"\xc0"
_FESC_B = b"\xdb"
_ESC_FEND = b"\xdb\xdc"
_ESC_FESC = b"\xdb\xdd"


class KissError(ProtocolError):
    """A KISS frame or a KISS encoder argument is invalid."""


class KissCommand(IntEnum):
    """The command nibble of the KISS type byte (KISS spec, "Frame types")."""

    DATA = 0
    TX_DELAY = 1
    PERSISTENCE = 2
    SLOT_TIME = 3
    TX_TAIL = 4
    FULL_DUPLEX = 5
    SET_HARDWARE = 6


@dataclass(frozen=True, slots=True)
class KissFrame:
    """One KISS frame: ``payload`` is unescaped; ``raw`` is the escaped bytes between the FENDs."""

    port: int
    command: int
    payload: bytes
    raw: bytes = field(default=b"", repr=False, compare=False)


RejectReason = Literal["invalid-escape", "oversize"]


@dataclass(frozen=True, slots=True)
class KissRejected:
    """A frame the decoder dropped and why; ``raw`` holds its bytes (the first 64 when oversize)."""

    reason: RejectReason
    raw: bytes = field(repr=False)


def escape(data: bytes) -> bytes:
    """Escape FEND and FESC (FESC first, so the FESCs added for FEND stay intact)."""
    return data.replace(_FESC_B, _ESC_FESC).replace(_FEND_B, _ESC_FEND)


def _unescape(raw: bytes) -> bytes | None:
    """Undo :func:`escape`; ``None`` if some FESC is not followed by TFEND or TFESC.

    Every FESC must start a pair, so the frame is valid exactly when the FESC count equals the count
    of valid pairs (the two pairs cannot overlap: neither second byte is FESC).
    """
    n_esc = raw.count(_FESC_B)
    if not n_esc:
        return raw
    if n_esc != raw.count(_ESC_FEND) + raw.count(_ESC_FESC):
        return None
    return raw.replace(_ESC_FEND, _FEND_B).replace(_ESC_FESC, _FESC_B)


class KissDecoder:
    """Streaming KISS decoder: feed any chunking of the byte stream, get whole frames back.

    Counters (``frames``, ``invalid_escapes``, ``oversize``, ``noise_bytes``) only ever grow.
    """

    __slots__ = (
        "_buf",
        "_discarding",
        "_limit_raw",
        "_synced",
        "frames",
        "invalid_escapes",
        "max_frame_bytes",
        "noise_bytes",
        "oversize",
    )

    def __init__(self, max_frame_bytes: int = 1024) -> None:
        if max_frame_bytes < 1:
            raise KissError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        # Escaped bytes of a legal frame: type byte (escaped: 2) + 2 per payload byte at worst.
        self._limit_raw = 2 * max_frame_bytes + 2
        self._buf = bytearray()
        self._synced = False
        self._discarding = False
        self.frames = 0
        self.invalid_escapes = 0
        self.oversize = 0
        self.noise_bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the frame in progress (never more than ``2 * max_frame_bytes + 2``)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[KissFrame | KissRejected]:
        """Consume ``data``; return the frames it completed and those it caused to be rejected."""
        out: list[KissFrame | KissRejected] = []
        parts = data.split(_FEND_B)
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i == last:
                self._hold(part, out)
                break
            # ``part`` ends at a FEND.
            if not self._synced:
                self.noise_bytes += len(part)
                self._synced = True
                continue
            if self._discarding:
                self._discarding = False
                continue
            if self._buf:
                if len(self._buf) + len(part) > self._limit_raw:
                    self._reject_oversize(bytes(self._buf[:64]), out)
                    self._buf.clear()
                    continue
                self._buf += part
                raw = bytes(self._buf)
                self._buf.clear()
            else:
                raw = part
            if raw:
                self._emit(raw, out)
        return out

    def _hold(self, part: bytes, out: list[KissFrame | KissRejected]) -> None:
        """Keep the unterminated tail of a chunk, within the bound."""
        if not part:
            return
        if not self._synced:
            self.noise_bytes += len(part)
            return
        if self._discarding:
            return
        if len(self._buf) + len(part) > self._limit_raw:
            self._reject_oversize(bytes(self._buf[:64]) if self._buf else part[:64], out)
            self._buf.clear()
            self._discarding = True
            return
        self._buf += part

    def _reject_oversize(self, head: bytes, out: list[KissFrame | KissRejected]) -> None:
        self.oversize += 1
        out.append(KissRejected("oversize", head))

    def _emit(self, raw: bytes, out: list[KissFrame | KissRejected]) -> None:
        if len(raw) > self._limit_raw:
            self._reject_oversize(raw[:64], out)
            return
        frame = _unescape(raw)
        if frame is None:
            self.invalid_escapes += 1
            out.append(KissRejected("invalid-escape", raw))
            return
        if len(frame) - 1 > self.max_frame_bytes:
            self._reject_oversize(raw[:64], out)
            return
        kind = frame[0]
        self.frames += 1
        out.append(KissFrame(kind >> 4, kind & 0x0F, frame[1:], raw))


def encode_frame(payload: bytes, port: int = 0, command: int = KissCommand.DATA) -> bytes:
    """``FEND type escaped-payload FEND``; the leading FEND flushes line noise at the TNC."""
    if not 0 <= port <= 15:
        raise KissError(f"KISS port must be 0..15, got {port}")
    if not 0 <= command <= 15:
        raise KissError(f"KISS command must be 0..15, got {command}")
    kind = bytes(((port << 4) | command,))
    return _FEND_B + escape(kind) + escape(payload) + _FEND_B


def _byte_param(name: str, value: int) -> bytes:
    if not 0 <= value <= 255:
        raise KissError(f"{name} must encode to 0..255, got {value}")
    return bytes((value,))


def encode_tx_delay(delay_ms: int, port: int = 0) -> bytes:
    """TXDELAY (command 1): keyup delay in 10 ms units, rounded; spec default 50 (500 ms)."""
    return encode_frame(_byte_param("TXDELAY", round(delay_ms / 10)), port, KissCommand.TX_DELAY)


def encode_persistence(p: float, port: int = 0) -> bytes:
    """Persistence (command 2): the spec's byte is ``p * 256 - 1`` for a probability 0 < p <= 1."""
    if not 0.0 < p <= 1.0:
        raise KissError(f"persistence probability must be in (0, 1], got {p}")
    return encode_frame(_byte_param("P", round(p * 256) - 1), port, KissCommand.PERSISTENCE)


def encode_slot_time(slot_ms: int, port: int = 0) -> bytes:
    """SlotTime (command 3) in 10 ms units, rounded; spec default 10 (100 ms)."""
    return encode_frame(_byte_param("SLOTTIME", round(slot_ms / 10)), port, KissCommand.SLOT_TIME)


def encode_tx_tail(tail_ms: int, port: int = 0) -> bytes:
    """TXtail (command 4, obsolete in the spec but honoured by direwolf) in 10 ms units, rounded."""
    return encode_frame(_byte_param("TXTAIL", round(tail_ms / 10)), port, KissCommand.TX_TAIL)


def encode_full_duplex(enabled: bool, port: int = 0) -> bytes:
    """FullDuplex (command 5): 0 half duplex (spec default), nonzero full duplex."""
    return encode_frame(b"\x01" if enabled else b"\x00", port, KissCommand.FULL_DUPLEX)


def encode_set_hardware(data: bytes, port: int = 0) -> bytes:
    """SetHardware (command 6): TNC-specific bytes, passed through."""
    return encode_frame(data, port, KissCommand.SET_HARDWARE)


def encode_return() -> bytes:
    """Leave KISS mode: the whole type byte is ``FF`` (no port nibble), no payload."""
    return b"\xc0\xff\xc0"
