"""The SQLite journal: the durable outbox of QoS 1 events and the inbound log.

One file, ``journal.sqlite`` in the data directory, in WAL mode with
``synchronous=NORMAL``: a committed row survives ``kill -9`` of the process (not
a power cut, which the operations guide covers). The journal is used from the
event loop's thread only; each call is a short transaction.

Reliability rules it implements:

* An event is appended to the outbox (committed) before anything else happens
  with it; the MQTT layer deletes the row only after the broker acknowledged it.
* Urgent events (alarms) are marked ``urgent``: the MQTT layer publishes them ahead
  of the rest (in order among themselves), and they may exceed the outbox's row cap by
  :data:`URGENT_HEADROOM_ROWS`, so a full outbox does not refuse an alarm.
* An inbound message is committed before the broker gets its PUBACK, counted as one
  handling attempt, and deleted once it is handled (the task tables keep what matters).
* A message whose handling never finished (the process died in it) is handled again at
  the next start, once: a second unfinished attempt, or a handler that failed, moves it
  to the ``quarantine`` table, so no message can crash the gateway on every start.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from gateway.errors import FieldlinkError
from gateway.model import rfc3339, utc_now

SCHEMA_VERSION = 3
MAX_HANDLING_ATTEMPTS = 2
"""Starts of an inbound message's handling before it is quarantined instead."""
QUARANTINE_MAX_ROWS = 1000
"""Quarantined messages kept for inspection; the oldest go first."""
URGENT_HEADROOM_ROWS = 10_000
"""Urgent rows the outbox takes beyond ``outbox_max_rows``: an alarm is not refused because
a long broker outage filled the outbox with task events (alarms are deduplicated per raise,
so this is room for thousands of raises)."""


class JournalError(FieldlinkError):
    """The journal cannot be opened or written."""


