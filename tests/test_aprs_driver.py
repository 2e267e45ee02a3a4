"""The APRS driver against the simulated handheld over a real KISS TCP connection.

The radio (``firmware_stubs/aprs_radio.py``) serves KISS on a loopback port, as a TNC would; the
driver connects through the gateway's own transport. Retry intervals are shrunk to tenths of a
second, and the channel's airtime too (no radio lies between them: the direwolf test keeps the real
1200 baud airtime). A scripted peer covers what the radio does not send (acks with trailing
spaces, reply-acks, garbage).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from firmware_stubs.aprs_radio import DEFAULT_ROUTE, AprsRadio
from gateway.channel import NORMAL, URGENT
from gateway.config import LinkConfig, SerialSettings
from gateway.devkit.sinks import RecordingSink
from gateway.drivers.aprs.driver import AprsDriver, MessageNumbers, TtlCache
from gateway.drivers.base import TextSender
from gateway.drivers.registry import PROTOCOLS
from gateway.errors import LinkError
from gateway.model import (
    Alarm,
    AlarmKind,
    Delivery,
    DeliveryReport,
    DeviceRef,
    LinkCounters,
    Position,
    TextOrder,
)
from gateway.transport import Connection, open_connection, parse_url
from protocols import ax25, kiss
from protocols.aprs import (
    AprsAck,
    AprsMessage,
    AprsPosition,
    decode_frame,
    encode_ack,
    encode_message,
    encode_mic_e,
    encode_position,
)
from tests.support import run_async

pytestmark = pytest.mark.timeout(60)

GATEWAY = "BH4ABC-9"
RADIO = "BG5XYZ-7"
FAST_RETRIES = (0.3, 0.3, 0.3)


async def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - the sink is plain lists, nothing to await
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def aprs_link(url: str, retries: tuple[float, ...] = FAST_RETRIES) -> LinkConfig:
    options: dict[str, object] = {
        "callsign": GATEWAY,
        "path": ("WIDE1-1",),
        "retry_intervals_s": retries,
        "offline_after_s": 1800.0,
        "kiss_port": 0,
    }
    return LinkConfig("vhf", "aprs", url, options=MappingProxyType(options))


@dataclass
class Setup:
    driver: AprsDriver
    sink: RecordingSink
    counters: LinkCounters
    conn: Connection
    runner: asyncio.Task[None]


def fast_airtime(frame: bytes) -> float:
    return 0.005


async def connect_driver(
    port: int, retries: tuple[float, ...] = FAST_RETRIES, *, fast: bool = True
) -> Setup:
    url = f"tcp://127.0.0.1:{port}"
    sink = RecordingSink()
    counters = LinkCounters()
    driver = AprsDriver(aprs_link(url, retries), sink, counters)
    if fast:
        driver.airtime_s = fast_airtime
        driver.gap_s = 0.0
    conn = await open_connection("vhf", parse_url(url), SerialSettings())
    runner = asyncio.create_task(driver.run(conn))
    await wait_for(lambda: driver.connected, "the driver's channel")
    return Setup(driver, sink, counters, conn, runner)


async def stop_driver(setup: Setup) -> None:
    setup.runner.cancel()
    await asyncio.gather(setup.runner, return_exceptions=True)
    await setup.conn.close()
    assert setup.driver.pending == 0
    assert not setup.driver.connected


@asynccontextmanager
async def radio_link(
    radio: AprsRadio, retries: tuple[float, ...] = FAST_RETRIES, *, fast: bool = True
) -> AsyncIterator[Setup]:
    """The radio serving KISS TCP, and the driver connected to it."""
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(radio.serve("127.0.0.1", 0, lambda h, p: ready.set_result(p)))
    try:
        port = await asyncio.wait_for(ready, 5)
        setup = await connect_driver(port, retries, fast=fast)
        try:
            yield setup
        finally:
            await stop_driver(setup)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def order(text: str, priority: int = NORMAL, address: str = RADIO) -> TextOrder:
    return TextOrder(address, text, priority, key="test")


class Transmitted:
    """The ``on_transmitted`` callback, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def quiet_radio(**kwargs: object) -> AprsRadio:
    options: dict[str, object] = {"reply": None, **kwargs}
    return AprsRadio(RADIO, **options)  # type: ignore[arg-type]  # test-only keyword pass-through


