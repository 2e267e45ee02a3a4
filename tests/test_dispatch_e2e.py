"""Dispatch end to end: tasks over a real mosquitto into the daemon (a child process),
out over KISS TCP to APRS radio stubs on a simulated channel, and back.

No scripted drivers here: the daemon's real APRS driver talks to radios built from the
project's own codecs. Faults: kill -9 at random moments, the broker down for a while.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.aprs_radio import AprsRadio
from gateway.devkit.broker import Mosquitto
from gateway.journal import Journal
from gateway.model import rfc3339, utc_now
from gateway.taskstore import TaskStore
from tests.radio_harness import RadioField
from tests.support import Collector, GatewayProcess, Received, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

BASE = "fieldlink/gw1"
INCIDENT = (31.2304, 121.4737)
TERMINAL_OR_ACKED = {"acknowledged", "declined", "failed", "expired", "cancelled", "closed"}
RETRY_INTERVALS_S = [0.4, 0.4, 0.4]
SENDS_PER_DEVICE = 2
BROKER_OUTAGE_S = 30.0


def config_text(data_dir: Path, broker: Mosquitto, field: RadioField, **sla: float) -> str:
    sla_lines = "\n".join(f"{k} = {v}" for k, v in sla.items())
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[mqtt]
url = "{broker.url}"
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[sla]
{sla_lines}

[dispatch]
sends_per_device = {SENDS_PER_DEVICE}

[[links]]
name = "vhf"
protocol = "aprs"
url = "{field.url}"
callsign = "BH4GW-10"
retry_intervals_s = {RETRY_INTERVALS_S}
channel_baud = 9600
txdelay_s = 0.05
gap_s = 0.02
reconnect_min_s = 0.1
reconnect_max_s = 0.3

[[units]]
id = "zhang-wei"
name = "张伟"
devices = ["vhf:BH4ZW-7"]

[[units]]
id = "li-na"
name = "李娜"
devices = ["vhf:BH4LN-7"]

[[units]]
id = "wang-qiang"
name = "王强"
devices = ["vhf:BH4WQ-7", "vhf:BH4WQ-9"]
"""


def task(task_id: str, unit: str, priority: str = "normal", **extra: object) -> bytes:
    body: dict[str, object] = {
        "task_id": task_id,
        "units": [unit],
        "text": f"{task_id} 人民广场东侧有人摔倒",
        "priority": priority,
        "created_at": rfc3339(utc_now()),
        **extra,
    }
    return json.dumps(body, ensure_ascii=False).encode()


def stages(messages: list[Received], task_id: str) -> list[str]:
    topic = f"{BASE}/tasks/{task_id}/events"
    out = []
    for m in messages:
        if m.topic == topic:
            event = m.json()
            out.append(event["stage"] + (f":{event['target']}" if "target" in event else ""))
    return out


def first_seen(seq: list[str]) -> list[str]:
    return list(dict.fromkeys(seq))


@pytest.fixture
def collector(mosquitto: Mosquitto) -> Iterator[Collector]:
    coll = Collector(
        mosquitto.host, mosquitto.port, [f"{BASE}/#"], client_id="e2e-centre", persistent=True
    ).start()
    yield coll
    coll.stop()


