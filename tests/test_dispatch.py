"""The dispatch state machine over a real journal.

The radio side here is a scripted :class:`TextSender`, the one interface dispatch
depends on; end-to-end tests through real drivers and firmware stubs are in
``test_dispatch_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.channel import URGENT
from gateway.config import Config, parse_config
from gateway.dispatch import Dispatcher, StageRefused, parse_task
from gateway.drivers.spec import Capabilities
from gateway.journal import Journal
from gateway.model import (
    Delivery,
    DeliveryReport,
    DeviceRef,
    TextFromUnit,
    TextOrder,
    rfc3339,
    utc_now,
)
from gateway.topics import Topics
from tests.support import run_async

pytestmark = pytest.mark.timeout(30)

TOPICS = Topics("fieldlink", "gw1")


@dataclass
class ScriptedRadio:
    """A TextSender whose answers are scripted: outcomes in order, then delivered."""

    outcomes: list[str] = field(default_factory=list)
    reachable: bool = True
    delay_s: float = 0.0
    slow: set[str] = field(default_factory=set)  # addresses that never confirm in time
    sent: list[TextOrder] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(text=True, location_poll=True)
    )
    held: set[str] = field(default_factory=set)  # task ids not put on the air until removed

    def can_reach(self, address: str) -> bool:
        return self.reachable

    async def send_text(
        self, order: TextOrder, on_transmitted: Callable[[], None]
    ) -> DeliveryReport:
        while order.key.split("/")[0] in self.held:  # noqa: ASYNC110 - the test releases it
            await asyncio.sleep(0.01)
        self.sent.append(order)
        on_transmitted()
        await asyncio.sleep(60 if order.address in self.slow else self.delay_s)
        outcome = self.outcomes.pop(0) if self.outcomes else "delivered"
        if outcome == "delivered":
            return DeliveryReport(Delivery.DELIVERED, transmissions=1)
        return DeliveryReport(Delivery.FAILED, reason=outcome, transmissions=3)

    async def poll_location(self, address: str) -> bool:
        self.polls.append(address)
        return True


def make_config(tmp_path: Path, **sla: float) -> Config:
    return parse_config(
        {
            "gateway": {"id": "gw1", "data_dir": str(tmp_path)},
            "sla": {"escalate_before_s": 0.2, **sla},
            "dispatch": {"poll_interval_s": 0.1},
            "links": [
                {
                    "name": "vhf",
                    "protocol": "aprs",
                    "url": "tcp://127.0.0.1:9",
                    "callsign": "BH4GW",
                },
                {
                    "name": "dmr",
                    "protocol": "aprs",
                    "url": "tcp://127.0.0.1:10",
                    "callsign": "BH4GW",
                },
            ],
            "units": [
                {"id": "zhang-wei", "name": "张伟", "devices": ["vhf:BH4ZW-7", "dmr:BH4ZW-9"]},
                {"id": "li-na", "name": "李娜", "devices": ["vhf:BH4LN-7"]},
            ],
        },
        base_dir=tmp_path,
        env={},
    )


class Harness:
    def __init__(self, tmp_path: Path, config: Config | None = None) -> None:
        self.config = config or make_config(tmp_path)
        self.journal = Journal.open(tmp_path / "journal.sqlite")
        self.events: list[dict[str, Any]] = []
        self.radios = {"vhf": ScriptedRadio(), "dmr": ScriptedRadio()}
        self.dispatcher = self.new_dispatcher()

    def new_dispatcher(self) -> Dispatcher:
        return Dispatcher(self.config, self.journal, TOPICS, emit=self._emit, senders=self._sender)

    def _emit(self, topic: str, payload: bytes) -> None:
        self.journal.append(topic, payload)
        self.events.append(json.loads(payload))

    def _sender(self, device: DeviceRef) -> ScriptedRadio | None:
        return self.radios.get(device.link)

    def stages(self, task_id: str, unit: str | None = None) -> list[str]:
        return [
            e["stage"] + (f":{e['target']}" if "target" in e else "")
            for e in self.events
            if e["task_id"] == task_id and (unit is None or e["unit"] == unit)
        ]

    def reply(
        self,
        unit: str,
        text: str,
        *,
        reply_to: str | None = None,
        message_id: str | None = None,
        address: str = "BH4ZW-7",
    ) -> bool:
        """What the gateway does with a person's text from ``unit``'s radio."""
        device = DeviceRef("vhf", address)
        said = TextFromUnit(device, text, utc_now(), reply_to=reply_to, message_id=message_id)
        return self.dispatcher.on_reply(unit, said)

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - polls state the dispatcher owns
                await asyncio.sleep(0.01)


def task(task_id: str = "t1", **overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "task_id": task_id,
        "units": ["zhang-wei"],
        "text": "到人民广场东侧，有人摔倒",
        "priority": "normal",
        "created_at": rfc3339(utc_now()),
    }
    body.update(overrides)
    return json.dumps(body, ensure_ascii=False).encode()


async def running(h: Harness, body: Callable[[], Any]) -> None:
    runner = asyncio.create_task(h.dispatcher.run())
    try:
        await body()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def test_full_life_of_a_task(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    incident = {"lat": 31.2304, "lon": 121.4737, "radius_m": 50}

    async def body() -> None:
        assert h.dispatcher.dispatch(task(incident=incident)) == ("accepted", None)
        await h.until(lambda: "delivered" in h.stages("t1"))
        sent = h.radios["vhf"].sent
        assert len(sent) == 1
        assert sent[0].address == "BH4ZW-7"
        assert sent[0].text.startswith("#1 ")
        assert h.reply("zhang-wei", "#1 收到，马上出发")
        h.dispatcher.on_position("zhang-wei", 31.2330, 121.4737, utc_now())  # 290 m away
        assert "on_scene" not in h.stages("t1")
        h.dispatcher.on_position("zhang-wei", 31.2305, 121.4737, utc_now())  # 11 m away
        assert not h.reply("zhang-wei", "病人已送医")  # feedback
        assert h.reply("zhang-wei", "完成")

    run_async(running(h, body))
    assert h.stages("t1") == [
        "received",
        "queued",
        "transmitted",
        "delivered",
        "acknowledged",
        "on_scene",
        "feedback",
        "closed",
    ]
    assert h.dispatcher.store.open_tasks() == []
    event = h.events[1]
    assert event["unit"] == "zhang-wei"
    assert event["detail"] == "vhf:BH4ZW-7"
    assert isinstance(event["since_created_s"], float)


def test_same_task_twice_is_sent_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    payload = task()

    async def body() -> None:
        assert h.dispatcher.dispatch(payload)[0] == "accepted"
        assert h.dispatcher.dispatch(payload)[0] == "duplicate"  # a broker redelivery
        await h.until(lambda: "delivered" in h.stages("t1"))
        outcome, reason = h.dispatcher.dispatch(task(text="another text, same id"))
        assert outcome == "rejected"
        assert reason is not None
        assert "already used" in reason

    run_async(running(h, body))
    assert len(h.radios["vhf"].sent) == 1


def test_fallover_to_the_second_device(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.radios["vhf"].outcomes = ["no ack after 3 tries"]

    async def body() -> None:
        h.dispatcher.dispatch(task(priority="urgent"))
        await h.until(lambda: "delivered" in h.stages("t1"))

    run_async(running(h, body))
    # The first device's failure hands the task to the next device at once.
    assert [o.address for o in h.radios["vhf"].sent] == ["BH4ZW-7"]
    assert [o.address for o in h.radios["dmr"].sent] == ["BH4ZW-9"]
    assert h.radios["dmr"].sent[0].priority == URGENT
    delivered = [e for e in h.events if e["stage"] == "delivered"]
    assert delivered[0]["detail"] == "dmr:BH4ZW-9"
    assert h.dispatcher.store.attempts("t1", "zhang-wei") == 2


def test_every_device_failing_ends_in_failed_with_reasons(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.radios["vhf"].outcomes = ["rejected by BH4ZW-7"] * 2
    h.radios["dmr"].outcomes = ["no ack"] * 2

    async def body() -> None:
        h.dispatcher.dispatch(task())
        await h.until(lambda: "failed" in h.stages("t1"))

    run_async(running(h, body))
    failed = next(e for e in h.events if e["stage"] == "failed")
    assert "vhf:BH4ZW-7: rejected by BH4ZW-7" in failed["detail"]
    assert "dmr:BH4ZW-9: no ack" in failed["detail"]
    # The retry policy: sends_per_device (2) per device, never more.
    assert len(h.radios["vhf"].sent) == 2
    assert len(h.radios["dmr"].sent) == 2


def test_silent_unit_is_escalated_before_the_deadline(tmp_path: Path) -> None:
    config = make_config(tmp_path, acknowledge_s=0.6)
    h = Harness(tmp_path, config)

    async def body() -> None:
        h.dispatcher.dispatch(task())
        await h.until(lambda: "escalated:acknowledged" in h.stages("t1"))

    run_async(running(h, body))
    escalation = next(e for e in h.events if e["stage"] == "escalated")
    assert escalation["target"] == "acknowledged"
    assert 0.3 <= escalation["since_created_s"] < 0.6
    assert h.stages("t1").count("escalated:acknowledged") == 1


def test_decline_ends_the_assignment(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def body() -> None:
        h.dispatcher.dispatch(task())
        await h.until(lambda: "delivered" in h.stages("t1"))
        assert h.reply("zhang-wei", "不行，车坏了")

    run_async(running(h, body))
    assert h.stages("t1")[-1] == "declined"
    assert h.dispatcher.open_assignments("zhang-wei") == []


def test_reply_goes_to_the_oldest_waiting_or_by_reference(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def body() -> None:
        assert not h.reply("zhang-wei", "ok")  # nothing open
        h.dispatcher.dispatch(task("a"))
        h.dispatcher.dispatch(task("b"))
        h.dispatcher.dispatch(task("c"))
        await h.until(lambda: "delivered" in h.stages("c"))
        assert h.reply("zhang-wei", "#2 OK!")  # b, by reference
        assert h.reply("zhang-wei", "ok")  # the oldest still waiting: a
        assert h.reply("zhang-wei", "ok")  # then c
        assert not h.reply("zhang-wei", "ok")  # nobody waits: a plain message

    run_async(running(h, body))
    for task_id in ("a", "b", "c"):
        assert h.stages(task_id).count("acknowledged") == 1, task_id
    detail = {e["task_id"]: e["detail"] for e in h.events if e["stage"] == "acknowledged"}
    assert detail["b"].startswith("reference #2")
    assert detail["a"].startswith("oldest of 2 waiting")
    assert detail["c"].startswith("oldest of 1 waiting")


def test_cancel_and_replies_to_a_cancelled_task(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.radios["vhf"].delay_s = 5  # still waiting for the device when the cancel comes

    async def body() -> None:
        h.dispatcher.dispatch(task())
        await h.until(lambda: "transmitted" in h.stages("t1"))
        cancel = json.dumps({"task_id": "t1", "reason": "duplicate call"}).encode()
        assert h.dispatcher.cancel(cancel) == ("accepted", None)
        assert h.dispatcher.cancel(cancel)[0] == "rejected"  # already ended
        assert h.dispatcher.cancel(b'{"task_id": "nope"}') == ("rejected", "unknown task")
        assert not h.reply("zhang-wei", "#1 收到")

    run_async(running(h, body))
    assert h.stages("t1", "zhang-wei")[-1] == "cancelled"
    refused = [e for e in h.events if e["task_id"] == "t1" and e["stage"] == "rejected"]
    assert refused[0]["unit"] == ""  # the answer to the second cancel, not a unit's stage
    assert "already ended" in refused[0]["detail"]
    rejected = [e for e in h.events if e["task_id"] == "nope"]
    assert rejected[0]["stage"] == "rejected"
    assert "unknown task" in rejected[0]["detail"]


def test_expiry(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.radios["vhf"].delay_s = 5

    async def body() -> None:
        expires = rfc3339(utc_now() + timedelta(seconds=0.3))
        h.dispatcher.dispatch(task(expires_at=expires))
        await h.until(lambda: "expired" in h.stages("t1"))

    run_async(running(h, body))
    assert h.stages("t1")[-1] == "expired"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"task_id": 5}', "task_id"),
        (task(units=["nobody"]), "unknown units: nobody"),
        (task(units=[]), "non-empty list"),
        (task(text=""), "text"),
        (task(text="x" * 1001), "over 1000"),
        (task(priority="asap"), "priority"),
        (task(created_at="yesterday"), "created_at"),
        (task(created_at="2026-11-28T08:00:00"), "time zone"),
        (task(incident={"lat": 91, "lon": 0}), "incident.lat"),
        (task(voice="yes"), "voice"),
        (task(extra=1), "unknown keys: extra"),
    ],
)
def test_bad_tasks_are_rejected_with_a_reason(tmp_path: Path, payload: bytes, reason: str) -> None:
    h = Harness(tmp_path)
    outcome, why = h.dispatcher.dispatch(payload)
    assert outcome == "rejected"
    assert why is not None
    assert reason in why
    assert h.radios["vhf"].sent == []
    assert h.dispatcher.store.open_tasks() == []


def test_restart_resumes_open_tasks_without_resending_delivered_ones(tmp_path: Path) -> None:
    config = make_config(tmp_path, acknowledge_s=30)
    h = Harness(tmp_path, config)
    h.radios["vhf"].slow = {"BH4ZW-7"}  # the first task is in flight when we "crash"

    async def first_life() -> None:
        h.dispatcher.dispatch(task("in-flight"))
        h.dispatcher.dispatch(task("done", units=["li-na"]))
        await h.until(lambda: "transmitted" in h.stages("in-flight"))
        await h.until(lambda: "delivered" in h.stages("done"))

    h.radios["vhf"].outcomes = []
    run_async(running(h, first_life))
    first_times = {(e["task_id"], e["stage"]): e["at"] for e in h.events}

    # A new process: same journal, fresh memory.
    h.radios = {"vhf": ScriptedRadio(), "dmr": ScriptedRadio()}
    h.events.clear()
    h.dispatcher = h.new_dispatcher()

    async def second_life() -> None:
        await h.until(lambda: "delivered" in h.stages("in-flight"))
        assert h.reply("li-na", "收到")

    run_async(running(h, second_life))
    # The in-flight task was sent again (its second of two allowed sends to that device) ...
    assert [o.key for o in h.radios["vhf"].sent] == ["in-flight/zhang-wei"]
    # ... and stages recorded before the restart are not published again.
    assert "transmitted" not in h.stages("in-flight")  # already recorded at its first time
    assert h.stages("done") == ["acknowledged"]
    stored = h.dispatcher.store.stages("in-flight", "zhang-wei")
    assert {s.stage: s.at for s in stored}["received"] == first_times[("in-flight", "received")]


def test_parse_task_keeps_what_matters() -> None:
    parsed = parse_task(
        task(incident={"lat": 31.2, "lon": 121.4, "radius_m": 80, "address": "人民广场"}),
        {"zhang-wei"},
        max_text_chars=1000,
    )
    assert parsed.incident is not None
    assert parsed.incident.radius_m == 80
    assert parsed.priority == "normal"
    assert parsed.created_at.tzinfo is not None
    assert parsed.created_at <= datetime.now(UTC)


def test_position_polls_only_while_on_the_way(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    incident = {"lat": 31.2304, "lon": 121.4737, "radius_m": 50}

    async def body() -> None:
        h.dispatcher.dispatch(task(incident=incident))
        await h.until(lambda: "delivered" in h.stages("t1"))
        assert h.radios["vhf"].polls == []  # not acknowledged yet
        h.reply("zhang-wei", "好")
        await h.until(lambda: len(h.radios["vhf"].polls) >= 1)

    run_async(running(h, body))
    assert h.radios["vhf"].polls[0] == "BH4ZW-7"


def test_an_answer_never_goes_to_a_task_not_yet_transmitted(tmp_path: Path) -> None:
    """The bug this guards against: a reply given to the unit's newest task although that
    task had never gone out, its send then cancelled."""
    h = Harness(tmp_path)
    h.radios["vhf"].held = {"b"}

    async def body() -> None:
        h.dispatcher.dispatch(task("a"))
        h.dispatcher.dispatch(task("b"))  # queued behind a busy channel
        await h.until(lambda: "delivered" in h.stages("a"))
        assert h.reply("zhang-wei", "收到")  # a's answer
        assert not h.reply("zhang-wei", "收到")  # b was never sent: a plain message
        assert not h.reply("zhang-wei", "#2 收到")  # not even by reference
        h.radios["vhf"].held.clear()
        await h.until(lambda: "delivered" in h.stages("b"))
        assert h.reply("zhang-wei", "收到")

    run_async(running(h, body))
    assert h.stages("a").count("acknowledged") == 1
    b = h.stages("b")
    assert b.index("transmitted") < b.index("acknowledged")
    assert b.count("acknowledged") == 1


def test_a_reply_ack_picks_its_own_task_while_others_wait(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def body() -> None:
        for task_id in ("a", "b", "c"):
            h.dispatcher.dispatch(task(task_id))
        await h.until(lambda: "delivered" in h.stages("c"))
        assert h.reply("zhang-wei", "收到", reply_to="c/zhang-wei")
        assert h.reply("zhang-wei", "收到")  # then by order: the oldest, a

    run_async(running(h, body))
    acked = {e["task_id"]: e["detail"] for e in h.events if e["stage"] == "acknowledged"}
    assert set(acked) == {"a", "c"}
    assert acked["c"].startswith("reply to its message")
    assert acked["a"].startswith("oldest of 2 waiting")


def test_a_repeated_message_is_applied_once_even_after_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def first_life() -> None:
        h.dispatcher.dispatch(task("a"))
        h.dispatcher.dispatch(task("b"))
        await h.until(lambda: "delivered" in h.stages("b"))
        assert h.reply("zhang-wei", "收到", message_id="R1")
        assert h.reply("zhang-wei", "收到", message_id="R1")  # the radio's retry: swallowed

    run_async(running(h, first_life))
    h.events.clear()
    h.dispatcher = h.new_dispatcher()  # a new process, the same journal

    async def second_life() -> None:
        await h.until(lambda: h.dispatcher.open_assignments("zhang-wei") != [])
        assert h.reply("zhang-wei", "收到", message_id="R1")  # retried across the restart
        assert h.reply("zhang-wei", "收到", message_id="R2")  # a new answer: b's

    run_async(running(h, second_life))
    store = h.dispatcher.store
    assert [s.stage for s in store.stages("a", "zhang-wei")].count("acknowledged") == 1
    assert "acknowledged" in [s.stage for s in store.stages("b", "zhang-wei")]
    assert [e["task_id"] for e in h.events if e["stage"] == "acknowledged"] == ["b"]


def test_contacted_and_arrival_go_to_the_oldest_that_waits_for_them(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def body() -> None:
        h.dispatcher.dispatch(task("a"))
        h.dispatcher.dispatch(task("b"))
        await h.until(lambda: "delivered" in h.stages("b"))
        assert h.reply("zhang-wei", "#2 收到")  # b accepted first
        assert h.reply("zhang-wei", "已联系")  # only b is acknowledged: b
        assert h.reply("zhang-wei", "收到")  # a
        assert h.reply("zhang-wei", "联系上了")  # a now
        assert h.reply("zhang-wei", "到了")  # the oldest acknowledged not on scene: a
        assert not h.reply("zhang-wei", "已联系")  # nobody waits for it: a message

    run_async(running(h, body))
    assert h.stages("a")[-3:] == ["acknowledged", "contacted", "on_scene"]
    assert h.stages("b")[-2:] == ["acknowledged", "contacted"]
    event = next(e for e in h.events if e["stage"] == "contacted")
    assert event["source"] == "device"


def centre(task_id: str, unit: str, stage: str, **extra: object) -> dict[str, Any]:
    return {"task_id": task_id, "unit": unit, "stage": stage, **extra}


def test_report_stage_records_what_a_person_said_by_voice(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def body() -> None:
        h.dispatcher.dispatch(task("a"))
        await h.until(lambda: "delivered" in h.stages("a"))
        await asyncio.sleep(0.1)
        spoken = rfc3339(utc_now() - timedelta(seconds=0.05))  # a moment ago, after the send
        result = h.dispatcher.report_stage(
            centre("a", "zhang-wei", "acknowledged", at=spoken, by="调度员王", note="对讲机语音")
        )
        assert result == {
            "task_id": "a",
            "unit": "zhang-wei",
            "stage": "acknowledged",
            "at": spoken,
        }
        h.dispatcher.report_stage(centre("a", "zhang-wei", "contacted"))
        refused = {
            "backwards": centre("a", "zhang-wei", "acknowledged"),
            "unknown task": centre("nope", "zhang-wei", "on_scene"),
            "unknown unit": centre("a", "li-na", "on_scene"),
            "future": centre(
                "a", "zhang-wei", "on_scene", at=rfc3339(utc_now() + timedelta(hours=1))
            ),
            "before it went out": centre(
                "a", "zhang-wei", "on_scene", at=rfc3339(utc_now() - timedelta(hours=1))
            ),
            "not an answer": centre("a", "zhang-wei", "delivered"),
            "bad time": centre("a", "zhang-wei", "on_scene", at="0001-01-01T00:00:00+14:00"),
            "bad by": centre("a", "zhang-wei", "on_scene", by=""),
        }
        for why, request in refused.items():
            before = len(h.events)
            with pytest.raises(StageRefused):
                h.dispatcher.report_stage(request)
            assert len(h.events) == before, why

    run_async(running(h, body))
    stored = {s.stage: s for s in h.dispatcher.store.stages("a", "zhang-wei")}
    assert stored["acknowledged"].source == "centre"
    assert stored["acknowledged"].reported_by == "调度员王"
    assert "对讲机语音" in (stored["acknowledged"].detail or "")
    assert stored["contacted"].source == "centre"
    assert stored["transmitted"].source == "gateway"
    ack = next(e for e in h.events if e["stage"] == "acknowledged")
    assert ack["source"] == "centre"
    assert ack["by"] == "调度员王"
    assert "delivered" in h.stages("a")  # from the radio itself, not implied by the centre
