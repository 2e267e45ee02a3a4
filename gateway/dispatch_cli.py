"""``fieldlink dispatch``: publish one task over MQTT and follow its events.

What a dispatcher at a terminal (or a script) uses to send a task to a unit without a
dispatch server: it connects to the gateway's broker with its own client id, subscribes
to the task's events *before* publishing the task, and prints each stage as it comes
(once per unit and stage: events are at-least-once), until every unit of the task has
reached the stage asked for with ``--until`` or a later one (exit 0), the task ended
otherwise, declined or a terminal failure (exit 1), or the wait ran out (exit 1).

An event that is not JSON, not an object or lacks a usable ``task_id`` or ``stage`` is
skipped with a warning on stderr; an event naming another task is ignored.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import sys
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import aiomqtt

from gateway.config import Config
from gateway.model import rfc3339, utc_now
from gateway.mqtt import tls_context
from gateway.topics import Topics

ORDER: Final = (
    "received",
    "queued",
    "transmitted",
    "delivered",
    "acknowledged",
    "contacted",
    "on_scene",
    "feedback",
    "closed",
)
"""The stages of a task that goes well, in order (section 5)."""
RANK: Final = {stage: i for i, stage in enumerate(ORDER)}
FAILURES: Final = frozenset({"declined", "failed", "expired", "cancelled", "rejected"})
"""Stages after which the task will not reach any stage worth waiting for."""
UNTIL: Final = ("acknowledged", "contacted", "on_scene", "closed")
"""The stages ``--until`` may wait for; each has an SLA target in ``[sla]``."""
TIMEOUT_MARGIN_S: Final = 30.0
MAX_FIELD_CHARS: Final = 300


def default_timeout_s(config: Config, until: str) -> float:
    """How long to follow a task by default: the stage's SLA target plus a margin."""
    return config.sla.target_s(until) + TIMEOUT_MARGIN_S


def build_task(
    unit: str,
    text: str,
    *,
    priority: str,
    voice: bool,
    at: tuple[float, float] | None,
    radius_m: float,
) -> dict[str, Any]:
    now = utc_now()
    task: dict[str, Any] = {
        "task_id": f"cli-{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}",
        "units": [unit],
        "text": text,
        "priority": priority,
        "voice": voice,
        "created_at": rfc3339(now),
    }
    if at is not None:
        task["incident"] = {"lat": at[0], "lon": at[1], "radius_m": radius_m}
    return task


def parse_at(text: str) -> tuple[float, float]:
    lat_text, sep, lon_text = text.partition(",")
    if not sep:
        raise ValueError("--at takes LAT,LON")
    lat, lon = float(lat_text), float(lon_text)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError("--at is out of range")
    return lat, lon


