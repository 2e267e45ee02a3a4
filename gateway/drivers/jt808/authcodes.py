"""JT/T 808 authentication codes, kept so terminals re-authenticate after a gateway restart.

A terminal registers once (0x0100), gets a code in the 0x8100 answer and from then on sends
that code in 0x0102 at every connection, for months: a gateway that forgot its codes would
refuse every terminal until each one is reset. The codes live in the journal's SQLite file,
in a table of their own (``jt808_auth``), added the way :mod:`gateway.alarms` adds its
tables: ``executescript(SCHEMA)`` on the journal's connection, idempotent.

Where no journal is at hand (a driver constructed without one, tests) the codes are kept in
memory only; either way at most :data:`MAX_CODES` per link (the oldest issued goes first: a
link open to anyone cannot grow the table without bound).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections import OrderedDict
from typing import Final

from gateway.model import rfc3339, utc_now

__all__ = ["MAX_CODES", "SCHEMA", "AuthCodes"]

log = logging.getLogger(__name__)

MAX_CODES: Final = 100_000
"""Codes kept per link."""
CODE_BYTES: Final = 6
"""Random bytes per code (12 hex digits: printable on any terminal, unguessable)."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jt808_auth (
    link TEXT NOT NULL,
    phone TEXT NOT NULL,
    code TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    PRIMARY KEY (link, phone)
);
CREATE INDEX IF NOT EXISTS jt808_auth_issued ON jt808_auth (link, issued_at);
"""


class AuthCodes:
    """The codes of one link's terminals, by normalised phone number."""

    def __init__(self, link: str, conn: sqlite3.Connection | None = None) -> None:
        self.link = link
        self._conn = conn
        self._memory: OrderedDict[str, str] = OrderedDict()
        if conn is not None:
            conn.executescript(SCHEMA)

    @property
    def persistent(self) -> bool:
        return self._conn is not None

    def get(self, phone: str) -> str | None:
        if self._conn is None:
            return self._memory.get(phone)
        try:
            row = self._conn.execute(
                "SELECT code FROM jt808_auth WHERE link = ? AND phone = ?", (self.link, phone)
            ).fetchone()
        except sqlite3.Error:
            log.exception("%s: cannot read the auth code of %s", self.link, phone)
            return self._memory.get(phone)
        return None if row is None else str(row[0])

    def issue(self, phone: str) -> str:
        """The terminal's code: the one it has (a terminal re-registers after each reset and
        may keep its old code) or a new one, stored before it is sent."""
        code = self.get(phone)
        if code is not None:
            return code
        code = secrets.token_hex(CODE_BYTES)
        self._memory[phone] = code
        while len(self._memory) > MAX_CODES:
            self._memory.popitem(last=False)
        if self._conn is not None:
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO jt808_auth (link, phone, code, issued_at)"
                    " VALUES (?, ?, ?, ?)",
                    (self.link, phone, code, rfc3339(utc_now())),
                )
                self._conn.execute(
                    "DELETE FROM jt808_auth WHERE link = ? AND phone IN (SELECT phone FROM"
                    " jt808_auth WHERE link = ? ORDER BY issued_at DESC LIMIT -1 OFFSET ?)",
                    (self.link, self.link, MAX_CODES),
                )
            except sqlite3.Error:
                log.exception("%s: cannot store the auth code of %s", self.link, phone)
        return code

    def revoke(self, phone: str) -> None:
        self._memory.pop(phone, None)
        if self._conn is not None:
            try:
                self._conn.execute(
                    "DELETE FROM jt808_auth WHERE link = ? AND phone = ?", (self.link, phone)
                )
            except sqlite3.Error:
                log.exception("%s: cannot revoke the auth code of %s", self.link, phone)
