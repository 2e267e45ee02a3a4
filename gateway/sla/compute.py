"""Computing the SLA report from the journal's rows: the headline, per stage, per unit, per day,
clock skew and alarms (:func:`build_report`). Pure: no asyncio, nothing written.

Every count of ``missed`` follows one rule, the headline's (:func:`_clock_outcome`, explained
in ``docs/sla.md``): an assignment missed a stage when it did not reach it and the target
passed while the assignment was open, at ``now`` for an open one, or before it ended for one
that ended in a terminal failure. A failure that came before the target passed is not a miss:
the headline counts it as ``ended``, the per-stage tables as ``failed_before``.

Percentiles are nearest rank (:func:`percentile`).
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from gateway.config import SlaConfig
from gateway.model import rfc3339
from gateway.sla.reading import Assignment, Task, load, load_alarms
from gateway.sla.report import (
    ALARM_LIST_MAX,
    CLOCKS,
    DAY_STAGES,
    FAILURES,
    OTHER_SOURCE,
    SKEW_LIST_MAX,
    SKEW_TOLERANCE_S,
    SOURCES,
    STAGES,
    WORST_COUNT,
    Alarm,
    AlarmsReport,
    ClockReport,
    DayReport,
    Measure,
    Offender,
    SkewedTask,
    SlaReport,
    StageReport,
    StageSummary,
    Summary,
    UnitReport,
)
from gateway.stages import Stage

__all__ = ["build_report", "clock_label", "percentile"]

_CLOCK_WORDS: Final[dict[str, str]] = {Stage.ON_SCENE: "on scene"}


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of ascending values (None when empty), ``0 < p <= 100``: the
    value at rank ``ceil(p * n / 100)`` (1-based), so it is always one of the values and at
    least p % of them are at or below it."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is outside (0, 100]")
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(p * n / 100))
    return sorted_values[min(rank, n) - 1]


# --- where one assignment falls on one clock ---------------------------------------------------


def _clock_outcome(a: Assignment, stage: Stage, target_s: float, now: datetime) -> str:
    """within, late, missed, pending, ended, not_applicable or unmeasured (docs/sla.md)."""
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


def _missed(assignments: Iterable[Assignment], stage: Stage, target_s: float, now: datetime) -> int:
    return sum(1 for a in assignments if _clock_outcome(a, stage, target_s, now) == "missed")


# --- per stage ---------------------------------------------------------------------------------


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
    assignments: Iterable[Assignment], stage: Stage
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


def _sources(assignments: Iterable[Assignment], stage: Stage) -> dict[str, int]:
    counts = Counter(a.sources[stage] for a in assignments if stage in a.sources)
    return {source: counts[source] for source in (*SOURCES, OTHER_SOURCE)}


def _stage_summary(
    assignments: Sequence[Assignment], stage: Stage, target_s: float | None, now: datetime
) -> StageSummary:
    missed = None if target_s is None else _missed(assignments, stage, target_s, now)
    e2e, gateway = _samples(assignments, stage)
    return StageSummary(
        stage=stage,
        target_s=target_s,
        reached=sum(1 for a in assignments if stage in a.reached),
        missed=missed,
        end_to_end=_summary(sorted(s.latency_s for s in e2e), target_s, missed),
        gateway=_summary(sorted(s.latency_s for s in gateway), target_s, missed),
    )


def _failed_before(a: Assignment, stage: Stage, target_s: float | None, now: datetime) -> bool:
    """Ended in a terminal failure without reaching the stage, and not counted as a miss."""
    if stage in a.reached or not a.failed() or not a.applies(stage):
        return False
    return target_s is None or _clock_outcome(a, stage, target_s, now) != "missed"


def _stage_report(
    assignments: Sequence[Assignment], stage: Stage, target_s: float | None, now: datetime
) -> StageReport:
    missed = None if target_s is None else _missed(assignments, stage, target_s, now)
    e2e, gateway = _samples(assignments, stage)
    return StageReport(
        stage=stage,
        target_s=target_s,
        reached=sum(1 for a in assignments if stage in a.reached),
        missed=missed,
        failed_before=sum(1 for a in assignments if _failed_before(a, stage, target_s, now)),
        escalated=sum(1 for a in assignments if stage in a.escalated),
        end_to_end=_measure(e2e, target_s, missed),
        gateway=_measure(gateway, target_s, missed),
        sources=_sources(assignments, stage),
    )


# --- the headline ------------------------------------------------------------------------------


def clock_label(stage: str, target_s: float) -> str:
    """``acknowledged within 1 min``, ``on scene within 8 min``, ``closed within 24 h``."""
    if target_s % 3600 == 0:
        within = f"{target_s / 3600:g} h"
    elif target_s % 60 == 0:
        within = f"{target_s / 60:g} min"
    else:
        within = f"{target_s:g} s"
    return f"{_CLOCK_WORDS.get(stage, stage)} within {within}"


def _clock_report(
    assignments: Sequence[Assignment], stage: Stage, sla: SlaConfig, now: datetime
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


# --- alarms, units, days, notes ----------------------------------------------------------------


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
    assignments: Sequence[Assignment], targets: dict[Stage, float], now: datetime
) -> tuple[UnitReport, ...]:
    by_unit: dict[str, list[Assignment]] = {}
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
    tasks: Sequence[Task],
    assignments: Sequence[Assignment],
    targets: dict[Stage, float],
    now: datetime,
) -> tuple[DayReport, ...]:
    by_day: dict[str, list[Assignment]] = {}
    tasks_by_day = Counter(t.day for t in tasks)
    for a in assignments:
        by_day.setdefault(a.task.day, []).append(a)
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
        "missed, as in the headline: the target (created_at + target) passed without the stage"
        " while the assignment was open; a failure after the target is a miss, one before it"
        " is in failed; on_scene applies only to tasks with an incident",
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
    tasks, assignments = load(conn, since)
    targets = {stage: sla.target_s(stage) for stage in CLOCKS}
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
        alarms=_alarms_report(load_alarms(conn, since)),
    )
