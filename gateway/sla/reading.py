"""Reading the journal for the SLA report: tasks, their assignments' stages, and alarms.

Read-only SQL over the ``tasks``, ``stages`` and ``alarms`` tables of ``journal.sqlite``
(schema in :mod:`gateway.taskstore`); tables or columns an older journal lacks are tolerated.

Journal rows with odd values never break the report: a time that
:func:`gateway.jsonin.parse_rfc3339` refuses (not RFC 3339 with a zone, or outside 2000..2100,
which the gateway never writes) counts as unknown, a stored number that is not finite or
beyond :data:`MAX_SECONDS` as missing, and deadlines compare elapsed seconds (no datetime
sums).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from gateway.jsonin import JsonInputError, parse_rfc3339
from gateway.model import rfc3339
from gateway.sla.report import FAILURES, OTHER_SOURCE, SKEW_TOLERANCE_S, SOURCES, Alarm
from gateway.stages import Stage

__all__ = ["MAX_SECONDS", "Assignment", "Task", "load", "load_alarms", "parse_time"]

MAX_SECONDS: Final = 1e12
"""A stored duration beyond this (about 31,700 years) is garbage and read as missing."""


@dataclass(slots=True)
class Task:
    task_id: str
    created_at: str
    received_at: str
    created: datetime | None
    received: datetime | None
    has_incident: bool
    skew_s: float | None
    skewed: bool

    def elapsed_s(self, now: datetime) -> float | None:
        """Seconds from ``created_at`` (``received_at`` when unreadable) to ``now``."""
        start = self.created or self.received
        return None if start is None else (now - start).total_seconds()

    @property
    def day(self) -> str:
        """The UTC date of ``received_at``."""
        if self.received is not None:
            return self.received.date().isoformat()
        return self.received_at[:10]


@dataclass(slots=True)
class Assignment:
    """One unit's part of a task: the stages it reached, by whom, and its escalations."""

    task: Task
    unit: str
    # stage -> (end-to-end seconds or None, gateway offset seconds or None)
    reached: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # stage -> SOURCES or OTHER_SOURCE
    escalated: set[str] = field(default_factory=set)

    def failed(self) -> bool:
        return any(stage in self.reached for stage in FAILURES)

    def applies(self, stage: Stage) -> bool:
        return stage is not Stage.ON_SCENE or self.task.has_incident or stage in self.reached

    def latency_s(self, stage: Stage) -> float | None:
        """End-to-end seconds of a reached stage; where unknown, the gateway offset plus the
        task's skew (from ``received`` when ``created_at`` is unreadable, as deadlines are)."""
        reached = self.reached.get(stage)
        if reached is None:
            return None
        end_to_end, offset = reached
        if end_to_end is not None:
            return end_to_end
        return None if offset is None else round(offset + (self.task.skew_s or 0.0), 3)

    def ended_s(self) -> float | None:
        """When a terminal failure ended the assignment (end to end); None when none did,
        ``-inf`` when one did at a time that cannot be read."""
        times = [self.latency_s(stage) for stage in FAILURES if stage in self.reached]
        if not times:
            return None
        known = [t for t in times if t is not None]
        return min(known) if known else -math.inf


