"""GT06 end to end: the daemon (``fieldlink run``, a child process) with a ``listen://`` GT06
link, a real mosquitto, and tracker stubs on loopback TCP.

Login makes the unit available; locations become positions; heartbeats keep it available and
their absence makes it offline; a task to a tracker with a screen goes out as 0x80 and the
tracker's 0x15 makes it ``delivered``; an SOS repeated three times is one ``raised`` with its
position, and the next clean heartbeat clears it. Garbage, an oversize length, an unterminated
packet, a bad CRC, a stranger, a tracker that never logs in and a crowd of idle connections
are each handled while the good tracker keeps being published.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.gt06_tracker import Gt06Tracker
from gateway.devkit.broker import Mosquitto, free_port
from gateway.model import rfc3339, utc_now
from protocols.gt06 import AlarmCode
from tests.support import Collector, GatewayProcess, Received, run_async

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

BASE = "fieldlink/gw1"
IMEI = "123456789012345"
STRANGER = "999999999999999"
IDLE_PEERS = 200


def config_text(data_dir: Path, broker: Mosquitto, port: int) -> str:
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[mqtt]
url = "{broker.url}"
health_interval_s = 0.5
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[[links]]
name = "gt"
protocol = "gt06"
url = "listen://127.0.0.1:{port}"
has_screen = true
text_encoding = "utf-8"
login_timeout_s = 1.0
offline_after_s = 2.0
retry_intervals_s = [2.0, 2.0, 2.0]
max_connections = 500

[[units]]
id = "truck-1"
name = "Truck 1"
devices = ["gt:{IMEI}"]
"""


@pytest.fixture
def collector(mosquitto: Mosquitto) -> Iterator[Collector]:
    coll = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
    yield coll
    coll.stop()


async def until(
    collector: Collector, predicate: Callable[[list[Received]], bool], what: str, timeout_s: float
) -> list[Received]:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate(collector.snapshot()):  # noqa: ASYNC110 - the broker's thread fills it
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None
    return collector.snapshot()


def payloads(messages: list[Received], topic: str) -> list[dict[str, object]]:
    return [m.json() for m in messages if m.topic == f"{BASE}/{topic}"]


def availability(messages: list[Received]) -> list[object]:
    return [p["state"] for p in payloads(messages, "units/truck-1/availability")]


def stages(messages: list[Received], task_id: str) -> list[object]:
    return [p["stage"] for p in payloads(messages, f"tasks/{task_id}/events")]