@pytest.mark.timeout(120)
def test_tasks_reach_people_and_come_back(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    route = [(INCIDENT[0] + 0.0002, INCIDENT[1]), (INCIDENT[0] - 0.0002, INCIDENT[1])]
    field = RadioField(
        [
            AprsRadio("BH4ZW-7", reply="收到", reply_delay_s=0.2, ack_delay_s=0.0,
                      beacon_interval_s=0.5, route=route),
            AprsRadio("BH4LN-7", reply="不行，在处理别的警情", reply_delay_s=0.2, ack_delay_s=0.0),
            AprsRadio("BH4WQ-7", ack="never", reply=None),
            AprsRadio("BH4WQ-9", reply=None, ack_delay_s=0.0),
        ]
    ).start()  # fmt: skip
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        config_text(tmp_path / "data", mosquitto, field, acknowledge_s=8, escalate_before_s=3),
        encoding="utf-8",
    )
    daemon = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    try:
        collector.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/links/vhf/state" and b'"up"' in m.payload for m in ms
            ),
            15,
            "the radio link up",
        )
        incident = {"lat": INCIDENT[0], "lon": INCIDENT[1], "radius_m": 100}
        pub = collector.client
        pub.publish(
            f"{BASE}/tasks/dispatch", task("a1", "zhang-wei", "urgent", incident=incident), 1
        )
        pub.publish(f"{BASE}/tasks/dispatch", task("b1", "li-na"), 1)
        pub.publish(f"{BASE}/tasks/dispatch", task("c1", "wang-qiang", "routine"), 1)

        def done(ms: list[Received]) -> bool:
            return (
                "on_scene" in stages(ms, "a1")
                and "declined" in stages(ms, "b1")
                and "escalated:acknowledged" in stages(ms, "c1")
                and "delivered" in stages(ms, "c1")
            )

        messages = collector.wait_for(done, 60, "every unit's outcome")
        a1 = first_seen(stages(messages, "a1"))
        assert a1[:4] == ["received", "queued", "transmitted", "delivered"]
        # Its beacons may put it on scene before or after the person's "收到".
        assert {"acknowledged", "on_scene"} <= set(a1)
        b1 = first_seen(stages(messages, "b1"))
        assert b1[:4] == ["received", "queued", "transmitted", "delivered"]
        assert b1[-1] == "declined"
        c1_events = [m.json() for m in messages if m.topic == f"{BASE}/tasks/c1/events"]
        queued = [e["detail"] for e in c1_events if e["stage"] == "queued"]
        assert queued[0] == "vhf:BH4WQ-7"  # never acked ...
        delivered = [e["detail"] for e in c1_events if e["stage"] == "delivered"]
        assert delivered == ["vhf:BH4WQ-9"]  # ... so the second radio got it
        assert field.radios["BH4ZW-7"].received[0][1].startswith("#1 a1 ")
        # Journal and MQTT agree on every stage and its time.
        assert daemon.terminate() == 0
        journal = Journal.open(tmp_path / "data" / "journal.sqlite")
        store = TaskStore(journal)
        for task_id in ("a1", "b1", "c1"):
            published = {
                (e["unit"], e["stage"], e.get("target", "")): e["at"]
                for m in messages
                if m.topic == f"{BASE}/tasks/{task_id}/events"
                for e in [m.json()]
            }
            recorded = {(s.unit, s.stage, s.target): s.at for s in store.stages(task_id)}
            # Everything published was journaled first, with the same time; the stages the
            # test waited for are in both.
            assert published.items() <= recorded.items(), task_id
        journal.close()
    finally:
        daemon.ensure_stopped()
        field.stop()


