"""The JT/T 808 driver on a real ``listen://`` link over loopback TCP, talking to terminal stubs
built from the project's own codec: registration and authentication, positions, duplicates,
2019 terminals, subpackages, alarms, dispatch with TTS and questions, 0x8203, and hostile
clients. The end-to-end run through the daemon and mosquitto is in test_jt808_e2e.py."""

from __future__ import annotations

import asyncio
import gc
import resource
import sqlite3
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from firmware_stubs.jt808_terminal import Jt808Terminal, corrupt_check
from gateway import plausible
from gateway.channel import NORMAL, URGENT
from gateway.config import LinkConfig
from gateway.devkit.broker import free_port
from gateway.drivers.jt808.authcodes import AuthCodes
from gateway.drivers.jt808.driver import MAX_PENDING, Jt808Driver
from gateway.links import LinkSupervisor
from gateway.model import (
    Alarm,
    AlarmKind,
    Delivery,
    DeviceRef,
    LinkCounters,
    LinkState,
    LinkStatus,
    Position,
    TextFromUnit,
    TextOrder,
    UnitAnswer,
)
from protocols.jt808 import messages as m
from tests.support import run_async

pytestmark = pytest.mark.timeout(60)

PHONE = "013800138000"
ADDRESS = "13800138000"
IDLE_PEERS = 500
"""Idle connections opened in the hostile test, with tracemalloc on; the issue's 10,000 are
opened against the daemon in tests/test_jt808_crowd.py (and in every run of
bench/trackers.py)."""
MAX_BYTES_PER_IDLE_PEER = 10 * 1024


@pytest.fixture(autouse=True, scope="module")
def _enough_file_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * IDLE_PEERS + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class Sink:
    """Records what the driver reports; every position passes the shared invariant check."""

    def __init__(self) -> None:
        self.heard_count = 0
        self.positions: list[Position] = []
        self.alarms: list[Alarm] = []
        self.answers: list[UnitAnswer] = []
        self.gone: list[DeviceRef] = []

    def heard(self, device: DeviceRef) -> None:
        self.heard_count += 1

    def offline(self, device: DeviceRef) -> None:
        self.gone.append(device)

    def position(self, position: Position) -> None:
        now = datetime.now(UTC)
        assert plausible.clean(position, now, max_fix_age_s=1e9, live=False), position
        self.positions.append(position)

    def text(self, text: TextFromUnit) -> None:
        raise AssertionError(f"no free text expected: {text}")

    def answer(self, answer: UnitAnswer) -> None:
        self.answers.append(answer)

    def alarm(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)


class Link:
    def __init__(self, driver: Jt808Driver, supervisor: LinkSupervisor, port: int) -> None:
        self.driver = driver
        self.supervisor = supervisor
        self.port = port
        self.sink = driver.sink
        assert isinstance(self.sink, Sink)

    @property
    def records(self) -> Sink:
        assert isinstance(self.sink, Sink)
        return self.sink

    def terminal(self, phone: str = PHONE, **kwargs: object) -> Jt808Terminal:
        return Jt808Terminal(("127.0.0.1", self.port), phone=phone, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def running_link(
    *, allowed: frozenset[str] | None = None, auth: AuthCodes | None = None, **options: object
) -> AsyncIterator[Link]:
    port = free_port()
    defaults: dict[str, object] = {"retry_intervals_s": (0.3, 0.3, 0.3), "auth_timeout_s": 5.0}
    cfg = LinkConfig(
        name="trk",
        protocol="jt808",
        url=f"listen://127.0.0.1:{port}",
        options=MappingProxyType({**defaults, **options}),
    )
    driver = Jt808Driver(cfg, Sink(), LinkCounters())
    driver._auth = auth  # noqa: SLF001 - a test's own code store (no daemon, no journal)
    statuses: list[LinkStatus] = []
    supervisor = LinkSupervisor(cfg, driver, driver.counters, statuses.append, allowed=allowed)
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: bool(statuses) and statuses[-1].state is LinkState.UP, "link up")
        yield Link(driver, supervisor, port)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - polls what the driver recorded
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def order(text: str = "请于今日17点前到达东门", **kwargs: object) -> TextOrder:
    values: dict[str, object] = {
        "address": ADDRESS,
        "text": text,
        "priority": NORMAL,
        "key": "t1/u1",
    }
    values.update(kwargs)
    return TextOrder(**values)  # type: ignore[arg-type]


