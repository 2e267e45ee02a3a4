"""The SLA report: how fast tasks went through their stages, read from the journal.

Pure reporting over the ``tasks``, ``stages`` and ``alarms`` tables of ``journal.sqlite``
(schema in :mod:`gateway.taskstore`): read-only SQL, no asyncio, nothing written. ``fieldlink
sla`` (:func:`run_sla`) and the MQTT ``sla`` request (:func:`report_to_json`) show the same
report. ``docs/sla.md`` explains it for operators, the counting rules of the headline first.

Headline (first in every format)
    The seed's five clocks (``SLA_CLOCKS``: acknowledged, contacted, on_scene, feedback,
    closed), each over assignments, end to end from ``created_at``: ``within`` (reached by
    the target), ``late`` (reached after it), ``missed`` (not reached and the target passed
    while the assignment was open), ``pending`` (not reached, target not passed yet),
    ``ended`` (a terminal failure, decline or cancel ended it before the target passed),
    ``not_applicable`` (on_scene of a task without an incident and without an on_scene
    stage), ``unmeasured`` (its times cannot be read). ``share_within_target`` is ``within /
    (within + late + missed)``; the goal (``sla.goal_*``, percent) is met when ``within * 100 >=
    goal * counted``. ``sources`` counts who reported the reached stages: ``device`` (the
    radio), ``centre`` (``report_stage``), ``gateway`` (its own observation, such as the
    geofence), ``other`` (an unknown value in the journal).

What is measured
    An *assignment* is one unit's part of a task (a ``(task_id, unit)`` pair in ``stages``).
    For every assignment that reached a stage, two latencies, side by side:

    * **end to end**: ``since_created_s``, seconds from the dispatcher's ``created_at`` (two
      clocks: the dispatch server's and ours); recomputed from ``at - created_at`` where the
      column is empty;
    * **gateway**: ``offset_s``, monotonic seconds from the gateway's ``received`` (one clock).

    Stages with a target (``[sla]``, seconds from ``created_at``): ``acknowledged``
    (``acknowledge_s``), ``contacted`` (``contact_s``), ``on_scene`` (``on_scene_s``),
    ``feedback`` (``feedback_s``), ``closed`` (``close_s``). Transport stages without a
    target: ``received``, ``transmitted``, ``delivered``.

    Journal rows with odd values never break the report: a time that cannot be read (or not
    converted to UTC) counts as unknown, a stored number that is not finite or beyond
    ``MAX_SECONDS`` as missing, and deadlines compare elapsed seconds (no datetime sums).

Percentiles
    Nearest rank, computed in Python: the p-th percentile of n sorted values is the value at
    rank ``ceil(p * n / 100)`` (1-based), so it is always one of the measured latencies and at
    least p % of the values are at or below it.

Misses and failures (the per-stage tables)
    ``missed`` (stages with a target): assignments whose deadline ``created_at + target``
    has passed at ``now`` without the stage, and which did not end in a terminal failure
    (those are in ``failed_before``). A task closed without feedback past the feedback
    deadline is a miss. ``on_scene`` applies only to tasks with an ``incident``.
    ``within_target`` counts latencies ``<= target``; ``share_within_target`` is
    ``within_target / (count + missed)``: a miss counts against the target. The gateway
    measure is compared with the same target and divided by the same misses.
    ``failures`` counts assignments per terminal failure stage (``failed``, ``expired``,
    ``cancelled``, ``rejected``, ``declined``). The headline is stricter about failures: one
    that came after the deadline is a miss there.

Clock skew
    ``skew_s = received_at - created_at``. A task is flagged when ``skew_s < 0`` (received
    before it was created) or ``skew_s > SKEW_TOLERANCE_S``. End-to-end figures of flagged
    tasks are unreliable (offenders carry ``"skewed": true``); gateway figures are not
    affected.

Filtering
    ``since`` keeps tasks whose ``received_at`` is at or after it, and alarms raised at or
    after it or still raised at it. Per day groups by the UTC date of ``received_at``.

JSON layout (:func:`report_to_json`; times RFC 3339 UTC, durations in seconds, shares 0..1,
``null`` where there is nothing to measure)::

    {
      "headline": {"clocks": [CLOCK, ...]},        # the five clocks, in SLA_CLOCKS order
      "generated_at": str, "since": str | null,
      "percentile_method": "nearest-rank", "skew_tolerance_s": float,
      "tasks": int, "assignments": int,
      "targets_s": {"acknowledged": float, "contacted": float, "on_scene": float,
                    "feedback": float, "closed": float},
      "stages": {                                  # every name in STAGES, in that order
        "<stage>": {
          "target_s": float | null, "reached": int,
          "missed": int | null,                    # null for stages without a target
          "failed_before": int, "escalated": int,
          "end_to_end": MEASURE, "gateway": MEASURE, "sources": SOURCES
        }
      },
      "failures": {"failed": int, "expired": int, "cancelled": int, "rejected": int,
                   "declined": int},
      "units": [{"unit": str, "assignments": int,
                 "stages": {"<stage>": {"target_s", "reached", "missed",
                                        "end_to_end": SUMMARY, "gateway": SUMMARY}}}],
      "days": [{"date": "YYYY-MM-DD", "tasks": int, "assignments": int,
                "stages": {"acknowledged": {...as in units...}, "on_scene": {...}}}],
      "skew": {"tolerance_s": float, "count": int,
               "tasks": [{"task_id", "created_at", "received_at", "skew_s"}]},
      "alarms": {"count": int, "still_raised": int, "cleared": int,
                 "time_to_clear_p50_s": float | null, "time_to_clear_max_s": float | null,
                 "list_max": int,
                 "list": [{"unit", "kind", "link", "device", "state": "raised" | "cleared",
                           "raised_at": str, "cleared_at": str | null,
                           "cleared_by": str | null, "time_to_clear_s": float | null}]},
      "notes": [str]
    }
    CLOCK = {"stage": str, "label": str, "target_s": float, "goal_percent": float,
             "share_within_target": float | null, "goal_met": bool | null,
             "counted": int, "within": int, "late": int, "missed": int, "pending": int,
             "ended": int, "not_applicable": int, "unmeasured": int, "reached": int,
             "sources": SOURCES}
    SOURCES = {"device": int, "centre": int, "gateway": int, "other": int}
    SUMMARY = {"count": int, "p50_s", "p90_s", "p99_s", "max_s": float | null,
               "within_target": int | null, "share_within_target": float | null}
    MEASURE = SUMMARY + {"worst": [{"task_id", "unit", "latency_s", "received_at",
                                     "skewed": bool}]}      # at most WORST_COUNT, worst first

``skew.tasks`` lists at most ``SKEW_LIST_MAX`` tasks, largest ``|skew_s|`` first;
``skew.count`` counts them all. ``alarms.list`` holds at most ``ALARM_LIST_MAX`` alarms, the
still raised first, then the newest first; ``alarms.count`` counts them all. The raw
latencies the HTML draws are not in the JSON.

Renderings
    :func:`render_table` (terminal text, columns aligned by display width so CJK unit names
    line up, control characters from the journal escaped) and :func:`render_html` (one
    self-contained page: inline CSS, inline SVG CDFs of both measures per stage with the
    target as a red vertical line, no external reference; journal text HTML-escaped) show
    the worst offenders of the stages with a target only; the JSON has them for every stage.
"""

