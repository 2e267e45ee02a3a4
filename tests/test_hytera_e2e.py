"""Hytera end to end: the daemon (a child process) with a hytera link, the simulated radio
(``firmware_stubs/hytera_radio.py``) on a real pty and on real loopback UDP, a real mosquitto.

Dispatch -> TMP -> ack -> ``delivered``; the person's reply -> ``acknowledged``; a status key ->
``on_scene``; registration -> availability; LP -> position; an emergency -> one ``raised``
alarm with the radio's last position, its cancel -> ``cleared``; a radio that falls silent takes
the link down, and it comes back up. Timing is shrunk through the
link options (``docs/protocols/hytera.md``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from firmware_stubs.hytera_radio import AirRadio, HyteraRadio
from gateway.devkit.broker import BrokerUnavailable, Mosquitto
from gateway.model import rfc3339, utc_now
from protocols.hytera.hdap import Service
from tests.conftest import IN_CI
from tests.support import Collector, GatewayProcess, Received
from tests.test_hytera_driver import free_udp_ports

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]

T = TypeVar("T")
Mode = Literal["pty", "udp"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One mosquitto for the module: each test has its own gateway id, so topics never mix."""
    try:
        mosquitto = Mosquitto(tmp_path_factory.mktemp("broker"))
    except BrokerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"{exc}: CI must install it (scripts/install-peers)")
        pytest.skip(str(exc))
    with mosquitto:
        yield mosquitto