def check_position(position: Position) -> None:
    """Invariants every decoded position must hold."""
    assert -90 <= position.lat <= 90
    assert -180 <= position.lon <= 180
    assert position.fix_time <= position.received_at
    assert position.fix_time.tzinfo is not None
    assert position.source == "aprs"
    if position.speed_kmh is not None:
        assert position.speed_kmh >= 0
    if position.course_deg is not None:
        assert 0 <= position.course_deg <= 360


# -- registration and reachability -------------------------------------------------------


def test_registered_and_a_text_sender() -> None:
    assert PROTOCOLS["aprs"].driver_class() is AprsDriver
    driver = AprsDriver(aprs_link("tcp://127.0.0.1:1"), RecordingSink(), LinkCounters())
    assert isinstance(driver, TextSender)
    assert not driver.can_reach(RADIO)  # not connected


def test_send_while_down_fails_at_once() -> None:
    async def scenario() -> DeliveryReport:
        driver = AprsDriver(aprs_link("tcp://127.0.0.1:1"), RecordingSink(), LinkCounters())
        return await driver.send_text(order("hello"), Transmitted())

    report = run_async(scenario())
    assert report == DeliveryReport(Delivery.FAILED, "link down", 0)


# -- positions -----------------------------------------------------------------------------


def test_positions_in_all_three_formats_arrive() -> None:
    async def scenario() -> None:
        radio = quiet_radio(beacon_interval_s=0.05)
        async with radio_link(radio) as s:
            await wait_for(lambda: len(s.sink.positions) >= 3, "three positions")
            first_three = s.sink.positions[:3]
            assert s.counters.positions >= 3
            assert DeviceRef("vhf", RADIO) in s.sink.heard_log
        for number, position in enumerate(first_three):
            check_position(position)
            assert position.device == DeviceRef("vhf", RADIO)
            dest, info = radio.position_frame(number)
            expected = decode_frame(
                ax25.Ax25Frame(ax25.parse_address(dest), ax25.parse_address(RADIO), info=info)
            )
            assert isinstance(expected, AprsPosition)
            assert position.lat == pytest.approx(expected.lat, abs=1e-6)
            assert position.lon == pytest.approx(expected.lon, abs=1e-6)
            assert position.speed_kmh == pytest.approx(5.0, abs=2.0)
        lat0, lon0 = DEFAULT_ROUTE[0]
        assert first_three[0].lat == pytest.approx(lat0, abs=1e-3)
        assert first_three[0].lon == pytest.approx(lon0, abs=1e-3)
        # The uncompressed beacon carries a DDHHMMz timestamp: whole minutes, at most a minute old.
        stamped = first_three[0]
        assert stamped.fix_time.second == 0
        assert stamped.received_at - stamped.fix_time < timedelta(minutes=1, seconds=5)
        # Compressed and Mic-E have no timestamp: the fix time is when it was received.
        assert first_three[1].fix_time == first_three[1].received_at

    run_async(scenario())


# -- Mic-E emergency -----------------------------------------------------------------------