from __future__ import annotations

import html
import json
import math
import re
import sqlite3
import sys
import textwrap
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from gateway.config import SLA_CLOCKS, Config, SlaConfig
from gateway.errors import FieldlinkError
from gateway.model import rfc3339, utc_now

__all__ = [
    "ALARM_LIST_MAX",
    "CLOCKS",
    "SINCE_EARLIEST",
    "SINCE_LATEST",
    "SKEW_TOLERANCE_S",
    "SOURCES",
    "STAGES",
    "Alarm",
    "AlarmsReport",
    "ClockReport",
    "DayReport",
    "JournalUnreadable",
    "Measure",
    "Offender",
    "SinceError",
    "SkewedTask",
    "SlaReport",
    "StageReport",
    "StageSummary",
    "Summary",
    "UnitReport",
    "build_report",
    "clock_label",
    "format_duration",
    "parse_since",
    "percentile",
    "render_html",
    "render_table",
    "report_to_json",
    "run_sla",
]

SKEW_TOLERANCE_S: Final = 5.0
"""``received_at`` may lag ``created_at`` by this much before the task is flagged as skewed."""
WORST_COUNT: Final = 5
SKEW_LIST_MAX: Final = 50
CLOCKS: Final[tuple[str, ...]] = tuple(SLA_CLOCKS)
"""The headline's five clocks, in order: acknowledged, contacted, on_scene, feedback, closed."""
TARGETS: Final = tuple((stage, target_key) for stage, (target_key, _) in SLA_CLOCKS.items())
TRANSPORT_STAGES: Final = ("received", "transmitted", "delivered")
STAGES: Final[tuple[str, ...]] = (*TRANSPORT_STAGES, *CLOCKS)
FAILURES: Final = ("failed", "expired", "cancelled", "rejected", "declined")
DAY_STAGES: Final = ("acknowledged", "on_scene")
SOURCES: Final = ("device", "centre", "gateway")
"""Who reported a stage (``stages.source``); any other value is counted as ``other``."""
OTHER_SOURCE: Final = "other"
ALARM_LIST_MAX: Final = 100
FORMATS: Final = ("table", "json", "html")
PERCENTILE_METHOD: Final = "nearest-rank"
MAX_SECONDS: Final = 1e12
"""A stored duration beyond this (about 31,700 years) is garbage and read as missing."""
SINCE_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
SINCE_LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""An absolute ``since`` must lie in ``[SINCE_EARLIEST, SINCE_LATEST]``."""

_SINCE_RE: Final = re.compile(r"\A([0-9]{1,9})([smhd])\Z", re.IGNORECASE)
_SINCE_UNITS_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CLOCK_WORDS: Final = {"on_scene": "on scene"}


class SinceError(FieldlinkError, ValueError):
    """A ``--since`` value that is neither a duration (``24h``) nor an RFC 3339 time."""


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offender:
    task_id: str
    unit: str
    latency_s: float
    received_at: str
    skewed: bool


@dataclass(frozen=True, slots=True)
class Summary:
    """Figures of one latency measure over a set of assignments."""

    count: int
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    max_s: float | None
    within_target: int | None
    share_within_target: float | None


@dataclass(frozen=True, slots=True)
class Measure:
    """One latency measure of one stage: figures, worst offenders, and the sorted values."""

    summary: Summary
    worst: tuple[Offender, ...]
    values: tuple[float, ...]  # sorted; drawn by render_html, not in the JSON


@dataclass(frozen=True, slots=True)
class StageReport:
    stage: str
    target_s: float | None
    reached: int
    missed: int | None
    failed_before: int
    escalated: int
    end_to_end: Measure
    gateway: Measure
    sources: dict[str, int]  # who reported the reached stages: SOURCES and OTHER_SOURCE


@dataclass(frozen=True, slots=True)
class ClockReport:
    """One of the headline's five clocks: how many assignments made it within the target."""

    stage: str
    label: str  # "acknowledged within 1 min", from the configured target
    target_s: float
    goal_percent: float
    within: int
    late: int
    missed: int
    pending: int
    ended: int
    not_applicable: int
    unmeasured: int
    sources: dict[str, int]

    @property
    def counted(self) -> int:
        return self.within + self.late + self.missed

    @property
    def reached(self) -> int:
        return sum(self.sources.values())

    @property
    def share_within_target(self) -> float | None:
        return round(self.within / self.counted, 4) if self.counted else None

    @property
    def goal_met(self) -> bool | None:
        """None when nothing was counted; compared exactly, not on the rounded share."""
        if not self.counted:
            return None
        return self.within * 100 >= self.goal_percent * self.counted


@dataclass(frozen=True, slots=True)
class Alarm:
    unit: str
    kind: str
    link: str
    device: str
    raised_at: str
    cleared_at: str | None
    cleared_by: str | None
    time_to_clear_s: float | None  # None while raised, or when a time cannot be read

    @property
    def still_raised(self) -> bool:
        return self.cleared_at is None


@dataclass(frozen=True, slots=True)
class AlarmsReport:
    count: int
    still_raised: int
    time_to_clear_p50_s: float | None
    time_to_clear_max_s: float | None
    alarms: tuple[Alarm, ...]  # at most ALARM_LIST_MAX: still raised first, then newest first

    @property
    def cleared(self) -> int:
        return self.count - self.still_raised


@dataclass(frozen=True, slots=True)
class StageSummary:
    """A stage within one unit or one day."""

    stage: str
    target_s: float | None
    reached: int
    missed: int | None
    end_to_end: Summary
    gateway: Summary


@dataclass(frozen=True, slots=True)
class UnitReport:
    unit: str
    assignments: int
    stages: tuple[StageSummary, ...]


