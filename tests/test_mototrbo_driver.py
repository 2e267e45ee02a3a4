"""The MOTOTRBO driver on a real udp-listen link (LinkSupervisor, sessions) against the control
station stub on real loopback UDP: radio N at 127.x.y.z, the gateway on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType

import pytest

from firmware_stubs.mototrbo_radio import ControlStation, SubscriberRadio
from gateway.channel import NORMAL, ROUTINE, URGENT
from gateway.config import LinkConfig
from gateway.devkit.sinks import RecordingSink
from gateway.drivers.mototrbo.driver import MototrboDriver, sanitize_text, split_text
from gateway.drivers.mototrbo.spec import SPEC
from gateway.links import LinkSupervisor
from gateway.model import (
    AlarmKind,
    Delivery,
    DeviceRef,
    LinkCounters,
    LinkState,
    LinkStatus,
    TextOrder,
)
from gateway.options import read_options
from gateway.sessions import SessionRegistry
from protocols.mototrbo import lrrp, tms
from tests.support import run_async

HOST = "127.0.0.1"
ROUTE = [(31.2304, 121.4737), (-33.8688, 151.2093), (40.7128, -74.0060), (-34.6037, -58.3816)]


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - polls plain lists the driver fills
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def free_udp_ports(count: int) -> list[int]:
    """Ports free on the gateway's address (the radios bind the same numbers on theirs)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Rig:
    driver: MototrboDriver
    sink: RecordingSink
    station: ControlStation
    sessions: SessionRegistry
    counters: LinkCounters


def mototrbo_link(ports: list[int], **overrides: object) -> LinkConfig:
    table: dict[str, object] = {
        "tms_port": ports[1],
        "lrrp_port": ports[2],
        "cai": 127,
        "location_interval_s": 1,
        "retry_intervals_s": [0.3, 0.3],
        "status_stages": ["到达=on_scene"],
        "register": "open",
        "channel_hold_s": 0.0,
        **overrides,
    }
    values = read_options(table, "links[0]", SPEC.options)
    return LinkConfig(
        "trbo", "mototrbo", f"udp-listen://{HOST}:{ports[0]}", options=MappingProxyType(values)
    )


@asynccontextmanager
async def rig(
    radios: list[SubscriberRadio], *, allowed: Set[str] | None = None, **overrides: object
) -> AsyncIterator[Rig]:
    ports = free_udp_ports(3)
    cfg = mototrbo_link(ports, **overrides)
    sink = RecordingSink()
    counters = LinkCounters()
    driver = MototrboDriver(cfg, sink, counters)
    statuses: list[LinkStatus] = []
    supervisor = LinkSupervisor(cfg, driver, counters, statuses.append, allowed=allowed)
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: bool(statuses) and statuses[-1].state is LinkState.UP, "link up")
        assert supervisor.sessions is not None
        station = ControlStation(
            radios,
            gateway_host=HOST,
            ars_port=ports[0],
            tms_port=ports[1],
            lrrp_port=ports[2],
            cai=127,
            ars_retry_s=0.2,
        )
        async with station:
            yield Rig(driver, sink, station, supervisor.sessions, counters)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert driver.pending == 0


def order(text: str, address: str = "1001", priority: int = NORMAL) -> TextOrder:
    return TextOrder(address, text, priority, key="t1/unit")


class Transmitted:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_spec_runs_only_on_udp_listen_and_names_the_driver() -> None:
    assert SPEC.transports == frozenset({"udp-listen"})
    assert SPEC.driver_class() is MototrboDriver
    for key, option in SPEC.options.items():
        shared = key in {"offline_after_s", "retry_intervals_s", "max_connections"}
        assert option.doc or shared or key in {"idle_timeout_s", "allow", "register"}, key


