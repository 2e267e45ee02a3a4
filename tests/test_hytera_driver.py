"""The Hytera driver against the simulated radio (``firmware_stubs/hytera_radio.py``) on a real
pty (serial HRNP) and on real loopback UDP (the USB network path), in one process.

Timing constants are shrunk through the link options (HRNP ack timeout, TMP retry intervals,
busy back-off, report intervals), never slept through. See ``docs/protocols/hytera.md``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import pytest

from firmware_stubs.hytera_radio import AirRadio, HyteraRadio, Misbehaviour
from gateway.channel import NORMAL
from gateway.config import LinkConfig, SerialSettings
from gateway.drivers.base import AlarmConfirmer, TextSender
from gateway.drivers.hytera.driver import HyteraDriver, split_text
from gateway.drivers.hytera.spec import SPEC
from gateway.errors import LinkError
from gateway.model import (
    Alarm,
    AlarmKind,
    Delivery,
    DeliveryReport,
    DeviceRef,
    LinkCounters,
    Position,
    TextFromUnit,
    TextOrder,
    UnitAnswer,
)
from gateway.options import read_options
from gateway.transport import Connection, open_connection, parse_url
from protocols.hytera.hdap import Service
from protocols.hytera.services import (
    LpOpcode,
    LpRequest,
    TmpMessage,
    TmpResult,
)
from tests.support import run_async

pytestmark = pytest.mark.timeout(60)

Mode = Literal["pty", "udp"]
FAST = {
    "hrnp_ack_timeout_s": 0.3,
    "hrnp_retries": 2,
    "retry_intervals_s": [0.4, 0.4, 0.4],
    "busy_backoff_s": 0.05,
    "keepalive_s": 5.0,
    "location_interval_s": 0.2,
}


@dataclass
class Sink:
    """What the driver reported, in order."""

    heard_devices: list[DeviceRef] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    texts: list[TextFromUnit] = field(default_factory=list)
    answers: list[UnitAnswer] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)

    def heard(self, device: DeviceRef) -> None:
        self.heard_devices.append(device)

    def position(self, position: Position) -> None:
        self.positions.append(position)

    def text(self, text: TextFromUnit) -> None:
        self.texts.append(text)

    def answer(self, answer: UnitAnswer) -> None:
        self.answers.append(answer)

    def alarm(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)


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
    sink: Sink
    counters: LinkCounters
    conn: Connection
    task: asyncio.Task[None]

    async def until(self, what: str, predicate: Callable[[], bool], timeout_s: float = 10) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
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
        else:
            ports = stub.service_ports
            link = link_config(
                f"udp://127.0.0.1:{stub.rcp_port}", local_host="127.0.0.1",
                rrs_port=ports[Service.RRS], lp_port=ports[Service.LP],
                tmp_port=ports[Service.TMP], local_rrs_port=gw_ports[0],
                local_lp_port=gw_ports[1], local_tmp_port=gw_ports[2], **options,
            )  # fmt: skip
        sink = Sink()
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
    from gateway.drivers.registry import PROTOCOLS

    assert PROTOCOLS["hytera"].driver_class() is HyteraDriver
    driver = HyteraDriver(link_config("/dev/null"), Sink(), LinkCounters())
    assert isinstance(driver, TextSender)
    assert isinstance(driver, AlarmConfirmer)
    assert driver.capabilities.location_poll
    assert not driver.can_reach("1001")  # not connected


@pytest.mark.parametrize("mode", ["pty", "udp"])
def test_session_registration_positions_and_text_round_trip(mode: Mode) -> None:
    async def body() -> None:
        radio = AirRadio(1001, report_interval_s=0.05, reply="收到", reply_delay_s=0.05)
        async with rig(mode, [radio]) as r:
            assert r.driver.own_id == 7
            await r.until("heard", lambda: DeviceRef("dmr", "1001") in r.sink.heard_devices)
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