@dataclass(frozen=True, slots=True)
class DayReport:
    date: str
    tasks: int
    assignments: int
    stages: tuple[StageSummary, ...]


@dataclass(frozen=True, slots=True)
class SkewedTask:
    task_id: str
    created_at: str
    received_at: str
    skew_s: float


@dataclass(frozen=True, slots=True)
class SlaReport:
    generated_at: datetime
    since: datetime | None
    targets_s: dict[str, float]
    tasks: int
    assignments: int
    stages: tuple[StageReport, ...]
    failures: dict[str, int]
    units: tuple[UnitReport, ...]
    days: tuple[DayReport, ...]
    skew_count: int
    skewed: tuple[SkewedTask, ...]
    notes: tuple[str, ...]
    headline: tuple[ClockReport, ...]
    alarms: AlarmsReport

    def stage(self, name: str) -> StageReport:
        return next(s for s in self.stages if s.stage == name)


# --- percentiles ---------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of ascending values (None when empty), ``0 < p <= 100``."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is outside (0, 100]")
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(p * n / 100))
    return sorted_values[min(rank, n) - 1]


# --- reading the journal -------------------------------------------------------------------------


@dataclass(slots=True)
class _Task:
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


@dataclass(slots=True)
class _Assignment:
    task: _Task
    unit: str
    # stage -> (end-to-end seconds or None, gateway offset seconds or None)
    reached: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # stage -> SOURCES or OTHER_SOURCE
    escalated: set[str] = field(default_factory=set)

    def failed(self) -> bool:
        return any(stage in self.reached for stage in FAILURES)

    def applies(self, stage: str) -> bool:
        return stage != "on_scene" or self.task.has_incident or stage in self.reached

    def latency_s(self, stage: str) -> float | None:
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


