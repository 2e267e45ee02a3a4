"""Tasks, their stages and transmission attempts, in the journal (SQLite, WAL).

This is the latency journal the centre proves its figures with (SPEC section 6):
every task, unit and stage has a row with the gateway's wall-clock time (UTC) and a
monotonic offset from the moment the gateway received the task. The SLA report
reads these tables; the dispatch service writes them, always before it publishes.

Schema (all times RFC 3339 UTC with milliseconds):

``tasks``
    ``task_id`` (key), ``ref`` (the short number radios see as ``#12``), ``body`` (the
    task JSON as received), ``priority``, ``created_at`` (the dispatcher's clock),
    ``received_at`` (ours), ``received_boot`` and ``received_mono`` (kernel boot id and
    ``time.monotonic()`` at receipt: offsets survive a process restart and fall back
    to wall-clock differences after a reboot), ``expires_at``, ``closed`` (1 once every
    unit's assignment has ended).
``stages``
    ``(task_id, unit, stage, target)`` is the key, so a stage is recorded once and
    never republished with another time. ``target`` is empty except for ``escalated``
    rows, where it names the stage whose deadline was about to pass. ``at``,
    ``offset_s`` (monotonic seconds since ``received``), ``since_created_s`` (``at``
    minus ``created_at``: end to end, across two clocks), ``detail``, ``source``
    (``device``: the unit's radio said it; ``centre``: a dispatcher recorded what a
    person said by voice or phone, ``report_stage``; ``gateway``: the gateway's own
    observation, such as a send or a position inside the incident radius) and
    ``reported_by`` (who recorded a centre-reported stage).
``answers_seen``
    numbered messages from devices already applied: ``device`` (``link:address``),
    ``message_id`` (the protocol's number), ``digest`` (of the text, so a radio that
    restarts its counter is not silenced), ``at``. Kept for :data:`ANSWERS_SEEN_S`, at most
    :data:`ANSWERS_SEEN_MAX` rows.
``attempts``
    one row per send of a task to a device, written when its first frame goes out (in
    the same step as the write): ``task_id``, ``unit``, ``device`` (``link:address``),
    ``at``, ``outcome``
    (``transmitted``, ``delivered``, ``failed``; empty while in flight), ``reason``.
``alarms``
    one row per raise of an alarm by a unit's device: ``unit``, ``kind`` (``emergency``,
    ``man_down``, ...), ``link``, ``device``, ``raised_at``, ``cleared_at`` and
    ``cleared_by`` (``device`` or ``centre``; empty while raised), ``position`` (the
    position JSON when the alarm carried one), ``detail``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway import jsonin
from gateway.journal import Journal
from gateway.model import rfc3339

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    ref INTEGER NOT NULL UNIQUE,
    body TEXT NOT NULL,
    priority TEXT NOT NULL,
    created_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    received_boot TEXT NOT NULL,
    received_mono REAL NOT NULL,
    expires_at TEXT,
    closed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (closed) WHERE closed = 0;
CREATE INDEX IF NOT EXISTS tasks_received ON tasks (received_at);
CREATE TABLE IF NOT EXISTS stages (
    task_id TEXT NOT NULL,
    unit TEXT NOT NULL,
    stage TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL,
    offset_s REAL NOT NULL,
    since_created_s REAL,
    detail TEXT,
    source TEXT NOT NULL DEFAULT 'gateway',
    reported_by TEXT,
    PRIMARY KEY (task_id, unit, stage, target)
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    unit TEXT NOT NULL,
    device TEXT NOT NULL,
    at TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    reason TEXT
);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts (task_id, unit);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    unit TEXT NOT NULL,
    kind TEXT NOT NULL,
    link TEXT NOT NULL,
    device TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    cleared_at TEXT,
    cleared_by TEXT,
    position TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS alarms_raised ON alarms (cleared_at) WHERE cleared_at IS NULL;
CREATE INDEX IF NOT EXISTS alarms_time ON alarms (raised_at);
CREATE TABLE IF NOT EXISTS answers_seen (
    device TEXT NOT NULL,
    message_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (device, message_id, digest)
);
CREATE INDEX IF NOT EXISTS answers_seen_at ON answers_seen (at);
"""