async def hostile_peer(port: int, data: bytes) -> bool:
    """Send ``data`` on a fresh connection; True when the gateway sent nothing back and
    closed it (at its login deadline)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(100) == b""
    finally:
        writer.close()


def test_gt06_through_the_daemon(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    port = free_port()
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_text(tmp_path / "data", mosquitto, port), encoding="utf-8")
    daemon = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    try:
        run_async(scenario(port, collector), timeout_s=100)
        assert daemon.terminate() == 0
    finally:
        daemon.ensure_stopped()
    log = daemon.log()
    assert "Traceback" not in log, log[-3000:]


async def scenario(port: int, collector: Collector) -> None:
    await until(
        collector,
        lambda ms: any(p["state"] == "up" for p in payloads(ms, "links/gt/state")),
        "the link up",
        20,
    )
    trk = Gt06Tracker(IMEI, "127.0.0.1", port, tz_minutes=0)
    async with trk:
        # Login -> available.
        await until(collector, lambda ms: "online" in availability(ms), "truck-1 online", 10)
        # Locations -> positions.
        for _ in range(3):
            await trk.send_location()
        ms = await until(
            collector,
            lambda ms: len(payloads(ms, "units/truck-1/position")) >= 3,
            "three positions",
            10,
        )
        first = payloads(ms, "units/truck-1/position")[0]
        assert first["lat"] == pytest.approx(31.230416, abs=1e-6)
        assert first["lon"] == pytest.approx(121.473701, abs=1e-6)
        assert first["source"] == "gt06"

        # Heartbeats keep it available past offline_after_s (2 s) ...
        for _ in range(12):
            await trk.send_heartbeat()
            await asyncio.sleep(0.4)
        assert availability(collector.snapshot()) == ["online"]
        # ... and without them it goes offline, the connection still open.
        await until(collector, lambda ms: "offline" in availability(ms), "offline on silence", 10)
        await trk.send_heartbeat()
        await until(collector, lambda ms: availability(ms)[-1] == "online", "online again", 10)

        # A task to a tracker with a screen: 0x80 out, 0x15 back -> delivered.
        task = {
            "task_id": "g1",
            "units": ["truck-1"],
            "text": "到人民广场东侧",
            "priority": "urgent",
            "created_at": rfc3339(utc_now()),
        }
        collector.client.publish(f"{BASE}/tasks/dispatch", json.dumps(task), 1)
        ms = await until(collector, lambda ms: "delivered" in stages(ms, "g1"), "delivered", 20)
        assert stages(ms, "g1")[:4] == ["received", "queued", "transmitted", "delivered"]
        assert len(trk.commands) == 1
        assert "到人民广场东侧" in trk.commands[0].command

        # SOS sent three times (the same packet: its acks "lost") -> acked each time, one
        # raised with its position; the next clean heartbeat clears it.
        serial = trk.next_serial()
        packet = trk.alarm_packet(AlarmCode.SOS, 4, serial)
        for _ in range(3):
            await trk.send_packet(packet, 0x16, serial, ack=True)
        assert trk.acks.count((0x16, serial)) == 3
        ms = await until(
            collector,
            lambda ms: any(p["state"] == "raised" for p in payloads(ms, "units/truck-1/alarm")),
            "SOS raised",
            10,
        )
        await trk.send_heartbeat(alarm_bits=0)
        ms = await until(
            collector,
            lambda ms: any(p["state"] == "cleared" for p in payloads(ms, "units/truck-1/alarm")),
            "SOS cleared",
            10,
        )
        alarms = payloads(ms, "units/truck-1/alarm")
        assert [(a["kind"], a["state"]) for a in alarms] == [
            ("emergency", "raised"),
            ("emergency", "cleared"),
        ]
        assert isinstance(alarms[0]["position"], dict)
        assert alarms[0]["position"]["lat"] == pytest.approx(31.2, abs=0.1)

        # Hostile clients, while the good tracker keeps reporting.
        before = len(payloads(collector.snapshot(), "units/truck-1/position"))
        idle = []
        for _ in range(IDLE_PEERS):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        assert await hostile_peer(port, b"\x00\xffGET / HTTP/1.0\r\n\r\n" * 50)
        assert await hostile_peer(port, b"\x79\x79\xff\xff\x12" + b"\x00" * 4000)
        assert await hostile_peer(port, b"\x78\x78\x1f\x12\x00\x01\x02")  # never completed
        stranger = Gt06Tracker(STRANGER, "127.0.0.1", port, login=False, ack_timeout_s=1.0)
        async with stranger:
            with pytest.raises((TimeoutError, ConnectionError)):
                await stranger.login()
            async with asyncio.timeout(10):
                await stranger.closed.wait()
        crc_serial = await trk.send_bad_crc()
        for _ in range(3):
            await trk.send_location()
        assert (0x13, crc_serial) not in trk.acks
        # The idle crowd is closed at its login deadline.
        for reader, writer in idle:
            async with asyncio.timeout(10):
                assert await reader.read(100) == b""
            writer.close()
        await trk.send_location()
        await until(
            collector,
            lambda ms: len(payloads(ms, "units/truck-1/position")) >= before + 4,
            "positions after the hostile clients",
            10,
        )

        # What the link's health says about all that.
        def health_tells(ms: list[Received]) -> bool:
            link = _link_health(ms)
            if not link:
                return False
            sessions = link["sessions"]
            return bool(
                link["rejected_by_reason"].keys() >= {"garbage", "oversize", "crc"}
                and sessions["closed"].get("login_timeout", 0) >= IDLE_PEERS + 3
                and sessions["refused"]["not_allowed"] == 1
                and sessions["devices"] == 1
            )

        await until(collector, health_tells, "the hostile clients counted in health", 10)


def _link_health(messages: list[Received]) -> dict[str, Any]:
    health = payloads(messages, "health")
    if not health:
        return {}
    link: dict[str, Any] = health[-1]["links"]["gt"]  # type: ignore[index]
    return link