def _parse_time(text: object) -> datetime | None:
    """An RFC 3339 time as UTC; None for anything unreadable, or beyond datetime's range in UTC."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
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


def _task(task_id: object, body: object, created_at: object, received_at: object) -> _Task:
    created, received = _parse_time(created_at), _parse_time(received_at)
    skew = _seconds_between(created, received)
    return _Task(
        task_id=str(task_id),
        created_at=str(created_at),
        received_at=str(received_at),
        created=created,
        received=received,
        has_incident=_has_incident(str(body)),
        skew_s=skew,
        skewed=skew is not None and (skew < 0 or skew > SKEW_TOLERANCE_S),
    )


def _load_tasks(conn: sqlite3.Connection, floor: str) -> dict[str, _Task]:
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


def _add_stage(a: _Assignment, row: Sequence[object]) -> None:
    stage, target, at, offset_s, since_created_s, source = (str(row[2]), *row[3:8])
    if stage == "escalated":
        a.escalated.add(str(target))
        return
    if target:
        return
    task, moment = a.task, _parse_time(at)
    end_to_end = _number(since_created_s)
    if end_to_end is None:
        end_to_end = _seconds_between(task.created, moment)
    offset = _number(offset_s)
    if offset is None:
        offset = _seconds_between(task.received, moment)
    a.reached[stage] = (end_to_end, offset)
    a.sources[stage] = _source(source)


def _load(
    conn: sqlite3.Connection, since: datetime | None
) -> tuple[list[_Task], list[_Assignment]]:
    if not (_has_table(conn, "tasks") and _has_table(conn, "stages")):
        return [], []
    floor = _floor(since)
    tasks = _load_tasks(conn, floor)
    sql = _STAGES_WITH_SOURCE if _has_column(conn, "stages", "source") else _STAGES_WITHOUT_SOURCE
    assignments: dict[tuple[str, str], _Assignment] = {}
    for row in conn.execute(sql, (floor,)):
        task = tasks.get(str(row[0]))
        if task is None:
            continue
        key = (task.task_id, str(row[1]))
        a = assignments.get(key)
        if a is None:
            a = assignments[key] = _Assignment(task, key[1])
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
        time_to_clear_s=_seconds_between(_parse_time(raised_at), _parse_time(cleared_at)),
    )


def _load_alarms(conn: sqlite3.Connection, since: datetime | None) -> list[Alarm]:
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


# --- building ------------------------------------------------------------------------------------


def _targets(sla: SlaConfig) -> dict[str, float]:
    return {stage: sla.target_s(stage) for stage in CLOCKS}


def _missed(a: _Assignment, stage: str, target_s: float, now: datetime) -> bool:
    if stage in a.reached or a.failed() or not a.applies(stage):
        return False
    elapsed = a.task.elapsed_s(now)
    return elapsed is not None and elapsed > target_s


def _summary(values: Sequence[float], target_s: float | None, missed: int | None) -> Summary:
    """Figures of ascending ``values``; ``missed`` assignments count against the target."""
    within: int | None = None
    share: float | None = None
    if target_s is not None:
        within = sum(1 for v in values if v <= target_s)
        total = len(values) + (missed or 0)
        share = round(within / total, 4) if total else None
    return Summary(
        count=len(values),
        p50_s=percentile(values, 50),
        p90_s=percentile(values, 90),
        p99_s=percentile(values, 99),
        max_s=values[-1] if values else None,
        within_target=within,
        share_within_target=share,
    )


def _samples(
    assignments: Iterable[_Assignment], stage: str
) -> tuple[list[Offender], list[Offender]]:
    """(end-to-end, gateway) latencies of a stage as offender rows."""
    e2e: list[Offender] = []
    gateway: list[Offender] = []
    for a in assignments:
        reached = a.reached.get(stage)
        if reached is None:
            continue
        since_created, offset = reached
        t = a.task
        if since_created is not None:
            e2e.append(Offender(t.task_id, a.unit, since_created, t.received_at, t.skewed))
        if offset is not None:
            gateway.append(Offender(t.task_id, a.unit, offset, t.received_at, t.skewed))
    return e2e, gateway


def _measure(samples: list[Offender], target_s: float | None, missed: int | None) -> Measure:
    values = sorted(s.latency_s for s in samples)
    worst = sorted(samples, key=lambda s: (-s.latency_s, s.received_at, s.task_id, s.unit))
    return Measure(_summary(values, target_s, missed), tuple(worst[:WORST_COUNT]), tuple(values))


def _sources(assignments: Iterable[_Assignment], stage: str) -> dict[str, int]:
    counts = Counter(a.sources[stage] for a in assignments if stage in a.sources)
    return {source: counts[source] for source in (*SOURCES, OTHER_SOURCE)}


def _stage_summary(
    assignments: Sequence[_Assignment], stage: str, target_s: float | None, now: datetime
) -> StageSummary:
    missed = None
    if target_s is not None:
        missed = sum(1 for a in assignments if _missed(a, stage, target_s, now))
    e2e, gateway = _samples(assignments, stage)
    return StageSummary(
        stage=stage,
        target_s=target_s,
        reached=sum(1 for a in assignments if stage in a.reached),
        missed=missed,
        end_to_end=_summary(sorted(s.latency_s for s in e2e), target_s, missed),
        gateway=_summary(sorted(s.latency_s for s in gateway), target_s, missed),
    )


def _stage_report(
    assignments: Sequence[_Assignment], stage: str, target_s: float | None, now: datetime
) -> StageReport:
    missed = None
    if target_s is not None:
        missed = sum(1 for a in assignments if _missed(a, stage, target_s, now))
    e2e, gateway = _samples(assignments, stage)
    return StageReport(
        stage=stage,
        target_s=target_s,
        reached=sum(1 for a in assignments if stage in a.reached),
        missed=missed,
        failed_before=sum(
            1 for a in assignments if stage not in a.reached and a.failed() and a.applies(stage)
        ),
        escalated=sum(1 for a in assignments if stage in a.escalated),
        end_to_end=_measure(e2e, target_s, missed),
        gateway=_measure(gateway, target_s, missed),
        sources=_sources(assignments, stage),
    )


# --- the headline --------------------------------------------------------------------------------


def clock_label(stage: str, target_s: float) -> str:
    """``acknowledged within 1 min``, ``on scene within 8 min``, ``closed within 24 h``."""
    if target_s % 3600 == 0:
        within = f"{target_s / 3600:g} h"
    elif target_s % 60 == 0:
        within = f"{target_s / 60:g} min"
    else:
        within = f"{target_s:g} s"
    return f"{_CLOCK_WORDS.get(stage, stage)} within {within}"


def _clock_outcome(a: _Assignment, stage: str, target_s: float, now: datetime) -> str:
    """Where one assignment falls on one clock (the rules are in docs/sla.md)."""
    if not a.applies(stage):
        return "not_applicable"
    if stage in a.reached:
        latency = a.latency_s(stage)
        if latency is None:
            return "unmeasured"
        return "within" if latency <= target_s else "late"
    elapsed, ended = a.task.elapsed_s(now), a.ended_s()
    if ended is not None and (elapsed is None or ended <= elapsed):
        return "missed" if ended > target_s else "ended"  # the clock ran out while it was open
    if elapsed is None:
        return "unmeasured"
    return "missed" if elapsed > target_s else "pending"


def _clock_report(
    assignments: Sequence[_Assignment], stage: str, sla: SlaConfig, now: datetime
) -> ClockReport:
    target_s = sla.target_s(stage)
    outcomes = Counter(_clock_outcome(a, stage, target_s, now) for a in assignments)
    return ClockReport(
        stage=stage,
        label=clock_label(stage, target_s),
        target_s=target_s,
        goal_percent=sla.goal(stage),
        within=outcomes["within"],
        late=outcomes["late"],
        missed=outcomes["missed"],
        pending=outcomes["pending"],
        ended=outcomes["ended"],
        not_applicable=outcomes["not_applicable"],
        unmeasured=outcomes["unmeasured"],
        sources=_sources(assignments, stage),
    )


# --- alarms, units, days, notes ------------------------------------------------------------------


def _alarms_report(alarms: Sequence[Alarm]) -> AlarmsReport:
    times = sorted(a.time_to_clear_s for a in alarms if a.time_to_clear_s is not None)
    listed = sorted(alarms, key=lambda a: a.raised_at, reverse=True)
    listed.sort(key=lambda a: not a.still_raised)  # stable: the still raised first
    return AlarmsReport(
        count=len(alarms),
        still_raised=sum(1 for a in alarms if a.still_raised),
        time_to_clear_p50_s=percentile(times, 50),
        time_to_clear_max_s=times[-1] if times else None,
        alarms=tuple(listed[:ALARM_LIST_MAX]),
    )


def _unit_reports(
    assignments: Sequence[_Assignment], targets: dict[str, float], now: datetime
) -> tuple[UnitReport, ...]:
    by_unit: dict[str, list[_Assignment]] = {}
    for a in assignments:
        by_unit.setdefault(a.unit, []).append(a)
    return tuple(
        UnitReport(
            unit=unit,
            assignments=len(group),
            stages=tuple(_stage_summary(group, s, targets.get(s), now) for s in STAGES),
        )
        for unit, group in sorted(by_unit.items())
    )


def _day_reports(
    tasks: Sequence[_Task],
    assignments: Sequence[_Assignment],
    targets: dict[str, float],
    now: datetime,
) -> tuple[DayReport, ...]:
    by_day: dict[str, list[_Assignment]] = {}
    tasks_by_day = Counter(_day(t) for t in tasks)
    for a in assignments:
        by_day.setdefault(_day(a.task), []).append(a)
    return tuple(
        DayReport(
            date=day,
            tasks=count,
            assignments=len(by_day.get(day, [])),
            stages=tuple(
                _stage_summary(by_day.get(day, []), s, targets[s], now) for s in DAY_STAGES
            ),
        )
        for day, count in sorted(tasks_by_day.items())
    )


def _notes(now: datetime, skewed: int) -> list[str]:
    notes = [
        "headline: per assignment (task x unit), end to end from created_at; share = within /"
        " (within + late + missed); pending (target not yet passed) and ended (a failure,"
        " decline or cancel before the target passed) are not counted; see docs/sla.md",
        f"percentiles: nearest rank; latencies in seconds; within target means <= target;"
        f" share within target = within / (reached + missed); as of {rfc3339(now)}",
        "end to end: from the dispatcher's created_at (two clocks);"
        " gateway: from the gateway's received (one clock)",
        "missed: deadline (created_at + target) passed without the stage and without a"
        " terminal failure; on_scene applies only to tasks with an incident",
        "sources: device = the unit's radio reported the stage; centre = a dispatcher recorded"
        " it (report_stage); gateway = the gateway observed it (a send, the geofence)",
    ]
    if skewed:
        notes.append(
            f"{skewed} task(s) show clock skew (received before created, or more than"
            f" {SKEW_TOLERANCE_S:g} s after): their end-to-end figures are unreliable"
        )
    return notes


def build_report(
    conn: sqlite3.Connection, sla: SlaConfig, *, since: datetime | None, now: datetime
) -> SlaReport:
    """The SLA report over tasks received at or after ``since`` (all when None), as of ``now``."""
    tasks, assignments = _load(conn, since)
    targets = _targets(sla)
    skewed = [t for t in tasks if t.skewed and t.skew_s is not None]
    skewed.sort(key=lambda t: (-abs(t.skew_s or 0.0), t.task_id))
    return SlaReport(
        generated_at=now,
        since=since,
        targets_s=targets,
        tasks=len(tasks),
        assignments=len(assignments),
        stages=tuple(_stage_report(assignments, s, targets.get(s), now) for s in STAGES),
        failures={name: sum(1 for a in assignments if name in a.reached) for name in FAILURES},
        units=_unit_reports(assignments, targets, now),
        days=_day_reports(tasks, assignments, targets, now),
        skew_count=len(skewed),
        skewed=tuple(
            SkewedTask(t.task_id, t.created_at, t.received_at, t.skew_s or 0.0)
            for t in skewed[:SKEW_LIST_MAX]
        ),
        notes=tuple(_notes(now, len(skewed))),
        headline=tuple(_clock_report(assignments, s, sla, now) for s in CLOCKS),
        alarms=_alarms_report(_load_alarms(conn, since)),
    )


def _day(task: _Task) -> str:
    if task.received is not None:
        return task.received.date().isoformat()
    return task.received_at[:10]


# --- since ---------------------------------------------------------------------------------------


def parse_since(text: str, now: datetime) -> datetime:
    """``24h``, ``7d``, ``30m``, ``90s`` before ``now``, or an RFC 3339 time with an offset
    between ``SINCE_EARLIEST`` and ``SINCE_LATEST``. Any other text raises :class:`SinceError`
    (a ValueError), and nothing else does."""
    value = text.strip()
    match = _SINCE_RE.match(value)
    if match:
        seconds = int(match.group(1)) * _SINCE_UNITS_S[match.group(2).lower()]
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise SinceError(f"--since {text!r} reaches back too far") from None
    return _since_time(text, value)


def _since_time(text: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise SinceError(
            f"--since {text!r}: expected a duration like 90s, 30m, 24h, 7d"
            " or an RFC 3339 time like 2024-05-01T08:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise SinceError(
            f"--since {text!r}: an RFC 3339 time needs an offset (Z or +08:00),"
            " like 2024-05-01T08:00:00Z"
        )
    try:
        utc: datetime | None = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 has no UTC time
        utc = None
    if utc is None or not SINCE_EARLIEST <= utc <= SINCE_LATEST:
        raise SinceError(
            f"--since {text!r}: an RFC 3339 time must lie between"
            f" {rfc3339(SINCE_EARLIEST)} and {rfc3339(SINCE_LATEST)}"
        )
    return utc


# --- JSON ----------------------------------------------------------------------------------------


def _summary_json(s: Summary) -> dict[str, object]:
    return {
        "count": s.count,
        "p50_s": s.p50_s,
        "p90_s": s.p90_s,
        "p99_s": s.p99_s,
        "max_s": s.max_s,
        "within_target": s.within_target,
        "share_within_target": s.share_within_target,
    }


def _measure_json(m: Measure) -> dict[str, object]:
    out = _summary_json(m.summary)
    out["worst"] = [
        {
            "task_id": o.task_id,
            "unit": o.unit,
            "latency_s": o.latency_s,
            "received_at": o.received_at,
            "skewed": o.skewed,
        }
        for o in m.worst
    ]
    return out


def _stage_summary_json(s: StageSummary) -> dict[str, object]:
    return {
        "target_s": s.target_s,
        "reached": s.reached,
        "missed": s.missed,
        "end_to_end": _summary_json(s.end_to_end),
        "gateway": _summary_json(s.gateway),
    }


def _clock_json(c: ClockReport) -> dict[str, object]:
    return {
        "stage": c.stage,
        "label": c.label,
        "target_s": c.target_s,
        "goal_percent": c.goal_percent,
        "share_within_target": c.share_within_target,
        "goal_met": c.goal_met,
        "counted": c.counted,
        "within": c.within,
        "late": c.late,
        "missed": c.missed,
        "pending": c.pending,
        "ended": c.ended,
        "not_applicable": c.not_applicable,
        "unmeasured": c.unmeasured,
        "reached": c.reached,
        "sources": dict(c.sources),
    }


def _alarms_json(r: AlarmsReport) -> dict[str, object]:
    return {
        "count": r.count,
        "still_raised": r.still_raised,
        "cleared": r.cleared,
        "time_to_clear_p50_s": r.time_to_clear_p50_s,
        "time_to_clear_max_s": r.time_to_clear_max_s,
        "list_max": ALARM_LIST_MAX,
        "list": [
            {
                "unit": a.unit,
                "kind": a.kind,
                "link": a.link,
                "device": a.device,
                "state": "raised" if a.still_raised else "cleared",
                "raised_at": a.raised_at,
                "cleared_at": a.cleared_at,
                "cleared_by": a.cleared_by,
                "time_to_clear_s": a.time_to_clear_s,
            }
            for a in r.alarms
        ],
    }


def _stage_json(s: StageReport) -> dict[str, object]:
    return {
        "target_s": s.target_s,
        "reached": s.reached,
        "missed": s.missed,
        "failed_before": s.failed_before,
        "escalated": s.escalated,
        "end_to_end": _measure_json(s.end_to_end),
        "gateway": _measure_json(s.gateway),
        "sources": dict(s.sources),
    }


def _skew_json(report: SlaReport) -> dict[str, object]:
    return {
        "tolerance_s": SKEW_TOLERANCE_S,
        "count": report.skew_count,
        "tasks": [
            {
                "task_id": t.task_id,
                "created_at": t.created_at,
                "received_at": t.received_at,
                "skew_s": t.skew_s,
            }
            for t in report.skewed
        ],
    }


def report_to_json(report: SlaReport) -> dict[str, object]:
    """The report as plain JSON values, the headline first; the layout is in the module
    docstring."""
    return {
        "headline": {"clocks": [_clock_json(c) for c in report.headline]},
        "generated_at": rfc3339(report.generated_at),
        "since": rfc3339(report.since) if report.since is not None else None,
        "percentile_method": PERCENTILE_METHOD,
        "skew_tolerance_s": SKEW_TOLERANCE_S,
        "tasks": report.tasks,
        "assignments": report.assignments,
        "targets_s": dict(report.targets_s),
        "stages": {s.stage: _stage_json(s) for s in report.stages},
        "failures": dict(report.failures),
        "units": [
            {
                "unit": u.unit,
                "assignments": u.assignments,
                "stages": {s.stage: _stage_summary_json(s) for s in u.stages},
            }
            for u in report.units
        ],
        "days": [
            {
                "date": d.date,
                "tasks": d.tasks,
                "assignments": d.assignments,
                "stages": {s.stage: _stage_summary_json(s) for s in d.stages},
            }
            for d in report.days
        ],
        "skew": _skew_json(report),
        "alarms": _alarms_json(report.alarms),
        "notes": list(report.notes),
    }


# --- text ----------------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """``12.3s``, ``8m03s``, ``5h07m``, ``3d04h``; ``-`` for nothing."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 100:
        return f"{sign}{s:.1f}s"
    whole = round(s)
    if whole < 3600:
        return f"{sign}{whole // 60}m{whole % 60:02d}s"
    if whole < 2 * 86400:
        return f"{sign}{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{sign}{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _share(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _printable(text: str) -> str:
    """Journal text made safe for a terminal: control and format characters escaped."""
    return "".join(
        ch if unicodedata.category(ch) not in {"Cc", "Cf", "Zl", "Zp"} else f"\\x{ord(ch):02x}"
        for ch in text
    )