def test_register_authenticate_locate_and_acks() -> None:
    async def scenario() -> None:
        async with running_link() as link, link.terminal() as terminal:
            assert terminal.authenticated
            assert terminal.auth_code
            assert link.driver.can_reach(ADDRESS)
            serial = await terminal.report(31.230416, 121.473701)
            assert terminal.record.acks[serial] == m.RESULT_OK
            assert await terminal.heartbeat() == m.RESULT_OK
            await until(lambda: len(link.records.positions) == 1, "one position")
            position = link.records.positions[0]
            assert position.device == DeviceRef("trk", ADDRESS)
            assert (position.lat, position.lon) == pytest.approx((31.230416, 121.473701))
            assert position.satellites == 11
            assert abs(position.fix_time - datetime.now(UTC)) < timedelta(minutes=1)
            # duplicates: every copy acked, published once
            before = len(terminal.record.ack_editions)
            await terminal.report(31.2305, 121.4738, repeat=3)
            await until(lambda: len(terminal.record.ack_editions) == before + 3, "three acks")
            await terminal.heartbeat()
            assert len(link.records.positions) == 2
            # a report without a fix is acked, not published
            await terminal.report(fix=False)
            assert len(link.records.positions) == 2
            assert link.records.heard_count >= 4
            assert link.driver.counters.rejected == 0

    run_async(scenario())


def test_2019_terminal_is_answered_in_2019_layout() -> None:
    async def scenario() -> None:
        async with running_link() as link, link.terminal(edition="2019") as terminal:
            await terminal.report()
            await until(lambda: len(link.records.positions) == 1, "position")
            assert terminal.record.ack_editions
            assert all(terminal.record.ack_editions)
            report = await link.driver.send_text(order(voice=True, priority=URGENT), lambda: None)
            assert report.outcome is Delivery.DELIVERED
            (text,) = terminal.record.texts
            assert (text.flag, text.text_type) == (0x0E, 1)  # emergency (10) + display + TTS
            assert not terminal.record.questions  # 0x8302 was deleted in 2019

    run_async(scenario())


def test_dispatch_with_tts_then_question_answered() -> None:
    async def scenario() -> None:
        async with running_link(ask_to_accept=True) as link, link.terminal() as terminal:
            transmitted: list[int] = []
            report = await link.driver.send_text(
                order(voice=True, priority=URGENT), lambda: transmitted.append(1)
            )
            assert report.outcome is Delivery.DELIVERED
            assert transmitted == [1]
            (text,) = terminal.record.texts
            assert text.text == "请于今日17点前到达东门"
            assert text.flag == 0x0D  # 2013: emergency + display + TTS
            assert text.tts
            await until(lambda: len(link.records.answers) == 1, "the 0x0302 answer")
            answer = link.records.answers[0]
            assert (answer.stage, answer.reply_to) == ("acknowledged", "t1/u1")
            assert terminal.record.questions[0][1].question == "接受任务?"
            # a plain text: display only, no TTS
            report = await link.driver.send_text(order("收到请回复", key="t2/u1"), lambda: None)
            assert report.outcome is Delivery.DELIVERED
            assert terminal.record.texts[-1].flag == 0x04
            assert not link.driver._terminals[ADDRESS].pending  # noqa: SLF001

    run_async(scenario())


