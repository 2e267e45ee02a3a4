"""Requests over MQTT to the daemon: answered on response/<command> and on the MQTT 5
response topic with the correlation data; bad input answered with an error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_stubs.nmea_gps import GpsPty, NmeaGps
from gateway.devkit.broker import Mosquitto
from tests.support import GatewayProcess, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]

BASE = "fieldlink/gw1"


class Requester:
    """A client that sends requests with a response topic and records the answers."""

    def __init__(self, broker: Mosquitto) -> None:
        self.answers: list[tuple[str, bytes, bytes | None]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(
            [(f"{BASE}/response/#", 1), ("test/replies", 1), (f"{BASE}/state", 1)]
        )
        assert self._ready.wait(10)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None)
        with self._lock:
            self.answers.append((msg.topic, bytes(msg.payload), correlation))

    def wait_online(self, timeout_s: float = 15) -> None:
        def online() -> bool:
            with self._lock:
                states = [p for t, p, _ in self.answers if t == f"{BASE}/state"]
            return bool(states) and b'"online"' in states[-1]

        wait_until(online, timeout_s, "the gateway online")

    def ask(self, command: str, body: dict[str, object] | bytes, correlation: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = "test/replies"
        props.CorrelationData = correlation
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.client.publish(f"{BASE}/request/{command}", payload, 1, properties=props)

    def answer(self, correlation: bytes, timeout_s: float = 10) -> dict[str, object]:
        def found() -> list[tuple[str, bytes, bytes | None]]:
            with self._lock:
                return [a for a in self.answers if a[0] == "test/replies" and a[2] == correlation]

        wait_until(lambda: bool(found()), timeout_s, f"answer {correlation!r}")
        result: dict[str, object] = json.loads(found()[0][1])
        return result

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def requester(mosquitto: Mosquitto) -> Iterator[Requester]:
    req = Requester(mosquitto)
    yield req
    req.stop()


def test_requests_are_answered(tmp_path: Path, mosquitto: Mosquitto, requester: Requester) -> None:
    pty = GpsPty(tmp_path / "gps0")
    pty.open()
    gps = NmeaGps(profile="gps", rate_hz=10)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
[gateway]
id = "gw1"
data_dir = "{tmp_path / "data"}"
[mqtt]
url = "{mosquitto.url}"
response_topic_prefixes = ["test"]
[[links]]
name = "gps0"
protocol = "nmea"
url = "{tmp_path / "gps0"}"
unit = "car-1"
[[units]]
id = "car-1"
name = "巡逻车一"
[[units]]
id = "li-na"
name = "李娜"
""",
        encoding="utf-8",
    )
    daemon = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    try:
        requester.wait_online()
        requester.ask("units", {"transaction": 7}, b"c-units-0")
        assert requester.answer(b"c-units-0")["status"] == "ok"
        stop = threading.Event()

        def feed() -> None:
            while not stop.wait(0.1):
                pty.write(gps.epoch())

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:

            def car_has_position() -> bool:
                requester.ask("units", {}, b"poll")
                answers = [json.loads(a[1]) for a in requester.answers if a[2] == b"poll"]
                requester.answers.clear()
                return any(
                    "position" in u
                    for ans in answers
                    for u in ans.get("data", [])
                    if u["id"] == "car-1"
                )

            wait_until(car_has_position, 15, "car-1 has a position")
        finally:
            stop.set()
            feeder.join()

        requester.ask("units", {"transaction": "t-1"}, b"c-units")
        units = requester.answer(b"c-units")
        assert units["transaction"] == "t-1"
        data = units["data"]
        assert isinstance(data, list)
        car = next(u for u in data if u["id"] == "car-1")
        assert car["availability"] == "online"
        assert car["name"] == "巡逻车一"

        requester.ask("nearest_units", {"lat": 31.2304, "lon": 121.4737, "limit": 1}, b"c-near")
        nearest = requester.answer(b"c-near")
        assert nearest["status"] == "ok"
        near = nearest["data"]
        assert isinstance(near, list)
        assert [u["id"] for u in near] == ["car-1"]
        assert isinstance(near[0]["distance_m"], float)

        requester.ask("task_status", {"task_id": "nope"}, b"c-status")
        assert requester.answer(b"c-status")["status"] == "error"
        requester.ask("no_such_command", {}, b"c-unknown")
        assert "unknown command" in str(requester.answer(b"c-unknown")["error"])
        requester.ask("units", b"{broken", b"c-broken")
        assert "malformed JSON" in str(requester.answer(b"c-broken")["error"])
        requester.ask("nearest_units", {"lat": "north"}, b"c-bad")
        assert requester.answer(b"c-bad")["status"] == "error"
        requester.ask("send_text", {"unit": "li-na", "text": "hi"}, b"c-text")
        assert "no device" in str(requester.answer(b"c-text")["error"])

        # The contract's plain response topics get the same answers.
        wait_until(
            lambda: any(t == f"{BASE}/response/nearest_units" for t, _, _ in requester.answers),
            10,
            "the answer on response/nearest_units",
        )
        assert daemon.terminate() == 0
    finally:
        daemon.ensure_stopped()
        pty.close()
