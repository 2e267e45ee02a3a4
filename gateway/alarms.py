"""Alarms raised and cleared by units' devices: journaled, published first, summarised.

:class:`AlarmBook` is a domain service that knows nothing of protocols or MQTT sessions.
Drivers report what a device says each time it says it (:class:`~gateway.model.Alarm`);
the gateway resolves the unit and hands it here. What the book promises (SPEC sections 5
and 7):

* **One event per raise.** A raise of a ``(unit, kind)`` not raised now is written to the
  journal's ``alarms`` table and its ``raised`` event to the outbox in one transaction,
  before anything else happens with it; the outbox row is urgent, so it is published ahead
  of everything else the gateway sends. A device repeating the alarm (every beacon of a
  radio in emergency mode) is counted in :attr:`AlarmBook.repeats` and otherwise ignored.
* **Clears.** The device that raised an alarm clears it by saying so (a radio leaving
  emergency mode); another device of the same unit cannot (a unit's second radio beaconing
  normally says nothing about the first). The centre clears it with the ``clear_alarm``
  request (:meth:`AlarmBook.clear`). Either way the row gets ``cleared_at`` and
  ``cleared_by`` (``device`` or ``centre``) and a ``cleared`` event goes out, urgent too.
  A device still reporting the alarm after the centre cleared it raises it again: the
  gateway never sits on an alarm.
* **The summary.** The retained ``alarms`` topic lists every alarm raised now (each entry
  the ``raised`` payload, oldest first; ``{"alarms": []}`` when none), republished on each
  change and at start, where the raised set is rebuilt from the journal's rows with no
  ``cleared_at``: after ``kill -9`` the summary is right again.
* **Bounded.** Units are bounded (configured ones plus ``gateway.max_implicit_units``) and
  kinds are an enum; the raised set is capped at :data:`MAX_RAISED` all the same. A raise
  beyond it is still journaled and published, but not tracked (counted in
  :attr:`AlarmBook.overflow` and logged): an alarm is never dropped.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from gateway import payloads
from gateway.errors import FieldlinkError
from gateway.journal import Journal
from gateway.logs import RateLimitedLog
from gateway.model import Alarm, AlarmKind, rfc3339, utc_now
from gateway.taskstore import SCHEMA
from gateway.topics import Topics

__all__ = ["DETAIL_MAX_CHARS", "MAX_RAISED", "AlarmBook", "AlarmNotRaised"]

log = logging.getLogger(__name__)

MAX_RAISED: Final = 1000
"""Alarms tracked as raised at once (and listed in the retained summary)."""
DETAIL_MAX_CHARS: Final = 200
"""A protocol's alarm code or text is cut to this length."""
OVERFLOW_LOG_INTERVAL_S: Final = 60.0

Emit = Callable[[str, bytes], object]
"""Commits an event to the outbox, urgent (``MqttBridge.emit`` with ``urgent=True``)."""
PublishSummary = Callable[[bytes], None]
"""Sets the retained ``alarms`` topic."""


class AlarmNotRaised(FieldlinkError, ValueError):
    """The centre cleared an alarm that is not raised."""


@dataclass(frozen=True, slots=True)
class _Raised:
    device: str
    payload: dict[str, Any]


