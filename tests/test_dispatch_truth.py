"""Every recorded stage is what really happened: several units with several open tasks
each, bare replies ("收到", no task number) in the order people got the messages, and the
gateway killed with ``kill -9`` at random moments in between.

The daemon is a child process on a real mosquitto; the radios are APRS handhelds built
from the project's codecs behind a KISS TCP link. Each person answers each task they see
once, with a bare reply, and their radio retries that reply until the gateway acks it
(so a reply can arrive again after a restart).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from firmware_stubs.aprs_radio import AprsRadio
from gateway.devkit.broker import Mosquitto
from gateway.journal import Journal
from gateway.model import rfc3339, utc_now
from gateway.taskstore import TaskStore
from protocols.aprs import AprsAck, AprsMessage, encode_message
from tests.radio_harness import RadioField
from tests.support import Collector, GatewayProcess, Received, wait_until
from tests.test_hardening import KissTnc, aprs_frame

pytestmark = [pytest.mark.broker, pytest.mark.slow]

BASE = "fieldlink/gw1"
UNITS = 5
TASKS_PER_UNIT = 10
KILLS = 5
ENDED = {"acknowledged", "declined", "failed", "expired", "cancelled", "closed"}


def config_text(
    data_dir: Path, broker: Mosquitto, url: str, units: dict[str, str], *, retry_s: str
) -> str:
    """One gateway with an APRS link at ``url``; ``units`` maps unit id -> callsign."""
    unit_tables = "".join(
        f'\n[[units]]\nid = "{unit}"\ndevices = ["vhf:{call}"]\n' for unit, call in units.items()
    )
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[mqtt]
url = "{broker.url}"
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[sla]
acknowledge_s = 300

[[links]]
name = "vhf"
protocol = "aprs"
url = "{url}"
callsign = "BH4GW-10"
retry_intervals_s = {retry_s}
channel_baud = 9600
txdelay_s = 0.05
gap_s = 0.02
reconnect_min_s = 0.1
reconnect_max_s = 0.3
{unit_tables}
"""


def task(task_id: str, unit: str) -> bytes:
    body = {
        "task_id": task_id,
        "units": [unit],
        "text": f"{task_id} 人民广场东侧有人摔倒",
        "priority": "normal",
        "created_at": rfc3339(utc_now()),
    }
    return json.dumps(body, ensure_ascii=False).encode()


def events(messages: list[Received], task_id: str) -> list[dict[str, str]]:
    return [m.json() for m in messages if m.topic == f"{BASE}/tasks/{task_id}/events"]


@pytest.fixture
def centre(mosquitto: Mosquitto) -> Iterator[Collector]:
    coll = Collector(
        mosquitto.host, mosquitto.port, [f"{BASE}/#"], client_id="centre", persistent=True
    ).start()
    yield coll
    coll.stop()


@pytest.mark.timeout(300)
def test_bare_replies_with_restarts_acknowledge_each_task_once(
    tmp_path: Path, mosquitto: Mosquitto, centre: Collector
) -> None:
    rng = random.Random(20261204)
    radios = [
        AprsRadio(
            f"BH4T{i}-7", reply="收到", echo_ref=False, reply_delay_s=0.3, ack_delay_s=0.0,
            reply_retry_intervals_s=(1.0, 2.0, 4.0, 8.0), reply_once_per_text=True,
        )
        for i in range(UNITS)
    ]  # fmt: skip
    field = RadioField(radios).start()
    cfg = tmp_path / "config.toml"
    units = {f"u{i}": f"BH4T{i}-7" for i in range(UNITS)}
    text = config_text(tmp_path / "data", mosquitto, field.url, units, retry_s="[0.6, 0.6, 0.6]")
    cfg.write_text(text, encoding="utf-8")
    log_path = tmp_path / "gateway.log"
    tasks = {f"t{n:02d}": f"u{n % UNITS}" for n in range(UNITS * TASKS_PER_UNIT)}
    daemons: list[GatewayProcess] = []
    try:
        daemons.append(GatewayProcess(cfg, log_path).start())
        centre.wait_for(
            lambda ms: any(m.topic == f"{BASE}/state" and b'"online"' in m.payload for m in ms),
            15,
            "the gateway online",
        )
        for task_id, unit in tasks.items():
            centre.client.publish(f"{BASE}/tasks/dispatch", task(task_id, unit), 1)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 3.0))
            daemons[-1].kill9()
            daemons.append(GatewayProcess(cfg, log_path).start())

        def settled(ms: list[Received]) -> bool:
            return all(ENDED & {e["stage"] for e in events(ms, t)} for t in tasks)

        messages = centre.wait_for(settled, 200, "every task acknowledged or ended")
        time.sleep(1.0)  # let late repeats of replies arrive: they must change nothing
        assert daemons[-1].terminate() == 0
    finally:
        for daemon in daemons:
            daemon.ensure_stopped()
    try:
        journal = Journal.open(tmp_path / "data" / "journal.sqlite")
        store = TaskStore(journal)
        for task_id, unit in tasks.items():
            stages = {s.stage: s for s in store.stages(task_id, unit) if not s.target}
            # Acknowledged, once (the journal's key makes twice impossible; MQTT agrees) ...
            assert "acknowledged" in stages, (task_id, sorted(stages))
            published = {e["stage"] for e in events(messages, task_id)}
            assert "acknowledged" in published, task_id
            # ... never before the task went out to that unit's radio ...
            assert "transmitted" in stages, task_id
            assert stages["transmitted"].at <= stages["acknowledged"].at, task_id
            # ... and attributed by order, as a bare reply must be.
            assert (stages["acknowledged"].detail or "").startswith("oldest of"), task_id
            assert stages["acknowledged"].source == "device"
        # Nobody's answer went to another task: each radio answered every task it saw
        # once, and its unit has exactly as many acknowledged tasks as it answered.
        for i, radio in enumerate(radios):
            seen = {text.split()[1] for _, text in radio.received if text.startswith("#")}
            mine = {t for t, u in tasks.items() if u == f"u{i}"}
            assert seen == mine, (radio.callsign, sorted(seen ^ mine))
        journal.close()
    finally:
        field.stop()


