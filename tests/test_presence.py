"""Presence of units whose devices dial in, through the daemon (``fieldlink run``), a real
mosquitto and real TCP: a device that hangs up takes its unit offline at once, unless another
of the unit's devices is still heard (a patrol car's tracker and its GPS receiver, a person's
tracker and radio)."""

from __future__ import annotations

import asyncio
import functools
import operator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from firmware_stubs.gt06_tracker import Gt06Tracker
from gateway.devkit.broker import Mosquitto, free_port
from tests.support import Collector, GatewayProcess, run_async, write_config

pytestmark = [pytest.mark.broker, pytest.mark.timeout(60)]

BASE = "fieldlink/gw1"
CAR_1_TRACKER = "861234567890001"
CAR_2_TRACKER = "861234567890002"


def rmc_now() -> bytes:
    """A valid RMC with the time of now: the receiver's fix, published as car-1's position."""
    now = datetime.now(UTC)
    body = f"GPRMC,{now:%H%M%S}.00,A,3113.824,N,12128.422,E,000.0,000.0,{now:%d%m%y},,,A"
    checksum = functools.reduce(operator.xor, body.encode(), 0)
    return f"${body}*{checksum:02X}\r\n".encode()


def config(tmp_path: Path, broker: Mosquitto, trackers: int, receivers: int) -> Path:
    return write_config(
        tmp_path / "config.toml",
        f"""
[gateway]
id = "gw1"
data_dir = "{tmp_path / "data"}"

[mqtt]
url = "{broker.url}"
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[http]
enabled = false

[[links]]
name = "trk"
protocol = "gt06"
url = "listen://127.0.0.1:{trackers}"
offline_after_s = 600.0

[[links]]
name = "gps"
protocol = "nmea"
url = "listen://127.0.0.1:{receivers}"
unit = "car-1"
offline_after_s = 600.0

[[units]]
id = "car-1"
devices = ["trk:{CAR_1_TRACKER}"]

[[units]]
id = "car-2"
devices = ["trk:{CAR_2_TRACKER}"]
""",
    )


def states(collector: Collector, unit: str) -> list[str]:
    topic = f"{BASE}/units/{unit}/availability"
    return [str(m.json()["state"]) for m in collector.snapshot(topic)]


def test_a_device_that_hangs_up_takes_its_unit_offline_unless_another_is_heard(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    trackers, receivers = free_port(), free_port()
    daemon = GatewayProcess(
        config(tmp_path, mosquitto, trackers, receivers), tmp_path / "gateway.log"
    )
    collector = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
    try:
        daemon.start()
        collector.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/state" and m.json()["state"] == "online" for m in ms
            ),
            20,
            "the gateway online",
        )
        run_async(scenario(collector, daemon, trackers, receivers), timeout_s=40)
        assert daemon.terminate() == 0
    finally:
        collector.stop()
        daemon.ensure_stopped()
    log = daemon.log()
    assert "Traceback" not in log, log[-3000:]


async def scenario(
    collector: Collector, daemon: GatewayProcess, trackers: int, receivers: int
) -> None:
    async def until(unit: str, expected: list[str], what: str) -> None:
        async with asyncio.timeout(10):
            while states(collector, unit) != expected:  # noqa: ASYNC110 - another thread fills it
                await asyncio.sleep(0.05)

    car_1 = Gt06Tracker(CAR_1_TRACKER, "127.0.0.1", trackers)
    car_2 = Gt06Tracker(CAR_2_TRACKER, "127.0.0.1", trackers)
    await car_1.start()
    await car_2.start()
    await until("car-1", ["online"], "car-1's tracker logged in")
    await until("car-2", ["online"], "car-2's tracker logged in")
    # car-1's GPS receiver dials in too and is heard.
    reader, writer = await asyncio.open_connection("127.0.0.1", receivers)
    writer.write(rmc_now())
    await writer.drain()
    async with asyncio.timeout(10):  # heard: its fix is car-1's position
        while not collector.snapshot(f"{BASE}/units/car-1/position"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    # The trackers hang up: car-2 has nothing else and is offline at once (not after its
    # 600 s of silence); car-1 still has its receiver.
    await car_2.stop()
    await until("car-2", ["online", "offline"], "car-2 offline")
    await car_1.stop()
    left = f"trk:{CAR_1_TRACKER} left (its session closed (peer)); still online via gps"
    async with asyncio.timeout(10):  # the daemon has handled the hang-up
        while left not in daemon.log():  # noqa: ASYNC110 - the daemon writes its log file
            await asyncio.sleep(0.05)
    assert states(collector, "car-1") == ["online"]
    # The receiver hangs up too: now car-1 is offline.
    writer.close()
    await writer.wait_closed()
    del reader
    await until("car-1", ["online", "offline"], "car-1 offline")