def test_registration_reporting_positions_and_emergency() -> None:
    async def scenario() -> None:
        radio = SubscriberRadio(1001, route=ROUTE)
        async with rig([radio]) as r:
            await until(lambda: r.sessions.lookup("1001") is not None, "registration")
            state = r.station.radios[1001]
            await until(lambda: bool(state.ars_answers), "the ARS answer")
            assert state.ars_answers[0].success
            assert state.ars_answers[0].refresh_min == 30
            assert DeviceRef("trbo", "1001") in r.sink.heard_log
            await until(lambda: len(state.requests) >= 2, "triggered requests")
            periodic = [q for q in state.requests if q.periodic_s]
            armed = [q for q in state.requests if q.condition is not None]
            assert periodic[0].periodic_s == 1
            assert armed[0].condition == lrrp.TRIGGER_CONDITION_EMERGENCY
            # Periodic reports walk the route through all four hemispheres.
            await until(lambda: len(r.sink.positions) >= 4, "four periodic reports", 15)
            seen = {(round(p.lat, 4), round(p.lon, 4)) for p in r.sink.positions[:4]}
            assert seen == {(round(a, 4), round(b, 4)) for a, b in ROUTE}
            first = r.sink.positions[0]
            assert first.source == "mototrbo"
            assert first.speed_kmh == pytest.approx(36.0, abs=0.1)
            assert first.course_deg == 90.0
            assert first.alt_m == 12.5
            # The emergency button: an alarm with the position it came with.
            assert r.station.emergency(1001)
            await until(lambda: bool(r.sink.alarms), "the emergency alarm")
            alarm = r.sink.alarms[0]
            assert alarm.kind is AlarmKind.EMERGENCY
            assert alarm.raised
            assert alarm.position is not None

    run_async(scenario(), 30)


def test_poll_location_sends_an_immediate_request() -> None:
    async def scenario() -> None:
        async with rig([SubscriberRadio(1002)], location_interval_s=0) as r:
            await until(lambda: r.sessions.lookup("1002") is not None, "registration")
            state = r.station.radios[1002]
            assert await r.driver.poll_location("1002")
            await until(lambda: bool(r.sink.positions), "the immediate report")
            immediate = [
                q for q in state.requests if q.doc == lrrp.DocId.IMMEDIATE_LOCATION_REQUEST
            ]
            assert immediate
            assert immediate[0].altitude
            assert immediate[0].speed
            assert immediate[0].direction
            assert not await r.driver.poll_location("4242")  # not registered

    run_async(scenario())


def test_text_is_delivered_on_ack_and_fails_without() -> None:
    async def scenario() -> None:
        radios = [SubscriberRadio(1001), SubscriberRadio(1003, ack="never")]
        async with rig(radios, location_interval_s=0) as r:
            await until(lambda: r.sessions.devices == 2, "both registered")
            sent = Transmitted()
            report = await r.driver.send_text(order("请到人民广场东侧\u0007"), sent)
            assert report.outcome is Delivery.DELIVERED
            assert report.transmissions == 1
            assert sent.calls == 1
            assert r.station.radios[1001].texts == ["请到人民广场东侧"]
            # A new message takes a new sequence number.
            again = await r.driver.send_text(order("第二条"), Transmitted())
            assert again.outcome is Delivery.DELIVERED
            lost = await r.driver.send_text(order("没有回执", "1003"), Transmitted())
            assert lost.outcome is Delivery.FAILED
            assert lost.reason == "no ack after 2 tries"
            assert lost.transmissions == 2
            assert r.station.radios[1003].texts == ["没有回执", "没有回执"]
            retried = r.station.radios[1003].text_sns
            assert retried[0] == retried[1]  # a retry keeps its sequence number
            first, second = r.station.radios[1001].text_sns
            assert first != second  # a new message takes a new one
            offline = await r.driver.send_text(order("x", "4242"), Transmitted())
            assert offline.outcome is Delivery.FAILED
            assert r.driver.pending == 0

    run_async(scenario())


