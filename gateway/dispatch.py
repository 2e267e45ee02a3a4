"""Dispatch: tasks from MQTT to the right unit's radio, followed to acknowledgement,
arrival on scene and closure, every stage journaled before it is published.

The service depends on drivers only through :class:`~gateway.drivers.base.TextSender`;
it never knows which radio protocol carries a task.

Per task and unit (an *assignment*) the stages run::

    received -> queued -> transmitted -> delivered -> acknowledged | declined
             -> contacted -> on_scene -> feedback -> closed

with the terminal failures ``failed``, ``expired``, ``cancelled`` and ``rejected``, and
``escalated`` (once per deadline) when an SLA deadline is about to pass with its stage
not reached (:mod:`gateway.stages` defines them once).

Answers (SPEC section 5, "Which task an answer belongs to"): a ``#12`` in a reply, or
the protocol's own link to the message it answers, picks the task; otherwise the answer
goes to the oldest task *transmitted* to the unit that still waits for that kind of
answer. A task never transmitted to the unit, or ended, never gets an answer; a stage
never goes backwards; a numbered message the radio repeats is applied once, also after a
restart (``answers_seen`` in the journal, in the same transaction as the stage). Each
answer's event says in ``detail`` how it was attributed and in ``source`` who reported it
(the device, or the centre through ``report_stage``).

A stage is recorded once (``stages`` table, first time wins) in the same transaction as its
outbox event, so a restart never publishes a stage twice with two different times and never
loses one.

Delivery: a unit's devices are tried in the configured order; the first whose link is
up gets the text, queued on its link's channel by priority; a device that fails (no
protocol-level confirmation after the driver's retries, a rejection, a dropped link)
hands over to the next. Each device gets at most ``dispatch.sends_per_device`` sends
of a task across restarts (counted in the journal as its first frame goes out), so a
task is never transmitted more often than that times the driver's own retry bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gateway import jsonin, payloads
from gateway.channel import PRIORITIES
from gateway.config import Config
from gateway.drivers.base import TextSender
from gateway.errors import FieldlinkError
from gateway.journal import Journal
from gateway.logs import RateLimitedLog
from gateway.model import (
    Delivery,
    DeviceRef,
    TextFromUnit,
    TextOrder,
    UnitAnswer,
    rfc3339,
    utc_now,
)
from gateway.replies import ReplyReader, distance_m
from gateway.stages import ANSWERS, DEADLINES, RANK, TERMINAL, Source, Stage
from gateway.taskstore import TaskRow, TaskStore
from gateway.topics import Topics

log = logging.getLogger(__name__)

FUTURE_TOLERANCE_S = 5.0
"""A reported ``at`` may be this far ahead of the gateway's clock (clocks differ a little)."""
TICK_S = 0.25
"""How often deadlines, expiry and waiting deliveries are looked at."""
UNREACHABLE_RETRY_S = 1.0
"""While no device of a unit is reachable, look again this often (until the ack deadline)."""
TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_OPEN_TASKS = 10_000
"""Open tasks followed at once; beyond this a new task is rejected (a bound on memory)."""