def _printable(value: object) -> str:
    """A field from the wire as one safe terminal line: no control characters, bounded."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= MAX_FIELD_CHARS else text[: MAX_FIELD_CHARS - 1] + "…"


def _took(since: object) -> str:
    """``since_created_s`` as ``+12.3s``, or nothing when it is not a finite number."""
    if isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since):
        return ""
    return f"+{since:.1f}s"


@dataclass
class TaskFollower:
    """Reads a task's stage events one payload at a time and decides when following ends.

    :meth:`feed` prints what it reads and returns the exit code once the outcome is known
    (0: every unit reached ``until`` or a later stage; 1: declined or a terminal failure),
    else ``None``.
    """

    task_id: str
    units: list[str]
    until: str = "acknowledged"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    reached: dict[str, int] = field(default_factory=dict)  # unit -> rank of its furthest stage
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.until not in RANK:
            raise ValueError(f"cannot wait for stage {self.until!r}")

    def pending(self) -> list[str]:
        """The units that have not yet reached ``until``, each with its furthest stage."""
        goal = RANK[self.until]
        return [
            f"{unit} (at {ORDER[self.reached[unit]]})" if unit in self.reached else unit
            for unit in self.units
            if self.reached.get(unit, -1) < goal
        ]

    def _warn(self, what: str) -> None:
        print(f"fieldlink: warning: skipped an event that {what}", file=self.err, flush=True)

    def _read(self, payload: object) -> dict[str, Any] | None:
        """The event as a JSON object, or ``None`` after a warning."""
        if not isinstance(payload, bytes | bytearray | str):
            self._warn(f"is not JSON ({type(payload).__name__})")
            return None
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            self._warn(f"is not JSON: {_printable(str(exc))}")
            return None
        if not isinstance(event, dict):
            self._warn(f"is not a JSON object but {type(event).__name__}")
            return None
        return event

    def feed(self, payload: object) -> int | None:
        event = self._read(payload)
        if event is None:
            return None
        task_id = event.get("task_id")
        if not isinstance(task_id, str):
            self._warn("has no task_id")
            return None
        if task_id != self.task_id:
            return None  # another task's event: not ours to follow
        stage, unit, target = event.get("stage"), event.get("unit", ""), event.get("target", "")
        if not isinstance(stage, str) or not stage:
            self._warn("has no stage")
            return None
        unit = unit if isinstance(unit, str) else _printable(unit)
        target = target if isinstance(target, str) else _printable(target)
        key = (unit, stage, target)
        if key in self.seen:
            return None  # a repeat: events are at-least-once
        self.seen.add(key)
        self._print(event, stage, unit, target)
        return self._decide(stage, unit)

    def _print(self, event: dict[str, Any], stage: str, unit: str, target: str) -> None:
        label = _printable(stage)
        if stage == "escalated":
            label += f" ({_printable(target)} due)" if target else " (deadline near)"
        took = _took(event.get("since_created_s"))
        who = f"{_printable(unit) or '-':<12} " if len(self.units) > 1 else ""
        detail = event.get("detail")
        shown = f"  {_printable(detail)}" if detail not in (None, "") else ""
        at = _printable(event.get("at", ""))
        print(f"{at}  {who}{label:<13} {took:>9}{shown}", file=self.out, flush=True)

    def _decide(self, stage: str, unit: str) -> int | None:
        if stage in FAILURES:
            whom = f" for {_printable(unit)}" if unit else ""
            print(
                f"fieldlink: task {self.task_id} {stage}{whom} before {self.until}",
                file=self.err,
                flush=True,
            )
            return 1
        if stage not in RANK or unit not in self.units:
            return None  # escalated, a stage this version does not know, a stranger unit
        self.reached[unit] = max(self.reached.get(unit, -1), RANK[stage])
        return None if self.pending() else 0


async def follow_task(
    config: Config, task: dict[str, Any], timeout_s: float, *, until: str = "acknowledged"
) -> int:
    """Publish ``task`` and follow its events until every unit reached ``until`` (0), the task
    ended otherwise (1) or ``timeout_s`` ran out (1)."""
    follower = TaskFollower(task["task_id"], list(task["units"]), until)
    topics = Topics(config.mqtt.base_topic, config.gateway.id)
    events_topic = topics.task_events(task["task_id"])
    cfg = config.mqtt
    try:
        async with aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=f"fieldlink-dispatch-{secrets.token_hex(4)}",
            username=cfg.username or None,
            password=cfg.password or None,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls_context(cfg),
            timeout=10,
        ) as client:
            await client.subscribe(events_topic, qos=1)
            payload = json.dumps(task, ensure_ascii=False).encode()
            await client.publish(topics.dispatch, payload, qos=1)
            print(f"task {task['task_id']} sent to {', '.join(task['units'])}", flush=True)
            try:
                async with asyncio.timeout(timeout_s):
                    async for message in client.messages:
                        code = follower.feed(message.payload)
                        if code is not None:
                            return code
            except TimeoutError:
                print(
                    f"fieldlink: no {until} within {timeout_s:g} s from "
                    f"{', '.join(follower.pending())}",
                    file=sys.stderr,
                )
                return 1
    except aiomqtt.MqttError as exc:
        print(f"fieldlink: MQTT {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    return 1
