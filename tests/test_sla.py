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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config, SlaConfig, parse_config
from gateway.journal import Journal
from gateway.model import rfc3339
from gateway.sla import (
    SKEW_TOLERANCE_S,
    STAGES,
    SinceError,
    SlaReport,
    build_report,
    format_duration,
    parse_since,
    percentile,
    render_html,
    render_table,
    report_to_json,
    run_sla,
)
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
    ) -> None:
        """A stage ``offset_s`` after the task was received (end to end from its created_at)."""
        received = datetime.fromisoformat(task.received_at)
        created = datetime.fromisoformat(task.created_at)
        at = received + timedelta(seconds=offset_s)
        since_created_s = round((at - created).total_seconds(), 3) if since_created else None
        self.conn.execute(
            "INSERT INTO stages (task_id, unit, stage, target, at, offset_s, since_created_s)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (task.task_id, unit, stage, target, rfc3339(at), offset_s, since_created_s),
        )

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
    assert report.failures["declined"] == 1
    assert report.failures["cancelled"] == 1
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
    assert alpha["acknowledged"].reached == 10
    assert alpha["acknowledged"].missed == 0
    assert alpha["acknowledged"].end_to_end.p50_s == 51.0
    assert alpha["acknowledged"].end_to_end.p90_s == 91.0
    assert alpha["acknowledged"].end_to_end.share_within_target == 0.5
    assert alpha["acknowledged"].gateway.share_within_target == 0.6
    bravo = {s.stage: s for s in units["bravo"].stages}
    assert units["bravo"].assignments == 2
    assert (bravo["acknowledged"].reached, bravo["acknowledged"].missed) == (0, 1)
    assert bravo["acknowledged"].end_to_end.share_within_target == 0.0
    assert bravo["transmitted"].end_to_end.p50_s == 4.0


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
        "generated_at", "since", "percentile_method", "skew_tolerance_s", "tasks",
        "assignments", "targets_s", "stages", "failures", "units", "days", "skew", "notes",
    }  # fmt: skip
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