class OutboxFull(FieldlinkError):
    """The outbox holds its configured maximum of rows; the event was not stored."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class InboundRow:
    seq: int
    topic: str
    payload: bytes
    received_at: str
    response_topic: str | None
    correlation_data: bytes | None
    attempts: int = 1


class Journal:
    """The gateway's SQLite journal. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection, *, outbox_max_rows: int) -> None:
        self._conn = conn
        self._db = sqlite_utils.Database(conn)
        self._outbox_max_rows = outbox_max_rows
        self._ensure_schema()
        self._outbox_depth = self._count("outbox")
        self._urgent_depth = self._count_urgent()
        self.quarantined = self._count("quarantine")

    @classmethod
    def open(cls, path: Path, *, outbox_max_rows: int = 100_000) -> Journal:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            return cls(conn, outbox_max_rows=outbox_max_rows)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    @property
    def db(self) -> sqlite_utils.Database:
        """The sqlite-utils view of the journal, for services that add their own tables."""
        return self._db

    def _ensure_schema(self) -> None:
        # AUTOINCREMENT: a sequence number is never reused after its row is deleted, so
        # "everything after seq N" stays a correct question for the outbox drainer.
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                qos INTEGER NOT NULL,
                retain INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                urgent INTEGER NOT NULL DEFAULT 0
            );
            CREATE TABLE IF NOT EXISTS inbound (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                received_at TEXT NOT NULL,
                response_topic TEXT,
                correlation_data BLOB,
                handled INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS inbound_unhandled ON inbound (handled) WHERE handled = 0;
            CREATE TABLE IF NOT EXISTS quarantine (
                seq INTEGER PRIMARY KEY,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                received_at TEXT NOT NULL,
                quarantined_at TEXT NOT NULL,
                error TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            """
        )
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(inbound)")}
        if "attempts" not in columns:
            self._conn.execute("ALTER TABLE inbound ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1")
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(outbox)")}
        if "urgent" not in columns:  # journals written before the urgent lane
            self._conn.execute("ALTER TABLE outbox ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0")
        # The urgent lane's rows, found without scanning the (possibly long) normal backlog.
        self._conn.execute(
            "CREATE INDEX IF NOT EXISTS outbox_urgent ON outbox (seq) WHERE urgent = 1"
        )
        # Journals written before handled rows were deleted: drop them now.
        self._conn.execute("DELETE FROM inbound WHERE handled = 1")
        self._db.table("meta").upsert(
            {"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key"
        )

    def _count(self, table: str) -> int:
        row = self._conn.execute(f"SELECT count(*) FROM [{table}]").fetchone()  # noqa: S608 - fixed names
        return int(row[0])

    def _count_urgent(self) -> int:
        row = self._conn.execute("SELECT count(*) FROM outbox WHERE urgent = 1").fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they commit together (a stage row and its outbox event).

        Nested use joins the outer transaction. Nothing inside may await: the journal
        belongs to the event loop's thread, and a transaction must not span a suspension.
        """
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            self._outbox_depth = self._count("outbox")
            self._urgent_depth = self._count_urgent()
            raise
        self._conn.execute("COMMIT")

    # -- outbox --------------------------------------------------------------

    @property
    def outbox_depth(self) -> int:
        return self._outbox_depth

    @property
    def urgent_depth(self) -> int:
        """Urgent rows in the outbox (published or not), a part of :attr:`outbox_depth`."""
        return self._urgent_depth

    def append(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        urgent: bool = False,
    ) -> int:
        """Commit one event to the outbox and return its sequence number.

        ``urgent`` rows (alarms) are published ahead of every other row; they may exceed
        the row cap by :data:`URGENT_HEADROOM_ROWS`.
        """
        cap = self._outbox_max_rows + (URGENT_HEADROOM_ROWS if urgent else 0)
        if self._outbox_depth >= cap:
            raise OutboxFull(f"outbox holds {self._outbox_depth} rows; {topic} not stored")
        cur = self._conn.execute(
            "INSERT INTO outbox (topic, payload, qos, retain, created_at, urgent)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (topic, payload, qos, int(retain), rfc3339(utc_now()), int(urgent)),
        )
        self._outbox_depth += 1
        if urgent:
            self._urgent_depth += 1
        assert cur.lastrowid is not None
        return cur.lastrowid

    def pending(
        self, after_seq: int = 0, limit: int = 100, *, urgent: bool | None = None
    ) -> list[OutboxRow]:
        """Outbox rows in order, starting after ``after_seq``: all of them, or only the
        urgent (``urgent=True``) or only the others (``urgent=False``)."""
        where = "seq > ?" if urgent is None else f"seq > ? AND urgent = {int(urgent)}"
        rows = self._conn.execute(
            f"SELECT seq, topic, payload, qos, retain, urgent FROM outbox"  # noqa: S608 - fixed text
            f" WHERE {where} ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [OutboxRow(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), bool(r[5])) for r in rows]

    def acknowledge(self, seqs: Iterable[int]) -> None:
        """Delete rows the broker has acknowledged."""
        seq_list = list(seqs)
        if not seq_list:
            return
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seq_list])
        self._outbox_depth = self._count("outbox")
        if self._urgent_depth:
            self._urgent_depth = self._count_urgent()

    # -- inbound ---------------------------------------------------------------

    def store_inbound(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> int:
        """Commit an inbound message; call this before the broker gets its PUBACK.

        The row counts as one handling attempt: its handling starts right after.
        """
        cur = self._conn.execute(
            "INSERT INTO inbound (topic, payload, received_at, response_topic, correlation_data,"
            " handled, attempts) VALUES (?, ?, ?, ?, ?, 0, 1)",
            (topic, payload, rfc3339(utc_now()), response_topic, correlation_data),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def mark_handled(self, seq: int) -> None:
        """The message is handled: its row goes (tasks live in the task tables)."""
        self._conn.execute("DELETE FROM inbound WHERE seq = ?", (seq,))

    def retry_inbound(self, seq: int) -> None:
        """Count one more handling attempt of a message replayed after a restart."""
        self._conn.execute("UPDATE inbound SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def quarantine(self, seq: int, error: str) -> None:
        """Move a message whose handling failed out of the inbound log, for inspection."""
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO quarantine (seq, topic, payload, received_at,"
                " quarantined_at, error) SELECT seq, topic, payload, received_at, ?, ?"
                " FROM inbound WHERE seq = ?",
                (rfc3339(utc_now()), error[:500], seq),
            )
            self._conn.execute("DELETE FROM inbound WHERE seq = ?", (seq,))
            self._conn.execute(
                "DELETE FROM quarantine WHERE seq NOT IN"
                " (SELECT seq FROM quarantine ORDER BY seq DESC LIMIT ?)",
                (QUARANTINE_MAX_ROWS,),
            )
        self.quarantined += 1

    def quarantined_rows(self) -> list[tuple[int, str, str]]:
        """``(seq, topic, error)`` of the quarantined messages, oldest first."""
        rows = self._conn.execute("SELECT seq, topic, error FROM quarantine ORDER BY seq")
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def unhandled_inbound(self) -> list[InboundRow]:
        """Inbound messages stored but not yet handled (after a crash), oldest first."""
        rows = self._conn.execute(
            "SELECT seq, topic, payload, received_at, response_topic, correlation_data, attempts"
            " FROM inbound WHERE handled = 0 ORDER BY seq"
        ).fetchall()
        return [
            InboundRow(
                r[0], r[1], bytes(r[2]), r[3], r[4], None if r[5] is None else bytes(r[5]), r[6]
            )
            for r in rows
        ]
