"""MOTOTRBO end to end: the daemon (a child process, real config file) on a real mosquitto, its
mototrbo link on loopback UDP, and the control-station stub with four subscriber radios.

Registration -> availability; triggered reports -> positions; ``poll_location`` -> an immediate
request; task -> TMS -> ack -> ``delivered``; no ack -> ``failed``, or the unit's next device;
reply -> ``acknowledged``; emergency -> alarm with position; deregistration -> offline.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_stubs.mototrbo_radio import ControlStation, SubscriberRadio
from gateway.devkit.broker import Mosquitto
from gateway.model import rfc3339, utc_now
from protocols.mototrbo import lrrp
from tests.support import Collector, GatewayProcess, Received, run_async, wait_until

pytestmark = [pytest.mark.broker]

BASE = "fieldlink/gw1"
HOST = "127.0.0.1"
INCIDENT = (31.2304, 121.4737)


def free_udp_ports(count: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def config_text(data_dir: Path, broker: Mosquitto, ports: list[int]) -> str:
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[mqtt]
url = "{broker.url}"
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[dispatch]
sends_per_device = 1

[[links]]
name = "trbo"
protocol = "mototrbo"
url = "udp-listen://{HOST}:{ports[0]}"
tms_port = {ports[1]}
lrrp_port = {ports[2]}
cai = 127
location_interval_s = 1
retry_intervals_s = [0.5, 0.5]
channel_hold_s = 0.01
status_stages = ["到达现场=on_scene"]

[[units]]
id = "zhang-wei"
name = "张伟"
devices = ["trbo:1001"]

[[units]]
id = "li-na"
name = "李娜"
devices = ["trbo:1002"]

[[units]]
id = "wang-qiang"
name = "王强"
devices = ["trbo:1003", "trbo:1004"]
"""


def task(task_id: str, unit: str) -> bytes:
    body = {
        "task_id": task_id,
        "units": [unit],
        "text": f"{task_id} 人民广场东侧有人摔倒",
        "priority": "urgent",
        "created_at": rfc3339(utc_now()),
    }
    return json.dumps(body, ensure_ascii=False).encode()


def stages(messages: list[Received], task_id: str) -> list[str]:
    topic = f"{BASE}/tasks/{task_id}/events"
    return [m.json()["stage"] for m in messages if m.topic == topic]


def state_is(topic: str, state: str) -> Callable[[list[Received]], bool]:
    def check(messages: list[Received]) -> bool:
        found = [m for m in messages if m.topic == topic]
        return bool(found) and found[-1].json().get("state") == state

    return check


@pytest.fixture
def collector(mosquitto: Mosquitto) -> Iterator[Collector]:
    coll = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/#"], client_id="trbo-centre")
    coll.start()
    yield coll
    coll.stop()


@pytest.mark.timeout(90)
def test_mototrbo_through_the_daemon(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    ports = free_udp_ports(3)
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_text(tmp_path / "data", mosquitto, ports), encoding="utf-8")
    daemon = GatewayProcess(cfg, tmp_path / "gateway.log").start()

    async def wait(predicate: Callable[[list[Received]], bool], what: str) -> list[Received]:
        return await asyncio.to_thread(collector.wait_for, predicate, 30, what)

    async def scenario() -> None:
        radios = [
            SubscriberRadio(1001, route=[INCIDENT], reply="收到", reply_delay_s=0.3),
            SubscriberRadio(1002, ack="never"),
            SubscriberRadio(1003, ack="never"),
            SubscriberRadio(1004, reply="到达现场", reply_delay_s=0.3),
        ]
        station = ControlStation(
            radios,
            gateway_host=HOST,
            ars_port=ports[0],
            tms_port=ports[1],
            lrrp_port=ports[2],
            cai=127,
            ars_retry_s=0.3,
        )
        async with station:
            for unit in ("zhang-wei", "li-na", "wang-qiang"):
                await wait(state_is(f"{BASE}/units/{unit}/availability", "online"), unit)
            await wait(
                lambda ms: any(m.topic == f"{BASE}/units/zhang-wei/position" for m in ms),
                "a triggered report as a position",
            )
            position = collector.last_json(f"{BASE}/units/zhang-wei/position")
            assert position["lat"] == pytest.approx(INCIDENT[0], abs=1e-5)
            assert position["source"] == "mototrbo"

            pub = collector.client
            pub.publish(f"{BASE}/request/poll_location", json.dumps({"unit": "li-na"}), 1)
            li = station.radios[1002]
            await asyncio.to_thread(
                wait_until,
                lambda: any(q.doc == lrrp.DocId.IMMEDIATE_LOCATION_REQUEST for q in li.requests),
                15,
                "an immediate request",
            )

            pub.publish(f"{BASE}/tasks/dispatch", task("a1", "zhang-wei"), 1)
            pub.publish(f"{BASE}/tasks/dispatch", task("b1", "li-na"), 1)
            pub.publish(f"{BASE}/tasks/dispatch", task("c1", "wang-qiang"), 1)
            messages = await wait(
                lambda ms: (
                    "acknowledged" in stages(ms, "a1")
                    and "failed" in stages(ms, "b1")
                    and "on_scene" in stages(ms, "c1")
                ),
                "every task's outcome",
            )
            a1 = stages(messages, "a1")
            assert a1.index("transmitted") < a1.index("delivered") < a1.index("acknowledged")
            assert station.radios[1001].texts[0].endswith("a1 人民广场东侧有人摔倒")
            assert "delivered" not in stages(messages, "b1")
            c1 = [m.json() for m in messages if m.topic == f"{BASE}/tasks/c1/events"]
            delivered = [e.get("detail") for e in c1 if e["stage"] == "delivered"]
            assert delivered == ["trbo:1004"]  # 1003 never acked: the next device got it
            assert station.radios[1003].texts  # it was tried

            assert station.emergency(1001)
            alarms = await wait(
                lambda ms: any(m.topic == f"{BASE}/units/zhang-wei/alarm" for m in ms),
                "the emergency alarm",
            )
            alarm = next(m.json() for m in alarms if m.topic == f"{BASE}/units/zhang-wei/alarm")
            assert alarm["kind"] == "emergency"
            assert alarm["state"] == "raised"
            assert alarm["position"]["lat"] == pytest.approx(INCIDENT[0], abs=1e-5)

            station.deregister(1002)
            await wait(state_is(f"{BASE}/units/li-na/availability", "offline"), "li-na offline")

    try:
        run_async(scenario(), 80)
    except BaseException:
        print(daemon.log()[-6000:])  # the daemon log explains a failure
        raise
    finally:
        daemon.terminate()
        daemon.ensure_stopped()
