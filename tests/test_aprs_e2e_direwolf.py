"""End to end through two real direwolf TNCs joined by simulated audio (AFSK 1200).

gateway AprsDriver --KISS/TCP--> direwolf A --audio--> direwolf B --KISS/TCP--> simulated radio,
and the radio's ack and its person's reply come back the same way. The channel keeps the real
1200 baud airtime; only the retry intervals are shorter than a deployment's.

Fails when direwolf is missing and ``CI`` is set, skipped otherwise (as test_direwolf_codec.py).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.aprs_radio import AprsRadio
from gateway.channel import URGENT
from gateway.model import Delivery, DeviceRef
from tests.conftest import IN_CI
from tests.direwolf_peer import DirewolfPair
from tests.support import run_async
from tests.test_aprs_driver import (
    GATEWAY,
    RADIO,
    Transmitted,
    check_position,
    connect_driver,
    order,
    stop_driver,
    wait_for,
)

pytestmark = [pytest.mark.direwolf, pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture(scope="module", autouse=True)
def direwolf_installed() -> None:
    if shutil.which("direwolf") is None:
        reason = "direwolf missing (apt-get install direwolf)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def start_pair(workdir: Path, **kwargs: object) -> Iterator[DirewolfPair]:
    pair = DirewolfPair(workdir, calls=(GATEWAY, RADIO), **kwargs)  # type: ignore[arg-type]
    pair.start()
    try:
        yield pair
    finally:
        leftover = pair.stop()
        assert not leftover, f"relays survived direwolf: {leftover}"


@pytest.fixture
def fast_pair(tmp_path: Path) -> Iterator[DirewolfPair]:
    """Fast TNC timing, audio at twice real time."""
    yield from start_pair(tmp_path / "dw", speed=2.0, fast=True)


@pytest.fixture
def realistic_pair(tmp_path: Path) -> Iterator[DirewolfPair]:
    """direwolf's default TXDELAY/persistence, audio in real time, B digipeats WIDE1-1."""
    yield from start_pair(tmp_path / "dw", speed=1.0, fast=False, digipeat_second=True)


def test_task_ack_and_reply_through_two_direwolf(fast_pair: DirewolfPair) -> None:
    async def scenario() -> None:
        radio = AprsRadio(
            RADIO, reply="收到", reply_delay_s=0.5, reply_retry_intervals_s=(8.0, 8.0, 8.0)
        )
        radio_task = asyncio.create_task(radio.run(("127.0.0.1", fast_pair.kiss2)))
        s = await connect_driver(fast_pair.kiss1, (6.0, 6.0, 6.0), fast=False)
        try:
            await wait_for(lambda: radio.sessions == 1, "the radio on direwolf B")
            transmitted = Transmitted()
            report = await s.driver.send_text(
                order("#12 人民广场东侧有人摔倒", URGENT), transmitted
            )
            assert report.outcome is Delivery.DELIVERED, report
            assert report.transmissions >= 1
            assert transmitted.calls == 1
            assert radio.received == [(GATEWAY, "#12 人民广场东侧有人摔倒")]
            await wait_for(lambda: len(s.sink.texts) == 1, "the person's reply", 20)
            assert s.sink.texts[0].text == "收到 #12"
            assert s.sink.texts[0].device == DeviceRef("vhf", RADIO)
            await wait_for(lambda: radio.replies_acked == ["R1"], "our ack at the radio", 20)
            # A position on request, through the air as well.
            assert await s.driver.poll_location(RADIO)
            await wait_for(lambda: len(s.sink.positions) == 1, "the radio's position", 20)
            check_position(s.sink.positions[0])
            assert s.driver.pending == 0
        finally:
            await stop_driver(s)
            radio_task.cancel()
            await asyncio.gather(radio_task, return_exceptions=True)

    run_async(scenario(), timeout_s=75)


def test_two_part_text_with_default_timing_and_a_digipeater(realistic_pair: DirewolfPair) -> None:
    text = "人民广场东侧有人摔倒，请立即前往现场查看伤情并报告情况"
    assert len(text.encode()) > 67

    async def scenario() -> None:
        radio = AprsRadio(RADIO, reply=None)
        radio_task = asyncio.create_task(radio.run(("127.0.0.1", realistic_pair.kiss2)))
        s = await connect_driver(realistic_pair.kiss1, (10.0, 10.0, 10.0), fast=False)
        try:
            await wait_for(lambda: radio.sessions == 1, "the radio on direwolf B")
            report = await s.driver.send_text(order(text), Transmitted())
            assert report.outcome is Delivery.DELIVERED, report
            parts = [t for _, t in radio.received]
            assert [p[:6] for p in parts] == ["(1/2) ", "(2/2) "]
            assert "".join(p[6:] for p in parts) == text
            # B digipeated our frames back to A: heard as frames, never as a station.
            assert s.counters.frames > len(s.sink.heard_log)
            assert all(d.address != GATEWAY for d in s.sink.heard_log)
        finally:
            await stop_driver(s)
            radio_task.cancel()
            await asyncio.gather(radio_task, return_exceptions=True)

    run_async(scenario(), timeout_s=75)