def _width(text: str) -> int:
    """Terminal columns: wide and full-width characters (CJK) take two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in {"W", "F"} else 1
    return width


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """Columns padded by display width; columns from ``numeric_from`` on are right-aligned."""
    cells = [list(headers), *[[_printable(c) for c in row] for row in rows]]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - _width(cell))
            parts.append(pad + cell if i >= numeric_from else cell + pad)
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Section:
    """One table of the report, shared by the text and HTML renderings."""

    title: str
    headers: tuple[str, ...]
    rows: list[list[str]]
    numeric_from: int  # columns from here on are figures, right-aligned
    note: str = ""  # a line under the table
    verdict_column: int | None = None  # "yes" / "no" cells there are coloured in HTML


_HEADLINE_HEADERS: Final = (
    "clock", "share", "within/counted", "goal", "met", "late", "missed", "pending", "ended",
    "device", "centre", "gateway",
)  # fmt: skip
_NOTE_WIDTH: Final = 100
_HEADLINE_NOTE: Final = (
    "Per assignment (task x unit), end to end from the dispatcher's created_at."
    " counted = within + late + missed; pending (target not yet passed) and ended (a failure,"
    " decline or cancel before the target passed) are not counted; on scene counts tasks with"
    " an incident. device / centre / gateway: who reported the stages reached."
)
_SOURCE_HEADERS: Final = ("stage", "reached", *SOURCES, OTHER_SOURCE)
_ALARM_HEADERS: Final = (
    "unit", "kind", "raised_at", "cleared_at", "cleared by", "time to clear",
)  # fmt: skip
_STAGE_HEADERS: Final = (
    "stage", "target", "reached", "missed", "failed", "p50", "p90", "p99", "max", "within",
)  # fmt: skip
_UNIT_HEADERS: Final = (
    "unit", "stage", "reached", "missed",
    "e2e p50", "e2e p90", "e2e within", "gw p50", "gw p90", "gw within",
)  # fmt: skip
_DAY_HEADERS: Final = (
    "day (UTC)", "tasks", "assignments",
    *(h for stage in DAY_STAGES for h in (stage, "missed", "e2e within", "gw within")),
)  # fmt: skip
_OFFENDER_HEADERS: Final = ("stage", "measure", "task", "unit", "received_at", "", "latency")


def _stage_rows(report: SlaReport, measure: str) -> list[list[str]]:
    rows = []
    for s in report.stages:
        m: Measure = getattr(s, measure)
        fig = m.summary
        rows.append(
            [s.stage, format_duration(s.target_s), str(s.reached), _count(s.missed),
             str(s.failed_before), format_duration(fig.p50_s), format_duration(fig.p90_s),
             format_duration(fig.p99_s), format_duration(fig.max_s),
             _share(fig.share_within_target)]
        )  # fmt: skip
    return rows


def _offender_rows(report: SlaReport) -> list[list[str]]:
    rows = []
    for s in report.stages:
        if s.target_s is None:
            continue  # transport stages: in the JSON, too long for a screen
        for label, m in (("end to end", s.end_to_end), ("gateway", s.gateway)):
            rows += [
                [s.stage, label, o.task_id, o.unit, o.received_at, "skewed" if o.skewed else "",
                 format_duration(o.latency_s)]
                for o in m.worst
            ]  # fmt: skip
    return rows


def _unit_rows(report: SlaReport) -> list[list[str]]:
    return [
        [u.unit, s.stage, str(s.reached), _count(s.missed),
         format_duration(s.end_to_end.p50_s), format_duration(s.end_to_end.p90_s),
         _share(s.end_to_end.share_within_target),
         format_duration(s.gateway.p50_s), format_duration(s.gateway.p90_s),
         _share(s.gateway.share_within_target)]
        for u in report.units
        for s in u.stages
        if s.reached or s.missed
    ]  # fmt: skip


def _day_rows(report: SlaReport) -> list[list[str]]:
    rows = []
    for d in report.days:
        row = [d.date, str(d.tasks), str(d.assignments)]
        for s in d.stages:
            row += [str(s.reached), _count(s.missed), _share(s.end_to_end.share_within_target),
                    _share(s.gateway.share_within_target)]  # fmt: skip
        rows.append(row)
    return rows


def _verdict(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "no")


def _headline_rows(report: SlaReport) -> list[list[str]]:
    return [
        [c.label, _share(c.share_within_target), f"{c.within}/{c.counted}",
         f"{c.goal_percent:g}%", _verdict(c.goal_met), str(c.late), str(c.missed),
         str(c.pending), str(c.ended), *(str(c.sources[k]) for k in SOURCES)]
        for c in report.headline
    ]  # fmt: skip


def _source_rows(report: SlaReport) -> list[list[str]]:
    return [
        [s.stage, str(s.reached), *(str(s.sources[k]) for k in (*SOURCES, OTHER_SOURCE))]
        for s in report.stages
    ]


def _alarm_rows(report: SlaReport) -> list[list[str]]:
    return [
        [a.unit, a.kind, a.raised_at, a.cleared_at or "-", a.cleared_by or "-",
         "still raised" if a.still_raised else format_duration(a.time_to_clear_s)]
        for a in report.alarms.alarms
    ]  # fmt: skip


def _alarms_title(r: AlarmsReport) -> str:
    title = (
        f"Alarms: {r.count} in the period, {r.still_raised} still raised;"
        f" time to clear p50 {format_duration(r.time_to_clear_p50_s)},"
        f" max {format_duration(r.time_to_clear_max_s)}"
    )
    if r.count > len(r.alarms):
        title += f" (the {len(r.alarms)} listed: still raised first, then newest)"
    return title


def _headline_section(report: SlaReport) -> _Section:
    return _Section(
        "Headline: the five clocks, share within target beside the centre's goal",
        _HEADLINE_HEADERS, _headline_rows(report), 1,
        note=_HEADLINE_NOTE, verdict_column=_HEADLINE_HEADERS.index("met"),
    )  # fmt: skip


def _stage_sections(report: SlaReport) -> list[_Section]:
    """The per-stage tables, drawn above the charts in HTML."""
    return [
        _Section(
            "End to end (from the dispatcher's created_at)",
            _STAGE_HEADERS, _stage_rows(report, "end_to_end"), 1,
        ),
        _Section(
            "Gateway-measured (from received)", _STAGE_HEADERS, _stage_rows(report, "gateway"), 1
        ),
        _Section(
            "Who reported each stage (device: the unit's radio; centre: a dispatcher,"
            " report_stage; gateway: observed by the gateway)",
            _SOURCE_HEADERS, _source_rows(report), 1,
        ),
    ]  # fmt: skip


def _other_sections(report: SlaReport) -> list[_Section]:
    skew_rows = [
        [t.task_id, t.created_at, t.received_at, f"{t.skew_s:+.3f}s"] for t in report.skewed
    ]
    return [
        _Section(
            "Terminal failures", ("stage", "assignments"),
            [[k, str(v)] for k, v in report.failures.items()], 1,
        ),
        _Section(
            f"Worst offenders (top {WORST_COUNT} per stage with a target and measure;"
            " every stage in the JSON)",
            _OFFENDER_HEADERS, _offender_rows(report), 6,
        ),
        _Section(
            "Per unit (e2e = end to end, gw = gateway-measured)",
            _UNIT_HEADERS, _unit_rows(report), 2,
        ),
        _Section("Per day", _DAY_HEADERS, _day_rows(report), 1),
        _Section(_alarms_title(report.alarms), _ALARM_HEADERS, _alarm_rows(report), 5),
        _Section(
            f"Clock skew: {report.skew_count} task(s) flagged"
            f" (received before created, or more than {SKEW_TOLERANCE_S:g} s after)",
            ("task", "created_at", "received_at", "skew"), skew_rows, 3,
        ),
    ]  # fmt: skip


def _heading(report: SlaReport) -> tuple[str, str]:
    since = rfc3339(report.since) if report.since is not None else "the beginning"
    return (
        f"fieldlink SLA report, {rfc3339(report.generated_at)}, tasks received since {since}",
        f"{report.tasks} tasks, {report.assignments} assignments (task x unit)",
    )


def render_table(report: SlaReport) -> str:
    """The report as plain text for a terminal (journal text with control characters escaped)."""
    out = list(_heading(report))
    sections = [_headline_section(report), *_stage_sections(report), *_other_sections(report)]
    for section in sections:
        out += ["", section.title]
        if section.rows:
            out.append(_text_table(section.headers, section.rows, section.numeric_from))
        if section.note:
            out.append(textwrap.fill(section.note, width=_NOTE_WIDTH))
    out += ["", "NOTES", *(f"- {note}" for note in report.notes)]
    return "\n".join(out) + "\n"


# --- HTML ----------------------------------------------------------------------------------------

_CSS: Final = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", sans-serif;
       margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; }
th { background: #f2f2f2; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: .9em; font-weight: 600; }
.warn { color: #a33; font-weight: 600; } .ok { color: #1a7f37; font-weight: 600; }
.muted { color: #666; font-size: .9em; }
svg text { font-family: inherit; font-size: 11px; fill: #333; }
"""

