"""The SLA report: how fast tasks went through their stages, read from the journal.

Pure reporting over the ``tasks``, ``stages`` and ``alarms`` tables of ``journal.sqlite``:
read-only SQL, no asyncio, nothing written. ``fieldlink sla`` (:func:`run_sla`) and the MQTT
``sla`` request (:func:`report_to_json`) show the same report; ``docs/sla.md`` explains it for
operators, the counting rules of the headline first.

The package, in the order the data flows:

- :mod:`~gateway.sla.report`: what the report shows (stages, failures, sources, limits) and
  the frozen dataclasses of :class:`SlaReport`;
- :mod:`~gateway.sla.reading`: the journal's rows as tasks, assignments and alarms, odd
  values tolerated;
- :mod:`~gateway.sla.compute`: :func:`build_report` (headline, per stage, per unit, per day,
  clock skew, alarms) and :func:`percentile`;
- :mod:`~gateway.sla.since`: :func:`parse_since`;
- :mod:`~gateway.sla.as_json`: :func:`report_to_json`, with the JSON layout;
- :mod:`~gateway.sla.sections`, :mod:`~gateway.sla.table`, :mod:`~gateway.sla.as_html`: the
  tables shared by both renderings, :func:`render_table` and :func:`render_html`;
- :mod:`~gateway.sla.cli`: :func:`run_sla`.
"""

from __future__ import annotations

from gateway.sla.as_html import render_html
from gateway.sla.as_json import report_to_json
from gateway.sla.cli import JournalUnreadable, run_sla
from gateway.sla.compute import build_report, clock_label, percentile
from gateway.sla.report import (
    ALARM_LIST_MAX,
    CLOCKS,
    SKEW_TOLERANCE_S,
    SOURCES,
    STAGES,
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
from gateway.sla.sections import format_duration
from gateway.sla.since import SINCE_EARLIEST, SINCE_LATEST, SinceError, parse_since
from gateway.sla.table import render_table

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