def test_an_urgent_text_overtakes_routine_ones_on_a_busy_channel() -> None:
    async def scenario() -> None:
        async with rig([SubscriberRadio(1001)], location_interval_s=0, arm_emergency=False,
                       channel_hold_s=0.2) as r:  # fmt: skip
            await until(lambda: r.sessions.devices == 1, "registered")
            texts = r.station.radios[1001].texts
            first = asyncio.create_task(
                r.driver.send_text(order("例行一", priority=ROUTINE), Transmitted())
            )
            await until(lambda: bool(texts), "the first text on the air")
            # The channel is held: a routine, then an urgent text queue behind it.
            reports = await asyncio.gather(
                first,
                r.driver.send_text(order("例行二", priority=ROUTINE), Transmitted()),
                r.driver.send_text(order("紧急", priority=URGENT), Transmitted()),
            )
            assert all(rep.outcome is Delivery.DELIVERED for rep in reports)
            assert texts == ["例行一", "紧急", "例行二"]  # the urgent one took the next turn

    run_async(scenario())


def test_long_text_goes_in_numbered_parts() -> None:
    async def scenario() -> None:
        async with rig([SubscriberRadio(1001)], location_interval_s=0, text_limit=20) as r:
            await until(lambda: r.sessions.devices == 1, "registered")
            report = await r.driver.send_text(order("一二三四五六七八九十" * 3), Transmitted())
            assert report.outcome is Delivery.DELIVERED
            texts = r.station.radios[1001].texts
            assert len(texts) == 3
            assert texts[0].startswith("(1/3) ")
            assert all(len(t) <= 20 for t in texts)

    run_async(scenario())


def test_replies_are_acked_stripped_applied_once_and_presets_are_answers() -> None:
    async def scenario() -> None:
        async with rig([SubscriberRadio(1001)], location_interval_s=0) as r:
            await until(lambda: r.sessions.devices == 1, "registered")
            station = r.station
            sn = station.send_text(1001, "收到，马上出发", subject="回复")
            await until(lambda: bool(r.sink.texts), "the reply")
            assert r.sink.texts[0].text == "收到，马上出发"
            assert r.sink.texts[0].message_id == str(sn)
            await until(lambda: sn in station.radios[1001].acks, "the gateway's ack")
            station.repeat_last_text(1001)  # our ack was "lost": the radio repeats
            await until(lambda: station.radios[1001].acks.count(sn) == 2, "the second ack")
            station.send_text(1001, "到达")
            await until(lambda: bool(r.sink.answers), "the preset answer")
            assert r.sink.answers[0].stage == "on_scene"
            assert len(r.sink.texts) == 1  # the repeat was acked, not passed on

    run_async(scenario())


def test_deregistration_stops_reporting_and_unbinds() -> None:
    async def scenario() -> None:
        async with rig([SubscriberRadio(1001)]) as r:
            await until(lambda: r.sessions.devices == 1, "registered")
            state = r.station.radios[1001]
            await until(lambda: len(state.requests) >= 2, "triggers armed")
            r.station.deregister(1001)
            await until(lambda: r.sessions.devices == 0, "unbound")
            await until(
                lambda: (
                    sum(q.doc == lrrp.DocId.TRIGGERED_LOCATION_STOP_REQUEST for q in state.requests)
                    == 2
                ),
                "both stop requests",
            )
            assert 1001 not in r.driver.registered

    run_async(scenario())


def test_a_missed_refresh_ends_the_session() -> None:
    async def scenario() -> None:
        async with rig([SubscriberRadio(1001)], idle_timeout_s=0.5, location_interval_s=0) as r:
            await until(lambda: r.sessions.devices == 1, "registered")
            await until(lambda: r.sessions.devices == 0, "the idle timeout")
            assert r.sessions.closed.get("idle") == 1
            r.station.refresh(1001)  # a late refresh registers it again
            await until(lambda: r.sessions.devices == 1, "registered again")

    run_async(scenario())


def test_a_radio_not_allowed_is_told_so_and_refused() -> None:
    async def scenario() -> None:
        radios = [SubscriberRadio(1001), SubscriberRadio(1005)]
        async with rig(radios, allowed={"1001"}, location_interval_s=0) as r:
            stranger = r.station.radios[1005]
            await until(lambda: bool(stranger.ars_answers), "the refusal")
            assert not stranger.ars_answers[0].success
            await until(lambda: r.sessions.refused["not_allowed"] >= 1, "counted")
            assert r.sessions.lookup("1005") is None
            await until(lambda: r.sessions.lookup("1001") is not None, "the allowed radio")

    run_async(scenario())