_SVG_W: Final = 520
_SVG_H: Final = 230
_M_LEFT, _M_RIGHT, _M_TOP, _M_BOTTOM = 44, 14, 14, 40
_CURVE_POINTS: Final = 400
_E2E_COLOR: Final = "#1f6fb4"
_GW_COLOR: Final = "#d9822b"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_cell(section: _Section, i: int, cell: str) -> str:
    classes = ["n"] if i >= section.numeric_from else []
    if i == section.verdict_column and cell in {"yes", "no"}:
        classes.append("ok" if cell == "yes" else "warn")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{_esc(cell)}</td>"


def _html_section(section: _Section) -> str:
    note = f'<p class="muted">{_esc(section.note)}</p>' if section.note else ""
    if not section.rows:
        return '<p class="muted">none</p>' + note
    head = "".join(f"<th>{_esc(h)}</th>" for h in section.headers)
    body = [
        "<tr>" + "".join(_html_cell(section, i, c) for i, c in enumerate(row)) + "</tr>"
        for row in section.rows
    ]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"


def _curve(values: Sequence[float]) -> list[tuple[float, float]]:
    """Points of the empirical CDF as a step line, at most ``_CURVE_POINTS`` ranks."""
    n = len(values)
    k = min(n, _CURVE_POINTS)
    points: list[tuple[float, float]] = []
    previous_y = 0.0
    for j in range(1, k + 1):
        rank = math.ceil(j * n / k)
        x, y = values[rank - 1], rank / n
        points += [(x, previous_y), (x, y)]
        previous_y = y
    return points


