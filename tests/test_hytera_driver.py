"""The Hytera driver against the simulated radio (``firmware_stubs/hytera_radio.py``) on a real
pty (serial HRNP) and on real loopback UDP (the USB network path), in one process.

Timing constants are shrunk through the link options (HRNP ack timeout, TMP retry intervals,
busy back-off, report intervals), never slept through. See ``docs/protocols/hytera.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import pytest

from firmware_stubs.hytera_radio import AirRadio, HyteraRadio, Misbehaviour
from gateway.channel import NORMAL
from gateway.config import LinkConfig, SerialSettings
from gateway.devkit.sinks import RecordingSink
from gateway.drivers.base import AlarmConfirmer, TextSender
from gateway.drivers.hytera.driver import HyteraDriver, split_text
from gateway.drivers.hytera.spec import SPEC
from gateway.drivers.registry import PROTOCOLS
from gateway.errors import LinkError
from gateway.model import (
    AlarmKind,
    Delivery,
    DeliveryReport,
    DeviceRef,
    LinkCounters,
    TextOrder,
)
from gateway.options import read_options
from gateway.transport import Connection, open_connection, parse_url
from protocols.hytera.hdap import Service
from protocols.hytera.services import (
    GpsFix,
    LpLocation,
    LpOpcode,
    LpRequest,
    TmpMessage,
    TmpResult,
    radio_ip,
)
from tests.support import run_async

pytestmark = pytest.mark.timeout(60)

Mode = Literal["pty", "udp", "tcp"]
FAST = {
    "hrnp_ack_timeout_s": 0.5,
    "hrnp_retries": 2,
    "retry_intervals_s": [0.4, 0.4, 0.4],
    "busy_backoff_s": 0.05,
    "keepalive_s": 5.0,
    "location_interval_s": 0.2,
}


def free_udp_ports(count: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def link_config(url: str, **extra: object) -> LinkConfig:
    table = {**FAST, **extra}
    transport = "serial" if url.startswith("/") else url.partition("://")[0]
    specs = {
        k: s for k, s in SPEC.options.items() if s.transports is None or transport in s.transports
    }
    values = read_options(table, "links[0]", specs)
    return LinkConfig(
        name="dmr", protocol="hytera", url=url, serial=SerialSettings(baudrate=115200),
        options=MappingProxyType(values),
    )  # fmt: skip


@dataclass
class Rig:
    radio: HyteraRadio
    driver: HyteraDriver
    sink: RecordingSink
    counters: LinkCounters
    conn: Connection
    task: asyncio.Task[None]

    async def until(self, what: str, predicate: Callable[[], bool], timeout_s: float = 10) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - the stub and driver share no event to wait on
                await asyncio.sleep(0.01)
        assert predicate(), what


@asynccontextmanager
async def rig(
    mode: Mode = "pty",
    radios: list[AirRadio] | None = None,
    misbehave: Misbehaviour | None = None,
    **options: object,
) -> AsyncIterator[Rig]:
    radios = radios if radios is not None else [AirRadio(1001)]
    gw_ports = free_udp_ports(3) if mode == "udp" else [0, 0, 0]
    stub = HyteraRadio(
        radios, own_id=7, mode=mode, misbehave=misbehave,
        gateway_ports=dict(zip((Service.RRS, Service.LP, Service.TMP), gw_ports, strict=True)),
    )  # fmt: skip
    async with stub:
        if mode == "pty":
            link = link_config(stub.device_path, **options)
        elif mode == "tcp":
            link = link_config(f"tcp://127.0.0.1:{stub.tcp_port}", **options)
        else:
            ports = stub.service_ports
            link = link_config(
                f"udp://127.0.0.1:{stub.rcp_port}", local_host="127.0.0.1",
                rrs_port=ports[Service.RRS], lp_port=ports[Service.LP],
                tmp_port=ports[Service.TMP], local_rrs_port=gw_ports[0],
                local_lp_port=gw_ports[1], local_tmp_port=gw_ports[2], **options,
            )  # fmt: skip
        sink = RecordingSink()
        counters = LinkCounters()
        driver = HyteraDriver(link, sink, counters)
        conn = await open_connection("dmr", parse_url(link.url), link.serial)
        task = asyncio.create_task(driver.run(conn))
        r = Rig(stub, driver, sink, counters, conn, task)
        try:
            await r.until("the session up", lambda: driver.connected or task.done())
            yield r
        finally:
            task.cancel()
            with pytest.raises((asyncio.CancelledError, LinkError)):
                await task
            await conn.close()


def order(address: str, text: str, key: str = "t1:unit") -> TextOrder:
    return TextOrder(address, text, NORMAL, key=key)


async def send(driver: HyteraDriver, o: TextOrder) -> tuple[DeliveryReport, int]:
    calls: list[int] = []
    report = await driver.send_text(o, lambda: calls.append(1))
    return report, len(calls)


def test_registered_and_what_it_offers() -> None:
    assert PROTOCOLS["hytera"].driver_class() is HyteraDriver
    driver = HyteraDriver(link_config("/dev/null"), RecordingSink(), LinkCounters())
    assert isinstance(driver, TextSender)
    assert isinstance(driver, AlarmConfirmer)
    assert driver.capabilities.location_poll
    assert not driver.can_reach("1001")  # not connected


@pytest.mark.parametrize("mode", ["pty", "udp", "tcp"])
def test_session_registration_positions_and_text_round_trip(mode: Mode) -> None:
    async def body() -> None:
        radio = AirRadio(1001, report_interval_s=0.05, reply="收到", reply_delay_s=0.05)
        async with rig(mode, [radio]) as r:
            assert r.driver.own_id == 7
            await r.until("heard", lambda: DeviceRef("dmr", "1001") in r.sink.heard_log)
            await r.until("positions", lambda: len(r.sink.positions) >= 3)
            pos = r.sink.positions[0]
            assert pos.device == DeviceRef("dmr", "1001")
            assert (round(pos.lat, 4), round(pos.lon, 4)) == (31.2304, 121.4737)
            assert pos.speed_kmh == pytest.approx(2.5 * 1.852, abs=0.01)
            assert r.driver.can_reach("1001")
            report, transmitted = await send(r.driver, order("1001", "#1 t1 人民广场东侧有人摔倒"))
            assert report == DeliveryReport(Delivery.DELIVERED, transmissions=1)
            assert transmitted == 1
            assert radio.received == ["#1 t1 人民广场东侧有人摔倒"]
            await r.until("the reply", lambda: bool(r.sink.texts))
            reply = r.sink.texts[0]
            assert (reply.device, reply.text, reply.reply_to) == (
                DeviceRef("dmr", "1001"), "收到", None,
            )  # fmt: skip
            await r.until("our ack of the reply", lambda: radio.acks_received == 1)
            assert r.driver.pending == 0
            # The registration was answered, and reporting set up as configured.
            assert any(
                isinstance(m, LpRequest) and m.opcode == LpOpcode.TRIGGERED_REQUEST
                and m.interval == "00000001"
                for m in r.radio.from_gateway
            )  # fmt: skip

    run_async(body())


def test_a_radio_switched_off_is_offline_at_once_and_set_up_again_when_back() -> None:
    async def body() -> None:
        radio = AirRadio(1001, report_interval_s=0.05)
        async with rig("pty", [radio]) as r:
            device = DeviceRef("dmr", "1001")
            await r.until("heard", lambda: device in r.sink.heard_log)
            r.radio.deregister(1001)
            await r.until("offline", lambda: r.sink.offline_log == [device])
            requests = sum(isinstance(m, LpRequest) for m in r.radio.from_gateway)
            r.radio.register(1001)
            await r.until(
                "its location set up again",
                lambda: sum(isinstance(m, LpRequest) for m in r.radio.from_gateway) > requests,
            )

    run_async(body())


def test_channel_busy_is_retried_with_the_same_request_id_then_delivered() -> None:
    async def body() -> None:
        radio = AirRadio(1001, ack_sequence=[TmpResult.CHANNEL_BUSY], reply=None)
        async with rig("pty", [radio]) as r:
            report, _ = await send(r.driver, order("1001", "task"))
            assert report == DeliveryReport(Delivery.DELIVERED, transmissions=2)
            sent = [m for m in r.radio.from_gateway if isinstance(m, TmpMessage)]
            assert len(sent) == 2
            assert sent[0].request_id == sent[1].request_id  # a resend, not a new message
            assert radio.received == ["task"]
            assert r.driver.pending == 0

    run_async(body())


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (TmpResult.NO_CONTACT, "the radio network answered no contact (10)"),
        (TmpResult.REPEATER_WAKEUP_FAIL, "the radio network answered repeater wakeup fail (9)"),
        (99, "the radio network answered result code 99"),
    ],
)
def test_a_failure_result_fails_with_its_name(result: int, reason: str) -> None:
    async def body() -> None:
        async with rig("pty", [AirRadio(1001, ack_result=result, reply=None)]) as r:
            report, transmitted = await send(r.driver, order("1001", "task"))
            assert report == DeliveryReport(Delivery.FAILED, reason, 1)
            assert transmitted == 1

    run_async(body())


def test_no_ack_fails_after_the_configured_tries_and_leaves_no_waiter() -> None:
    async def body() -> None:
        async with rig("udp", [AirRadio(1001, ack_result=None, reply=None)]) as r:
            report, _ = await send(r.driver, order("1001", "task"))
            assert report == DeliveryReport(Delivery.FAILED, "no ack after 3 tries", 3)
            assert r.driver.pending == 0

    run_async(body())


def test_a_reply_that_names_the_message_picks_its_order() -> None:
    async def body() -> None:
        radio = AirRadio(1001, reply="到了", reply_names_message=True, reply_delay_s=0.0)
        async with rig("pty", [radio]) as r:
            report, _ = await send(r.driver, order("1001", "task", key="t9:zhang"))
            assert report.outcome is Delivery.DELIVERED
            await r.until("the reply", lambda: bool(r.sink.texts))
            assert r.sink.texts[0].reply_to == "t9:zhang"

    run_async(body())


def test_status_keys_become_answers_and_other_text_stays_text() -> None:
    async def body() -> None:
        async with rig("pty", status_stages=["1=acknowledged", "3=on_scene"]) as r:
            r.radio.text_from(1001, "1")
            r.radio.text_from(1001, "\r\n3", request_id=2)  # a Motorola radio's CR LF
            r.radio.text_from(1001, "堵车，晚十分钟", request_id=3)
            await r.until("three messages", lambda: len(r.sink.answers) + len(r.sink.texts) == 3)
            assert [a.stage for a in r.sink.answers] == ["acknowledged", "on_scene"]
            assert [t.text for t in r.sink.texts] == ["堵车，晚十分钟"]

    run_async(body())


def test_a_resent_text_is_passed_on_once_and_acked_each_time() -> None:
    async def body() -> None:
        radio = AirRadio(1001)
        async with rig("pty", [radio]) as r:
            for _ in range(3):
                r.radio.text_from(1001, "收到", request_id=5)
            await r.until("three acks", lambda: radio.acks_received == 3)
            assert [t.text for t in r.sink.texts] == ["收到"]

    run_async(body())


@pytest.mark.parametrize("mode", ["pty", "udp"])
def test_emergency_raises_with_its_fix_and_the_cancel_clears(mode: Mode) -> None:
    async def body() -> None:
        async with rig(mode, location_interval_s=0.0) as r:
            r.radio.emergency(1001)
            await r.until("the alarm", lambda: bool(r.sink.alarms))
            raised = r.sink.alarms[0]
            assert (raised.device, raised.kind, raised.raised) == (
                DeviceRef("dmr", "1001"), AlarmKind.EMERGENCY, True,
            )  # fmt: skip
            assert raised.position is not None
            assert round(raised.position.lat, 4) == 31.2304
            r.radio.emergency(1001, on=False)
            await r.until("the cancel", lambda: len(r.sink.alarms) == 2)
            assert not r.sink.alarms[1].raised
            # The centre confirms: the radio is asked to stop its emergency reports.
            assert await r.driver.confirm_alarm("1001", AlarmKind.EMERGENCY)
            await r.until(
                "the stop request",
                lambda: any(
                    isinstance(m, LpRequest) and m.opcode == LpOpcode.EMERGENCY_STOP_REQUEST
                    for m in r.radio.from_gateway
                ),
            )

    run_async(body())


def test_an_emergency_without_a_fix_carries_the_last_position() -> None:
    async def body() -> None:
        async with rig("pty", location_interval_s=0.0) as r:
            assert await r.driver.poll_location("1001")
            await r.until("a position", lambda: bool(r.sink.positions))
            void = GpsFix.decode(GpsFix.build(0.0, 0.0, valid=False))
            r.radio.send(LpLocation(LpOpcode.EMERGENCY_REPORT, None, radio_ip(1001), void,
                                    emergency_type=1))  # fmt: skip
            await r.until("the alarm", lambda: bool(r.sink.alarms))
            assert r.sink.alarms[0].position == r.sink.positions[-1]
            assert len(r.sink.positions) == 1  # a void fix is not a position

    run_async(body())


def test_long_chinese_text_goes_in_parts_and_arrives_whole() -> None:
    async def body() -> None:
        radio = AirRadio(1001, reply=None)
        text = "".join(chr(0x4E00 + i) for i in range(300))
        async with rig("pty", [radio], text_limit=256) as r:
            report, _ = await send(r.driver, order("1001", text))
            assert report == DeliveryReport(Delivery.DELIVERED, transmissions=2)
            assert [p[:6] for p in radio.received] == ["(1/2) ", "(2/2) "]
            assert "".join(p[6:] for p in radio.received) == text
            too_long = "字" * 1100
            report, transmitted = await send(r.driver, order("1001", too_long))
            assert report.outcome is Delivery.FAILED
            assert "more than 4 messages" in (report.reason or "")
            assert transmitted == 0

    run_async(body())


def test_text_up_to_the_limit_goes_as_one_message_intact() -> None:
    async def body() -> None:
        radio = AirRadio(1001, reply=None)
        text = "请到人民广场东侧处理" * 25 + "警情，收到回复"  # 257 - 1 = 256 units
        text = text[:256]
        async with rig("udp", [radio]) as r:
            report, _ = await send(r.driver, order("1001", text))
            assert report.outcome is Delivery.DELIVERED
            assert radio.received == [text]

    run_async(body())


def test_split_never_cuts_a_character() -> None:
    emoji = "\U0001f692"  # two UTF-16 units
    parts = split_text(emoji * 100, 64, 8)
    assert all(len(p.encode("utf-16-le")) // 2 <= 64 for p in parts)
    assert "".join(p.split(") ", 1)[1] for p in parts) == emoji * 100
    assert split_text("短", 16, 1) == ["短"]
    with pytest.raises(ValueError, match="more than 1 messages"):
        split_text("字" * 17, 16, 1)


def test_misbehaving_radio_loses_nothing_but_the_damaged_frames() -> None:
    async def body() -> None:
        radio = AirRadio(1001, report_interval_s=0.05, reply="收到", reply_delay_s=0.0)
        bad = Misbehaviour(bad_checksums=True, duplicate_packets=True, garbage=True)
        async with rig("pty", [radio], misbehave=bad) as r:
            report, _ = await send(r.driver, order("1001", "task"))
            assert report.outcome is Delivery.DELIVERED
            await r.until("the reply", lambda: bool(r.sink.texts))
            await r.until("positions", lambda: len(r.sink.positions) >= 2)
            await asyncio.sleep(0.1)
            assert [t.text for t in r.sink.texts] == ["收到"]  # its duplicate dropped
            rejected = r.counters.rejected_by_reason
            assert rejected.get("hrnp-checksum", 0) >= 3
            assert rejected.get("hrnp-duplicate", 0) >= 3
            assert rejected.get("hrnp-noise", 0) >= 1

    run_async(body())


def test_bad_datagrams_on_the_service_ports_are_counted() -> None:
    async def body() -> None:
        radio = AirRadio(1001, report_interval_s=0.05)
        async with rig("udp", [radio], misbehave=Misbehaviour(bad_checksums=True)) as r:
            await r.until("positions", lambda: len(r.sink.positions) >= 2)
            assert r.counters.rejected_by_reason.get("hdap", 0) >= 2

    run_async(body())


def test_a_silent_radio_never_gets_a_session() -> None:
    async def body() -> None:
        stub = HyteraRadio([AirRadio(1001)], misbehave=Misbehaviour(silent=True))
        async with stub:
            link = link_config(stub.device_path)
            driver = HyteraDriver(link, RecordingSink(), LinkCounters())
            conn = await open_connection("dmr", parse_url(link.url), link.serial)
            try:
                with pytest.raises(LinkError, match="did not accept"):
                    await driver.run(conn)
            finally:
                await conn.close()
            assert not driver.connected

    run_async(body())


def test_a_radio_that_falls_silent_ends_the_link_and_fails_the_send() -> None:
    async def body() -> None:
        radio = AirRadio(1001, ack_result=None, reply=None)
        async with rig("pty", [radio], retry_intervals_s=[5.0]) as r:
            sending = asyncio.create_task(send(r.driver, order("1001", "task")))
            await r.until("the text at the radio", lambda: radio.received == ["task"])
            r.radio.misbehave.silent = True
            await r.driver.poll_location("1001")  # needs an HRNP ack that never comes
            with pytest.raises(LinkError, match="no HRNP DATA_ACK"):
                await r.task
            report, _ = await sending
            assert report == DeliveryReport(Delivery.FAILED, "link down", 1)
            assert r.driver.pending == 0
            assert not r.driver.can_reach("1001")

    run_async(body())


def test_invalid_address_and_empty_text_fail_without_transmitting() -> None:
    async def body() -> None:
        async with rig("pty") as r:
            for address, text, reason in (
                ("radio-1", "x", "'radio-1' is not a radio id"),
                ("1001", "   ", "nothing to send: empty text"),
            ):
                report, transmitted = await send(r.driver, order(address, text))
                assert (report.outcome, report.reason, transmitted) == (
                    Delivery.FAILED, reason, 0,
                )  # fmt: skip

    run_async(body())


def test_condition_reports_by_distance_when_configured() -> None:
    async def body() -> None:
        radio = AirRadio(1001, report_interval_s=0.05)
        async with rig("pty", [radio], location_distance_m=50, location_interval_s=120.0) as r:
            await r.until("positions", lambda: len(r.sink.positions) >= 2)
            request = next(
                m for m in r.radio.from_gateway
                if isinstance(m, LpRequest) and m.opcode == LpOpcode.CONDITION_REQUEST
            )  # fmt: skip
            assert (request.trigger, request.distance_m, request.interval) == (4, 50, "00000200")

    run_async(body())


def test_keepalive_finds_a_dead_radio_and_the_link_comes_back() -> None:
    """A radio that stops answering is found by the keep-alive (no HRNP ack); the next
    session on a fresh connection (what the link supervisor opens) works again."""

    async def body() -> None:
        radio = AirRadio(1001, reply=None)
        stub = HyteraRadio([radio], own_id=7)
        async with stub:
            link = link_config(stub.device_path, keepalive_s=0.3, location_interval_s=0.0)
            driver = HyteraDriver(link, RecordingSink(), LinkCounters())
            for session in (1, 2):
                stub.misbehave.silent = False
                conn = await open_connection("dmr", parse_url(link.url), link.serial)
                task = asyncio.create_task(driver.run(conn))
                try:
                    async with asyncio.timeout(10):
                        while not driver.connected:  # noqa: ASYNC110 - no event to wait on
                            await asyncio.sleep(0.01)
                    assert stub.sessions == session
                    report, _ = await send(driver, order("1001", f"task {session}"))
                    assert report.outcome is Delivery.DELIVERED
                    stub.misbehave.silent = True
                    with pytest.raises(LinkError, match="no HRNP DATA_ACK"):
                        await asyncio.wait_for(task, 10)
                    assert not driver.can_reach("1001")
                    assert driver.pending == 0
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, LinkError):
                        await task
                    await conn.close()
            assert radio.received == ["task 1", "task 2"]

    run_async(body())