def parse_time(text: object) -> datetime | None:
    """A journal time as aware UTC; None for anything :func:`parse_rfc3339` refuses."""
    try:
        return parse_rfc3339(text, "time")
    except JsonInputError:
        return None


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _number(value: object) -> float | None:
    """A stored figure of seconds; None unless a finite number within ``MAX_SECONDS``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if abs(value) <= MAX_SECONDS else None  # False for NaN


def _source(value: object) -> str:
    return value if isinstance(value, str) and value in SOURCES else OTHER_SOURCE


def _has_incident(body: str) -> bool:
    try:
        obj = json.loads(body)
    except (ValueError, TypeError, RecursionError):  # RecursionError: absurdly nested JSON
        return False
    return isinstance(obj, dict) and isinstance(obj.get("incident"), dict)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info([{table}])"))


def _floor(since: datetime | None) -> str:
    """The ``since`` bound as journal text (times compare as text in the journal)."""
    return rfc3339(since) if since is not None else ""


def _task(task_id: object, body: object, created_at: object, received_at: object) -> Task:
    created, received = parse_time(created_at), parse_time(received_at)
    skew = _seconds_between(created, received)
    return Task(
        task_id=str(task_id),
        created_at=str(created_at),
        received_at=str(received_at),
        created=created,
        received=received,
        has_incident=_has_incident(str(body)),
        skew_s=skew,
        skewed=skew is not None and (skew < 0 or skew > SKEW_TOLERANCE_S),
    )


def _load_tasks(conn: sqlite3.Connection, floor: str) -> dict[str, Task]:
    rows = conn.execute(
        "SELECT task_id, body, created_at, received_at FROM tasks"
        " WHERE received_at >= ? ORDER BY received_at, task_id",
        (floor,),
    )
    return {str(row[0]): _task(*row) for row in rows}


# Journals written before the ``source`` column existed: every stage counts as the gateway's,
# as the column's default makes it when the gateway next opens the journal.
_STAGES_SQL: Final = (
    "SELECT s.task_id, s.unit, s.stage, s.target, s.at, s.offset_s, s.since_created_s, {}"
    " FROM stages AS s JOIN tasks AS t ON t.task_id = s.task_id"
    " WHERE t.received_at >= ? ORDER BY s.task_id, s.unit"
)
_STAGES_WITH_SOURCE: Final = _STAGES_SQL.format("s.source")
_STAGES_WITHOUT_SOURCE: Final = _STAGES_SQL.format("'gateway'")


def _add_stage(a: Assignment, row: Sequence[object]) -> None:
    stage, target, at, offset_s, since_created_s, source = (str(row[2]), *row[3:8])
    if stage == Stage.ESCALATED:
        a.escalated.add(str(target))
        return
    if target:
        return
    task, moment = a.task, parse_time(at)
    end_to_end = _number(since_created_s)
    if end_to_end is None:
        end_to_end = _seconds_between(task.created, moment)
    offset = _number(offset_s)
    if offset is None:
        offset = _seconds_between(task.received, moment)
    a.reached[stage] = (end_to_end, offset)
    a.sources[stage] = _source(source)


def load(conn: sqlite3.Connection, since: datetime | None) -> tuple[list[Task], list[Assignment]]:
    """Tasks received at or after ``since`` (all when None), and their assignments."""
    if not (_has_table(conn, "tasks") and _has_table(conn, "stages")):
        return [], []
    floor = _floor(since)
    tasks = _load_tasks(conn, floor)
    sql = _STAGES_WITH_SOURCE if _has_column(conn, "stages", "source") else _STAGES_WITHOUT_SOURCE
    assignments: dict[tuple[str, str], Assignment] = {}
    for row in conn.execute(sql, (floor,)):
        task = tasks.get(str(row[0]))
        if task is None:
            continue
        key = (task.task_id, str(row[1]))
        a = assignments.get(key)
        if a is None:
            a = assignments[key] = Assignment(task, key[1])
        _add_stage(a, row)
    return list(tasks.values()), list(assignments.values())


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _alarm(row: Sequence[object]) -> Alarm:
    unit, kind, link, device, raised_at, cleared_at, cleared_by = row
    cleared = _text(cleared_at) or None
    return Alarm(
        unit=_text(unit),
        kind=_text(kind),
        link=_text(link),
        device=_text(device),
        raised_at=_text(raised_at),
        cleared_at=cleared,
        cleared_by=None if cleared is None else _text(cleared_by) or None,
        time_to_clear_s=_seconds_between(parse_time(raised_at), parse_time(cleared_at)),
    )


def load_alarms(conn: sqlite3.Connection, since: datetime | None) -> list[Alarm]:
    """Alarms raised at or after ``since``, or raised before it and not cleared by then."""
    if not _has_table(conn, "alarms"):
        return []
    floor = _floor(since)
    rows = conn.execute(
        "SELECT unit, kind, link, device, raised_at, cleared_at, cleared_by FROM alarms"
        " WHERE raised_at >= ? OR coalesce(cleared_at, '') = '' OR cleared_at >= ?"
        " ORDER BY raised_at, id",
        (floor, floor),
    )
    return [_alarm(row) for row in rows]