def test_malformed_datagrams_cost_only_themselves() -> None:
    async def scenario() -> None:
        radios = [SubscriberRadio(1001), SubscriberRadio(1009, register=False)]
        async with rig(radios, location_interval_s=0) as r:
            await until(lambda: r.sessions.devices == 1, "registered")
            station = r.station
            station.send_text(1009, "还没注册")  # TMS and LRRP need a registration first
            await until(lambda: "unregistered" in r.counters.rejected_by_reason, "refused")
            for service in ("ars", "tms", "lrrp"):
                station.send_truncated(1001, service)
                station.send_wrong_length(1001, service)
            station.send_raw(1001, "lrrp", b"\xff" * 40)
            await until(lambda: r.counters.rejected >= 8, "eight rejects")
            assert set(r.counters.rejected_by_reason) >= {"ars", "tms", "lrrp"}
            # Still serving: a text goes out and comes back, a poll is answered.
            report = await r.driver.send_text(order("还在吗"), Transmitted())
            assert report.outcome is Delivery.DELIVERED
            assert await r.driver.poll_location("1001")
            await until(lambda: bool(r.sink.positions), "a position after the garbage")
            assert r.sessions.devices == 1

    run_async(scenario())


def test_text_helpers() -> None:
    assert sanitize_text(" a\r\nb\x00c\U0001f600 ") == "a  b c?"
    assert split_text("abc", 10) == ["abc"]
    parts = split_text("x" * 50, 20)
    assert all(len(p) <= 20 for p in parts)
    assert "".join(p.split(" ", 1)[1] for p in parts) == "x" * 50
    assert tms.fits(parts[0], 20)


def test_radios_registered_before_a_restart_are_asked_and_come_back() -> None:
    """The gateway restarted while its radios stayed registered with the control station:
    they will not register again for up to ``ars_refresh_min``, so the link asks the radios
    it knows at once, and those that answer "present" are online and report again."""

    async def scenario() -> None:
        ports = free_udp_ports(3)
        known = SubscriberRadio(1001, register=False)
        unknown = SubscriberRadio(1002, register=False)  # not on the allow list: not asked
        station = ControlStation(
            [known, unknown],
            gateway_host=HOST,
            ars_port=ports[0],
            tms_port=ports[1],
            lrrp_port=ports[2],
            cai=127,
            ars_retry_s=0.2,
        )
        async with station:
            cfg = mototrbo_link(ports, register="allow-list")
            sink = RecordingSink()
            counters = LinkCounters()
            driver = MototrboDriver(cfg, sink, counters)
            supervisor = LinkSupervisor(cfg, driver, counters, lambda _s: None, allowed={"1001"})
            task = asyncio.create_task(supervisor.run())
            try:
                assert supervisor.sessions is not None
                sessions = supervisor.sessions
                await until(lambda: sessions.lookup("1001") is not None, "the query's answer")
                assert DeviceRef("trbo", "1001") in sink.heard_log
                state = station.radios[1001]
                await until(lambda: bool(state.requests), "its location trigger set up again")
                await until(lambda: bool(sink.positions), "a report")
                assert not station.radios[1002].requests
                assert sessions.lookup("1002") is None
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    run_async(scenario())


def test_a_service_port_taken_takes_the_link_down_with_the_reason() -> None:
    async def scenario() -> None:
        ports = free_udp_ports(3)
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind((HOST, ports[1]))  # the TMS port
        try:
            cfg = mototrbo_link(ports, reconnect_min_s=0.1)
            counters = LinkCounters()
            driver = MototrboDriver(cfg, RecordingSink(), counters)
            statuses: list[LinkStatus] = []
            supervisor = LinkSupervisor(cfg, driver, counters, statuses.append)
            task = asyncio.create_task(supervisor.run())
            try:
                await until(
                    lambda: any("cannot bind udp" in (s.error or "") for s in statuses),
                    "the link down with the reason",
                )
                assert statuses[-1].state is LinkState.DOWN
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            squatter.close()

    run_async(scenario())