ANSWERS_SEEN_S = 86400.0
"""How long a numbered message is remembered, so a radio's repeat is applied once."""
ANSWERS_SEEN_MAX = 100_000
"""Numbered messages remembered at most (the oldest are forgotten first)."""

_MIGRATIONS = (
    ("stages", "source", "ALTER TABLE stages ADD COLUMN source TEXT NOT NULL DEFAULT 'gateway'"),
    ("stages", "reported_by", "ALTER TABLE stages ADD COLUMN reported_by TEXT"),
)
"""Columns added after the first release: journals written before them gain them on open."""

_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """The kernel's boot id: ``time.monotonic()`` values compare only within one boot."""
    with contextlib.suppress(OSError):
        return _BOOT_ID_PATH.read_text().strip()
    return "unknown"


@dataclass(frozen=True, slots=True)
class TaskRow:
    task_id: str
    ref: int
    body: str
    priority: str
    created_at: str
    received_at: str
    received_boot: str
    received_mono: float
    expires_at: str | None
    closed: bool


@dataclass(frozen=True, slots=True)
class StageRow:
    task_id: str
    unit: str
    stage: str
    target: str
    at: str
    offset_s: float
    since_created_s: float | None
    detail: str | None
    source: str = "gateway"
    reported_by: str | None = None


def _task_row(r: tuple[Any, ...]) -> TaskRow:
    return TaskRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]))