class OrderSink(RecordingSink):
    """Also keeps the order of positions and alarms."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def position(self, position: Position) -> None:
        super().position(position)
        self.order.append("position")

    def alarm(self, alarm: Alarm) -> None:
        super().alarm(alarm)
        self.order.append("alarm")


def kiss_item(info: bytes, dest: str = "APRS", source: str = RADIO) -> kiss.KissFrame:
    frame = ax25.Ax25Frame(ax25.parse_address(dest), ax25.parse_address(source), info=info)
    (item,) = kiss.KissDecoder().feed(kiss.encode_frame(ax25.encode(frame)))
    assert isinstance(item, kiss.KissFrame)
    return item


def mic_e_item(lat: float, lon: float, status: str, source: str = RADIO) -> kiss.KissFrame:
    dest, info = encode_mic_e(lat, lon, speed_kmh=10, course_deg=90, status=status)
    return kiss_item(info, dest, source)


def test_mic_e_emergency_raises_with_the_position_and_a_normal_mic_e_clears() -> None:
    sink = OrderSink()
    driver = AprsDriver(aprs_link("tcp://127.0.0.1:1"), sink, LinkCounters())
    driver.handle_kiss_frame(mic_e_item(31.2304, 121.4737, "Emergency"))
    assert sink.order == ["position", "alarm"]  # the fix first, then the alarm it came with
    (raised,) = sink.alarms
    assert raised.device == DeviceRef("vhf", RADIO)
    assert (raised.kind, raised.raised) == (AlarmKind.EMERGENCY, True)
    assert raised.position is sink.positions[0]
    assert raised.at == sink.positions[0].received_at
    # Repeats are reported (the gateway dedupes per raise), copies of one frame are not.
    driver.handle_kiss_frame(mic_e_item(31.2304, 121.4737, "Emergency"))
    driver.handle_kiss_frame(mic_e_item(31.2310, 121.4737, "Emergency"))
    assert [a.raised for a in sink.alarms] == [True, True]
    # Another station's normal Mic-E speaks for that station only.
    driver.handle_kiss_frame(mic_e_item(31.2, 121.4, "En Route", source="BG5OTH-7"))
    assert sink.alarms[-1].device == DeviceRef("vhf", "BG5OTH-7")
    assert not sink.alarms[-1].raised
    driver.handle_kiss_frame(mic_e_item(31.2320, 121.4737, "Off Duty"))
    cleared = sink.alarms[-1]
    assert (cleared.device, cleared.kind, cleared.raised) == (
        DeviceRef("vhf", RADIO),
        AlarmKind.EMERGENCY,
        False,
    )
    assert cleared.position is sink.positions[-1]


def test_positions_without_a_message_code_say_nothing_about_alarms() -> None:
    sink = RecordingSink()
    driver = AprsDriver(aprs_link("tcp://127.0.0.1:1"), sink, LinkCounters())
    driver.handle_kiss_frame(kiss_item(encode_position(31.2, 121.5)))
    driver.handle_kiss_frame(kiss_item(encode_position(31.3, 121.5, compressed=True)))
    driver.handle_kiss_frame(kiss_item(encode_position(31.4, 121.5, comment="Emergency")))
    assert len(sink.positions) == 3
    assert sink.alarms == []


def test_the_radio_emergency_button_over_kiss() -> None:
    async def scenario() -> None:
        radio = quiet_radio()
        async with radio_link(radio) as s:
            await wait_for(lambda: radio.sessions == 1, "the radio's session")
            await radio.emergency()
            await wait_for(lambda: len(s.sink.alarms) == 1, "the emergency")
            await radio.emergency(on=False)
            await wait_for(lambda: len(s.sink.alarms) == 2, "the reset")
        raised, cleared = s.sink.alarms
        assert (raised.kind, raised.raised, cleared.raised) == (AlarmKind.EMERGENCY, True, False)
        assert raised.position is not None
        check_position(raised.position)
        assert len(s.sink.positions) == 2

    run_async(scenario())


def test_poll_location_asks_and_the_radio_answers_with_a_position() -> None:
    async def scenario() -> None:
        async with radio_link(quiet_radio()) as s:
            assert s.driver.can_reach(RADIO)
            assert s.driver.can_reach("bg5xyz-7")
            assert not s.driver.can_reach("not a callsign")
            assert await s.driver.poll_location(RADIO)
            await wait_for(lambda: len(s.sink.positions) == 1, "the answer to ?APRSP")
            check_position(s.sink.positions[0])

    run_async(scenario())


# -- sending -------------------------------------------------------------------------------


def test_text_is_delivered_with_one_transmission() -> None:
    async def scenario() -> None:
        radio = quiet_radio()
        transmitted = Transmitted()
        async with radio_link(radio) as s:
            report = await s.driver.send_text(order("Task 17: go to gate 3", URGENT), transmitted)
            assert report == DeliveryReport(Delivery.DELIVERED, None, 1)
            assert transmitted.calls == 1
            assert s.driver.pending == 0
        assert radio.received == [(GATEWAY, "Task 17: go to gate 3")]
        assert radio.counts.messages == 1

    run_async(scenario())


def test_voice_goes_out_as_text() -> None:
    async def scenario() -> None:
        radio = quiet_radio()
        async with radio_link(radio) as s:
            voice = TextOrder(RADIO, "speak this", NORMAL, voice=True)
            report = await s.driver.send_text(voice, Transmitted())
        assert report.outcome is Delivery.DELIVERED
        assert radio.received == [(GATEWAY, "speak this")]

    run_async(scenario())


def test_no_ack_fails_after_the_configured_tries_and_leaves_no_waiter() -> None:
    async def scenario() -> None:
        radio = quiet_radio(ack="never")
        transmitted = Transmitted()
        async with radio_link(radio, (0.05, 0.05, 0.05)) as s:
            report = await s.driver.send_text(order("anyone?"), transmitted)
            assert report == DeliveryReport(Delivery.FAILED, "no ack after 3 tries", 3)
            assert s.driver.pending == 0
            assert transmitted.calls == 1
            await wait_for(lambda: radio.counts.messages == 3, "three copies at the radio")
        assert radio.received == [(GATEWAY, "anyone?")]  # the radio shows it once

    run_async(scenario())


def test_double_ack_delivers_once() -> None:
    async def scenario() -> None:
        radio = quiet_radio(ack="twice")
        async with radio_link(radio) as s:
            first = await s.driver.send_text(order("one"), Transmitted())
            second = await s.driver.send_text(order("two"), Transmitted())
            await wait_for(lambda: radio.counts.acks_sent == 4, "both double acks")
        assert first == DeliveryReport(Delivery.DELIVERED, None, 1)
        assert second == DeliveryReport(Delivery.DELIVERED, None, 1)

    run_async(scenario())


def test_late_ack_still_delivers() -> None:
    async def scenario() -> None:
        radio = quiet_radio(ack="late", ack_delay_s=0.25)
        async with radio_link(radio, (0.15, 1.0, 1.0)) as s:
            report = await s.driver.send_text(order("slow radio"), Transmitted())
        assert report.outcome is Delivery.DELIVERED
        assert report.transmissions == 2  # resent after 0.15 s; the first copy's ack then came

    run_async(scenario())


def test_reject_is_terminal() -> None:
    async def scenario() -> None:
        radio = quiet_radio(ack="reject")
        async with radio_link(radio) as s:
            report = await s.driver.send_text(order("go away?"), Transmitted())
            assert s.driver.pending == 0
        assert report == DeliveryReport(Delivery.FAILED, f"rejected by {RADIO}", 1)
        assert radio.counts.messages == 1

    run_async(scenario())


def test_long_chinese_text_goes_in_acked_parts_in_order() -> None:
    text = "人民广场东侧有人摔倒，请立即前往现场查看伤情并报告，救护车已经在路上，预计五分钟到达"
    assert len(text.encode()) > 67

    async def scenario() -> None:
        radio = quiet_radio()
        transmitted = Transmitted()
        async with radio_link(radio) as s:
            report = await s.driver.send_text(order(text), transmitted)
        assert report.outcome is Delivery.DELIVERED
        parts = [t for _, t in radio.received]
        assert len(parts) >= 2
        assert report.transmissions == len(parts)
        assert transmitted.calls == 1
        for i, part in enumerate(parts, 1):
            assert part.startswith(f"({i}/{len(parts)}) ")
            assert len(part.encode()) <= 67
        assert "".join(p.split(") ", 1)[1] for p in parts) == text

    run_async(scenario())


def test_forbidden_characters_are_replaced() -> None:
    async def scenario() -> None:
        radio = quiet_radio()
        async with radio_link(radio) as s:
            report = await s.driver.send_text(order("gate|3~now{ok}\nbye"), Transmitted())
        assert report.outcome is Delivery.DELIVERED
        assert radio.received == [(GATEWAY, "gate/3-now(ok} bye")]

    run_async(scenario())


def test_invalid_address_and_empty_text_fail_without_transmitting() -> None:
    async def scenario() -> None:
        async with radio_link(quiet_radio()) as s:
            bad = await s.driver.send_text(order("x", address="NOT-A-CALL-99"), Transmitted())
            empty = await s.driver.send_text(order(" \n "), Transmitted())
        assert (bad.outcome, bad.transmissions) == (Delivery.FAILED, 0)
        assert (empty.outcome, empty.transmissions) == (Delivery.FAILED, 0)

    run_async(scenario())


# -- what comes back -----------------------------------------------------------------------


def test_own_callsign_echoes_are_ignored() -> None:
    async def scenario() -> None:
        radio = AprsRadio(RADIO, digipeat=True, reply="ok", reply_delay_s=0.05)
        async with radio_link(radio) as s:
            report = await s.driver.send_text(order("#12 check gate 3"), Transmitted())
            await wait_for(lambda: len(s.sink.texts) == 1, "the reply")
            await wait_for(lambda: radio.counts.digipeated >= 2, "our frames digipeated back")
            await asyncio.sleep(0.1)
            assert report.outcome is Delivery.DELIVERED
            assert all(d.address != GATEWAY for d in s.sink.heard_log)
            assert s.counters.rejected == 0
            assert [t.text for t in s.sink.texts] == ["ok #12"]

    run_async(scenario())


def test_duplicates_through_several_digipeaters_are_handled_once() -> None:
    async def scenario() -> None:
        radio = AprsRadio(RADIO, echo_copies=3, reply="收到", reply_delay_s=0.05)
        async with radio_link(radio) as s:
            assert await s.driver.poll_location(RADIO)  # one beacon, heard three times
            await wait_for(lambda: s.sink.heard_log.count(DeviceRef("vhf", RADIO)) >= 3, "copies")
            report = await s.driver.send_text(order("#7 report"), Transmitted())
            await wait_for(lambda: len(s.sink.texts) == 1, "the reply")
            await asyncio.sleep(0.2)
            assert report == DeliveryReport(Delivery.DELIVERED, None, 1)  # three acks, one send
            assert len(s.sink.positions) == 1
            assert [t.text for t in s.sink.texts] == ["收到 #7"]
            assert radio.counts.acks_received == 1  # three copies of the reply, acked once

    run_async(scenario())


def test_a_reply_retried_by_the_radio_reaches_the_sink_once() -> None:
    async def scenario() -> None:
        radio = AprsRadio(
            RADIO, reply="收到", reply_delay_s=0.05, reply_copies=3,
            reply_retry_intervals_s=(0.05, 0.05, 0.05),
        )  # fmt: skip
        async with radio_link(radio) as s:
            report = await s.driver.send_text(order("#12 人民广场东侧"), Transmitted())
            assert report.outcome is Delivery.DELIVERED
            await wait_for(lambda: radio.counts.reply_transmissions == 3, "three reply copies")
            await asyncio.sleep(0.2)
            assert [(t.device, t.text) for t in s.sink.texts] == [
                (DeviceRef("vhf", RADIO), "收到 #12")
            ]
            assert radio.replies_acked == ["R1"]

    run_async(scenario())


def test_disconnect_fails_pending_sends_and_leaves_no_waiter() -> None:
    async def scenario() -> None:
        radio = quiet_radio(ack="never")
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(radio.serve("127.0.0.1", 0, lambda h, p: ready.set_result(p)))
        s = await connect_driver(await asyncio.wait_for(ready, 5), (5.0, 5.0))
        sends = [
            asyncio.create_task(s.driver.send_text(order(f"task {i}"), Transmitted()))
            for i in range(3)
        ]
        await wait_for(lambda: radio.counts.messages >= 3, "the messages at the radio")
        assert s.driver.pending == 3
        server.cancel()  # the radio (the TNC) goes away: the gateway's read fails
        await asyncio.gather(server, return_exceptions=True)
        with pytest.raises(LinkError):
            await asyncio.wait_for(s.runner, 5)
        reports = await asyncio.wait_for(asyncio.gather(*sends), 5)
        assert all(r.outcome is Delivery.FAILED and r.reason == "link down" for r in reports)
        assert s.driver.pending == 0
        assert not s.driver.can_reach(RADIO)
        await s.conn.close()

    run_async(scenario())


# -- a scripted peer for the forms the radio does not send ----------------------------------


@asynccontextmanager
async def scripted_peer() -> AsyncIterator[tuple[int, asyncio.Queue[ax25.Ax25Frame], list[bytes]]]:
    """A KISS TCP server: frames from the gateway land in the queue; ``outbox`` entries (KISS
    bytes) are written to it as they are appended."""
    received: asyncio.Queue[ax25.Ax25Frame] = asyncio.Queue()
    outbox: list[bytes] = []
    sessions: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        sessions[task] = writer
        decoder = kiss.KissDecoder()
        sent = 0

        async def pump() -> None:
            nonlocal sent
            while True:
                while sent < len(outbox):
                    writer.write(outbox[sent])
                    sent += 1
                await writer.drain()
                await asyncio.sleep(0.01)

        pumper = asyncio.create_task(pump())
        try:
            while data := await reader.read(4096):
                for item in decoder.feed(data):
                    if isinstance(item, kiss.KissFrame):
                        received.put_nowait(ax25.decode(item.payload))
        except ConnectionError:
            pass
        finally:
            pumper.cancel()
            await asyncio.gather(pumper, return_exceptions=True)
            writer.close()
            sessions.pop(task, None)

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), received, outbox
    finally:
        server.close()
        for writer in sessions.values():
            writer.close()  # the session's read ends: it finishes on its own
        await asyncio.wait_for(asyncio.gather(*sessions), 5)


def from_radio(info: bytes, dest: str = "APRS", digis: tuple[str, ...] = ()) -> bytes:
    frame = ax25.Ax25Frame(
        ax25.parse_address(dest),
        ax25.parse_address(RADIO),
        tuple(ax25.parse_address(d) for d in digis),
        info=info,
    )
    return kiss.encode_frame(ax25.encode(frame))


async def next_message(queue: asyncio.Queue[ax25.Ax25Frame]) -> tuple[ax25.Ax25Frame, AprsMessage]:
    while True:
        frame = await asyncio.wait_for(queue.get(), 5)
        packet = decode_frame(frame)
        if isinstance(packet, AprsMessage):
            return frame, packet


def test_frames_on_the_wire_and_acks_with_trailing_spaces() -> None:
    async def scenario() -> None:
        async with scripted_peer() as (port, received, outbox):
            s = await connect_driver(port)
            try:
                send = asyncio.create_task(s.driver.send_text(order("hello"), Transmitted()))
                frame, message = await next_message(received)
                assert frame.source.call_ssid == GATEWAY
                assert frame.dest.call_ssid == "APZFLK"
                assert [d.call_ssid for d in frame.digipeaters] == ["WIDE1-1"]
                assert (message.addressee, message.text) == (RADIO, "hello")
                assert message.msgno is not None
                assert len(message.msgno) == 5
                assert message.reply_ack is None
                outbox.append(from_radio(encode_ack(GATEWAY, message.msgno) + b"  \r\n"))
                report = await asyncio.wait_for(send, 5)
                assert report == DeliveryReport(Delivery.DELIVERED, None, 1)
            finally:
                await stop_driver(s)

    run_async(scenario())


def test_reply_acks_both_ways() -> None:
    async def scenario() -> None:
        async with scripted_peer() as (port, received, outbox):
            s = await connect_driver(port)
            try:
                # The radio speaks reply-acks: its message {MM} gets "ackMM}" back.
                outbox.append(from_radio(encode_message(GATEWAY, "hi", "A1", "")))
                ack = decode_frame(await asyncio.wait_for(received.get(), 5))
                assert ack == AprsAck(RADIO, "A1", "")
                await wait_for(lambda: len(s.sink.texts) == 1, "the radio's text")
                # Our next message carries {MM}A1; the radio's next message {B2}MM acks it.
                send = asyncio.create_task(s.driver.send_text(order("task"), Transmitted()))
                _, message = await next_message(received)
                assert message.reply_ack == "A1"
                assert message.msgno is not None
                outbox.append(from_radio(encode_message(GATEWAY, "ok", "B2", message.msgno)))
                report = await asyncio.wait_for(send, 5)
                assert report == DeliveryReport(Delivery.DELIVERED, None, 1)
                await wait_for(lambda: len(s.sink.texts) == 2, "the radio's reply")
                assert [t.text for t in s.sink.texts] == ["hi", "ok"]
            finally:
                await stop_driver(s)

    run_async(scenario())


def test_bad_input_is_counted_and_the_link_survives() -> None:
    async def scenario() -> None:
        async with scripted_peer() as (port, _received, outbox):
            s = await connect_driver(port)
            try:
                outbox.append(b"\xc0\x00\x01\x02\x03\xc0")  # AX.25 too short
                outbox.append(b"\xc0\x00" + b"\xdb\x01" + b"\xc0")  # invalid KISS escape
                outbox.append(from_radio(b"!9999.99N/12128.45E>"))  # APRS: latitude out of range
                outbox.append(from_radio(b">12.6V battery"))  # status: heard only
                outbox.append(from_radio(encode_position(31.2, 121.5)))
                await wait_for(lambda: len(s.sink.positions) == 1, "the good position")
                reasons = s.counters.rejected_by_reason
                assert reasons.get("ax25") == 1
                assert reasons.get("invalid-escape") == 1
                assert reasons.get("aprs") == 1
                assert s.sink.texts == []
                assert s.sink.heard_log.count(DeviceRef("vhf", RADIO)) == 3
            finally:
                await stop_driver(s)

    run_async(scenario())


def test_an_unnumbered_message_is_delivered_once_and_not_acked() -> None:
    async def scenario() -> None:
        async with scripted_peer() as (port, received, outbox):
            s = await connect_driver(port)
            try:
                info = encode_message(GATEWAY, "no number")
                outbox.extend([from_radio(info), from_radio(info, digis=("DIGI1*",))])
                await wait_for(lambda: len(s.sink.heard_log) == 2, "both copies")
                await asyncio.sleep(0.1)
                assert [t.text for t in s.sink.texts] == ["no number"]
                assert received.empty()
            finally:
                await stop_driver(s)

    run_async(scenario())


def test_realistic_airtime_spaces_frames() -> None:
    """With the 1200 baud airtime, two messages queued at once leave at least one airtime apart."""

    async def scenario() -> None:
        async with scripted_peer() as (port, received, _outbox):
            s = await connect_driver(port, (0.05,), fast=False)
            try:
                start = asyncio.get_running_loop().time()
                sends = [
                    asyncio.create_task(s.driver.send_text(order(f"m{i}"), Transmitted()))
                    for i in range(2)
                ]
                await asyncio.wait_for(received.get(), 5)
                await asyncio.wait_for(received.get(), 5)
                elapsed = asyncio.get_running_loop().time() - start
                frame_len = len(s.driver.kiss_frame(encode_message(RADIO, "m0", "00000")))
                assert elapsed >= s.driver.frame_airtime_s(b"x" * frame_len)
                await asyncio.gather(*sends)
            finally:
                await stop_driver(s)

    run_async(scenario())


# -- pieces --------------------------------------------------------------------------------


def test_message_numbers_are_unique_and_survive_a_restart() -> None:
    morning = datetime(2025, 11, 20, 8, 0, tzinfo=UTC)
    first = MessageNumbers()
    numbers = [first.next(morning) for _ in range(1000)]
    assert len(set(numbers)) == 1000
    assert all(len(n) == 5 for n in numbers)
    assert all(c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" for n in numbers for c in n)
    restarted = MessageNumbers()  # two seconds later, after a restart
    later = [restarted.next(morning + timedelta(seconds=2)) for _ in range(100)]
    assert not set(later) & set(numbers)
    late = MessageNumbers().next(datetime(2025, 11, 20, 23, 59, 59, tzinfo=UTC))
    assert len(late) == 5


def test_ttl_cache_is_bounded_and_expires() -> None:
    cache = TtlCache(ttl_s=10.0, max_entries=3)
    for i in range(10):
        assert not cache.check_and_add(i, now=0.0)
    assert len(cache) == 3
    assert cache.check_and_add(9, now=5.0)
    assert not cache.check_and_add(9, now=20.0)
    assert len(cache) == 1


def test_airtime_follows_the_link_options() -> None:
    base = aprs_link("tcp://127.0.0.1:1")
    fast_options = {**base.options, "channel_baud": 9600, "txdelay_s": 0.05, "gap_s": 0.02}
    fast_link = LinkConfig("vhf", "aprs", base.url, options=MappingProxyType(fast_options))
    slow = AprsDriver(base, RecordingSink(), LinkCounters())
    fast = AprsDriver(fast_link, RecordingSink(), LinkCounters())
    frame = slow.kiss_frame(encode_message(RADIO, "Task 17: go to gate 3", "00017"))
    assert slow.frame_airtime_s(frame) == pytest.approx(0.3 + 0.05 + (len(frame) + 1) * 8.8 / 1200)
    assert fast.frame_airtime_s(frame) == pytest.approx(0.05 + 0.05 + (len(frame) + 1) * 8.8 / 9600)
    assert (slow.gap_s, fast.gap_s) == (0.1, 0.02)