@pytest.mark.timeout(300)
def test_kill9_at_random_moments_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    rng = random.Random(20261128)
    radios = [
        AprsRadio(f"BH4U{i}-7", reply="收到", reply_delay_s=0.3, ack_delay_s=0.0) for i in range(5)
    ]
    field = RadioField(radios).start()
    cfg = tmp_path / "config.toml"
    units = "".join(
        f'\n[[units]]\nid = "u{i}"\nname = "u{i}"\ndevices = ["vhf:BH4U{i}-7"]\n' for i in range(5)
    )
    cfg.write_text(
        config_text(tmp_path / "data", mosquitto, field, acknowledge_s=120) + units,
        encoding="utf-8",
    )
    pub = collector.client
    tasks = [f"k{n:02d}" for n in range(50)]
    log_path = tmp_path / "gateway.log"
    daemons: list[GatewayProcess] = []
    try:
        daemon = GatewayProcess(cfg, log_path).start()
        daemons.append(daemon)
        collector.wait_for(
            lambda ms: any(m.topic == f"{BASE}/state" and b'"online"' in m.payload for m in ms),
            15,
            "the gateway online (its session exists from now on)",
        )
        # The centre sends its 50 tasks in a burst; the gateway is killed at 20 random
        # moments while it works through them, and started again each time.
        for n, task_id in enumerate(tasks):
            pub.publish(f"{BASE}/tasks/dispatch", task(task_id, f"u{n % 5}"), 1)
        for _ in range(20):
            time.sleep(rng.uniform(0.3, 2.0))
            daemon.kill9()
            daemon = GatewayProcess(cfg, log_path).start()
            daemons.append(daemon)

        def all_settled(ms: list[Received]) -> bool:
            return all(TERMINAL_OR_ACKED & set(stages(ms, t)) for t in tasks)

        messages = collector.wait_for(all_settled, 150, "every task settled")
        assert daemon.terminate() == 0
    finally:
        for daemon in daemons:
            daemon.ensure_stopped()
    try:
        # No task transmitted more often than its retry policy allows.
        bound = SENDS_PER_DEVICE * len(RETRY_INTERVALS_S)
        for i, radio in enumerate(radios):
            on_air = field.messages_to(radio.callsign)
            for task_id in tasks[i::5]:
                copies = sum(1 for text in on_air if f" {task_id} " in f" {text} ")
                assert 1 <= copies <= bound, (task_id, copies)
        # None lost, and the journal agrees with what went out on MQTT.
        journal = Journal.open(tmp_path / "data" / "journal.sqlite")
        store = TaskStore(journal)
        for task_id in tasks:
            published = {
                (e["unit"], e["stage"]): e["at"]
                for m in messages
                if m.topic == f"{BASE}/tasks/{task_id}/events"
                for e in [m.json()]
                if e["unit"]
            }
            recorded = {(s.unit, s.stage): s.at for s in store.stages(task_id) if not s.target}
            assert recorded, task_id
            for key, at in recorded.items():
                if key in published:
                    assert published[key] == at, (task_id, key)
            assert set(published) <= set(recorded), task_id
        journal.close()
    finally:
        field.stop()


@pytest.mark.timeout(150)
def test_broker_down_in_the_middle(tmp_path: Path, mosquitto: Mosquitto) -> None:
    radios = [
        AprsRadio(f"BH4U{i}-7", reply="收到", reply_delay_s=0.5, ack_delay_s=0.0) for i in range(3)
    ]
    field = RadioField(radios).start()
    units = "".join(
        f'\n[[units]]\nid = "u{i}"\nname = "u{i}"\ndevices = ["vhf:BH4U{i}-7"]\n' for i in range(3)
    )
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        config_text(tmp_path / "data", mosquitto, field, acknowledge_s=120) + units,
        encoding="utf-8",
    )
    daemon = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    centre = Collector(
        mosquitto.host, mosquitto.port, [f"{BASE}/tasks/+/events"], client_id="centre",
        persistent=True,
    ).start()  # fmt: skip
    try:
        wait_until(lambda: "mqtt connected" in daemon.log(), 15, "daemon connected")
        time.sleep(0.5)
        for n in range(6):
            centre.client.publish(f"{BASE}/tasks/dispatch", task(f"d{n}", f"u{n % 3}"), 1)
        # Take the broker away while those tasks are on air and being answered.
        time.sleep(0.3)
        mosquitto.stop()
        time.sleep(BROKER_OUTAGE_S)  # every reply comes in while the broker is away
        mosquitto.start()
        messages = centre.wait_for(
            lambda ms: all("acknowledged" in stages(ms, f"d{n}") for n in range(6)),
            60,
            "every stage after the outage",
        )
        for n in range(6):
            got = first_seen(stages(messages, f"d{n}"))
            assert got[:5] == ["received", "queued", "transmitted", "delivered", "acknowledged"], (
                got
            )
        assert daemon.terminate() == 0
    finally:
        daemon.ensure_stopped()
        centre.stop()
        field.stop()
