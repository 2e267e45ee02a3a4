"""The SLA report over a real journal with known latencies.

Tasks go in through :class:`TaskStore`; stage rows with controlled times and offsets are
inserted with SQL (``record_stage`` takes its offset from the monotonic clock).
"""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config, SlaConfig, parse_config
from gateway.journal import Journal
from gateway.model import rfc3339
from gateway.sla import (
    ALARM_LIST_MAX,
    CLOCKS,
    SINCE_EARLIEST,
    SINCE_LATEST,
    SKEW_TOLERANCE_S,
    STAGES,
    SinceError,
    SlaReport,
    build_report,
    clock_label,
    format_duration,
    parse_since,
    percentile,
    render_html,
    render_table,
    report_to_json,
    run_sla,
)
from gateway.stages import DEADLINES, TERMINAL, Stage
from gateway.taskstore import TaskRow, TaskStore

pytestmark = pytest.mark.timeout(60)

DAY1 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
NOW = DAY2 + timedelta(days=1, hours=1)  # every deadline of DAY1 and DAY2 tasks has passed
SLA = SlaConfig()  # acknowledged 60 s, on_scene 480 s, feedback 3600 s, closed 86400 s


class JournalBuilder:
    """A journal with tasks whose stage times are chosen by the test."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.store = TaskStore(journal)
        self.conn: sqlite3.Connection = journal.db.conn

    def task(
        self,
        task_id: str,
        *,
        received: datetime,
        transit_s: float = 1.0,
        units: tuple[str, ...] = ("alpha",),
        incident: bool = False,
    ) -> TaskRow:
        """A task created ``transit_s`` before the gateway received it; ``received`` per unit."""
        created = received - timedelta(seconds=transit_s)
        body: dict[str, object] = {
            "task_id": task_id,
            "units": list(units),
            "text": "go",
            "created_at": rfc3339(created),
        }
        if incident:
            body["incident"] = {"lat": 31.2, "lon": 121.4, "radius_m": 100}
        row = self.store.add_task(
            task_id=task_id,
            body=json.dumps(body),
            priority="normal",
            created_at=rfc3339(created),
            received_at=received,
            expires_at=None,
        )
        assert row is not None
        for unit in units:
            self.stage(row, unit, "received", 0.0)
        return row

    def stage(
        self,
        task: TaskRow,
        unit: str,
        stage: str,
        offset_s: float,
        *,
        target: str = "",
        since_created: bool = True,
        source: str = "gateway",
        reported_by: str | None = None,
    ) -> None:
        """A stage ``offset_s`` after the task was received (end to end from its created_at)."""
        received = datetime.fromisoformat(task.received_at)
        created = datetime.fromisoformat(task.created_at)
        at = received + timedelta(seconds=offset_s)
        since_created_s = round((at - created).total_seconds(), 3) if since_created else None
        self.conn.execute(
            "INSERT INTO stages (task_id, unit, stage, target, at, offset_s, since_created_s,"
            " source, reported_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task.task_id, unit, stage, target, rfc3339(at), offset_s, since_created_s, source,
             reported_by),
        )  # fmt: skip

    def alarm(
        self,
        unit: str,
        kind: str,
        raised: datetime,
        *,
        cleared: datetime | None = None,
        cleared_by: str | None = None,
        link: str = "vhf",
    ) -> None:
        self.conn.execute(
            "INSERT INTO alarms (unit, kind, link, device, raised_at, cleared_at, cleared_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (unit, kind, link, f"{link}:{unit}", rfc3339(raised),
             None if cleared is None else rfc3339(cleared), cleared_by),
        )  # fmt: skip

    def report(self, *, since: datetime | None = None, now: datetime = NOW) -> SlaReport:
        return build_report(self.conn, SLA, since=since, now=now)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[JournalBuilder]:
    j = Journal.open(tmp_path / "journal.sqlite")
    try:
        yield JournalBuilder(j)
    finally:
        j.close()


def fill_standard(b: JournalBuilder) -> None:
    """Day 1: ten alpha tasks acknowledged 10..100 s after receipt (end to end 11..101 s), each
    with feedback and closure in time. Day 2: bravo's m1 never acknowledged (incident, every
    deadline passed) and f1 expired."""
    for i in range(10):
        row = b.task(f"t{i:02d}", received=DAY1 + timedelta(minutes=i))
        b.stage(row, "alpha", "transmitted", 2.0)
        b.stage(row, "alpha", "delivered", 5.0)
        b.stage(row, "alpha", "acknowledged", 10.0 * (i + 1))
        b.stage(row, "alpha", "feedback", 1000.0)
        b.stage(row, "alpha", "closed", 2000.0)
    m1 = b.task("m1", received=DAY2, units=("bravo",), incident=True)
    b.stage(m1, "bravo", "transmitted", 3.0)
    b.stage(m1, "bravo", "escalated", 50.0, target="acknowledged")
    f1 = b.task("f1", received=DAY2 + timedelta(minutes=5), units=("bravo",))
    b.stage(f1, "bravo", "expired", 30.0)


# --- per stage ---------------------------------------------------------------------------------


def test_stage_counts_percentiles_share_and_misses(journal: JournalBuilder) -> None:
    fill_standard(journal)
    report = journal.report()
    assert report.tasks == 12
    assert report.assignments == 12
    assert [s.stage for s in report.stages] == list(STAGES)

    ack = report.stage("acknowledged")
    assert ack.target_s == 60
    assert ack.reached == 10
    assert ack.missed == 1  # m1; f1 expired, so it is a failure, not a miss
    assert ack.failed_before == 1
    assert ack.escalated == 1
    e2e = ack.end_to_end.summary
    assert (e2e.count, e2e.p50_s, e2e.p90_s, e2e.p99_s, e2e.max_s) == (10, 51.0, 91.0, 101.0, 101.0)
    assert e2e.within_target == 5  # 11, 21, 31, 41, 51
    assert e2e.share_within_target == round(5 / 11, 4)
    gw = ack.gateway.summary
    assert (gw.count, gw.p50_s, gw.p90_s, gw.p99_s, gw.max_s) == (10, 50.0, 90.0, 100.0, 100.0)
    assert gw.within_target == 6  # 10 .. 60
    assert gw.share_within_target == round(6 / 11, 4)

    received = report.stage("received")
    assert (received.target_s, received.missed, received.reached) == (None, None, 12)
    assert received.end_to_end.summary.p50_s == 1.0
    assert received.gateway.summary.max_s == 0.0
    assert received.end_to_end.summary.share_within_target is None

    transmitted = report.stage("transmitted")
    assert transmitted.reached == 11
    assert transmitted.failed_before == 1  # f1 expired before any transmission
    assert report.stage("delivered").reached == 10

    on_scene = report.stage("on_scene")
    assert (on_scene.reached, on_scene.missed) == (0, 1)  # only m1 has an incident
    assert on_scene.end_to_end.summary.share_within_target == 0.0
    assert report.stage("feedback").missed == 1
    closed = report.stage("closed")
    assert (closed.reached, closed.missed) == (10, 1)
    assert closed.end_to_end.summary.share_within_target == round(10 / 11, 4)

    assert report.failures == {
        "failed": 0, "expired": 1, "cancelled": 0, "rejected": 0, "declined": 0,
    }  # fmt: skip


def test_stages_and_targets_come_from_the_stage_definitions(journal: JournalBuilder) -> None:
    assert tuple(CLOCKS) == tuple(stage for stage, _ in DEADLINES)
    assert all(isinstance(stage, Stage) for stage in STAGES)
    assert set(STAGES) >= set(CLOCKS)
    sla = SlaConfig(acknowledge_s=45, close_s=7200)
    report = build_report(journal.conn, sla, since=None, now=NOW)
    assert report.targets_s == {stage: sla.target_s(stage) for stage in CLOCKS}
    assert report.stage(Stage.ACKNOWLEDGED).target_s == 45.0
    assert set(report.failures) == TERMINAL - {Stage.CLOSED}
    failures = report_to_json(report)["failures"]
    assert isinstance(failures, dict)
    assert list(failures) == ["failed", "expired", "cancelled", "rejected", "declined"]


def test_worst_offenders(journal: JournalBuilder) -> None:
    fill_standard(journal)
    ack = journal.report().stage("acknowledged")
    worst = ack.end_to_end.worst
    assert [o.task_id for o in worst] == ["t09", "t08", "t07", "t06", "t05"]
    assert [o.latency_s for o in worst] == [101.0, 91.0, 81.0, 71.0, 61.0]
    assert {o.unit for o in worst} == {"alpha"}
    assert worst[0].received_at == rfc3339(DAY1 + timedelta(minutes=9))
    assert not any(o.skewed for o in worst)
    assert [o.latency_s for o in ack.gateway.worst] == [100.0, 90.0, 80.0, 70.0, 60.0]


def test_deadline_not_yet_passed_is_not_a_miss(journal: JournalBuilder) -> None:
    now = DAY1 + timedelta(seconds=100)
    journal.task("fresh", received=now - timedelta(seconds=30), incident=True)
    old = journal.task("old", received=now - timedelta(seconds=90))
    journal.stage(old, "alpha", "closed", 80.0)  # closed without acknowledgement in the journal
    report = journal.report(now=now)
    # fresh: its deadline is 29 s away; old: closed (no failure) without acknowledgement
    assert report.stage("acknowledged").missed == 1
    assert report.stage("on_scene").missed == 0
    assert report.stage("closed").reached == 1
    later = journal.report(now=now + timedelta(seconds=60))
    assert later.stage("acknowledged").missed == 2
    assert later.stage("on_scene").missed == 0  # 480 s not yet passed for fresh
    assert journal.report(now=now + timedelta(seconds=480)).stage("on_scene").missed == 1


def test_declined_and_cancelled_are_failures_not_misses(journal: JournalBuilder) -> None:
    d1 = journal.task("d1", received=DAY1, units=("alpha", "bravo"))
    journal.stage(d1, "alpha", "declined", 20.0)
    journal.stage(d1, "bravo", "cancelled", 25.0)
    report = journal.report()
    assert report.failures[Stage.DECLINED] == 1
    assert report.failures[Stage.CANCELLED] == 1
    ack = report.stage("acknowledged")
    assert (ack.missed, ack.failed_before) == (0, 2)
    assert ack.end_to_end.summary.share_within_target is None  # nothing reached, nothing missed


def test_missing_since_created_is_recomputed(journal: JournalBuilder) -> None:
    row = journal.task("n1", received=DAY1, transit_s=2.0)
    journal.stage(row, "alpha", "acknowledged", 8.0, since_created=False)
    ack = journal.report().stage("acknowledged")
    assert ack.end_to_end.summary.p50_s == 10.0
    assert ack.gateway.summary.p50_s == 8.0


def test_rows_written_by_task_store(journal: JournalBuilder) -> None:
    received = DAY1
    row = journal.store.add_task(
        task_id="ts1",
        body='{"task_id": "ts1"}',
        priority="urgent",
        created_at=rfc3339(received - timedelta(seconds=2)),
        received_at=received,
        expires_at=None,
    )
    assert row is not None
    at = received + timedelta(seconds=40)
    journal.store.record_stage(row, "alpha", "received", received, since_created_s=2.0)
    journal.store.record_stage(row, "alpha", "acknowledged", at, since_created_s=42.0)
    report = journal.report()
    ack = report.stage("acknowledged")
    assert ack.reached == 1
    assert ack.end_to_end.summary.p50_s == 42.0
    assert ack.end_to_end.summary.within_target == 1
    assert ack.gateway.summary.count == 1  # offset from the monotonic clock: about 0 here


# --- per unit, per day ------------------------------------------------------------------------


def test_per_unit(journal: JournalBuilder) -> None:
    fill_standard(journal)
    units = {u.unit: u for u in journal.report().units}
    assert list(units) == ["alpha", "bravo"]
    alpha = {s.stage: s for s in units["alpha"].stages}
    assert units["alpha"].assignments == 10
    assert alpha[Stage.ACKNOWLEDGED].reached == 10
    assert alpha[Stage.ACKNOWLEDGED].missed == 0
    assert alpha[Stage.ACKNOWLEDGED].end_to_end.p50_s == 51.0
    assert alpha[Stage.ACKNOWLEDGED].end_to_end.p90_s == 91.0
    assert alpha[Stage.ACKNOWLEDGED].end_to_end.share_within_target == 0.5
    assert alpha[Stage.ACKNOWLEDGED].gateway.share_within_target == 0.6
    bravo = {s.stage: s for s in units["bravo"].stages}
    assert units["bravo"].assignments == 2
    assert (bravo[Stage.ACKNOWLEDGED].reached, bravo[Stage.ACKNOWLEDGED].missed) == (0, 1)
    assert bravo[Stage.ACKNOWLEDGED].end_to_end.share_within_target == 0.0
    assert bravo[Stage.TRANSMITTED].end_to_end.p50_s == 4.0


def test_per_day(journal: JournalBuilder) -> None:
    fill_standard(journal)
    days = journal.report().days
    assert [d.date for d in days] == ["2024-05-01", "2024-05-02"]
    first, second = days
    assert (first.tasks, first.assignments) == (10, 10)
    ack1, scene1 = first.stages
    assert ack1.stage == "acknowledged"
    assert ack1.end_to_end.share_within_target == 0.5
    assert scene1.stage == "on_scene"
    assert (scene1.reached, scene1.missed, scene1.end_to_end.share_within_target) == (0, 0, None)
    ack2, scene2 = second.stages
    assert (second.tasks, ack2.reached, ack2.missed) == (2, 0, 1)
    assert ack2.end_to_end.share_within_target == 0.0
    assert scene2.missed == 1


def test_day_is_the_utc_date_of_received(journal: JournalBuilder) -> None:
    # 23:30 UTC on 1 May is 07:30 on 2 May in Beijing: the report uses the UTC date.
    journal.task("late", received=datetime(2024, 5, 1, 23, 30, tzinfo=UTC))
    assert [d.date for d in journal.report().days] == ["2024-05-01"]


# --- the headline: the five clocks -------------------------------------------------------------

NOW_H = DAY1 + timedelta(hours=2)


def fill_headline(b: JournalBuilder) -> None:
    """Seven tasks, eight assignments, created 1 s before receipt (end to end = offset + 1 s):

    ==========  =========  ===========  ==========  =========  ==========  ===========
    assignment  incident   acknowledged contacted   on_scene   feedback    closed
    ==========  =========  ===========  ==========  =========  ==========  ===========
    h1 alpha    yes        30 device    120 device  300 gw     1800 device 3600 device
    h1 bravo    yes        90 centre    240 centre  420 centre missed      pending
    h2 alpha    no         45 device    missed      n/a        3001 centre 3501 device
    h3 charlie  yes        cancelled at 30 s: ended on every clock
    h4 charlie  no         cancelled at 120 s: acknowledged missed, the rest ended (on_scene n/a)
    h5 delta    no         declined at 20 s: ended (on_scene n/a)
    h6 delta    yes        30 device    pending (101 s old at NOW_H) on the rest
    h7 echo     no         missed (91 s old at NOW_H), pending on the rest (on_scene n/a)
    ==========  =========  ===========  ==========  =========  ==========  ===========

    Alarms: alpha's emergency cleared by the centre after 90 s, bravo's man_down cleared by
    the device after 30.5 s, delta's low_battery still raised.
    """
    h1 = b.task("h1", received=DAY1, units=("alpha", "bravo"), incident=True)
    for offset, stage, source in (
        (29.0, "acknowledged", "device"), (119.0, "contacted", "device"),
        (299.0, "on_scene", "gateway"), (1799.0, "feedback", "device"),
        (3599.0, "closed", "device"),
    ):  # fmt: skip
        b.stage(h1, "alpha", stage, offset, source=source)
    for offset, stage in ((89.0, "acknowledged"), (239.0, "contacted"), (419.0, "on_scene")):
        b.stage(h1, "bravo", stage, offset, source="centre", reported_by="王芳")
    h2 = b.task("h2", received=DAY1 + timedelta(minutes=2))
    b.stage(h2, "alpha", "acknowledged", 44.0, source="device")
    b.stage(h2, "alpha", "feedback", 3000.0, source="centre", reported_by="desk-3")
    b.stage(h2, "alpha", "closed", 3500.0, source="device")
    h3 = b.task("h3", received=DAY1 + timedelta(minutes=5), units=("charlie",), incident=True)
    b.stage(h3, "charlie", "cancelled", 29.0)
    h4 = b.task("h4", received=DAY1 + timedelta(minutes=10), units=("charlie",))
    b.stage(h4, "charlie", "cancelled", 119.0)
    h5 = b.task("h5", received=DAY1 + timedelta(minutes=15), units=("delta",))
    b.stage(h5, "delta", "declined", 19.0, source="device")
    h6 = b.task("h6", received=NOW_H - timedelta(seconds=100), units=("delta",), incident=True)
    b.stage(h6, "delta", "acknowledged", 29.0, source="device")
    b.task("h7", received=NOW_H - timedelta(seconds=90), units=("echo",))
    for row, unit in ((h1, "alpha"), (h1, "bravo"), (h2, "alpha"), (h3, "charlie"),
                      (h4, "charlie"), (h5, "delta"), (h6, "delta")):  # fmt: skip
        b.stage(row, unit, "transmitted", 2.0)
    raised = DAY1 + timedelta(minutes=5)
    b.alarm("alpha", "emergency", raised, cleared=raised + timedelta(seconds=90),
            cleared_by="centre")  # fmt: skip
    raised = DAY1 + timedelta(minutes=30)
    b.alarm("bravo", "man_down", raised, cleared=raised + timedelta(seconds=30.5),
            cleared_by="device", link="trackers")  # fmt: skip
    b.alarm("delta", "low_battery", DAY1 + timedelta(hours=1))


def sources(device: int = 0, centre: int = 0, gateway: int = 0) -> dict[str, int]:
    return {"device": device, "centre": centre, "gateway": gateway, "other": 0}


def clock(
    stage: str, label: str, target_s: float, goal: float, *, within: int, late: int = 0,
    missed: int = 0, pending: int = 0, ended: int = 0, not_applicable: int = 0,
    by: dict[str, int],
) -> dict[str, object]:  # fmt: skip
    counted = within + late + missed
    return {
        "stage": stage, "label": label, "target_s": target_s, "goal_percent": goal,
        "share_within_target": round(within / counted, 4),
        "goal_met": within * 100 >= goal * counted, "counted": counted, "within": within,
        "late": late, "missed": missed, "pending": pending, "ended": ended,
        "not_applicable": not_applicable, "unmeasured": 0, "reached": within + late,
        "sources": by,
    }  # fmt: skip


HEADLINE = [
    clock("acknowledged", "acknowledged within 1 min", 60.0, 95.0, within=3, late=1, missed=2,
          ended=2, by=sources(device=3, centre=1)),
    clock("contacted", "contacted within 3 min", 180.0, 90.0, within=1, late=1, missed=1,
          pending=2, ended=3, by=sources(device=1, centre=1)),
    clock("on_scene", "on scene within 8 min", 480.0, 90.0, within=2, pending=1, ended=1,
          not_applicable=4, by=sources(centre=1, gateway=1)),
    clock("feedback", "feedback within 1 h", 3600.0, 90.0, within=2, missed=1, pending=2,
          ended=3, by=sources(device=1, centre=1)),
    clock("closed", "closed within 24 h", 86400.0, 95.0, within=2, pending=3, ended=3,
          by=sources(device=2)),
]  # fmt: skip


def test_headline_counts_shares_and_goals(journal: JournalBuilder) -> None:
    fill_headline(journal)
    report = journal.report(now=NOW_H)
    assert (report.tasks, report.assignments) == (7, 8)
    assert [c.stage for c in report.headline] == [
        "acknowledged", "contacted", "on_scene", "feedback", "closed",
    ]  # fmt: skip
    ack, contacted, on_scene, feedback, closed = report.headline
    assert (ack.share_within_target, ack.goal_met) == (0.5, False)
    assert (contacted.share_within_target, contacted.goal_met) == (0.3333, False)
    assert (on_scene.share_within_target, on_scene.goal_met) == (1.0, True)
    assert (feedback.share_within_target, feedback.goal_met) == (0.6667, False)
    assert (closed.share_within_target, closed.goal_met) == (1.0, True)
    headline = report_to_json(report)["headline"]
    assert headline == {"clocks": HEADLINE}


def test_headline_goal_is_compared_exactly(journal: JournalBuilder) -> None:
    fill_headline(journal)
    conn = journal.conn
    met = build_report(conn, SlaConfig(goal_acknowledge=50.0), since=None, now=NOW_H)
    assert met.headline[0].goal_met is True  # 3 of 6 is exactly 50 %
    assert met.headline[0].goal_percent == 50.0
    short = build_report(conn, SlaConfig(goal_acknowledge=50.01), since=None, now=NOW_H)
    assert short.headline[0].goal_met is False


def test_headline_labels_follow_the_configured_targets(journal: JournalBuilder) -> None:
    sla = SlaConfig(acknowledge_s=90, contact_s=150, on_scene_s=600, feedback_s=5400,
                    close_s=172800)  # fmt: skip
    report = build_report(journal.conn, sla, since=None, now=NOW)
    assert [c.label for c in report.headline] == [
        "acknowledged within 90 s", "contacted within 150 s", "on scene within 10 min",
        "feedback within 90 min", "closed within 48 h",
    ]  # fmt: skip
    assert all(c.counted == 0 and c.goal_met is None for c in report.headline)
    assert clock_label("feedback", 0.5) == "feedback within 0.5 s"


def test_headline_pending_becomes_missed_or_stays_within(journal: JournalBuilder) -> None:
    fill_headline(journal)
    later = {c.stage: c for c in journal.report(now=NOW_H + timedelta(minutes=2)).headline}
    # h6 and h7 are now 3m41s and 3m31s old: contacted missed for both
    assert (later[Stage.CONTACTED].missed, later[Stage.CONTACTED].pending) == (3, 0)
    assert (later[Stage.ON_SCENE].missed, later[Stage.ON_SCENE].pending) == (
        0,
        1,
    )  # h6: 8 min not yet
    much_later = journal.report(now=NOW_H + timedelta(days=2)).headline
    assert sum(c.pending for c in much_later) == 0


def test_headline_failure_after_the_deadline_is_a_miss(journal: JournalBuilder) -> None:
    row = journal.task("x1", received=DAY1, units=("alpha", "bravo", "charlie"))
    journal.stage(row, "alpha", "expired", 600.0)  # expired long after the 1-minute clock ran out
    journal.stage(row, "bravo", "declined", 70.0, source="device")  # answered, but a refusal
    journal.stage(row, "charlie", "failed", 59.0)  # no device reached, before the deadline
    ack, contacted, _, feedback, _ = journal.report().headline
    assert (ack.missed, ack.ended, ack.counted) == (2, 1, 2)
    assert (contacted.missed, contacted.ended) == (1, 2)  # alpha: 600 s > 180 s
    assert (feedback.missed, feedback.ended) == (0, 3)
    # The per-stage tables count by the same rule: a failure after the target is a miss there
    # too, one before it is in failed_before.
    table = journal.report().stage(Stage.ACKNOWLEDGED)
    assert (table.missed, table.failed_before) == (2, 1)
    assert table.end_to_end.summary.share_within_target == 0.0
    assert (journal.report().stage(Stage.CONTACTED).missed, contacted.missed) == (1, 1)


@pytest.mark.parametrize("later", [timedelta(0), timedelta(minutes=2), timedelta(days=2)])
def test_every_missed_follows_the_headline_rule(journal: JournalBuilder, later: timedelta) -> None:
    fill_headline(journal)  # h4: cancelled after the 1-minute target, so a missed acknowledgement
    report = journal.report(now=NOW_H + later)
    for clock_report in report.headline:
        stage = report.stage(clock_report.stage)
        assert (stage.missed, stage.failed_before) == (clock_report.missed, clock_report.ended)
        per_unit = [s for u in report.units for s in u.stages if s.stage == clock_report.stage]
        assert sum(s.missed or 0 for s in per_unit) == clock_report.missed
    for day_stage in (Stage.ACKNOWLEDGED, Stage.ON_SCENE):
        per_day = [s for d in report.days for s in d.stages if s.stage == day_stage]
        assert sum(s.missed or 0 for s in per_day) == report.stage(day_stage).missed
    if not later:
        text = render_table(report)
        lines = text.splitlines()
        rows = [line.split()[:5] for line in lines if re.match(r"acknowledged +60\.0s ", line)]
        assert rows == [["acknowledged", "60.0s", "4", "2", "2"]] * 2  # reached, missed, failed
        charlie = [line.split()[:4] for line in lines if line.startswith("charlie ")]
        assert ["charlie", "acknowledged", "0", "1"] in charlie


def test_headline_in_table_first(journal: JournalBuilder) -> None:
    fill_headline(journal)
    text = render_table(journal.report(now=NOW_H))
    lines = text.splitlines()
    assert lines[3].startswith("Headline: the five clocks")
    assert text.index("Headline") < text.index("End to end")
    # label -> share, within/counted, goal, met, late, missed, pending, ended, device, centre,
    # gateway
    rows = {line.split("  ")[0]: " ".join(line.split()[-11:]) for line in lines[6:11]}
    assert rows == {
        "acknowledged within 1 min": "50.0% 3/6 95% no 1 2 0 2 3 1 0",
        "contacted within 3 min": "33.3% 1/3 90% no 1 1 2 3 1 1 0",
        "on scene within 8 min": "100.0% 2/2 90% yes 0 0 1 1 0 1 1",
        "feedback within 1 h": "66.7% 2/3 90% no 0 1 2 3 1 1 0",
        "closed within 24 h": "100.0% 2/2 95% yes 0 0 3 3 2 0 0",
    }


def test_headline_in_html_first(journal: JournalBuilder) -> None:
    fill_headline(journal)
    page = render_html(journal.report(now=NOW_H))
    first = page.index("acknowledged within 1 min")
    assert first < page.index("End to end") < page.index("<svg")
    for label in ("contacted within 3 min", "on scene within 8 min", "closed within 24 h"):
        assert label in page
    assert '<td class="n">50.0%</td><td class="n">3/6</td><td class="n">95%</td>' in page
    assert '<td class="n warn">no</td>' in page
    assert '<td class="n ok">yes</td>' in page


# --- contacted and the source split ------------------------------------------------------------


def test_contacted_is_a_stage_between_acknowledged_and_on_scene(journal: JournalBuilder) -> None:
    fill_headline(journal)
    report = journal.report(now=NOW_H)
    assert STAGES.index("contacted") == STAGES.index("acknowledged") + 1
    assert STAGES.index("on_scene") == STAGES.index("contacted") + 1
    contacted = report.stage("contacted")
    assert (contacted.target_s, contacted.reached, contacted.missed) == (180.0, 2, 1)
    assert contacted.failed_before == 3  # h3, h4 cancelled; h5 declined
    e2e = contacted.end_to_end.summary
    assert (e2e.p50_s, e2e.max_s, e2e.within_target) == (120.0, 240.0, 1)
    assert e2e.share_within_target == round(1 / 3, 4)
    data = report_to_json(report)
    assert data["targets_s"] == {
        "acknowledged": 60.0, "contacted": 180.0, "on_scene": 480.0, "feedback": 3600.0,
        "closed": 86400.0,
    }  # fmt: skip
    stages = data["stages"]
    assert isinstance(stages, dict)
    assert list(stages)[3:6] == ["acknowledged", "contacted", "on_scene"]
    assert stages["contacted"]["gateway"]["p50_s"] == 119.0
    units = data["units"]
    assert isinstance(units, list)
    assert units[1]["unit"] == "bravo"
    assert units[1]["stages"]["contacted"]["end_to_end"]["max_s"] == 240.0
    text = render_table(report)
    lines = [line.split() for line in text.splitlines() if re.match(r"contacted +3m00s ", line)]
    assert lines == [
        ["contacted", "3m00s", "2", "1", "3", "2m00s", "4m00s", "4m00s", "4m00s", "33.3%"],
        ["contacted", "3m00s", "2", "1", "3", "1m59s", "3m59s", "3m59s", "3m59s", "33.3%"],
    ]  # fmt: skip
    assert any(re.match(r"bravo +contacted +1 +0 +4m00s", line) for line in text.splitlines())
    page = render_html(report)
    assert "<figcaption>contacted</figcaption>" in page
    assert "<td>contacted</td>" in page


def test_source_split_per_stage(journal: JournalBuilder) -> None:
    fill_headline(journal)
    report = journal.report(now=NOW_H)
    assert report.stage("acknowledged").sources == sources(device=3, centre=1)
    assert report.stage("on_scene").sources == sources(centre=1, gateway=1)
    assert report.stage("received").sources == sources(gateway=8)
    assert report.stage("transmitted").sources == sources(gateway=7)
    stages = report_to_json(report)["stages"]
    assert isinstance(stages, dict)
    assert stages["contacted"]["sources"] == sources(device=1, centre=1)
    assert stages["feedback"]["sources"] == sources(device=1, centre=1)
    text = render_table(report)
    section = text[text.index("Who reported each stage") :]
    split = {parts[0]: parts[1:] for parts in (line.split() for line in section.splitlines()[3:11])}
    assert split["acknowledged"] == ["4", "3", "1", "0", "0"]  # reached, device, centre, gw, other
    assert split["on_scene"] == ["2", "0", "1", "1", "0"]
    assert split["closed"] == ["2", "2", "0", "0", "0"]
    assert "Who reported each stage" in render_html(report)


def test_unknown_source_counts_as_other(journal: JournalBuilder) -> None:
    row = journal.task("o1", received=DAY1)
    journal.stage(row, "alpha", "acknowledged", 10.0, source="carrier-pigeon")
    report = journal.report()
    assert report.stage("acknowledged").sources == {**sources(), "other": 1}
    assert report.headline[0].reached == 1


def test_journal_before_the_source_column(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.sqlite")
    try:
        conn.executescript(
            "CREATE TABLE tasks (task_id TEXT PRIMARY KEY, ref INTEGER, body TEXT,"
            " priority TEXT, created_at TEXT, received_at TEXT, received_boot TEXT,"
            " received_mono REAL, expires_at TEXT, closed INTEGER DEFAULT 0);"
            "CREATE TABLE stages (task_id TEXT, unit TEXT, stage TEXT, target TEXT DEFAULT '',"
            " at TEXT, offset_s REAL, since_created_s REAL, detail TEXT);"
            "INSERT INTO tasks VALUES ('p1', 1, '{}', 'normal', '2024-05-01T07:59:59.000Z',"
            " '2024-05-01T08:00:00.000Z', 'b', 0, NULL, 0);"
            "INSERT INTO stages (task_id, unit, stage, at, offset_s, since_created_s) VALUES"
            " ('p1', 'alpha', 'acknowledged', '2024-05-01T08:00:10.000Z', 10, 11);"
        )
        report = build_report(conn, SLA, since=None, now=NOW)
    finally:
        conn.close()
    assert report.stage("acknowledged").sources == sources(gateway=1)  # as the migration makes it
    assert report.headline[0].within == 1
    assert report.alarms.count == 0  # no alarms table


# --- alarms ------------------------------------------------------------------------------------


def test_alarms_section(journal: JournalBuilder) -> None:
    fill_headline(journal)
    report = journal.report(now=NOW_H)
    alarms = report_to_json(report)["alarms"]
    assert alarms == {
        "count": 3,
        "still_raised": 1,
        "cleared": 2,
        "time_to_clear_p50_s": 30.5,
        "time_to_clear_max_s": 90.0,
        "list_max": 100,
        "list": [
            {"unit": "delta", "kind": "low_battery", "link": "vhf", "device": "vhf:delta",
             "state": "raised", "raised_at": "2024-05-01T09:00:00.000Z", "cleared_at": None,
             "cleared_by": None, "time_to_clear_s": None},
            {"unit": "bravo", "kind": "man_down", "link": "trackers", "device": "trackers:bravo",
             "state": "cleared", "raised_at": "2024-05-01T08:30:00.000Z",
             "cleared_at": "2024-05-01T08:30:30.500Z", "cleared_by": "device",
             "time_to_clear_s": 30.5},
            {"unit": "alpha", "kind": "emergency", "link": "vhf", "device": "vhf:alpha",
             "state": "cleared", "raised_at": "2024-05-01T08:05:00.000Z",
             "cleared_at": "2024-05-01T08:06:30.000Z", "cleared_by": "centre",
             "time_to_clear_s": 90.0},
        ],
    }  # fmt: skip
    text = render_table(report)
    title = "Alarms: 3 in the period, 1 still raised; time to clear p50 30.5s, max 90.0s"
    section = text[text.index(title) :].splitlines()
    assert [line.split() for line in section[3:6]] == [
        ["delta", "low_battery", "2024-05-01T09:00:00.000Z", "-", "-", "still", "raised"],
        ["bravo", "man_down", "2024-05-01T08:30:00.000Z", "2024-05-01T08:30:30.500Z", "device",
         "30.5s"],
        ["alpha", "emergency", "2024-05-01T08:05:00.000Z", "2024-05-01T08:06:30.000Z", "centre",
         "90.0s"],
    ]  # fmt: skip
    page = render_html(report)
    assert title in page
    assert "<td>low_battery</td>" in page
    assert '<td class="n">still raised</td>' in page


def test_alarms_in_the_period(journal: JournalBuilder) -> None:
    journal.alarm("echo", "overspeed", DAY1 - timedelta(days=1),
                  cleared=DAY1 - timedelta(days=1) + timedelta(seconds=60))  # fmt: skip
    journal.alarm("echo", "tamper", DAY1 - timedelta(days=2))  # before, still raised
    journal.alarm("echo", "geofence", DAY1 - timedelta(hours=2),
                  cleared=DAY1 + timedelta(minutes=1), cleared_by="centre")  # fmt: skip
    journal.alarm("alpha", "emergency", DAY1 + timedelta(minutes=5))
    every = journal.report().alarms
    assert (every.count, every.still_raised) == (4, 2)
    since = journal.report(since=DAY1 - timedelta(hours=1)).alarms
    assert [a.kind for a in since.alarms] == ["emergency", "tamper", "geofence"]
    assert (since.count, since.still_raised, since.cleared) == (3, 2, 1)
    assert (since.time_to_clear_p50_s, since.time_to_clear_max_s) == (7260.0, 7260.0)


def test_alarm_list_is_capped_but_counted(journal: JournalBuilder) -> None:
    for i in range(ALARM_LIST_MAX + 5):
        raised = DAY1 + timedelta(seconds=i)
        journal.alarm("alpha", "other", raised, cleared=raised + timedelta(seconds=i + 1))
    journal.alarm("bravo", "emergency", DAY1 - timedelta(hours=1))
    alarms = journal.report().alarms
    assert alarms.count == ALARM_LIST_MAX + 6
    assert len(alarms.alarms) == ALARM_LIST_MAX
    assert alarms.alarms[0].unit == "bravo"  # the still raised first, however old
    assert alarms.alarms[1].time_to_clear_s == ALARM_LIST_MAX + 5
    assert alarms.time_to_clear_max_s == ALARM_LIST_MAX + 5
    assert "listed" in render_table(journal.report())


# --- odd journal rows --------------------------------------------------------------------------


def test_odd_journal_rows_never_break_the_report(journal: JournalBuilder) -> None:
    conn = journal.conn
    for ref, (task_id, created, received, body) in enumerate(
        [
            ("odd1", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999Z", "[" * 100_000),
            ("odd2", "garbage", "also garbage", "{}"),
            ("odd3", "0001-01-01T00:00:00Z", "2024-05-01T08:00:00.000Z", "{}"),
        ],
        start=1,
    ):
        conn.execute(
            "INSERT INTO tasks (task_id, ref, body, priority, created_at, received_at,"
            " received_boot, received_mono) VALUES (?, ?, ?, 'normal', ?, ?, 'b', 0)",
            (task_id, ref, body, created, received),
        )
    for task_id, stage, at, offset_s, since_created_s in [
        ("odd1", "acknowledged", "9999-12-31T23:59:59.999-14:00", "abc", float("inf")),
        ("odd2", "received", "x", 0.0, None),
        ("odd2", "closed", "x", 5.0, None),
        ("odd3", "acknowledged", "2024-05-01T08:00:30Z", 30.0, 1e300),
    ]:
        conn.execute(
            "INSERT INTO stages (task_id, unit, stage, at, offset_s, since_created_s)"
            " VALUES (?, 'alpha', ?, ?, ?, ?)",
            (task_id, stage, at, offset_s, since_created_s),
        )
    conn.execute(
        "INSERT INTO alarms (unit, kind, link, device, raised_at, cleared_at) VALUES"
        " ('alpha', 'other', 'vhf', 'vhf:1', '0001-01-01T00:00:00+14:00',"
        " '9999-12-31T23:59:59-14:00'), ('alpha', 'other', 'vhf', 'vhf:1', 'soon', '')"
    )
    report = journal.report()
    ack = report.headline[0]
    # odd1, odd2: unknown; odd3: its created_at (year 1) is outside 2000..2100, so unreadable,
    # and its latency runs from received_at (its offset, 30 s)
    assert (ack.within, ack.late, ack.unmeasured, ack.counted) == (1, 0, 2, 1)
    assert report.skew_count == 0  # no readable created_at, no skew
    assert report.headline[4].within == 1  # odd2 closed 5 s after its (unreadable) receipt
    assert report.stage("acknowledged").gateway.summary.count == 1  # odd1's offset is unreadable
    assert (report.alarms.count, report.alarms.still_raised) == (2, 1)
    assert report.alarms.time_to_clear_max_s is None
    data = report_to_json(report)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert "acknowledged within 1 min" in render_table(report)
    assert "<svg" in render_html(report)


def _insert_task(conn: sqlite3.Connection, task_id: str, created_at: str, received_at: str) -> None:
    conn.execute(
        "INSERT INTO tasks (task_id, ref, body, priority, created_at, received_at,"
        " received_boot, received_mono) VALUES (?, (SELECT count(*) + 1 FROM tasks), '{}',"
        " 'normal', ?, ?, 'b', 0)",
        (task_id, created_at, received_at),
    )


def _insert_stage(
    conn: sqlite3.Connection, task_id: str, stage: Stage, at: str, offset_s: float,
    since_created_s: float | None,
) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO stages (task_id, unit, stage, at, offset_s, since_created_s)"
        " VALUES (?, 'alpha', ?, ?, ?, ?)",
        (task_id, stage, at, offset_s, since_created_s),
    )


@pytest.mark.parametrize(
    "created_at",
    [
        "2150-01-01T00:00:00Z",  # after 2100: the gateway never writes it
        "1999-12-31T23:59:59Z",  # before 2000
        "2024-05-01T07:59:00",  # no zone
        "2024-05-01T07:59Z",  # ISO 8601, not RFC 3339 (no seconds)
    ],
)
def test_journal_times_outside_2000_to_2100_or_not_rfc3339_are_unreadable(
    journal: JournalBuilder, created_at: str
) -> None:
    _insert_task(journal.conn, "u1", created_at, "2024-05-01T08:00:00.000Z")
    _insert_stage(journal.conn, "u1", Stage.ACKNOWLEDGED, "2024-05-01T08:00:20.000Z", 20.0, None)
    report = journal.report()
    ack = report.headline[0]
    assert (ack.within, ack.unmeasured) == (1, 0)  # 20 s from received_at, as deadlines run
    assert report.stage(Stage.ACKNOWLEDGED).end_to_end.summary.count == 0
    assert report.skew_count == 0
    assert report.headline[1].missed == 1  # contacted: the deadline ran from received_at


def test_stored_seconds_beyond_the_limit_are_recomputed_from_the_times(
    journal: JournalBuilder,
) -> None:
    _insert_task(journal.conn, "r1", "2024-05-01T07:59:59.000Z", "2024-05-01T08:00:00.000Z")
    _insert_stage(journal.conn, "r1", Stage.ACKNOWLEDGED, "2024-05-01T08:01:30.000Z", 1e13, 1e300)
    ack = journal.report().stage(Stage.ACKNOWLEDGED)
    assert ack.end_to_end.summary.max_s == 91.0
    assert ack.gateway.summary.max_s == 90.0


# --- clock skew --------------------------------------------------------------------------------


def test_clock_skew_flags(journal: JournalBuilder) -> None:
    early = journal.task("early", received=DAY1, transit_s=-3.0)  # received before created
    late = journal.task("late", received=DAY1 + timedelta(minutes=1), transit_s=10.0)
    journal.task("edge", received=DAY1 + timedelta(minutes=2), transit_s=SKEW_TOLERANCE_S)
    journal.task("fine", received=DAY1 + timedelta(minutes=3), transit_s=0.2)
    journal.stage(early, "alpha", "acknowledged", 20.0)
    journal.stage(late, "alpha", "acknowledged", 20.0)
    report = journal.report()
    assert report.skew_count == 2
    assert [(t.task_id, t.skew_s) for t in report.skewed] == [("late", 10.0), ("early", -3.0)]
    assert report.skewed[1].created_at == rfc3339(DAY1 + timedelta(seconds=3))
    assert any("unreliable" in note for note in report.notes)
    worst = report.stage("acknowledged").end_to_end.worst
    assert {(o.task_id, o.latency_s, o.skewed) for o in worst} == {
        ("late", 30.0, True),
        ("early", 17.0, True),
    }
    assert "unreliable" in render_table(report)
    assert report_to_json(report)["skew"] == {
        "tolerance_s": 5.0,
        "count": 2,
        "tasks": [
            {
                "task_id": "late",
                "created_at": rfc3339(DAY1 + timedelta(seconds=50)),
                "received_at": rfc3339(DAY1 + timedelta(minutes=1)),
                "skew_s": 10.0,
            },
            {
                "task_id": "early",
                "created_at": rfc3339(DAY1 + timedelta(seconds=3)),
                "received_at": rfc3339(DAY1),
                "skew_s": -3.0,
            },
        ],
    }


def test_no_skew_no_warning(journal: JournalBuilder) -> None:
    fill_standard(journal)
    report = journal.report()
    assert report.skew_count == 0
    assert not any("unreliable" in note for note in report.notes)


# --- since -------------------------------------------------------------------------------------


def test_since_filters_on_received_at(journal: JournalBuilder) -> None:
    fill_standard(journal)
    since = parse_since("26h", NOW)  # DAY2 minus one hour
    report = journal.report(since=since)
    assert report.tasks == 2
    assert [u.unit for u in report.units] == ["bravo"]
    assert [d.date for d in report.days] == ["2024-05-02"]
    assert report.stage("acknowledged").reached == 0
    exact = journal.report(since=DAY1 + timedelta(minutes=9))
    assert exact.tasks == 3  # t09, received at that very moment, is kept
    assert report_to_json(report)["since"] == rfc3339(since)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("30m", NOW - timedelta(minutes=30)),
        ("90s", NOW - timedelta(seconds=90)),
        (" 2H ", NOW - timedelta(hours=2)),
        ("2024-05-01T08:00:00Z", DAY1),
        ("2024-05-01T08:00:00.250Z", DAY1 + timedelta(milliseconds=250)),
        ("2024-05-01T16:00:00+08:00", DAY1),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    result = parse_since(text, NOW)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text", ["", "24", "h", "-5m", "1w", "1.5h", "yesterday", "2024-05-01T08:00:00", "2024-13-01"]
)
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(SinceError, match="since") as info:
        parse_since(text, NOW)
    assert isinstance(info.value, ValueError)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+14:00",  # no UTC time: used to raise OverflowError
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59.999Z",
        "2100-01-01T00:00:00.001Z",
        "2099-12-31T20:00:00-04:01",  # 2100-01-01T00:01Z
    ],
)
def test_parse_since_refuses_times_outside_2000_to_2100(text: str) -> None:
    with pytest.raises(SinceError, match=r"between 2000-01-01T00:00:00\.000Z and 2100") as info:
        parse_since(text, NOW)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    "text", ["999999999d", "٣h", "\x00", "\ud800", "2024-05-01T08:00:00+25:00"]
)
def test_parse_since_refuses_odd_text(text: str) -> None:
    with pytest.raises(SinceError, match="since"):
        parse_since(text, NOW)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T08:00Z",  # no seconds
        "2024-05-01T08:00:00+0800",  # offset without a colon
        "20240501T080000Z",  # basic format
        "2024-W18-3T08:00:00Z",  # week date
        "2024-05-01T08:00:00,5Z",  # decimal comma
    ],
)
def test_parse_since_wants_rfc3339_not_other_iso_8601_forms(text: str) -> None:
    with pytest.raises(SinceError, match="not an RFC 3339 time") as info:
        parse_since(text, NOW)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2000-01-01T00:00:00Z", SINCE_EARLIEST),
        ("2000-01-01T08:00:00+08:00", SINCE_EARLIEST),
        ("2100-01-01T00:00:00Z", SINCE_LATEST),
    ],
)
def test_parse_since_accepts_the_bounds(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


def _parse_since_or_error(text: str) -> datetime | None:
    try:
        return parse_since(text, NOW)
    except SinceError:
        return None


@given(st.text())
def test_parse_since_raises_only_since_error(text: str) -> None:
    result = _parse_since_or_error(text)  # anything but a SinceError fails the test
    assert result is None or result.utcoffset() == timedelta(0)


@given(
    st.datetimes(),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
def test_parse_since_any_rfc3339_time(moment: datetime, offset_min: int, spec: str) -> None:
    text = moment.replace(tzinfo=timezone(timedelta(minutes=offset_min))).isoformat(timespec=spec)
    written = datetime.fromisoformat(text)  # the time as written, to the precision written
    result = _parse_since_or_error(text.replace("+00:00", "Z"))
    if SINCE_EARLIEST <= written <= SINCE_LATEST:
        assert result == written
    else:
        assert result is None


# --- percentiles -------------------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 99) == 10.0
    assert percentile(values, 100) == 10.0
    assert percentile([7.0], 1) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="outside"):
        percentile(values, 0)


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
    st.integers(1, 100),
)
def test_percentile_property(values: list[float], p: int) -> None:
    ordered = sorted(values)
    result = percentile(ordered, p)
    assert result in ordered
    n = len(ordered)
    assert sum(1 for v in ordered if v <= result) * 100 >= p * n  # at least p % at or below
    assert sum(1 for v in ordered if v < result) * 100 < p * n  # and it is the smallest such


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (12.34, "12.3s"), (-3, "-3.0s"), (483, "8m03s"), (18420, "5h07m"),
     (86400, "24h00m"), (3 * 86400 + 4 * 3600, "3d04h")],
)  # fmt: skip
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


# --- JSON, table, HTML -------------------------------------------------------------------------


def test_json_round_trip_and_layout(journal: JournalBuilder) -> None:
    fill_standard(journal)
    data = report_to_json(journal.report())
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "headline", "generated_at", "since", "percentile_method", "skew_tolerance_s", "tasks",
        "assignments", "targets_s", "stages", "failures", "units", "days", "skew", "alarms",
        "notes",
    }  # fmt: skip
    assert next(iter(data)) == "headline"
    assert data["generated_at"] == rfc3339(NOW)
    assert data["since"] is None
    assert data["percentile_method"] == "nearest-rank"
    stages = data["stages"]
    assert isinstance(stages, dict)
    assert list(stages) == list(STAGES)
    ack = stages["acknowledged"]
    assert ack["target_s"] == 60.0
    assert ack["missed"] == 1
    assert ack["end_to_end"]["p90_s"] == 91.0
    assert ack["gateway"]["share_within_target"] == round(6 / 11, 4)
    assert ack["end_to_end"]["worst"][0] == {
        "task_id": "t09",
        "unit": "alpha",
        "latency_s": 101.0,
        "received_at": rfc3339(DAY1 + timedelta(minutes=9)),
        "skewed": False,
    }
    units = data["units"]
    assert isinstance(units, list)
    assert units[0]["unit"] == "alpha"
    assert units[0]["stages"]["acknowledged"]["end_to_end"]["p50_s"] == 51.0
    days = data["days"]
    assert isinstance(days, list)
    assert days[1]["stages"]["on_scene"]["missed"] == 1


def test_table_shows_stages_and_figures(journal: JournalBuilder) -> None:
    fill_standard(journal)
    text = render_table(journal.report())
    for stage in STAGES:
        assert stage in text
    ack_lines = [line for line in text.splitlines() if re.match(r"acknowledged +60\.0s ", line)]
    assert len(ack_lines) == 2  # end to end, gateway
    assert ack_lines[0].split() == [
        "acknowledged", "60.0s", "10", "1", "1", "51.0s", "91.0s", "1m41s", "1m41s", "45.5%",
    ]  # fmt: skip
    assert ack_lines[1].split()[5:] == ["50.0s", "90.0s", "1m40s", "1m40s", "54.5%"]
    assert "t09" in text
    assert "expired" in text
    assert "2024-05-02" in text


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in {"W", "F"} else 1 for ch in text)


def test_table_aligns_wide_unit_names_and_escapes_control_characters(
    journal: JournalBuilder,
) -> None:
    for task_id, unit in (("c1", "张伟"), ("c2", "alpha"), ("c3", "\x1b[2Jevil")):
        row = journal.task(task_id, received=DAY1, units=(unit,))
        journal.stage(row, unit, "acknowledged", 10.0)
    text = render_table(journal.report())
    assert "\x1b" not in text
    assert "\\x1b[2Jevil" in text
    rows = [
        line
        for line in text.splitlines()
        if re.match(r"(张伟|alpha|\\x1b\[2Jevil)\s+acknowledged ", line)
    ]
    assert len(rows) == 3
    columns = {_display_width(line[: line.index("acknowledged")]) for line in rows}
    assert len(columns) == 1  # the stage column starts at the same terminal column


def test_html_is_self_contained_with_charts_and_escapes(journal: JournalBuilder) -> None:
    fill_standard(journal)
    evil = '<script>alert("x")</script>'
    row = journal.task('<img src=x onerror="1">', received=DAY1, units=(evil,))
    journal.stage(row, evil, "acknowledged", 500.0)
    page = render_html(journal.report())
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1
    assert page.count("<svg") == len(STAGES)
    assert "<polyline" in page
    assert "target 60.0s" in page
    assert "http://" not in page
    assert "https://" not in page
    assert "<link" not in page
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;1&quot;&gt;" in page


def test_empty_journal_renders(journal: JournalBuilder) -> None:
    report = journal.report()
    assert (report.tasks, report.assignments, report.units, report.days) == (0, 0, (), ())
    assert report.stage("acknowledged").end_to_end.summary.p50_s is None
    assert "acknowledged" in render_table(report)
    assert render_html(report).count("<svg") == len(STAGES)
    assert json.loads(json.dumps(report_to_json(report)))["tasks"] == 0


def test_journal_without_task_tables(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "bare.sqlite")
    try:
        report = build_report(conn, SLA, since=None, now=NOW)
    finally:
        conn.close()
    assert report.tasks == 0


# --- the command -------------------------------------------------------------------------------


def make_config(data_dir: Path) -> Config:
    return parse_config(
        {"gateway": {"id": "gw1", "data_dir": str(data_dir)}}, base_dir=data_dir, env={}
    )


def test_run_sla_json_to_stdout_while_the_gateway_writes(
    journal: JournalBuilder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_standard(journal)  # the journal stays open, as with a running gateway
    before = (tmp_path / "journal.sqlite").stat().st_mtime_ns
    assert run_sla(make_config(tmp_path), since=None, fmt="json", output=None, now=NOW) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tasks"] == 12
    assert data["stages"]["acknowledged"]["reached"] == 10
    assert (tmp_path / "journal.sqlite").stat().st_mtime_ns == before


def test_run_sla_formats_to_files(journal: JournalBuilder, tmp_path: Path) -> None:
    fill_standard(journal)
    journal.journal.close()  # a stopped gateway: WAL checkpointed, files gone
    config = make_config(tmp_path)
    html_file, table_file = tmp_path / "report.html", tmp_path / "report.txt"
    assert run_sla(config, since="26h", fmt="html", output=html_file, now=NOW) == 0
    assert run_sla(config, since=None, fmt="table", output=table_file, now=NOW) == 0
    # a stopped gateway's journal is read without creating -wal/-shm files the report's user
    # would own
    assert sorted(p.name for p in tmp_path.glob("journal.sqlite*")) == ["journal.sqlite"]
    page = html_file.read_text(encoding="utf-8")
    assert "<svg" in page
    assert "t09" not in page  # day 1 is before --since
    assert "t09" in table_file.read_text(encoding="utf-8")


def test_run_sla_html_without_output_goes_to_stdout(
    journal: JournalBuilder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_standard(journal)
    assert run_sla(make_config(tmp_path), since=None, fmt="html", output=None, now=NOW) == 0
    assert "<svg" in capsys.readouterr().out


def test_run_sla_bad_since(
    journal: JournalBuilder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_sla(make_config(tmp_path), since="yesterday", fmt="table", output=None) == 2
    captured = capsys.readouterr()
    assert "yesterday" in captured.err
    assert captured.out == ""
    assert run_sla(make_config(tmp_path), since=None, fmt="xml", output=None) == 2


def test_run_sla_without_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_sla(make_config(tmp_path / "empty"), since=None, fmt="table", output=None) == 1
    assert "no journal" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "journal.sqlite").exists()


def test_run_sla_unwritable_output(
    journal: JournalBuilder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "missing-dir" / "report.txt"
    assert run_sla(make_config(tmp_path), since=None, fmt="table", output=output) == 1
    assert "missing-dir" in capsys.readouterr().err
