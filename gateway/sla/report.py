"""The SLA report's data: what it reports on, and the frozen dataclasses every rendering reads.

:class:`SlaReport` is what :func:`gateway.sla.build_report` returns; the JSON, the text table
and the HTML page are views of it. The stage facts (order, terminal stages, the five clocks
and their ``[sla]`` keys) come from :mod:`gateway.stages`; this module only chooses which of
them the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from gateway.stages import DEADLINES, TERMINAL, Stage

__all__ = [
    "ALARM_LIST_MAX",
    "CLOCKS",
    "DAY_STAGES",
    "FAILURES",
    "OTHER_SOURCE",
    "PERCENTILE_METHOD",
    "SKEW_LIST_MAX",
    "SKEW_TOLERANCE_S",
    "SOURCES",
    "STAGES",
    "TRANSPORT_STAGES",
    "WORST_COUNT",
    "Alarm",
    "AlarmsReport",
    "ClockReport",
    "DayReport",
    "Measure",
    "Offender",
    "SkewedTask",
    "SlaReport",
    "StageReport",
    "StageSummary",
    "Summary",
    "UnitReport",
]

SKEW_TOLERANCE_S: Final = 5.0
"""``received_at`` may lag ``created_at`` by this much before the task is flagged as skewed."""
WORST_COUNT: Final = 5
"""Worst offenders kept per stage and measure."""
SKEW_LIST_MAX: Final = 50
"""Skewed tasks listed (all are counted)."""
ALARM_LIST_MAX: Final = 100
"""Alarms listed (all are counted)."""
PERCENTILE_METHOD: Final = "nearest-rank"

CLOCKS: Final[tuple[Stage, ...]] = tuple(stage for stage, _ in DEADLINES)
"""The headline's five clocks, in order: acknowledged, contacted, on_scene, feedback, closed."""
TRANSPORT_STAGES: Final = (Stage.RECEIVED, Stage.TRANSMITTED, Stage.DELIVERED)
"""Stages without a target that the report shows (``queued`` is journalled, not reported)."""
STAGES: Final[tuple[Stage, ...]] = (*TRANSPORT_STAGES, *CLOCKS)
"""Every stage of the per-stage tables, in order."""
FAILURES: Final[tuple[Stage, ...]] = tuple(
    sorted(TERMINAL - {Stage.CLOSED}, key=lambda s: (s is Stage.DECLINED, list(Stage).index(s)))
)
"""The terminal stages that are not success, declined last: failed, expired, cancelled,
rejected, declined."""
DAY_STAGES: Final = (Stage.ACKNOWLEDGED, Stage.ON_SCENE)
"""The stages of the per-day table."""
SOURCES: Final = ("device", "centre", "gateway")
"""Who reported a stage (``stages.source``); any other value is counted as ``other``."""
OTHER_SOURCE: Final = "other"


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
    values: tuple[float, ...]  # sorted; drawn by the HTML page, not in the JSON


@dataclass(frozen=True, slots=True)
class StageReport:
    stage: Stage
    target_s: float | None
    reached: int
    missed: int | None  # None for stages without a target
    failed_before: int  # ended in a failure without the stage, and not a miss
    escalated: int
    end_to_end: Measure
    gateway: Measure
    sources: dict[str, int]  # who reported the reached stages: SOURCES and OTHER_SOURCE


@dataclass(frozen=True, slots=True)
class ClockReport:
    """One of the headline's five clocks: how many assignments made it within the target."""

    stage: Stage
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

    stage: Stage
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
    targets_s: dict[Stage, float]
    tasks: int
    assignments: int
    stages: tuple[StageReport, ...]
    failures: dict[Stage, int]
    units: tuple[UnitReport, ...]
    days: tuple[DayReport, ...]
    skew_count: int
    skewed: tuple[SkewedTask, ...]
    notes: tuple[str, ...]
    headline: tuple[ClockReport, ...]
    alarms: AlarmsReport

    def stage(self, name: str) -> StageReport:
        return next(s for s in self.stages if s.stage == name)
