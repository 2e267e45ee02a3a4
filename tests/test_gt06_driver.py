"""The GT06 driver on a real ``listen://`` link (a :class:`LinkSupervisor` on loopback TCP)
against the tracker stub: login, acks echoing serials, positions, alarms raised and cleared,
text to a screen, time zones, and hostile clients beside good trackers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Set
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from firmware_stubs.gt06_tracker import Gt06Tracker, TrackerFleet
from gateway.config import LinkConfig
from gateway.devkit.broker import free_port
from gateway.devkit.sinks import RecordingSink
from gateway.drivers.gt06.driver import Gt06Driver
from gateway.links import LinkSupervisor
from gateway.model import (
    AlarmKind,
    Delivery,
    DeviceRef,
    LinkCounters,
    LinkState,
    Position,
    TextOrder,
    UnitAnswer,
)
from gateway.plausible import check
from gateway.sessions import SessionRegistry
from protocols.gt06 import PROTO_LOCATION_UTC, AlarmCode
from tests.support import run_async

pytestmark = pytest.mark.timeout(60)

IMEI = "123456789012345"
OTHER = "123456789012346"
STRANGER = "999999999999999"


class PlausibleSink(RecordingSink):
    """Every position must pass the shared invariant check; GT06 carries no answers."""

    def position(self, position: Position) -> None:
        verdict = check(position, now=datetime.now(UTC), max_fix_age_s=86400.0)
        assert verdict.position is not None, verdict
        assert not verdict.dropped, verdict
        super().position(position)

    def answer(self, answer: UnitAnswer) -> None:
        raise AssertionError("GT06 carries no answers")


@asynccontextmanager
async def gt06_link(
    allowed: Set[str] | None = frozenset({IMEI, OTHER}), **options: object
) -> AsyncIterator[tuple[Gt06Driver, PlausibleSink, SessionRegistry, int]]:
    port = free_port()
    cfg = LinkConfig(
        name="gt",
        protocol="gt06",
        url=f"listen://127.0.0.1:{port}",
        options=MappingProxyType({"retry_intervals_s": (5.0,), **options}),
    )
    sink = PlausibleSink()
    driver = Gt06Driver(cfg, sink, LinkCounters())
    supervisor = LinkSupervisor(cfg, driver, driver.counters, lambda _s: None, allowed=allowed)
    sessions = supervisor.sessions
    assert sessions is not None
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: supervisor.status.state is LinkState.UP, "link up")
        yield driver, sink, sessions, port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - polls state the driver keeps
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def tracker(port: int, imei: str = IMEI, **kwargs: object) -> Gt06Tracker:
    return Gt06Tracker(imei, "127.0.0.1", port, **kwargs)  # type: ignore[arg-type]


def test_login_locations_heartbeats_are_acked_with_their_serials_and_published_once() -> None:
    async def scenario() -> None:
        async with gt06_link() as (_driver, sink, sessions, port):
            async with tracker(port) as trk:
                assert trk.acks == [(0x01, 1)]
                assert sessions.lookup(IMEI) is not None
                serial = await trk.send_location()
                # A tracker rebooted, its serials start again: new content, a new position.
                await trk.send_location(serial=serial)
                utc = await trk.send_location(protocol=PROTO_LOCATION_UTC)
                beat = await trk.send_heartbeat()
                assert trk.acks[1:] == [(0x12, serial), (0x12, serial), (0x22, utc), (0x13, beat)]
                assert len(sink.positions) == 3
                assert {p.device for p in sink.positions} == {DeviceRef("gt", IMEI)}
                assert sink.positions[0].source == "gt06"
                assert DeviceRef("gt", IMEI) in sink.heard_log
            await until(lambda: sessions.lookup(IMEI) is None, "session gone")

    run_async(scenario())


def test_an_identical_resend_is_acked_and_not_published_again() -> None:
    async def scenario() -> None:
        async with gt06_link() as (_driver, sink, _sessions, port), tracker(port) as trk:
            serial = trk.next_serial()
            packet = trk.alarm_packet(AlarmCode.SOS, 4, serial)
            for _ in range(3):
                await trk.send_packet(packet, 0x16, serial, ack=True)
            assert trk.acks.count((0x16, serial)) == 3
            assert len(sink.positions) == 1
            raised = [a for a in sink.alarms if a.raised]
            assert {a.kind for a in raised} == {AlarmKind.EMERGENCY}
            assert raised[0].position is not None

    run_async(scenario())


def test_sos_is_raised_with_its_position_and_cleared_by_a_clean_status() -> None:
    async def scenario() -> None:
        async with gt06_link() as (_driver, sink, _sessions, port), tracker(port) as trk:
            await trk.send_alarm(AlarmCode.SOS, alarm_bits=4)
            await trk.send_heartbeat(alarm_bits=4)  # still in SOS: says it again
            assert all(a.raised for a in sink.alarms)
            assert sink.alarms[0].kind is AlarmKind.EMERGENCY
            assert sink.alarms[0].position == sink.positions[0]
            await trk.send_heartbeat(alarm_bits=0)
            cleared = [a for a in sink.alarms if not a.raised]
            assert AlarmKind.EMERGENCY in {a.kind for a in cleared}
            # Geofence: exit raises, enter clears; overspeed stays for the centre.
            await trk.send_alarm(AlarmCode.EXIT_FENCE)
            await trk.send_alarm(AlarmCode.ENTER_FENCE)
            await trk.send_alarm(AlarmCode.OVERSPEED)
            fence = [(a.raised, a.detail) for a in sink.alarms if a.kind is AlarmKind.GEOFENCE]
            assert fence == [(True, "exit"), (False, "enter")]
            assert [a.raised for a in sink.alarms if a.kind is AlarmKind.OVERSPEED] == [True]

    run_async(scenario())


def test_a_device_not_allowed_is_closed_unacked_and_others_keep_working() -> None:
    async def scenario() -> None:
        async with gt06_link() as (_driver, sink, sessions, port):
            stranger = tracker(port, STRANGER, login=False, ack_timeout_s=0.5)
            async with stranger, tracker(port) as good:
                with pytest.raises((TimeoutError, ConnectionError)):
                    await stranger.login()
                async with asyncio.timeout(5):
                    await stranger.closed.wait()
                assert stranger.acks == []
                await good.send_location()
                assert len(sink.positions) == 1
            assert sessions.refused["not_allowed"] == 1

    run_async(scenario())


def test_hostile_clients_are_rejected_and_good_trackers_keep_working() -> None:
    async def scenario() -> None:
        async with (
            gt06_link(login_timeout_s=0.3) as (driver, sink, sessions, port),
            tracker(port) as good,
        ):
            silent = [tracker(port, login=False) for _ in range(50)]
            for peer in silent:
                await peer.start()
            hostile = tracker(port, OTHER, ack_timeout_s=0.5)
            await hostile.start()
            await hostile.send_garbage(4096)
            crc_serial = await hostile.send_bad_crc()
            await hostile.send_location()  # still heard after all that
            await hostile.send_truncated()
            await good.send_location()
            await hostile.send_oversized()
            await hostile.send_location(ack=False)
            await good.send_location()
            assert (0x13, crc_serial) not in hostile.acks
            reasons = driver.counters.rejected_by_reason
            assert {"garbage", "crc", "stop", "oversize"} <= set(reasons), reasons
            # Silent peers are closed at their login deadline; the good ones stay.
            for peer in silent:
                async with asyncio.timeout(5):
                    await peer.closed.wait()
            assert sessions.closed.get("login_timeout") == 50
            await good.send_heartbeat()
            assert sessions.lookup(IMEI) is not None
            assert len([p for p in sink.positions if p.device.address == IMEI]) == 2
            for peer in silent:
                await peer.stop()
            await hostile.stop()

    run_async(scenario())


def test_packets_before_login_are_not_acked() -> None:
    async def scenario() -> None:
        async with (
            gt06_link() as (driver, sink, _sessions, port),
            tracker(port, login=False, ack_timeout_s=0.3) as trk,
        ):
            with pytest.raises(TimeoutError):
                await trk.send_location()
            assert driver.counters.rejected_by_reason.get("not_logged_in") == 1
            await trk.login()
            await trk.send_location()
            assert len(sink.positions) == 1

    run_async(scenario())


def test_text_goes_out_as_0x80_and_the_reply_delivers_it() -> None:
    async def scenario() -> None:
        async with (
            gt06_link(has_screen=True, text_encoding="utf-8") as (driver, _sink, _s, port),
            tracker(port) as short,
            tracker(port, OTHER, long_replies=True) as long,
        ):
            transmitted: list[int] = []
            for trk in (short, long):
                order = TextOrder(trk.imei, "#1 t1 到人民广场", priority=1, key="t1/u1")
                report = await driver.send_text(order, lambda: transmitted.append(1))
                assert report.outcome is Delivery.DELIVERED, report
                assert report.transmissions == 1
                assert trk.commands[0].command == "#1 t1 到人民广场"
            assert transmitted == [1, 1]
            assert short.commands[0].flag != long.commands[0].flag
            assert driver.pending == 0

    run_async(scenario())


def test_text_without_a_reply_fails_after_its_retries_and_leaves_nothing_pending() -> None:
    async def scenario() -> None:
        async with gt06_link(has_screen=True, retry_intervals_s=(0.05, 0.05)) as (
            driver,
            _sink,
            sessions,
            port,
        ):
            async with tracker(port, answer_commands=False) as trk:
                report = await driver.send_text(TextOrder(IMEI, "hello", 1), lambda: None)
                assert report.outcome is Delivery.FAILED
                assert report.reason == "no reply after 2 sends"
                assert len({c.flag for c in trk.commands}) == 1  # the same flag each time
                assert driver.pending == 0
            await until(lambda: sessions.lookup(IMEI) is None, "the tracker gone")
            gone = await driver.send_text(TextOrder(IMEI, "hello", 1), lambda: None)
            assert (gone.outcome, gone.reason) == (Delivery.FAILED, "not connected")
            ascii_only = await driver.send_text(TextOrder(IMEI, "你好", 1), lambda: None)
            assert ascii_only.outcome is Delivery.FAILED

    run_async(scenario())


def test_text_to_trackers_without_a_screen_fails_at_once() -> None:
    async def scenario() -> None:
        async with gt06_link() as (driver, _sink, _sessions, port), tracker(port) as trk:
            assert driver.can_reach(IMEI)
            report = await driver.send_text(TextOrder(IMEI, "hello", 1), lambda: None)
            assert report.outcome is Delivery.FAILED
            assert "screen" in (report.reason or "")
            assert trk.commands == []
            assert not await driver.poll_location(IMEI)

    run_async(scenario())


@pytest.mark.parametrize(
    ("time_zone", "tracker_tz", "extended"),
    [("+08:00", 480, False), ("login", 480, True), ("login", 0, False), ("-05:30", -330, False)],
)
def test_classic_times_are_converted_to_utc(
    time_zone: str, tracker_tz: int, extended: bool
) -> None:
    async def scenario() -> None:
        async with (
            gt06_link(time_zone=time_zone) as (_driver, sink, _sessions, port),
            tracker(port, tz_minutes=tracker_tz, extended_login=extended) as trk,
        ):
            await trk.send_location()
            await trk.send_location(protocol=PROTO_LOCATION_UTC)  # UTC whatever the zone
        now = datetime.now(UTC)
        for position in sink.positions:
            assert timedelta(0) <= now - position.fix_time < timedelta(minutes=5)

    run_async(scenario())


def test_a_fleet_from_one_process_on_an_open_link() -> None:
    async def scenario() -> None:
        async with gt06_link(allowed=None) as (_driver, sink, sessions, port):
            fleet = TrackerFleet(
                "127.0.0.1", port, 40, report_interval_s=0.05, heartbeat_interval_s=0.2
            )
            async with fleet:
                await until(lambda: sessions.devices == 40, "every tracker logged in")
                imeis = {t.imei for t in fleet.trackers}
                await until(
                    lambda: {p.device.address for p in sink.positions} == imeis,
                    "a position from every tracker",
                )
            await until(lambda: len(sessions) == 0, "every session closed")

    run_async(scenario())
