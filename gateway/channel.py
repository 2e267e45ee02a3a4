"""A half-duplex radio channel: one transmission at a time, most urgent first.

A radio link (a KISS TNC, a DMR radio) can carry one frame at a time, and a TNC that
is handed many frames queues them in its own FIFO, where an urgent task would wait
behind routine chatter. The :class:`Channel` therefore hands the link one frame at a
time: it writes the frame, holds the channel for the frame's airtime (plus the
driver's pacing gap), then picks the next frame by priority (urgent before normal
before routine) and, within a priority, first come first served.

Retries are the caller's: a driver that wants a frame confirmed transmits it again
through the channel after its own timeout, with the same priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.errors import LinkError

log = logging.getLogger(__name__)

URGENT = 0
NORMAL = 1
ROUTINE = 2
PRIORITIES = {"urgent": URGENT, "normal": NORMAL, "routine": ROUTINE}

QUEUE_MAX = 10_000
"""Frames waiting on one channel; beyond this a transmit request fails at once."""


class ChannelFull(LinkError):
    """The channel's queue is at its bound; the caller should fail over or report."""


@dataclass(order=True)
class _Pending:
    priority: int
    seq: int
    frame: bytes = field(compare=False)
    done: asyncio.Future[float] = field(compare=False)


WriteFrame = Callable[[bytes], Awaitable[None]]
Airtime = Callable[[bytes], float]


class Channel:
    """The transmit queue of one link. Run :meth:`run` as a task for as long as the link lives."""

    def __init__(
        self,
        name: str,
        write: WriteFrame,
        airtime_s: Airtime,
        *,
        gap_s: float = 0.0,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self.name = name
        self._write = write
        self._airtime_s = airtime_s
        self.gap_s = gap_s
        self._queue_max = queue_max
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self.transmitted = 0
        self.busy_s = 0.0

    async def transmit(self, frame: bytes, priority: int = NORMAL) -> float:
        """Queue ``frame``; return the loop time at which it was written to the link.

        Raises :class:`ChannelFull` when the queue is at its bound and
        :class:`~gateway.errors.LinkError` when the write fails.
        """
        if len(self._heap) >= self._queue_max:
            raise ChannelFull(self.name, f"transmit queue full ({self._queue_max} frames)")
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, _Pending(priority, next(self._seq), frame, done))
        self._wakeup.set()
        try:
            return await done
        except asyncio.CancelledError:
            # Leave the heap consistent: a cancelled request is skipped when it comes up.
            done.cancel()
            raise

    def fail_all(self, reason: str) -> None:
        """Fail every waiting request (the link went down)."""
        while self._heap:
            pending = heapq.heappop(self._heap)
            if not pending.done.done():
                pending.done.set_exception(LinkError(self.name, reason))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self._heap:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                pending = heapq.heappop(self._heap)
                if pending.done.done():  # cancelled while waiting
                    continue
                try:
                    await self._write(pending.frame)
                except LinkError as exc:
                    pending.done.set_exception(exc)
                    continue
                written_at = loop.time()
                if not pending.done.done():
                    pending.done.set_result(written_at)
                self.transmitted += 1
                hold = self._airtime_s(pending.frame) + self.gap_s
                self.busy_s += hold
                # The channel is ours until the frame has left the antenna.
                await asyncio.sleep(max(0.0, written_at + hold - loop.time()))
        finally:
            self.fail_all("channel stopped")
            with contextlib.suppress(Exception):
                self._wakeup.set()


def afsk1200_airtime_s(
    frame_bytes: int, *, txdelay_s: float = 0.3, txtail_s: float = 0.05
) -> float:
    """Airtime of an AX.25 frame on a 1200 baud AFSK channel.

    Each byte is 8 bits; bit stuffing adds up to 1/5 more (about 1/10 on typical
    text, used here); flags and FCS add 4 bytes; the transmitter's key-up delay
    (TXDELAY) and tail come on top.
    """
    bits = (frame_bytes + 4) * 8 * 1.1
    return txdelay_s + bits / 1200 + txtail_s