def test_declined_question_and_unconfirmed_text() -> None:
    async def scenario() -> None:
        async with running_link(ask_to_accept=True) as link:
            async with link.terminal(answer=2) as terminal:
                await link.driver.send_text(order(), lambda: None)
                await until(lambda: len(link.records.answers) == 1, "answer")
                assert link.records.answers[0].stage == "declined"
                terminal.ack_texts = False
                report = await link.driver.send_text(order(key="t3/u1"), lambda: None)
                assert report.outcome is Delivery.FAILED
                assert report.transmissions == 3
                assert not link.driver._terminals[ADDRESS].pending  # noqa: SLF001
            report = await link.driver.send_text(order(), lambda: None)
            assert report.outcome is Delivery.FAILED
            assert report.reason == "terminal not connected"
            too_long = await link.driver.send_text(order("东" * 600), lambda: None)
            assert too_long.outcome is Delivery.FAILED

    run_async(scenario())


def test_subpackaged_and_backfilled_batches() -> None:
    async def scenario() -> None:
        async with running_link() as link, link.terminal() as terminal:
            now = datetime.now(UTC).replace(microsecond=0)
            await terminal.report(when=now - timedelta(seconds=30))
            old = [
                terminal.location(31.0, 121.0, when=now - timedelta(seconds=600 - i))
                for i in range(3)
            ]
            await terminal.batch(old, backfill=True)
            assert len(link.records.positions) == 1  # older than the live fix: not published
            fresh = [
                terminal.location(31.1 + i / 100, 121.0, when=now - timedelta(seconds=10 - i))
                for i in range(40)
            ]
            await terminal.batch(fresh, packets=3)  # three subpackages, each acked
            await until(lambda: len(link.records.positions) == 41, "the reassembled batch")
            assert link.records.positions[-1].lat == pytest.approx(31.49)
            assert link.driver.counters.rejected == 0

    run_async(scenario())


def test_emergency_raised_and_cleared_and_confirmed() -> None:
    async def scenario() -> None:
        async with running_link() as link, link.terminal() as terminal:
            await terminal.report()
            assert [a for a in link.records.alarms if a.raised] == []
            first = len(link.records.alarms)  # the first report states every kind, cleared
            terminal.emergency(True)
            serials = [await terminal.report() for _ in range(3)]
            terminal.emergency(False)
            await terminal.report()
            await terminal.heartbeat()
            changes = [(a.kind, a.raised) for a in link.records.alarms[first:]]
            assert changes == [(AlarmKind.EMERGENCY, True), (AlarmKind.EMERGENCY, False)]
            assert link.records.alarms[first].position is not None
            assert link.records.alarms[first].detail == "emergency"
            assert await link.driver.confirm_alarm(ADDRESS, AlarmKind.EMERGENCY)
            await until(lambda: bool(terminal.record.confirmations), "0x8203")
            assert terminal.record.confirmations[0] == m.AlarmConfirmation(serials[0], 1)
            assert not await link.driver.confirm_alarm("13900000000", AlarmKind.EMERGENCY)

    run_async(scenario())


def test_poll_location_and_logout() -> None:
    async def scenario() -> None:
        async with running_link() as link, link.terminal() as terminal:
            assert await link.driver.poll_location(ADDRESS)
            await until(lambda: len(link.records.positions) == 1, "the 0x0201 position")
            assert terminal.record.queries == 1
            await terminal.request(m.LOGOUT, b"")
            assert not link.driver.can_reach(ADDRESS)
            assert link.records.gone == [DeviceRef("trk", ADDRESS)]

    run_async(scenario())


def test_auth_codes_survive_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        conn = sqlite3.connect(tmp_path / "journal.sqlite", isolation_level=None)
        try:
            async with running_link(auth=AuthCodes("trk", conn)) as link, link.terminal() as first:
                code = first.auth_code
            async with running_link(auth=AuthCodes("trk", conn)) as link:
                again = link.terminal(auth_code=code, register=False)
                async with again:
                    assert again.authenticated
                wrong = link.terminal(auth_code="nope", register=False, authenticate=False)
                async with wrong:
                    assert await wrong.do_authenticate() == m.RESULT_FAILED
                    assert await wrong.heartbeat() == m.RESULT_FAILED  # not authenticated
                    assert not link.records.positions
                assert link.driver.counters.rejected_by_reason["auth"] == 1
        finally:
            conn.close()

    run_async(scenario())