_TICK_STEPS_S: Final = (
    0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
)  # fmt: skip


def _ticks(x_min: float, x_max: float, most: int = 6) -> list[float]:
    """Round tick positions (seconds, minutes, hours, days) across ``[x_min, x_max]``."""
    span = x_max - x_min
    step = next((s for s in _TICK_STEPS_S if span / s <= most), span / most)
    first = math.ceil(x_min / step)
    return [i * step for i in range(first, math.floor(x_max / step) + 1)]


def _cdf_svg(stage: StageReport) -> str:
    e2e, gw = stage.end_to_end.values, stage.gateway.values
    everything = [*e2e, *gw]
    if stage.target_s is not None:
        everything.append(stage.target_s)
    x_min = min(0.0, *everything) if everything else 0.0
    x_max = max(everything) if everything else 1.0
    x_max = x_min + max((x_max - x_min) * 1.05, 1.0)
    plot_w = _SVG_W - _M_LEFT - _M_RIGHT
    plot_h = _SVG_H - _M_TOP - _M_BOTTOM

    def px(x: float) -> float:
        return _M_LEFT + (x - x_min) / (x_max - x_min) * plot_w

    def py(y: float) -> float:
        return _M_TOP + (1 - y) * plot_h

    parts = [
        f'<svg width="{_SVG_W}" height="{_SVG_H}" viewBox="0 0 {_SVG_W} {_SVG_H}" role="img"'
        f' aria-label="{_esc(stage.stage)} latency CDF">',
        f'<rect x="{_M_LEFT}" y="{_M_TOP}" width="{plot_w}" height="{plot_h}"'
        ' fill="#fcfcfc" stroke="#999"/>',
    ]
    for y, label in ((0.5, "50%"), (0.9, "90%"), (1.0, "100%")):
        parts.append(
            f'<line x1="{_M_LEFT}" y1="{py(y):.1f}" x2="{_M_LEFT + plot_w}" y2="{py(y):.1f}"'
            ' stroke="#ddd"/>'
            f'<text x="{_M_LEFT - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{label}</text>'
        )
    for x in _ticks(x_min, x_max):
        parts.append(
            f'<line x1="{px(x):.1f}" y1="{_M_TOP + plot_h}" x2="{px(x):.1f}"'
            f' y2="{_M_TOP + plot_h + 4}" stroke="#999"/>'
            f'<text x="{px(x):.1f}" y="{_M_TOP + plot_h + 16}" text-anchor="middle">'
            f"{_esc(format_duration(x))}</text>"
        )
    for values, color, dash in ((e2e, _E2E_COLOR, ""), (gw, _GW_COLOR, ' stroke-dasharray="6 3"')):
        if not values:
            continue
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in _curve(values))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
        )
    if stage.target_s is not None:
        tx = px(stage.target_s)
        # The label goes left of the line, or right of it when the line is near the left edge.
        label_x, anchor = (tx - 3, "end") if tx - _M_LEFT > 90 else (tx + 3, "start")
        parts.append(
            f'<line x1="{tx:.1f}" y1="{_M_TOP}" x2="{tx:.1f}" y2="{_M_TOP + plot_h}"'
            ' stroke="#c0392b" stroke-width="1.5"/>'
            f'<text x="{label_x:.1f}" y="{_M_TOP + 12}" text-anchor="{anchor}" fill="#c0392b">'
            f"target {_esc(format_duration(stage.target_s))}</text>"
        )
    legend_y = _SVG_H - 8
    parts.append(
        f'<line x1="{_M_LEFT}" y1="{legend_y - 4}" x2="{_M_LEFT + 24}" y2="{legend_y - 4}"'
        f' stroke="{_E2E_COLOR}" stroke-width="2"/>'
        f'<text x="{_M_LEFT + 28}" y="{legend_y}">end to end (n={len(e2e)})</text>'
        f'<line x1="{_M_LEFT + 190}" y1="{legend_y - 4}" x2="{_M_LEFT + 214}"'
        f' y2="{legend_y - 4}" stroke="{_GW_COLOR}" stroke-width="2" stroke-dasharray="6 3"/>'
        f'<text x="{_M_LEFT + 218}" y="{legend_y}">gateway (n={len(gw)})</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: SlaReport) -> str:
    """One self-contained HTML page (no external resources) with the tables and CDF charts."""
    title, counts = _heading(report)
    body = [f"<h1>{_esc(title)}</h1>", f'<p class="muted">{_esc(counts)}</p>']
    headline = _headline_section(report)
    body += [f'<h2 id="headline">{_esc(headline.title)}</h2>', _html_section(headline)]
    if report.skew_count:
        body.append(
            f'<p class="warn">{report.skew_count} task(s) show clock skew: their end-to-end'
            " figures are unreliable (see Clock skew).</p>"
        )
    for section in _stage_sections(report):
        body += [f"<h2>{_esc(section.title)}</h2>", _html_section(section)]
    body += [
        "<h2>Distributions</h2>",
        '<p class="muted">Cumulative share of the assignments that reached the stage, by latency;'
        " solid: end to end, dashed: gateway-measured; red line: the target.</p>",
        '<div class="charts">',
        *(
            f"<figure><figcaption>{_esc(s.stage)}</figcaption>{_cdf_svg(s)}</figure>"
            for s in report.stages
        ),
        "</div>",
    ]
    for section in _other_sections(report):
        body += [f"<h2>{_esc(section.title)}</h2>", _html_section(section)]
    body += ["<h2>Notes</h2>", "<ul>", *(f"<li>{_esc(n)}</li>" for n in report.notes), "</ul>"]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


# --- command -------------------------------------------------------------------------------------


class JournalUnreadable(FieldlinkError):
    """The journal is missing or cannot be read."""


def _read_report(path: Path, sla: SlaConfig, since: datetime | None, now: datetime) -> SlaReport:
    if not path.is_file():
        raise JournalUnreadable(f"no journal at {path}")
    # Read-only: the report never writes. as_uri() percent-encodes, so "?" or "#" in data_dir
    # stay part of the path. A stopped gateway leaves no -wal/-shm: a plain read-only open would
    # create them, owned by whoever runs the report (root, say), and the gateway's own user might
    # then fail to open its journal. So then the file is read as immutable, which creates
    # nothing; a gateway starting meanwhile writes to its WAL, not to the file being read.
    sidecars = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    query = "mode=ro" if any(p.exists() for p in sidecars) else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True)
    except sqlite3.Error as exc:
        raise JournalUnreadable(f"cannot open the journal {path}: {exc}") from exc
    try:
        return build_report(conn, sla, since=since, now=now)
    except sqlite3.Error as exc:
        raise JournalUnreadable(f"cannot read the journal {path}: {exc}") from exc
    finally:
        conn.close()


def run_sla(
    config: Config,
    *,
    since: str | None,
    fmt: str,
    output: Path | None,
    now: datetime | None = None,
) -> int:
    """``fieldlink sla``: 0 when written, 1 when the journal cannot be read or the output
    written, 2 on a bad ``since`` or format. Messages go to stderr."""
    now = now or utc_now()
    if fmt not in FORMATS:
        print(f"fieldlink sla: unknown format {fmt!r}; use table, json or html", file=sys.stderr)
        return 2
    try:
        since_at = parse_since(since, now) if since is not None else None
    except ValueError as exc:
        print(f"fieldlink sla: {exc}", file=sys.stderr)
        return 2
    try:
        report = _read_report(config.gateway.data_dir / "journal.sqlite", config.sla, since_at, now)
        if fmt == "json":
            text = json.dumps(report_to_json(report), ensure_ascii=False, indent=2) + "\n"
        else:
            text = render_html(report) if fmt == "html" else render_table(report)
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, encoding="utf-8")
    except (JournalUnreadable, OSError) as exc:
        print(f"fieldlink sla: {exc}", file=sys.stderr)
        return 1
    return 0