class TaskRejected(FieldlinkError, ValueError):
    """A task or cancel that fails validation; ``task_id`` when it had a usable one."""

    def __init__(self, reason: str, task_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id


class StageRefused(FieldlinkError, ValueError):
    """A reported stage that cannot be recorded (unknown task, backwards, wrong time)."""


@dataclass(frozen=True, slots=True)
class Incident:
    lat: float
    lon: float
    radius_m: float
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    units: tuple[str, ...]
    text: str
    priority: str
    created_at: datetime
    voice: bool = False
    incident: Incident | None = None
    category: str | None = None
    expires_at: datetime | None = None


def _time(value: object, key: str, task_id: str) -> datetime:
    try:
        return jsonin.parse_rfc3339(value, key)
    except jsonin.JsonInputError as exc:
        raise TaskRejected(str(exc), task_id) from None


_CONTROL = frozenset(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\n\t")


def text_problem(text: object, limit: int) -> str | None:
    """Why ``text`` cannot go to a radio (None when it can): it must be a string of at most
    ``limit`` characters with something visible in it and no control characters but line
    breaks and tabs (radios would show them as garbage, or a modem take them as commands)."""
    if not isinstance(text, str):
        return "text must be a string"
    if len(text) > limit:
        return f"text is {len(text)} characters, over {limit}"
    text = text.replace("\r\n", "\n")
    if any(ch in _CONTROL for ch in text):
        return "text contains control characters"
    if not any(ch.isprintable() and not ch.isspace() for ch in text):
        return "text has nothing visible in it"
    return None


def _number(value: object, key: str, task_id: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TaskRejected(f"{key} must be a number", task_id)
    if not low <= value <= high:
        raise TaskRejected(f"{key} must be within {low:g}..{high:g}", task_id)
    return float(value)


def _units(value: object, known_units: Container[str], task_id: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(u, str) for u in value):
        raise TaskRejected("units must be a non-empty list of unit ids", task_id)
    if len(set(value)) != len(value):
        raise TaskRejected("units lists a unit twice", task_id)
    strangers = [u for u in value if u not in known_units]
    if strangers:
        raise TaskRejected(f"unknown units: {', '.join(strangers[:10])}", task_id)
    return value


def _incident(value: object, task_id: str) -> Incident | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TaskRejected("incident must be an object", task_id)
    unknown = sorted(set(value) - {"lat", "lon", "radius_m", "address"})
    if unknown:
        raise TaskRejected(f"unknown keys in incident: {', '.join(unknown)}", task_id)
    address = value.get("address")
    if address is not None and not isinstance(address, str):
        raise TaskRejected("incident.address must be a string", task_id)
    return Incident(
        _number(value.get("lat"), "incident.lat", task_id, -90, 90),
        _number(value.get("lon"), "incident.lon", task_id, -180, 180),
        _number(value.get("radius_m"), "incident.radius_m", task_id, 1, 100_000),
        address,
    )


TASK_KEYS = frozenset(
    {"task_id", "units", "text", "priority", "voice", "incident", "category", "created_at",
     "expires_at"}
)  # fmt: skip


def parse_task(payload: bytes, known_units: Container[str], *, max_text_chars: int) -> Task:
    """Validate a task (SPEC section 5); raise :class:`TaskRejected` with the reason."""
    try:
        obj = jsonin.loads_object(payload, what="a task", max_bytes=max(len(payload), 1))
    except jsonin.JsonInputError as exc:
        raise TaskRejected(str(exc)) from None
    task_id = obj.get("task_id")
    if not isinstance(task_id, str) or not TASK_ID_RE.fullmatch(task_id):
        raise TaskRejected("task_id must be 1-128 characters of [A-Za-z0-9._:-]")
    unknown_keys = sorted(set(obj) - TASK_KEYS)
    if unknown_keys:
        raise TaskRejected(f"unknown keys: {', '.join(unknown_keys)}", task_id)
    units = _units(obj.get("units"), known_units, task_id)
    text = obj.get("text")
    problem = text_problem(text, max_text_chars)
    if problem is not None:
        raise TaskRejected(problem, task_id)
    assert isinstance(text, str)
    priority = obj.get("priority")
    if priority not in PRIORITIES:
        raise TaskRejected("priority must be urgent, normal or routine", task_id)
    voice = obj.get("voice", False)
    if not isinstance(voice, bool):
        raise TaskRejected("voice must be true or false", task_id)
    category = obj.get("category")
    if category is not None and not isinstance(category, str):
        raise TaskRejected("category must be a string", task_id)
    incident = _incident(obj.get("incident"), task_id)
    created_at = _time(obj.get("created_at"), "created_at", task_id)
    expires_at = None
    if obj.get("expires_at") is not None:
        expires_at = _time(obj.get("expires_at"), "expires_at", task_id)
    return Task(
        task_id=task_id,
        units=tuple(units),
        text=text,
        priority=priority,
        created_at=created_at,
        voice=voice,
        incident=incident,
        category=category,
        expires_at=expires_at,
    )


@dataclass(eq=False)
class Assignment:
    """One unit's part of a task, as the service follows it."""

    row: TaskRow
    task: Task
    unit: str
    reached: dict[str, str] = field(default_factory=dict)  # stage (or escalated:<target>) -> at
    delivery: asyncio.Task[None] | None = None
    last_poll: float = 0.0

    def is_ended(self) -> bool:
        return any(stage in TERMINAL for stage in self.reached)

    @property
    def key(self) -> str:
        return f"{self.task.task_id}/{self.unit}"


SenderLookup = Callable[[DeviceRef], TextSender | None]
Emit = Callable[[str, bytes], None]


class Dispatcher:
    """The task state machine. Run :meth:`run` as a task; feed it inbound tasks and what
    units say and where they are."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        topics: Topics,
        *,
        emit: Emit,
        senders: SenderLookup,
    ) -> None:
        self.config = config
        self._journal = journal
        self.store = TaskStore(journal)
        self._topics = topics
        self._emit = emit
        self._senders = senders
        self._reader = ReplyReader(config.dispatch)
        self._units = {unit.id: unit for unit in config.units}
        self._assignments: dict[str, list[Assignment]] = {}  # task_id -> assignments
        self._by_unit: dict[str, list[Assignment]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.rejected = 0
        self._reject_log = RateLimitedLog(log, 1.0)

    # -- intake --------------------------------------------------------------------

    def known_unit(self, unit: str) -> bool:
        return unit in self._units

    def dispatch(self, payload: bytes) -> tuple[str, str | None]:
        """Take a task; return ``("accepted"|"duplicate"|"rejected", reason)``."""
        try:
            task = parse_task(
                payload, self._units, max_text_chars=self.config.dispatch.max_text_chars
            )
        except TaskRejected as exc:
            self._reject(exc.task_id, exc.reason, payload)
            return "rejected", exc.reason
        if len(self._assignments) >= MAX_OPEN_TASKS and task.task_id not in self._assignments:
            reason = f"{MAX_OPEN_TASKS} tasks are open; close or cancel some first"
            self._reject(task.task_id, reason)
            return "rejected", reason
        now = utc_now()
        body = payload.decode()
        with self._journal.transaction():
            row = self.store.add_task(
                task_id=task.task_id,
                body=body,
                priority=task.priority,
                created_at=rfc3339(task.created_at),
                received_at=now,
                expires_at=rfc3339(task.expires_at) if task.expires_at else None,
            )
            if row is None:
                known = self.store.task(task.task_id)
                if known is not None and json.loads(known.body) == json.loads(body):
                    log.info("task %s received again; already journaled", task.task_id)
                    return "duplicate", None
                reason = "task_id already used by a different task"
                self._reject(task.task_id, reason)
                return "rejected", reason
            assignments = [Assignment(row, task, unit) for unit in task.units]
            for a in assignments:
                self._record(a, Stage.RECEIVED, at=now)
        self._track(assignments)
        log.info(
            "task %s (#%d, %s) for %s", task.task_id, row.ref, task.priority, ", ".join(task.units)
        )
        for a in assignments:
            self._start_delivery(a)
        return "accepted", None

    def cancel(self, payload: bytes) -> tuple[str, str | None]:
        try:
            obj = jsonin.loads_object(payload, what="a cancel", max_bytes=max(len(payload), 1))
        except jsonin.JsonInputError as exc:
            return self._rejected_cancel(None, str(exc), payload)
        task_id = obj.get("task_id")
        if not isinstance(task_id, str) or not TASK_ID_RE.fullmatch(task_id):
            return self._rejected_cancel(
                None, "task_id must be 1-128 characters of [A-Za-z0-9._:-]", payload
            )
        reason = obj.get("reason")
        detail = reason if isinstance(reason, str) and reason else "cancelled by the centre"
        assignments = self._assignments.get(task_id)
        if assignments is None:
            known = self.store.task(task_id)
            why = "task already ended" if known is not None else "unknown task"
            return self._rejected_cancel(task_id, why)
        for a in assignments:
            if not a.is_ended():
                self._end(a, Stage.CANCELLED, detail=detail[:200])
        return "accepted", None

    def _rejected_cancel(
        self, task_id: str | None, reason: str, payload: bytes = b""
    ) -> tuple[str, str | None]:
        self._reject(task_id, f"cancel: {reason}", payload)
        return "rejected", reason

    def reject(self, task_id: str | None, reason: str, *, payload: bytes = b"") -> None:
        """Refuse a task that could not even be read (oversize): a ``rejected`` event."""
        self._reject(task_id, reason, payload)

    def _reject(self, task_id: str | None, reason: str, payload: bytes = b"") -> None:
        """A ``rejected`` event on the task's topic, or on ``tasks/rejected`` when the task
        id could not be read (with the payload's size and hash, so the sender can find it)."""
        self.rejected += 1
        self._reject_log.warning("task %s rejected: %s", task_id or "(no usable task_id)", reason)
        at = rfc3339(utc_now())
        if task_id is None:
            anonymous = {
                "reason": reason[:500],
                "at": at,
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
            self._emit(self._topics.rejected, payloads.dumps(anonymous))
            return
        body = {"task_id": task_id, "unit": "", "stage": Stage.REJECTED.value, "at": at}
        body["detail"] = reason[:500]
        self._emit(self._topics.task_events(task_id), payloads.dumps(body))

    def _track(self, assignments: list[Assignment]) -> None:
        for a in assignments:
            self._assignments.setdefault(a.task.task_id, []).append(a)
            self._by_unit.setdefault(a.unit, []).append(a)

    # -- stages --------------------------------------------------------------------

    def _record(
        self,
        a: Assignment,
        stage: Stage,
        *,
        at: datetime | None = None,
        detail: str | None = None,
        target: str = "",
        source: Source = Source.GATEWAY,
        by: str | None = None,
    ) -> bool:
        """Journal a stage and queue its event, atomically; False if it was recorded before."""
        key = f"escalated:{target}" if target else stage
        if key in a.reached:
            return False
        at = at or utc_now()
        since_created = round((at - a.task.created_at).total_seconds(), 3)
        with self._journal.transaction():
            row = self.store.record_stage(
                a.row, a.unit, stage, at, since_created_s=since_created, detail=detail,
                target=target, source=source.value, reported_by=by,
            )  # fmt: skip
            if row is None:
                a.reached[key] = ""
                return False
            body: dict[str, Any] = {
                "task_id": a.task.task_id,
                "unit": a.unit,
                "stage": stage,
                "at": row.at,
                "since_created_s": since_created,
            }
            if detail:
                body["detail"] = detail
            if target:
                body["target"] = target
            if stage in ANSWERS and source is not Source.GATEWAY:
                body["source"] = source.value
                if by:
                    body["by"] = by
            self._emit(self._topics.task_events(a.task.task_id), payloads.dumps(body))
        a.reached[key] = row.at
        log.info(
            "task %s unit %s: %s%s", a.task.task_id, a.unit, stage, f" ({detail})" if detail else ""
        )
        return True

    def _end(self, a: Assignment, stage: Stage, *, detail: str | None = None) -> None:
        """A terminal stage: record it, stop the delivery, close the task when all ended."""
        self._record(a, stage, detail=detail)
        if (
            a.delivery is not None
            and not a.delivery.done()
            and a.delivery is not asyncio.current_task()
        ):
            a.delivery.cancel()
        assignments = self._assignments.get(a.task.task_id, [])
        if all(x.is_ended() for x in assignments):
            self.store.close_task(a.task.task_id)
            self._assignments.pop(a.task.task_id, None)
            for x in assignments:
                unit_list = self._by_unit.get(x.unit, [])
                if x in unit_list:
                    unit_list.remove(x)

    # -- delivery ------------------------------------------------------------------

    def _start_delivery(self, a: Assignment) -> None:
        if a.is_ended() or Stage.DELIVERED in a.reached or Stage.ACKNOWLEDGED in a.reached:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(a), name=f"deliver:{a.key}")
        a.delivery = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ack_deadline(self, a: Assignment) -> datetime:
        deadline = a.task.created_at + timedelta(seconds=self.config.sla.acknowledge_s)
        if a.task.expires_at is not None:
            deadline = min(deadline, a.task.expires_at)
        # A task created long before it reached us still gets one fair try.
        received = jsonin.parse_rfc3339(
            a.row.received_at, "received_at", earliest=jsonin.CLOCK_EARLIEST
        )
        return max(deadline, received + timedelta(seconds=UNREACHABLE_RETRY_S * 5))

    async def _deliver(self, a: Assignment) -> None:
        try:
            await self._deliver_inner(a)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not take other tasks down
            log.exception("delivery of %s failed", a.key)
            self._end(a, Stage.FAILED, detail="internal error while delivering")

    async def _deliver_inner(self, a: Assignment) -> None:
        unit = self._units.get(a.unit)
        devices = unit.devices if unit is not None else ()
        budget = self.config.dispatch.sends_per_device
        prefix = f"#{a.row.ref} " if self.config.dispatch.ref_in_text else ""
        order_text = prefix + a.task.text
        reasons: dict[str, str] = {}
        while not a.is_ended():
            sends_before = self.store.attempts(a.task.task_id, a.unit)
            exhausted = True
            for device in devices:
                sender = self._senders(device)
                if sender is None:
                    reasons[str(device)] = "cannot carry text"
                    continue
                used = self.store.attempts(a.task.task_id, a.unit, device=str(device))
                if used >= budget:
                    reasons.setdefault(str(device), f"{used} sends used")
                    continue
                exhausted = False
                if not sender.can_reach(device.address):
                    reasons[str(device)] = "link down"
                    continue
                if await self._send(a, device, sender, order_text, reasons):
                    return
                if a.is_ended():
                    return
            # A pass that put nothing on air (links down, sends refused before the first
            # frame) waits a moment, and gives up at the acknowledge deadline.
            idle = self.store.attempts(a.task.task_id, a.unit) == sends_before
            if exhausted or (idle and utc_now() >= self._ack_deadline(a)):
                summary = "; ".join(f"{d}: {r}" for d, r in reasons.items()) or "no device"
                self._end(a, Stage.FAILED, detail=summary[:500])
                return
            if idle:
                await asyncio.sleep(UNREACHABLE_RETRY_S)

    async def _send(
        self,
        a: Assignment,
        device: DeviceRef,
        sender: TextSender,
        text: str,
        reasons: dict[str, str],
    ) -> bool:
        self._record(a, Stage.QUEUED, detail=str(device))
        order = TextOrder(
            address=device.address,
            text=text,
            priority=PRIORITIES[a.task.priority],
            voice=a.task.voice,
            key=a.key,
        )
        attempt: list[int] = []

        def transmitted() -> None:
            # The send counts against the device's budget from the moment its first frame
            # is on the link, in the same step as the write: a send that only waited in
            # the channel's queue when the process died costs nothing.
            attempt.append(self.store.add_attempt(a.task.task_id, a.unit, str(device), utc_now()))
            self._record(a, Stage.TRANSMITTED, detail=str(device))

        try:
            report = await sender.send_text(order, transmitted)
        except asyncio.CancelledError:
            if attempt:
                self.store.finish_attempt(attempt[0], "cancelled")
            raise
        if attempt:
            self.store.finish_attempt(attempt[0], report.outcome.value, report.reason)
        if report.outcome is Delivery.DELIVERED:
            self._record(a, Stage.DELIVERED, detail=str(device))
            return True
        reasons[str(device)] = report.reason or "not confirmed"
        log.warning(
            "task %s to %s via %s failed: %s", a.task.task_id, a.unit, device, report.reason
        )
        return False

    # -- what units say and where they are -----------------------------------------------

    def open_assignments(self, unit: str) -> list[Assignment]:
        return [a for a in self._by_unit.get(unit, []) if not a.is_ended()]

    def on_reply(self, unit: str, text: TextFromUnit) -> bool:
        """A person's text; True when it was consumed (an answer to a task, or a repeat of a
        numbered message already applied), False when it is to be published as a message.

        Which task it answers follows SPEC section 5: a ``#12`` in the text or the protocol's
        own link picks the task; otherwise the oldest task transmitted to the unit that still
        waits for that kind of answer. Text that is no answer is the ``feedback`` of the
        oldest acknowledged task still waiting for one (and is published as well).
        """
        with self._journal.transaction():
            if text.message_id is not None and not self.store.first_sighting(
                str(text.device), text.message_id, text.text, text.at
            ):
                log.info("%s repeated message %s; applied once", text.device, text.message_id)
                return True
            reading = self._reader.read(text.text)
            stage = Stage(reading.stage) if reading.stage is not None else Stage.FEEDBACK
            found = self._attribute(unit, stage, reading.ref, text.reply_to)
            if found is None:
                return False
            target, how = found
            detail = f"{how}: {text.text[:200]}"
            if reading.stage is None:
                self._record(
                    target, Stage.FEEDBACK, at=text.at, detail=detail, source=Source.DEVICE
                )
                return False
            self._apply_answer(target, stage, text.at, detail=detail, source=Source.DEVICE)
            return True

    def on_answer(self, unit: str, answer: UnitAnswer) -> bool:
        """A stage a protocol carries natively (a status key, a chosen answer); True when a
        task took it."""
        try:
            stage = Stage(answer.stage)
        except ValueError:
            log.warning("unit %s: answer %r is not a stage", unit, answer.stage[:40])
            return False
        if stage not in ANSWERS:
            return False
        text = answer.ref or ""
        number = int(text.lstrip("#")) if text.lstrip("#").isdigit() else None
        with self._journal.transaction():
            if answer.message_id is not None and not self.store.first_sighting(
                str(answer.device), answer.message_id, stage.value, answer.at
            ):
                return True
            found = self._attribute(unit, stage, number, answer.reply_to)
            if found is None:
                return False
            target, how = found
            self._apply_answer(
                target, stage, answer.at, detail=f"{how}: answer", source=Source.DEVICE
            )
            return True

    def _attribute(
        self, unit: str, stage: Stage, ref: int | None, reply_to: str | None
    ) -> tuple[Assignment, str] | None:
        """The assignment an answer belongs to and how that was decided, or None."""
        transmitted = [
            a
            for a in self.open_assignments(unit)
            if Stage.TRANSMITTED in a.reached or Stage.ACKNOWLEDGED in a.reached
        ]
        if ref is not None:
            named = next((a for a in transmitted if a.row.ref == ref), None)
            return (named, f"reference #{ref}") if named is not None else None
        if reply_to is not None:
            linked = next((a for a in transmitted if a.key == reply_to), None)
            if linked is not None:
                return linked, "reply to its message"
        waiting = [a for a in transmitted if _waits_for(a, stage)]
        if not waiting and stage in (Stage.CONTACTED, Stage.ON_SCENE):
            # Said before accepting: the answer implies the acceptance.
            waiting = [a for a in transmitted if stage not in a.reached]
        if not waiting:
            return None
        waiting.sort(key=lambda a: (a.reached.get(Stage.TRANSMITTED) or "~", a.row.ref))
        return waiting[0], f"oldest of {len(waiting)} waiting"

    def _apply_answer(
        self,
        a: Assignment,
        stage: Stage,
        at: datetime,
        *,
        detail: str,
        source: Source,
        by: str | None = None,
    ) -> None:
        """Record an answer and what it implies; never moves a task backwards."""
        if source is Source.DEVICE and Stage.DELIVERED not in a.reached:
            # A person's answer from the device proves the radio got the task.
            self._record(a, Stage.DELIVERED, at=at, detail="implied by a reply")
        if a.delivery is not None and not a.delivery.done():
            a.delivery.cancel()  # a person has it: no more sends
        if stage is Stage.DECLINED:
            if Stage.ACKNOWLEDGED in a.reached:
                log.info("%s declined after accepting; kept as acknowledged", a.key)
                return
            self._record(a, stage, at=at, detail=detail, source=source, by=by)
            self._end(a, Stage.DECLINED)
            return
        if stage is not Stage.ACKNOWLEDGED and Stage.ACKNOWLEDGED not in a.reached:
            self._record(
                a, Stage.ACKNOWLEDGED, at=at, detail=f"implied by {stage.value}", source=source,
                by=by,
            )  # fmt: skip
        self._record(a, stage, at=at, detail=detail, source=source, by=by)
        if stage is Stage.CLOSED:
            self._end(a, Stage.CLOSED)

    def report_stage(self, request: dict[str, Any]) -> dict[str, Any]:
        """A stage a person reported by voice or phone, recorded by the centre (SPEC section
        5, ``report_stage``). :class:`StageRefused`, recording nothing, for an unknown task or
        unit, a stage that is not an answer or goes backwards, or a time in the future or
        before the task reached the unit."""
        task_id, unit = request.get("task_id"), request.get("unit")
        if not isinstance(task_id, str) or not isinstance(unit, str):
            raise StageRefused("task_id and unit must be strings")
        stage_text = request.get("stage")
        stage = Stage(stage_text) if stage_text in set(Stage) else Stage.ESCALATED
        if stage not in ANSWERS:
            raise StageRefused(f"stage must be one of {', '.join(ANSWERS)}")
        by, note = request.get("by"), request.get("note")
        if by is not None and (not isinstance(by, str) or not 0 < len(by) <= 64):
            raise StageRefused("by must be a name of 1..64 characters")
        if note is not None and (not isinstance(note, str) or len(note) > 500):
            raise StageRefused("note must be a string of at most 500 characters")
        a = next((x for x in self._assignments.get(task_id, []) if x.unit == unit), None)
        if a is None:
            known = self.store.task(task_id)
            raise StageRefused(
                "the task has ended" if known is not None else "unknown task or unit"
            )
        if a.is_ended():
            raise StageRefused(f"the task has ended for {unit}")
        now = utc_now()
        at = now
        if request.get("at") is not None:
            try:
                at = jsonin.parse_rfc3339(request.get("at"), "at")
            except jsonin.JsonInputError as exc:
                raise StageRefused(str(exc)) from None
        if at > now + timedelta(seconds=FUTURE_TOLERANCE_S):
            raise StageRefused("at is in the future")
        floor_stage = Stage.TRANSMITTED if Stage.TRANSMITTED in a.reached else Stage.RECEIVED
        floor = a.reached.get(floor_stage) or a.row.received_at
        if rfc3339(at) < floor:
            raise StageRefused(f"at is before the task was {floor_stage.value} ({floor})")
        reached = [s for s in a.reached if s in RANK]
        furthest = max(reached, key=lambda s: RANK[Stage(s)], default=Stage.RECEIVED)
        if stage in a.reached or RANK[stage] <= RANK[Stage(furthest)]:
            raise StageRefused(f"{unit} is already {furthest}: {stage.value} would go backwards")
        detail = "reported by the centre" + (f": {note}" if note else "")
        self._apply_answer(a, stage, at, detail=detail, source=Source.CENTRE, by=by)
        return {"task_id": task_id, "unit": unit, "stage": stage.value, "at": rfc3339(at)}

    def on_position(self, unit: str, lat: float, lon: float, at: datetime) -> None:
        for a in self.open_assignments(unit):
            incident = a.task.incident
            if incident is None or Stage.ON_SCENE in a.reached:
                continue
            distance = distance_m(lat, lon, incident.lat, incident.lon)
            if distance <= incident.radius_m:
                self._record(a, Stage.ON_SCENE, at=at, detail=f"{distance:.0f} m from the incident")

    # -- time ----------------------------------------------------------------------

    def _tick(self) -> None:
        now = utc_now()
        for assignments in list(self._assignments.values()):
            for a in list(assignments):
                if a.is_ended():
                    continue
                try:
                    self._tick_one(a, now)
                except Exception:  # a bug with one task must not stop the clock for all
                    log.exception("timers of %s failed; ending it", a.key)
                    with contextlib.suppress(Exception):
                        self._end(a, Stage.FAILED, detail="internal error in its timers")

    def _tick_one(self, a: Assignment, now: datetime) -> None:
        sla = self.config.sla
        expires = a.task.expires_at
        if expires is not None and now >= expires and Stage.ACKNOWLEDGED not in a.reached:
            self._end(a, Stage.EXPIRED, detail=f"expired at {rfc3339(expires)}")
            return
        for stage, attr in DEADLINES:
            if stage in a.reached or (stage == Stage.ON_SCENE and a.task.incident is None):
                continue
            deadline = a.task.created_at + timedelta(seconds=getattr(sla, attr))
            if now >= deadline - timedelta(seconds=sla.escalate_before_s):
                self._record(
                    a, Stage.ESCALATED, at=now, target=stage,
                    detail=f"{stage} due at {rfc3339(deadline)}",
                )  # fmt: skip
        self._maybe_poll(a)

    def _maybe_poll(self, a: Assignment) -> None:
        """Ask radios that report position only when asked, while a unit is on its way."""
        if (
            a.task.incident is None
            or Stage.ON_SCENE in a.reached
            or Stage.ACKNOWLEDGED not in a.reached
        ):
            return
        loop = asyncio.get_running_loop()
        if loop.time() - a.last_poll < self.config.dispatch.poll_interval_s:
            return
        a.last_poll = loop.time()
        unit = self._units.get(a.unit)
        for device in unit.devices if unit else ():
            sender = self._senders(device)
            if sender is not None and sender.capabilities.location_poll:
                self._spawn(self._poll(sender, device), f"poll:{device}")

    async def _poll(self, sender: TextSender, device: DeviceRef) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                sender.poll_location(device.address), self.config.dispatch.poll_timeout_s
            )

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def wrapper() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(wrapper(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- running -------------------------------------------------------------------

    def resume(self) -> int:
        """Rebuild every open task from the journal (after a restart); returns how many."""
        count = 0
        for row in self.store.open_tasks():
            if row.task_id in self._assignments:
                continue  # already followed by this process
            try:
                task = parse_task(
                    row.body.encode(),
                    self._units,
                    max_text_chars=self.config.dispatch.max_text_chars,
                )
            except TaskRejected as exc:
                log.warning("open task %s cannot be resumed: %s; closing it", row.task_id, exc)
                self.store.close_task(row.task_id)
                continue
            stages = self.store.stages(row.task_id)
            assignments = []
            for unit in task.units:
                a = Assignment(row, task, unit)
                for s in stages:
                    if s.unit == unit:
                        a.reached[f"escalated:{s.target}" if s.target else s.stage] = s.at
                assignments.append(a)
            if all(a.is_ended() for a in assignments):
                self.store.close_task(row.task_id)
                continue
            self._track([a for a in assignments])
            for a in assignments:
                self._start_delivery(a)
            count += 1
        return count

    async def run(self) -> None:
        resumed = self.resume()
        if resumed:
            log.info("resumed %d open tasks from the journal", resumed)
        try:
            while True:
                self._tick()
                await asyncio.sleep(TICK_S)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- queries -------------------------------------------------------------------

    def status(self, task_id: str) -> dict[str, Any] | None:
        row = self.store.task(task_id)
        if row is None:
            return None
        units: dict[str, dict[str, Any]] = {}
        for s in self.store.stages(task_id):
            if not s.unit:
                continue
            entry = units.setdefault(s.unit, {"stages": {}, "escalated": {}})
            if s.target:
                entry["escalated"][s.target] = s.at
            else:
                entry["stages"][s.stage] = s.at
        return {
            "task_id": row.task_id,
            "ref": row.ref,
            "priority": row.priority,
            "created_at": row.created_at,
            "received_at": row.received_at,
            "open": not row.closed,
            "units": units,
        }


def _waits_for(a: Assignment, stage: Stage) -> bool:
    """Whether the assignment still waits for that kind of answer (SPEC section 5)."""
    if stage in (Stage.ACKNOWLEDGED, Stage.DECLINED):
        return Stage.ACKNOWLEDGED not in a.reached
    if stage is Stage.CONTACTED:
        return Stage.ACKNOWLEDGED in a.reached and Stage.CONTACTED not in a.reached
    if stage is Stage.ON_SCENE:
        return Stage.ACKNOWLEDGED in a.reached and Stage.ON_SCENE not in a.reached
    if stage is Stage.FEEDBACK:
        return Stage.ACKNOWLEDGED in a.reached and Stage.FEEDBACK not in a.reached
    return Stage.CLOSED not in a.reached