def test_allow_list_refuses_registration() -> None:
    async def scenario() -> None:
        async with running_link(allowed=frozenset({"13900000001"})) as link:
            stranger = link.terminal()
            await stranger.connect()
            response = await stranger.do_register()
            assert response.result == m.REGISTER_TERMINAL_NOT_IN_DB
            assert stranger.auth_code is None
            await until(stranger.closed.is_set, "closed")
            await stranger.stop()
            async with link.terminal("13900000001") as friend:
                assert friend.authenticated
            sessions = link.supervisor.sessions
            assert sessions is not None
            assert sessions.refused["not_allowed"] == 1

    run_async(scenario())


def test_accept_unregistered_terminals() -> None:
    async def scenario() -> None:
        async with (
            running_link(accept_unregistered=True) as link,
            link.terminal(register=False, auth_code="13800138000") as terminal,
        ):
            assert terminal.authenticated

    run_async(scenario())


def test_hostile_clients_and_good_terminals_keep_working() -> None:
    async def scenario() -> None:
        async with (
            running_link(auth_timeout_s=0.5, max_connections=IDLE_PEERS + 50) as link,
            link.terminal() as good,
        ):
            rejected = link.driver.counters.rejected_by_reason
            # garbage, an unterminated frame, a 64 KB frame
            hostile = link.terminal("13900000009", authenticate=False, register=False)
            await hostile.connect()
            await hostile.send_raw(b"GET / HTTP/1.1\r\n\r\n" * 10)
            await hostile.send_raw(b"\x7e" + b"\x55" * 65536)
            await hostile.send_raw(b"\x7e\x02\x00\x00")  # unterminated
            # a wrong check code: dropped without an answer
            bad = corrupt_check(good.frame(m.LOCATION, m.encode_location(good.location(31, 121))))
            await good.send_raw(bad)
            await until(lambda: rejected.get("check", 0) == 1, "the bad check code counted")
            assert rejected["garbage"] >= 1
            assert rejected["oversize"] == 1
            # a terminal that never authenticates: failure acks, then closed
            lurker = link.terminal("13900000008", authenticate=False, register=False)
            await lurker.connect()
            assert await lurker.heartbeat() == m.RESULT_FAILED
            await until(lambda: lurker.closed.is_set() and hostile.closed.is_set(), "closed")
            assert rejected["unauthenticated"] >= 2
            await hostile.stop()
            await lurker.stop()
            # many idle connections, each costing little
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            idle = [
                await asyncio.open_connection("127.0.0.1", link.port) for _ in range(IDLE_PEERS)
            ]
            sessions = link.supervisor.sessions
            assert sessions is not None
            await until(lambda: len(sessions) >= IDLE_PEERS + 1, "idle sessions open")
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            # client and server ends are both in this process: half is the server's
            assert grown / 2 / IDLE_PEERS < MAX_BYTES_PER_IDLE_PEER
            # the good terminal keeps working meanwhile
            await good.report()
            await until(lambda: len(link.records.positions) == 1, "a position")
            await until(lambda: len(sessions) <= 1, "idle ones closed after auth_timeout_s")
            for _, writer in idle:
                writer.close()
            await good.report()
            assert len(link.records.positions) >= 1
            assert link.driver.can_reach(ADDRESS)

    run_async(scenario())


def test_pending_map_is_bounded() -> None:
    async def scenario() -> None:
        async with running_link(retry_intervals_s=(5.0,)) as link:
            async with link.terminal(ack_texts=False):
                sends = [
                    asyncio.create_task(link.driver.send_text(order(key=f"t{i}"), lambda: None))
                    for i in range(MAX_PENDING + 3)
                ]
                await until(
                    lambda: sum(t.done() for t in sends) == 3, "the ones over the bound refused"
                )
                refused = [t.result() for t in sends if t.done()]
                assert all(r.outcome is Delivery.FAILED for r in refused)
            # the terminal hung up: every waiter fails at once, the map is emptied
            results = await asyncio.gather(*sends)
            assert all(r.outcome is Delivery.FAILED for r in results)
            assert not link.driver._terminals  # noqa: SLF001

    run_async(scenario())
