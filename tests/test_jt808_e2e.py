"""JT/T 808 end to end: the daemon as a child process with a ``listen://`` jt808 link, a real
mosquitto, and terminal stubs over loopback TCP.

Register, authenticate, locate; a voice task goes out as 0x8300 with TTS, the terminal's
0x0001 makes it ``delivered`` and its 0x0302 answer ``acknowledged``; an emergency bit set
in three reports then cleared gives one ``raised`` and one ``cleared``; the centre's
``clear_alarm`` sends 0x8203; after a restart the terminal authenticates with the code it got
before (the codes live in the journal).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_stubs.jt808_terminal import Jt808Terminal
from gateway.devkit.broker import Mosquitto, free_port
from gateway.model import rfc3339, utc_now
from tests.support import Collector, GatewayProcess, Received

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]

BASE = "fieldlink/gw1"
PHONE = "013800138000"
UNIT = "zhang-wei"


def config_text(data_dir: Path, broker: Mosquitto, port: int) -> str:
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[mqtt]
url = "{broker.url}"
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[[links]]
name = "trk"
protocol = "jt808"
url = "listen://127.0.0.1:{port}"
retry_intervals_s = [0.5, 0.5, 0.5]
ask_to_accept = true

[[units]]
id = "{UNIT}"
name = "张伟"
devices = ["trk:{PHONE}"]
"""


@pytest.fixture
def collector(mosquitto: Mosquitto) -> Iterator[Collector]:
    coll = Collector(
        mosquitto.host, mosquitto.port, [f"{BASE}/#"], client_id="jt808-centre", persistent=True
    ).start()
    yield coll
    coll.stop()


async def seen(
    collector: Collector, predicate: Callable[[list[Received]], bool], what: str
) -> list[Received]:
    try:
        async with asyncio.timeout(20):
            while not predicate(collector.snapshot()):  # noqa: ASYNC110 - a paho thread fills it
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
    return collector.snapshot()


def on(topic: str) -> Callable[[list[Received]], list[Received]]:
    return lambda messages: [m for m in messages if m.topic == f"{BASE}/{topic}"]


def stages(messages: list[Received], task_id: str) -> list[str]:
    return [m.json()["stage"] for m in on(f"tasks/{task_id}/events")(messages)]


def alarm_states(messages: list[Received]) -> list[str]:
    return [m.json()["state"] for m in on(f"units/{UNIT}/alarm")(messages)]


def test_terminal_through_the_daemon(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    port = free_port()
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_text(tmp_path / "data", mosquitto, port), encoding="utf-8")
    daemon = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    code: list[str] = []

    async def first_run() -> None:
        await seen(
            collector,
            lambda ms: any(b'"up"' in m.payload for m in on("links/trk/state")(ms)),
            "link up",
        )
        async with Jt808Terminal(("127.0.0.1", port), phone=PHONE) as terminal:
            assert terminal.authenticated
            assert terminal.auth_code is not None
            code.append(terminal.auth_code)
            await terminal.report(31.230416, 121.473701)
            messages = await seen(
                collector, lambda ms: bool(on(f"units/{UNIT}/position")(ms)), "position"
            )
            position = on(f"units/{UNIT}/position")(messages)[-1].json()
            assert (position["lat"], position["lon"]) == (31.230416, 121.473701)
            assert position["source"] == "jt808"
            assert position["satellites"] == 11
            availability = on(f"units/{UNIT}/availability")(messages)[-1].json()
            assert availability["state"] == "online"
            assert await terminal.heartbeat() == 0

            # dispatch with TTS: 0x8300, 0x0001 -> delivered, 0x8302/0x0302 -> acknowledged
            task = {
                "task_id": "j1", "units": [UNIT], "text": "请于今日17点前到达东门 #1",
                "priority": "urgent", "voice": True, "created_at": rfc3339(utc_now()),
            }  # fmt: skip
            collector.client.publish(
                f"{BASE}/tasks/dispatch", json.dumps(task, ensure_ascii=False), 1
            )
            messages = await seen(
                collector, lambda ms: "acknowledged" in stages(ms, "j1"), "the task acknowledged"
            )
            order = stages(messages, "j1")
            assert (
                order.index("transmitted") < order.index("delivered") < order.index("acknowledged")
            )
            (text,) = terminal.record.texts
            assert text.tts
            assert text.display
            assert text.flag & 0x01  # urgent: the 2013 emergency bit
            assert terminal.record.answers_sent == [(terminal.record.questions[0][0], 1)]

            # emergency in three reports, then cleared: one raised, one cleared
            terminal.emergency(True)
            for _ in range(3):
                await terminal.report()
            terminal.emergency(False)
            await terminal.report()
            await seen(
                collector, lambda ms: alarm_states(ms) == ["raised", "cleared"], "raised, cleared"
            )

            # raised again, cleared by the centre: 0x8203 to the terminal
            terminal.emergency(True)
            await terminal.report()
            await seen(collector, lambda ms: alarm_states(ms).count("raised") == 2, "raised again")
            request = {"unit": UNIT, "kind": "emergency"}
            collector.client.publish(f"{BASE}/request/clear_alarm", json.dumps(request), 1)
            messages = await seen(
                collector, lambda ms: bool(on("response/clear_alarm")(ms)), "response"
            )
            assert on("response/clear_alarm")(messages)[-1].json()["status"] == "ok"
            async with asyncio.timeout(10):
                while not terminal.record.confirmations:  # noqa: ASYNC110 - the stub's record
                    await asyncio.sleep(0.02)
            assert terminal.record.confirmations[0].alarm_type == 1

    async def second_run() -> None:
        await seen(
            collector,
            lambda ms: sum(b'"up"' in m.payload for m in on("links/trk/state")(ms)) >= 2,
            "link up again",
        )
        again = Jt808Terminal(("127.0.0.1", port), phone=PHONE, auth_code=code[0], register=False)
        async with again:
            assert again.authenticated  # the code from before the restart
            await again.report(31.2305, 121.4738)
            await seen(
                collector,
                lambda ms: any(
                    m.json()["lat"] == 31.2305 for m in on(f"units/{UNIT}/position")(ms)
                ),
                "a position after the restart",
            )

    try:
        asyncio.run(first_run())
        assert daemon.terminate() == 0
        daemon = GatewayProcess(cfg, tmp_path / "gateway.log").start()
        asyncio.run(second_run())
        assert daemon.terminate() == 0
    finally:
        daemon.ensure_stopped()
    log = daemon.log()
    assert "Traceback" not in log, log
