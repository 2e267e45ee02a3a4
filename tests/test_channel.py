"""The half-duplex channel: one frame at a time, urgent first, FIFO within a priority."""

from __future__ import annotations

import asyncio

import pytest

from gateway.channel import NORMAL, ROUTINE, URGENT, Channel, ChannelFull, afsk1200_airtime_s
from gateway.errors import LinkError
from tests.support import run_async

pytestmark = pytest.mark.timeout(30)


class Air:
    """Records what went on air, and when."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, bytes]] = []

    async def write(self, frame: bytes) -> None:
        self.frames.append((asyncio.get_running_loop().time(), frame))


def test_urgent_goes_first_and_fifo_within_a_priority() -> None:
    async def scenario() -> None:
        air = Air()
        channel = Channel("vhf", air.write, lambda frame: 0.01)
        runner = asyncio.create_task(channel.run())
        sends = [
            asyncio.create_task(channel.transmit(name.encode(), prio))
            for name, prio in [
                ("r1", ROUTINE),
                ("n1", NORMAL),
                ("u1", URGENT),
                ("n2", NORMAL),
                ("u2", URGENT),
                ("r2", ROUTINE),
            ]
        ]
        await asyncio.gather(*sends)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        assert [f for _, f in air.frames] == [b"u1", b"u2", b"n1", b"n2", b"r1", b"r2"]
        gaps = [b - a for (a, _), (b, _) in zip(air.frames, air.frames[1:], strict=False)]
        assert all(gap >= 0.009 for gap in gaps)  # one frame per airtime

    run_async(scenario())


def test_a_cancelled_request_is_skipped() -> None:
    async def scenario() -> None:
        air = Air()
        channel = Channel("vhf", air.write, lambda frame: 0.05)
        runner = asyncio.create_task(channel.run())
        first = asyncio.create_task(channel.transmit(b"first"))
        doomed = asyncio.create_task(channel.transmit(b"doomed"))
        last = asyncio.create_task(channel.transmit(b"last"))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.gather(first, last)
        runner.cancel()
        await asyncio.gather(runner, doomed, return_exceptions=True)
        assert [f for _, f in air.frames] == [b"first", b"last"]

    run_async(scenario())


def test_write_failure_and_stop_fail_the_waiters() -> None:
    async def scenario() -> None:
        async def broken(frame: bytes) -> None:
            raise LinkError("vhf", "write failed")

        channel = Channel("vhf", broken, lambda frame: 0.0, queue_max=2)
        runner = asyncio.create_task(channel.run())
        with pytest.raises(LinkError, match="write failed"):
            await channel.transmit(b"x")
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        idle = Channel("vhf", broken, lambda frame: 0.0, queue_max=1)
        waiting = asyncio.create_task(idle.transmit(b"a"))
        await asyncio.sleep(0)
        with pytest.raises(ChannelFull):
            await idle.transmit(b"b")
        idle.fail_all("link down")
        with pytest.raises(LinkError, match="link down"):
            await waiting

    run_async(scenario())


def test_afsk_airtime_is_about_a_second_for_a_full_message() -> None:
    # A 67-character APRS message is ~100 bytes of AX.25: about 0.7 s of 1200 baud plus key-up.
    assert 0.9 < afsk1200_airtime_s(100) < 1.2
