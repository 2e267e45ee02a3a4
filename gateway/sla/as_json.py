"""The SLA report as plain JSON values (:func:`report_to_json`): the answer to the MQTT ``sla``
request and ``fieldlink sla --format json``.

Times are RFC 3339 UTC, durations seconds, shares 0..1, goals percent, ``null`` where there is
nothing to measure; stage names are plain strings. ``docs/sla.md`` explains the figures. The
layout::

    {
      "headline": {"clocks": [CLOCK, ...]},        # the five clocks, in CLOCKS order
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

``missed`` follows the headline's rule everywhere (headline, stages, units, days); in the
per-stage entries ``failed_before`` counts the assignments a failure ended without the stage
before its target passed (every one, for stages without a target), so ``missed`` and
``failed_before`` never count the same assignment. ``skew.tasks`` lists at most
``SKEW_LIST_MAX`` tasks, largest ``|skew_s|`` first; ``skew.count`` counts them all.
``alarms.list`` holds at most ``ALARM_LIST_MAX`` alarms, the still raised first, then the
newest first; ``alarms.count`` counts them all. The raw latencies the HTML draws are not in
the JSON.
"""

from __future__ import annotations

from gateway.model import rfc3339
from gateway.sla.report import (
    ALARM_LIST_MAX,
    PERCENTILE_METHOD,
    SKEW_TOLERANCE_S,
    AlarmsReport,
    ClockReport,
    Measure,
    SlaReport,
    StageReport,
    StageSummary,
    Summary,
)

__all__ = ["report_to_json"]


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
        "stage": str(c.stage),
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
    """The report as plain JSON values, the headline first; the layout is in this module's
    docstring."""
    return {
        "headline": {"clocks": [_clock_json(c) for c in report.headline]},
        "generated_at": rfc3339(report.generated_at),
        "since": rfc3339(report.since) if report.since is not None else None,
        "percentile_method": PERCENTILE_METHOD,
        "skew_tolerance_s": SKEW_TOLERANCE_S,
        "tasks": report.tasks,
        "assignments": report.assignments,
        "targets_s": {str(stage): target for stage, target in report.targets_s.items()},
        "stages": {str(s.stage): _stage_json(s) for s in report.stages},
        "failures": {str(stage): count for stage, count in report.failures.items()},
        "units": [
            {
                "unit": u.unit,
                "assignments": u.assignments,
                "stages": {str(s.stage): _stage_summary_json(s) for s in u.stages},
            }
            for u in report.units
        ],
        "days": [
            {
                "date": d.date,
                "tasks": d.tasks,
                "assignments": d.assignments,
                "stages": {str(s.stage): _stage_summary_json(s) for s in d.stages},
            }
            for d in report.days
        ],
        "skew": _skew_json(report),
        "alarms": _alarms_json(report.alarms),
        "notes": list(report.notes),
    }