STATION = "BH4AAA-1"
GATEWAY = "BH4GW-10"


def said(tnc: KissTnc, task_id: str) -> AprsMessage:
    """The gateway's message carrying ``task_id``'s text."""
    found = [m for m in tnc.messages() if isinstance(m, AprsMessage) and f" {task_id} " in m.text]
    assert found, f"{task_id} was not transmitted"
    return found[0]


def acked(tnc: KissTnc, msgno: str) -> int:
    return sum(1 for m in tnc.messages() if isinstance(m, AprsAck) and m.msgno == msgno)


def stage_events(messages: list[Received], task_id: str, stage: str) -> list[dict[str, str]]:
    return [e for e in events(messages, task_id) if e["stage"] == stage]


@pytest.mark.timeout(120)
def test_a_reply_ack_picks_its_task_and_a_repeat_after_restart_changes_nothing(
    tmp_path: Path, mosquitto: Mosquitto, centre: Collector
) -> None:
    tnc = KissTnc()
    cfg = tmp_path / "config.toml"
    text = config_text(
        tmp_path / "data", mosquitto, tnc.url, {"zhang-wei": STATION}, retry_s="[60.0]"
    )
    cfg.write_text(text, encoding="utf-8")
    daemons = [GatewayProcess(cfg, tmp_path / "gateway.log").start()]
    try:
        tnc.wait_connected(1)
        centre.wait_for(
            lambda ms: any(m.topic == f"{BASE}/state" and b'"online"' in m.payload for m in ms),
            15,
            "the gateway online (subscribed to its dispatch topic from now on)",
        )
        for task_id in ("a", "b", "c"):
            centre.client.publish(f"{BASE}/tasks/dispatch", task(task_id, "zhang-wei"), 1)
        centre.wait_for(
            lambda ms: all(stage_events(ms, t, "transmitted") for t in "abc"), 15, "all sent"
        )
        # The person answers c with the radio's reply key: an APRS 1.1 reply-ack naming
        # the message that carried c, while a and b still wait.
        answer_c = encode_message(GATEWAY, "收到", "R1", reply_ack=said(tnc, "c").msgno)
        tnc.send([aprs_frame(STATION, answer_c)])
        got = centre.wait_for(lambda ms: bool(stage_events(ms, "c", "acknowledged")), 10, "c acked")
        assert stage_events(got, "c", "acknowledged")[0]["detail"].startswith(
            "reply to its message"
        )
        # A bare answer: the oldest waiting, a.
        tnc.send([aprs_frame(STATION, encode_message(GATEWAY, "收到", "R2"))])
        got = centre.wait_for(lambda ms: bool(stage_events(ms, "a", "acknowledged")), 10, "a acked")
        assert stage_events(got, "a", "acknowledged")[0]["detail"].startswith("oldest of 2")
        wait_until(lambda: acked(tnc, "R2") >= 1, 10, "R2 acked on the air")

        # The gateway dies; the radio, not having heard the ack, repeats R2 after the restart.
        daemons[0].kill9()
        daemons.append(GatewayProcess(cfg, tmp_path / "gateway.log").start())
        tnc.wait_connected(2)
        before = acked(tnc, "R2")
        tnc.send([aprs_frame(STATION, encode_message(GATEWAY, "收到", "R2"))])
        wait_until(lambda: acked(tnc, "R2") > before, 15, "the repeat acked again")
        time.sleep(0.5)
        assert not stage_events(centre.snapshot(), "b", "acknowledged")  # applied once only

        # What b's person said on voice, recorded by the centre.
        requester = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/response/#"]).start()
        try:
            ask = requester.client.publish
            report = {"task_id": "b", "unit": "zhang-wei", "stage": "acknowledged", "by": "王调度"}
            ask(f"{BASE}/request/report_stage", json.dumps(report), 1).wait_for_publish(5)
            got = centre.wait_for(lambda ms: bool(stage_events(ms, "b", "acknowledged")), 10, "b")
            event = stage_events(got, "b", "acknowledged")[0]
            assert (event["source"], event["by"]) == ("centre", "王调度")
            future = rfc3339(utc_now() + timedelta(hours=1))
            for bad in (
                report,  # the same again: backwards
                {**report, "task_id": "nope"},
                {**report, "stage": "on_scene", "at": future},
            ):
                ask(f"{BASE}/request/report_stage", json.dumps(bad), 1).wait_for_publish(5)
            answers = requester.wait_for(lambda ms: len(ms) >= 4, 10, "every report_stage answered")
            assert [m.json()["status"] for m in answers] == ["ok", "error", "error", "error"]
        finally:
            requester.stop()
        time.sleep(0.3)
        assert len(stage_events(centre.snapshot(), "b", "acknowledged")) == 1
        assert not stage_events(centre.snapshot(), "b", "on_scene")
        assert daemons[-1].terminate() == 0
        journal = Journal.open(tmp_path / "data" / "journal.sqlite")
        stored = {s.stage: s for s in TaskStore(journal).stages("b", "zhang-wei")}
        journal.close()
        assert (stored["acknowledged"].source, stored["acknowledged"].reported_by) == (
            "centre",
            "王调度",
        )
        assert "on_scene" not in stored
    finally:
        for daemon in daemons:
            daemon.ensure_stopped()
        tnc.close()