class StubThread:
    """The radio stub on an event loop of its own thread, so the test body stays plain."""

    def __init__(self, stub: HyteraRadio) -> None:
        self.stub = stub
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def call(self, fn: Callable[[], T]) -> T:
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - handed to the test's thread
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(10)

    def __enter__(self) -> StubThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.stub.start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.stub.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def config(tmp_path: Path, broker: Mosquitto, gw: str, link: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[gateway]
id = "{gw}"
data_dir = "{tmp_path / "data"}"

[mqtt]
url = "{broker.url}"
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[[links]]
name = "dmr"
protocol = "hytera"
{link}
hrnp_ack_timeout_s = 0.5
keepalive_s = 1.0
retry_intervals_s = [1.0, 1.0, 1.0]
location_interval_s = 1.0
status_stages = ["3=on_scene", "4=closed"]
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[[units]]
id = "zhang-wei"
name = "张伟"
devices = ["dmr:1001"]

[[units]]
id = "li-na"
devices = ["dmr:1002"]
""",
        encoding="utf-8",
    )
    return path


def task(task_id: str, unit: str, text: str) -> bytes:
    body = {
        "task_id": task_id,
        "units": [unit],
        "text": text,
        "priority": "urgent",
        "created_at": rfc3339(utc_now()),
    }
    return json.dumps(body, ensure_ascii=False).encode()


def stages(messages: list[Received], base: str, task_id: str) -> list[str]:
    topic = f"{base}/tasks/{task_id}/events"
    return list(dict.fromkeys(m.json()["stage"] for m in messages if m.topic == topic))


def payloads(messages: list[Received], topic: str) -> list[Any]:
    return [m.json() for m in messages if m.topic == topic]


def link_state(messages: list[Received], topic: str) -> str:
    states = payloads(messages, topic)
    return str(states[-1]["state"]) if states else ""


@pytest.mark.parametrize("mode", ["pty", "udp"])
def test_dispatch_positions_replies_and_emergency(
    mode: Mode, tmp_path: Path, broker: Mosquitto
) -> None:
    gw = f"gw-{mode}"
    base = f"fieldlink/{gw}"
    zhang = AirRadio(1001, report_interval_s=0.3, reply="收到", reply_delay_s=0.3)
    li = AirRadio(1002, report_interval_s=5.0, ack_result=10, reply=None)  # no contact
    gw_ports = free_udp_ports(3) if mode == "udp" else [0, 0, 0]
    stub = HyteraRadio(
        [zhang, li], own_id=9, mode=mode,
        gateway_ports=dict(zip((Service.RRS, Service.LP, Service.TMP), gw_ports, strict=True)),
    )  # fmt: skip
    collector = Collector(broker.host, broker.port, [f"{base}/#"]).start()
    with StubThread(stub) as radio:
        if mode == "pty":
            link = f'url = "{stub.device_path}"\nbaudrate = 115200'
        else:
            ports = stub.service_ports
            link = (
                f'url = "udp://127.0.0.1:{stub.rcp_port}"\nlocal_host = "127.0.0.1"\n'
                f"rrs_port = {ports[Service.RRS]}\nlp_port = {ports[Service.LP]}\n"
                f"tmp_port = {ports[Service.TMP]}\nlocal_rrs_port = {gw_ports[0]}\n"
                f"local_lp_port = {gw_ports[1]}\nlocal_tmp_port = {gw_ports[2]}"
            )
        daemon = GatewayProcess(config(tmp_path, broker, gw, link), tmp_path / "gw.log").start()
        try:
            collector.wait_for(
                lambda ms: any(
                    m.topic == f"{base}/units/zhang-wei/availability"
                    and m.json()["state"] == "online"
                    for m in ms
                ),
                20,
                "registration -> zhang-wei online",
            )
            collector.wait_for(
                lambda ms: len(payloads(ms, f"{base}/units/zhang-wei/position")) >= 2,
                20,
                "LP reports -> positions",
            )
            position = payloads(collector.snapshot(), f"{base}/units/zhang-wei/position")[0]
            assert position["link"] == "dmr"
            assert position["source"] == "hytera"
            assert round(position["lat"], 3) == 31.230

            pub = collector.client
            text = "人民广场东侧有人摔倒，请速到现场处置。" * 5
            pub.publish(f"{base}/tasks/dispatch", task("a1", "zhang-wei", text), 1)
            pub.publish(f"{base}/tasks/dispatch", task("b1", "li-na", "到北门"), 1)
            messages = collector.wait_for(
                lambda ms: (
                    "acknowledged" in stages(ms, base, "a1") and "failed" in stages(ms, base, "b1")
                ),
                30,
                "a1 acknowledged and b1 failed",
            )
            a1 = stages(messages, base, "a1")
            assert a1[:4] == ["received", "queued", "transmitted", "delivered"]
            assert "acknowledged" in a1
            received = radio.call(lambda: list(zhang.received))
            assert len(received) == 1
            assert received[0].endswith(text)  # Chinese text intact, whole
            failed = [
                e for e in payloads(messages, f"{base}/tasks/b1/events") if e["stage"] == "failed"
            ]
            assert "no contact (10)" in failed[0]["detail"]

            # A status key: 3 = on scene.
            radio.call(lambda: stub.text_from(1001, "3", request_id=2))
            collector.wait_for(
                lambda ms: "on_scene" in stages(ms, base, "a1"), 20, "status key -> on_scene"
            )

            # Emergency: one raised alarm with the radio's last position; the cancel clears.
            radio.call(lambda: stub.emergency(1001))
            radio.call(lambda: stub.emergency(1001))  # repeated by the radio
            alarm_topic = f"{base}/units/zhang-wei/alarm"
            collector.wait_for(
                lambda ms: len(payloads(ms, alarm_topic)) >= 1, 20, "the emergency alarm"
            )
            radio.call(lambda: stub.emergency(1001, on=False))
            messages = collector.wait_for(
                lambda ms: any(a["state"] == "cleared" for a in payloads(ms, alarm_topic)),
                20,
                "the cancel",
            )
            alarms = payloads(messages, alarm_topic)
            assert [a["state"] for a in alarms] == ["raised", "cleared"]
            assert alarms[0]["kind"] == "emergency"
            assert round(alarms[0]["position"]["lat"], 2) == 31.23

            # The radio falls silent: the keep-alive finds it, the link goes down, and comes
            # back up once the radio answers again.
            link_topic = f"{base}/links/dmr/state"
            radio.call(lambda: setattr(stub.misbehave, "silent", True))
            collector.wait_for(lambda ms: link_state(ms, link_topic) == "down", 20, "the link down")
            radio.call(lambda: setattr(stub.misbehave, "silent", False))
            collector.wait_for(
                lambda ms: link_state(ms, link_topic) == "up", 20, "the link up again"
            )
            assert radio.call(lambda: stub.sessions) >= 2
            assert daemon.terminate() == 0
        finally:
            daemon.ensure_stopped()
            collector.stop()
    log = (tmp_path / "gw.log").read_text(errors="replace")
    assert "Traceback" not in log
