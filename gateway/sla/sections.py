"""The SLA report's tables as rows of text, in the order both renderings show them: the
terminal table (:mod:`gateway.sla.table`) and the HTML page (:mod:`gateway.sla.as_html`).

The worst offenders are shown for the stages with a target only; the JSON has them for every
stage. Cells hold journal text as it is: each rendering escapes it its own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.model import rfc3339
from gateway.sla.report import (
    DAY_STAGES,
    OTHER_SOURCE,
    SKEW_TOLERANCE_S,
    SOURCES,
    WORST_COUNT,
    AlarmsReport,
    Measure,
    SlaReport,
)

__all__ = [
    "Section",
    "format_duration",
    "heading",
    "headline_section",
    "other_sections",
    "stage_sections",
]


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


@dataclass(frozen=True, slots=True)
class Section:
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


def headline_section(report: SlaReport) -> Section:
    """The five clocks, first in every rendering."""
    return Section(
        "Headline: the five clocks, share within target beside the centre's goal",
        _HEADLINE_HEADERS, _headline_rows(report), 1,
        note=_HEADLINE_NOTE, verdict_column=_HEADLINE_HEADERS.index("met"),
    )  # fmt: skip


def stage_sections(report: SlaReport) -> list[Section]:
    """The per-stage tables, drawn above the charts in HTML."""
    return [
        Section(
            "End to end (from the dispatcher's created_at)",
            _STAGE_HEADERS, _stage_rows(report, "end_to_end"), 1,
        ),
        Section(
            "Gateway-measured (from received)", _STAGE_HEADERS, _stage_rows(report, "gateway"), 1
        ),
        Section(
            "Who reported each stage (device: the unit's radio; centre: a dispatcher,"
            " report_stage; gateway: observed by the gateway)",
            _SOURCE_HEADERS, _source_rows(report), 1,
        ),
    ]  # fmt: skip


def other_sections(report: SlaReport) -> list[Section]:
    """Failures, worst offenders, per unit, per day, alarms and clock skew."""
    skew_rows = [
        [t.task_id, t.created_at, t.received_at, f"{t.skew_s:+.3f}s"] for t in report.skewed
    ]
    return [
        Section(
            "Terminal failures", ("stage", "assignments"),
            [[k, str(v)] for k, v in report.failures.items()], 1,
        ),
        Section(
            f"Worst offenders (top {WORST_COUNT} per stage with a target and measure;"
            " every stage in the JSON)",
            _OFFENDER_HEADERS, _offender_rows(report), 6,
        ),
        Section(
            "Per unit (e2e = end to end, gw = gateway-measured)",
            _UNIT_HEADERS, _unit_rows(report), 2,
        ),
        Section("Per day", _DAY_HEADERS, _day_rows(report), 1),
        Section(_alarms_title(report.alarms), _ALARM_HEADERS, _alarm_rows(report), 5),
        Section(
            f"Clock skew: {report.skew_count} task(s) flagged"
            f" (received before created, or more than {SKEW_TOLERANCE_S:g} s after)",
            ("task", "created_at", "received_at", "skew"), skew_rows, 3,
        ),
    ]  # fmt: skip


def heading(report: SlaReport) -> tuple[str, str]:
    """The title and the line of counts under it."""
    since = rfc3339(report.since) if report.since is not None else "the beginning"
    return (
        f"fieldlink SLA report, {rfc3339(report.generated_at)}, tasks received since {since}",
        f"{report.tasks} tasks, {report.assignments} assignments (task x unit)",
    )
