"""The MQTT session against a real mosquitto: outbox order across broker restarts,
retained republish, inbound journaled before PUBACK."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.config import Config, parse_config
from gateway.devkit.broker import Mosquitto
from gateway.journal import Journal
from gateway.model import utc_now
from gateway.mqtt import InboundMessage, MqttBridge
from gateway.topics import Topics
from tests.support import Collector, Received, run_async

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]


def make_config(tmp_path: Path, broker: Mosquitto, **mqtt: object) -> Config:
    data: dict[str, object] = {
        "gateway": {"id": "gw1", "data_dir": str(tmp_path / "data")},
        "mqtt": {
            "url": broker.url,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.3,
            **mqtt,
        },
    }
    return parse_config(data, base_dir=tmp_path, env={})


async def until(predicate: object, timeout_s: float, what: str) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls state another task owns
            await asyncio.sleep(0.02)
    del what


def test_outbox_survives_broker_restart_in_order(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = make_config(tmp_path, mosquitto)
    topics = Topics("fieldlink", "gw1")
    events_topic = topics.task_events("t1")
    collector = Collector(
        mosquitto.host,
        mosquitto.port,
        [events_topic, topics.state, f"{topics.root}/units/+/position"],
        client_id="test-collector",
        persistent=True,
    ).start()

    async def scenario() -> None:
        journal = Journal.open(config.gateway.data_dir / "journal.sqlite")
        received: list[InboundMessage] = []

        def on_inbound(message: InboundMessage) -> None:
            received.append(message)

        bridge = MqttBridge(
            config.mqtt, topics, journal, version="t", started_at=utc_now(), on_inbound=on_inbound
        )
        task = asyncio.create_task(bridge.run())
        try:
            await bridge.wait_connected(10)
            bridge.set_retained(topics.position("u1"), b'{"lat":1}', qos=0)
            for i in range(50):
                bridge.emit(events_topic, json.dumps({"n": i}).encode())
            await until(lambda: journal.outbox_depth == 0, 10, "first batch drained")

            mosquitto.stop()
            await until(lambda: not bridge.connected, 10, "disconnect noticed")
            for i in range(50, 300):
                bridge.emit(events_topic, json.dumps({"n": i}).encode())
            assert journal.outbox_depth == 250
            bridge.set_retained(topics.position("u1"), b'{"lat":2}', qos=0)
            mosquitto.start()
            await bridge.wait_connected(15)
            await until(lambda: journal.outbox_depth == 0, 15, "second batch drained")
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 10)
            journal.close()

    run_async(scenario())

    def complete(ms: list[Received]) -> bool:
        events = {m.payload for m in ms if m.topic == events_topic}
        states = [m.payload for m in ms if m.topic == topics.state]
        return len(events) >= 300 and bool(states) and b'"offline"' in states[-1]

    messages = collector.wait_for(complete, 15, "all 300 events and the offline state")
    collector.stop()
    numbers = [json.loads(m.payload)["n"] for m in messages if m.topic == events_topic]
    # At least once, never reordered: duplicates may repeat a run, first sightings ascend.
    first_seen: list[int] = []
    for n in numbers:
        if n not in first_seen:
            first_seen.append(n)
    assert first_seen == list(range(300))
    states = [json.loads(m.payload)["state"] for m in messages if m.topic == topics.state]
    assert states[-1] == "offline"  # the graceful stop says so
    assert "online" in states
    positions = [m.payload for m in messages if m.topic == topics.position("u1")]
    assert positions[-1] == b'{"lat":2}'


def test_inbound_is_journaled_before_puback(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A message the handler never finishes is redelivered after a restart: PUBACK waits
    for the journal, and the journal has the message."""
    config = make_config(tmp_path, mosquitto)
    topics = Topics("fieldlink", "gw1")

    async def scenario() -> None:
        journal = Journal.open(config.gateway.data_dir / "journal.sqlite")
        got: list[InboundMessage] = []

        def on_inbound(message: InboundMessage) -> None:
            got.append(message)

        bridge = MqttBridge(
            config.mqtt, topics, journal, version="t", started_at=utc_now(), on_inbound=on_inbound
        )
        task = asyncio.create_task(bridge.run())
        try:
            await bridge.wait_connected(10)
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 10)
        # Offline now; the broker queues for our persistent session.
        publisher = Collector(mosquitto.host, mosquitto.port, ["unused/#"]).start()
        publisher.client.publish(topics.dispatch, b'{"task_id":"a1"}', qos=1).wait_for_publish(5)
        publisher.stop()

        bridge = MqttBridge(
            config.mqtt, topics, journal, version="t", started_at=utc_now(), on_inbound=on_inbound
        )
        task = asyncio.create_task(bridge.run())
        try:
            await until(lambda: len(got) == 1, 10, "queued task delivered on resume")
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 10)
        stored = journal.db.execute("SELECT topic, payload FROM inbound").fetchall()
        journal.close()
        assert got[0].payload == b'{"task_id":"a1"}'
        assert stored == [(topics.dispatch, b'{"task_id":"a1"}')]

    run_async(scenario())


def test_outbox_sequence_numbers_are_never_reused(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite")
    first = journal.append("t", b"1")
    journal.acknowledge([first])
    second = journal.append("t", b"2")
    assert second > first
    assert [row.seq for row in journal.pending(after_seq=first)] == [second]
    journal.close()