class AlarmBook:
    """The alarms raised now, kept in step with the journal. Call :meth:`start` once."""

    def __init__(
        self,
        journal: Journal,
        topics: Topics,
        *,
        emit: Emit,
        publish_summary: PublishSummary,
        max_raised: int = MAX_RAISED,
    ) -> None:
        self._journal = journal
        self._conn: sqlite3.Connection = journal.db.conn
        self._conn.executescript(SCHEMA)  # the journal's tables; idempotent
        self._topics = topics
        self._emit = emit
        self._publish_summary = publish_summary
        self._max_raised = max_raised
        self._raised: dict[tuple[str, str], _Raised] = {}  # insertion order: oldest first
        self.repeats = 0
        """Raises of an alarm already raised, since the start."""
        self.overflow = 0
        """Raises published but not tracked, the raised set being full."""
        self._overflow_log = RateLimitedLog(log, OVERFLOW_LOG_INTERVAL_S)

    # -- what the gateway asks ---------------------------------------------------------

    @property
    def raised(self) -> int:
        """Alarms raised now."""
        return len(self._raised)

    def active(self) -> list[dict[str, Any]]:
        """The ``raised`` payload of every alarm raised now, oldest first."""
        return [held.payload for held in self._raised.values()]

    def is_raised(self, unit: str, kind: AlarmKind) -> bool:
        return (unit, kind.value) in self._raised

    def device_of(self, unit: str, kind: AlarmKind) -> str | None:
        """The device (``link:address``) that raised the alarm, while it is raised."""
        held = self._raised.get((unit, kind.value))
        return None if held is None else held.device

    def has_unit(self, unit: str) -> bool:
        """Whether an alarm of ``unit`` is raised now (an implicit unit is known by it)."""
        return any(key[0] == unit for key in self._raised)

    def start(self) -> int:
        """Rebuild the raised set from the journal, publish the summary; returns how many."""
        self._raised.clear()
        rows = self._conn.execute(
            "SELECT unit, kind, link, device, raised_at, position, detail FROM alarms"
            " WHERE cleared_at IS NULL ORDER BY raised_at, id"
        ).fetchall()
        for unit, kind, link, device, raised_at, position, detail in rows:
            key = (str(unit), str(kind))
            if key in self._raised:
                continue  # an older row holds it; a clear clears both
            if len(self._raised) >= self._max_raised:
                self.overflow += 1
                continue
            self._raised[key] = _Raised(
                str(device),
                payloads.alarm(
                    unit=key[0],
                    kind=key[1],
                    state="raised",
                    at=str(raised_at),
                    link=str(link),
                    device=str(device),
                    position=_position_text(position),
                    detail=None if detail is None else str(detail),
                ),
            )
        if self._raised:
            log.warning(
                "%d alarms still raised from before the start: %s",
                len(self._raised),
                ", ".join(f"{unit} {kind}" for unit, kind in list(self._raised)[:20]),
            )
        self._publish()
        return len(self._raised)

    def on_alarm(self, unit: str, alarm: Alarm) -> str:
        """Take what a device of ``unit`` said; returns ``raised``, ``repeat``, ``cleared``
        or ``ignored`` (a clear of an alarm that is not raised, or raised by another device).
        Raises :class:`~gateway.journal.OutboxFull` (nothing recorded) when the outbox
        cannot take it."""
        key = (unit, alarm.kind.value)
        held = self._raised.get(key)
        if alarm.raised:
            if held is not None:
                self.repeats += 1
                return "repeat"
            self._raise(unit, alarm)
            return "raised"
        if held is None or held.device != str(alarm.device):
            return "ignored"
        position = None if alarm.position is None else payloads.position(alarm.position).decode()
        self._clear(key, held, alarm.at, "device", position=position, detail=_cut(alarm.detail))
        return "cleared"

    def clear(self, unit: str, kind: AlarmKind) -> dict[str, Any]:
        """The centre has handled the alarm: clear it; returns the ``cleared`` payload.

        Raises :class:`AlarmNotRaised` when no such alarm is raised.
        """
        key = (unit, kind.value)
        held = self._raised.get(key)
        if held is None:
            raise AlarmNotRaised(f"no {kind.value} alarm is raised for unit {unit}")
        return self._clear(key, held, utc_now(), "centre")

    # -- inside ------------------------------------------------------------------------

    def _raise(self, unit: str, alarm: Alarm) -> None:
        device = str(alarm.device)
        position = None if alarm.position is None else payloads.position(alarm.position).decode()
        body = payloads.alarm(
            unit=unit,
            kind=alarm.kind.value,
            state="raised",
            at=rfc3339(alarm.at),
            link=alarm.device.link,
            device=device,
            position=position,
            detail=_cut(alarm.detail),
        )
        with self._journal.transaction():
            self._conn.execute(
                "INSERT INTO alarms (unit, kind, link, device, raised_at, position, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    unit,
                    body["kind"],
                    body["link"],
                    device,
                    body["at"],
                    position,
                    body.get("detail"),
                ),
            )
            self._emit(self._topics.alarm(unit), payloads.dumps(body))
        log.warning("unit %s: %s alarm raised by %s", unit, body["kind"], device)
        if len(self._raised) >= self._max_raised:
            self.overflow += 1
            self._overflow_log.error(
                "unit %s: %s alarm published but not tracked: %d alarms are raised already"
                " (its repeats are published again; clear some)",
                unit,
                body["kind"],
                len(self._raised),
            )
            return
        self._raised[(unit, body["kind"])] = _Raised(device, body)
        self._publish()

    def _clear(
        self,
        key: tuple[str, str],
        held: _Raised,
        at: datetime,
        by: str,
        *,
        position: str | None = None,
        detail: str | None = None,
    ) -> dict[str, Any]:
        unit, kind = key
        raised = held.payload
        body = payloads.alarm(
            unit=unit,
            kind=kind,
            state="cleared",
            at=rfc3339(at),
            link=str(raised["link"]),
            device=held.device,
            position=position,
            detail=detail,
            raised_at=str(raised["at"]),
            cleared_by=by,
        )
        with self._journal.transaction():
            self._conn.execute(
                "UPDATE alarms SET cleared_at = ?, cleared_by = ?"
                " WHERE unit = ? AND kind = ? AND cleared_at IS NULL",
                (body["at"], by, unit, kind),
            )
            self._emit(self._topics.alarm(unit), payloads.dumps(body))
        del self._raised[key]
        log.info("unit %s: %s alarm cleared by the %s", unit, kind, by)
        self._publish()
        return body

    def _publish(self) -> None:
        self._publish_summary(payloads.alarms_summary(self.active()))


def _cut(detail: str | None) -> str | None:
    return None if detail is None else detail[:DETAIL_MAX_CHARS]


def _position_text(value: object) -> str | None:
    """The journal's position JSON, or None when it is missing or cannot be read."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        log.warning("an alarm row's position is not a JSON object; left out of the summary")
        return None
    return value