class TaskStore:
    """The dispatch tables of the journal."""

    def __init__(self, journal: Journal) -> None:
        self._conn = journal.db.conn
        self._conn.executescript(SCHEMA)
        for table, column, ddl in _MIGRATIONS:
            columns = {r[1] for r in self._conn.execute(f"PRAGMA table_info([{table}])")}
            if column not in columns:
                self._conn.execute(ddl)
        self.boot = boot_id()
        self._seen_inserts = 0

    def add_task(
        self,
        *,
        task_id: str,
        body: str,
        priority: str,
        created_at: str,
        received_at: datetime,
        expires_at: str | None,
    ) -> TaskRow | None:
        """Store a new task and give it a short ref; None when the id is already known."""
        row = self._conn.execute("SELECT coalesce(max(ref), 0) + 1 FROM tasks").fetchone()
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO tasks (task_id, ref, body, priority, created_at, received_at,"
            " received_boot, received_mono, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task_id,
                row[0],
                body,
                priority,
                created_at,
                rfc3339(received_at),
                self.boot,
                time.monotonic(),
                expires_at,
            ),
        )
        if not cur.rowcount:
            return None
        return self.task(task_id)

    def task(self, task_id: str) -> TaskRow | None:
        row = self._conn.execute(
            "SELECT task_id, ref, body, priority, created_at, received_at, received_boot,"
            " received_mono, expires_at, closed FROM tasks WHERE task_id = ?",
            (task_id,),
        ).fetchone()
        return None if row is None else _task_row(row)

    def open_tasks(self) -> list[TaskRow]:
        rows = self._conn.execute(
            "SELECT task_id, ref, body, priority, created_at, received_at, received_boot,"
            " received_mono, expires_at, closed FROM tasks WHERE closed = 0 ORDER BY ref"
        ).fetchall()
        return [_task_row(r) for r in rows]

    def close_task(self, task_id: str) -> None:
        self._conn.execute("UPDATE tasks SET closed = 1 WHERE task_id = ?", (task_id,))

    def offset_s(self, task: TaskRow, at: datetime) -> float:
        """Seconds since the task was received, on the monotonic clock where it can be."""
        if task.received_boot == self.boot and task.received_boot != "unknown":
            return round(time.monotonic() - task.received_mono, 3)
        received = jsonin.parse_rfc3339(
            task.received_at, "received_at", earliest=jsonin.CLOCK_EARLIEST
        )
        return round((at - received).total_seconds(), 3)

    def record_stage(
        self,
        task: TaskRow,
        unit: str,
        stage: str,
        at: datetime,
        *,
        since_created_s: float | None,
        detail: str | None = None,
        target: str = "",
        source: str = "gateway",
        reported_by: str | None = None,
    ) -> StageRow | None:
        """Record a stage once; None when it was already recorded (keep the first time)."""
        offset = self.offset_s(task, at)
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO stages (task_id, unit, stage, target, at, offset_s,"
            " since_created_s, detail, source, reported_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task.task_id, unit, stage, target, rfc3339(at), offset, since_created_s, detail,
                source, reported_by,
            ),
        )  # fmt: skip
        if not cur.rowcount:
            return None
        return StageRow(
            task.task_id, unit, stage, target, rfc3339(at), offset, since_created_s, detail,
            source, reported_by,
        )  # fmt: skip

    def stages(self, task_id: str, unit: str | None = None) -> list[StageRow]:
        sql = (
            "SELECT task_id, unit, stage, target, at, offset_s, since_created_s, detail, source,"
            " reported_by FROM stages WHERE task_id = ?"
        )
        params: tuple[str, ...] = (task_id,)
        if unit is not None:
            sql += " AND unit = ?"
            params = (task_id, unit)
        return [StageRow(*r) for r in self._conn.execute(sql + " ORDER BY at", params)]

    def first_sighting(self, device: str, message_id: str, text: str, at: datetime) -> bool:
        """Remember a numbered message; False when it was seen within :data:`ANSWERS_SEEN_S`
        (a repeat). Call inside the transaction that applies the message."""
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        cutoff = rfc3339(at - timedelta(seconds=ANSWERS_SEEN_S))
        row = self._conn.execute(
            "SELECT at FROM answers_seen WHERE device = ? AND message_id = ? AND digest = ?",
            (device, message_id, digest),
        ).fetchone()
        if row is not None and row[0] >= cutoff:
            return False
        self._conn.execute(
            "INSERT OR REPLACE INTO answers_seen (device, message_id, digest, at)"
            " VALUES (?, ?, ?, ?)",
            (device, message_id, digest, rfc3339(at)),
        )
        self._seen_inserts += 1
        if self._seen_inserts % 1000 == 1:
            self._conn.execute("DELETE FROM answers_seen WHERE at < ?", (cutoff,))
            self._conn.execute(
                "DELETE FROM answers_seen WHERE rowid IN (SELECT rowid FROM answers_seen"
                " ORDER BY at DESC LIMIT -1 OFFSET ?)",
                (ANSWERS_SEEN_MAX,),
            )
        return True

    def add_attempt(self, task_id: str, unit: str, device: str, at: datetime) -> int:
        """Record a transmission attempt before the bytes go out; returns its id."""
        cur = self._conn.execute(
            "INSERT INTO attempts (task_id, unit, device, at) VALUES (?, ?, ?, ?)",
            (task_id, unit, device, rfc3339(at)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish_attempt(self, attempt_id: int, outcome: str, reason: str | None = None) -> None:
        self._conn.execute(
            "UPDATE attempts SET outcome = ?, reason = ? WHERE id = ?",
            (outcome, reason, attempt_id),
        )

    def attempts(self, task_id: str, unit: str, *, device: str | None = None) -> int:
        """Sends of a task to a unit so far (to one device, when given), across restarts."""
        sql = "SELECT count(*) FROM attempts WHERE task_id = ? AND unit = ?"
        params: tuple[str, ...] = (task_id, unit)
        if device is not None:
            sql += " AND device = ?"
            params = (task_id, unit, device)
        return int(self._conn.execute(sql, params).fetchone()[0])
