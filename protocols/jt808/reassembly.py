"""Subpackage (分包) reassembly, bounded in parts, in messages and in time.

Notes section 3 (go-jt808 ``completePack``; SmallChi): a subpackaged message carries ``(total,
index)`` in its header, each packet's body is a fragment, and the packets of one message have
consecutive serials, so ``serial - (index - 1)`` is the first packet's serial: the message is
keyed by ``(message id, first serial)``. A fragment is never given to a body decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from protocols.jt808.framing import Jt808Error

__all__ = ["MAX_PARTS", "Reassembler"]

MAX_PARTS: Final = 64
"""More packets than this for one message is refused (a long 0x0704 batch needs a few; a
0x0801 photo needs hundreds, and the gateway does not take photos)."""
MAX_PENDING: Final = 4
"""Messages being reassembled at once per terminal; the oldest is dropped beyond it."""
TIMEOUT_S: Final = 60.0
"""A message whose packets do not all arrive within this is dropped."""


@dataclass(slots=True)
class _Pending:
    total: int
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """One per terminal connection. :meth:`add` returns the whole body when the last packet
    of a message arrives, ``None`` before; :class:`Jt808Error` for a packet out of bounds.
    Times are the caller's monotonic clock (sans-IO)."""

    def __init__(
        self,
        *,
        max_parts: int = MAX_PARTS,
        max_pending: int = MAX_PENDING,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.max_parts = max_parts
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self._pending: dict[tuple[int, int], _Pending] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def missing(self, msg_id: int, first_serial: int) -> tuple[int, ...]:
        """Indexes not received yet of a message being reassembled (for 0x8003)."""
        pending = self._pending.get((msg_id, first_serial))
        if pending is None:
            return ()
        return tuple(i for i in range(1, pending.total + 1) if i not in pending.parts)

    def add(
        self, msg_id: int, serial: int, total: int, index: int, fragment: bytes, *, now: float
    ) -> bytes | None:
        if total > self.max_parts:
            raise Jt808Error(f"message in {total} packets, at most {self.max_parts} taken")
        if not 1 <= index <= total:
            raise Jt808Error(f"packet {index} of {total}")
        self.expire(now)
        key = (msg_id, (serial - (index - 1)) & 0xFFFF)
        pending = self._pending.get(key)
        if pending is None:
            while len(self._pending) >= self.max_pending:
                del self._pending[next(iter(self._pending))]
                self.dropped += 1
            pending = self._pending[key] = _Pending(total, now)
        elif pending.total != total:
            del self._pending[key]
            self.dropped += 1
            raise Jt808Error(
                f"packet says {total} packets, the message started with {pending.total}"
            )
        if index not in pending.parts:  # a repeated packet: the first copy stands
            pending.parts[index] = fragment
            pending.size += len(fragment)
        if len(pending.parts) < total:
            return None
        del self._pending[key]
        return b"".join(pending.parts[i] for i in range(1, total + 1))

    def expire(self, now: float) -> int:
        stale = [k for k, p in self._pending.items() if now - p.started > self.timeout_s]
        for key in stale:
            del self._pending[key]
        self.dropped += len(stale)
        return len(stale)
