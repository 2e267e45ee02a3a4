"""The status page's data: one snapshot of the gateway, built once and shared by every page.

:func:`snapshot` reads the gateway's state (alarms, links, units, tasks in flight) into a
JSON-ready dict. :class:`StatusFeed` builds it for the open pages: at once (after
:data:`COALESCE_S`) when the gateway says something changed (a task stage, an alarm, a
link's state, a unit's availability), and every :data:`REFRESH_S` otherwise (positions,
counters, last heard), and never while no page is open. A frame carries the units that
changed since the last frame, and everything else whole (alarms, links, tasks: bounded
lists); a page that is new, or skipped a frame, gets every unit. Nothing moved, nothing sent.

Memory per page is bounded by construction: a :class:`Subscriber` holds one frame, the
latest (a newer one replaces it, so a page that stops reading skips frames and never
queues them), and every page shares the same bytes object. How much can wait in a slow
page's socket is the server's business (:mod:`gateway.web.server`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from gateway import __version__
from gateway.config import SLA_CLOCKS
from gateway.stages import Stage

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logging.getLogger(__name__)

REFRESH_S: Final = 1.0
"""A snapshot at least this often while a page is open (positions, counters, last heard)."""
COALESCE_S: Final = 0.05
"""After a change, wait this long for more before building (a task's first stages come in
one burst)."""
MAX_TASKS_SHOWN: Final = 200
"""Assignments listed, newest first; the snapshot says how many are open in all."""
MAX_UNITS_SHOWN: Final = 2000
"""Units listed (configured first, then implicit ones); the snapshot says how many exist."""
MAX_TEXT_CHARS: Final = 200
OFFER_BATCH: Final = 16
"""Pages handed a new snapshot per turn of the event loop: each page's write then runs in its
own task step, and the loop reads its links between batches instead of after 200 writes."""


class Subscriber:
    """One open page: the latest frame not yet written to it, and a cue."""

    __slots__ = ("_frame", "_ready", "dropped", "fresh")

    def __init__(self) -> None:
        self._frame: bytes | None = None
        self._ready = asyncio.Event()
        self.dropped = 0
        """Frames replaced before the page took them (a slow page skips, never queues)."""
        self.fresh = True
        """Not offered a frame yet."""

    def offer(self, frame: bytes) -> None:
        if self._frame is not None:
            self.dropped += 1
        self._frame = frame
        self.fresh = False
        self._ready.set()

    async def next_frame(self, timeout_s: float) -> bytes | None:
        """The latest frame, waiting up to ``timeout_s``; None when none came."""
        if self._frame is None:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return None
        frame, self._frame = self._frame, None
        self._ready.clear()
        return frame

    @property
    def pending(self) -> int:
        """Frames held for this page: 0 or 1, whatever it does."""
        return 0 if self._frame is None else 1


class StatusFeed:
    """Builds snapshots while pages are open and offers each to every page."""

    def __init__(self, gateway: Gateway, *, max_subscribers: int) -> None:
        self._gw = gateway
        self.max_subscribers = max_subscribers
        self._subscribers: set[Subscriber] = set()
        self._rest: bytes | None = None  # the last frame's view but the units
        self._units: dict[str, bytes] = {}  # the last frame's units, as JSON, in order
        self._unit_cache: dict[str, tuple[tuple[Any, ...], bytes]] = {}
        self._positions: dict[bytes, dict[str, Any]] = {}
        self.snapshots = 0
        self._wake = asyncio.Event()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber | None:
        """A new page (a full frame follows at once); None when the cap is reached."""
        if len(self._subscribers) >= self.max_subscribers:
            return None
        sub = Subscriber()
        self._subscribers.add(sub)
        self._wake.set()  # a fresh frame for it now (its clock is set from the frame's time)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def current(self) -> bytes:
        """A fresh snapshot as JSON (``/status.json``), with the server's time."""
        return _dumps({**snapshot(self._gw, self._positions), "now_ms": _now_ms()})

    async def run(self) -> None:
        changed = self._gw.changed
        while True:
            waiters = {
                asyncio.ensure_future(changed.wait()),
                asyncio.ensure_future(self._wake.wait()),
            }
            try:
                await asyncio.wait(waiters, timeout=REFRESH_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if changed.is_set():
                await asyncio.sleep(COALESCE_S)
                changed.clear()
            self._wake.clear()
            if not self._subscribers:
                self._rest = None
                self._units = {}
                continue
            try:
                await self._broadcast()
            except Exception:  # a bug in the page's view must not stop the gateway
                log.exception("the status snapshot failed")
                await asyncio.sleep(REFRESH_S)

    async def _broadcast(self) -> None:
        """One frame for every page: the units that changed (``full: false``), or all of them
        (``full: true``) for a page that has nothing yet or skipped a frame. A site of 2,000
        units where one moves sends one unit a second, not 2,000."""
        units, total = self._unit_fragments()
        rest = _dumps({**snapshot(self._gw, self._positions, units=False), "units_total": total})
        changed = [frag for uid, frag in units.items() if self._units.get(uid) != frag]
        gone = [uid for uid in self._units if uid not in units]
        unchanged = rest == self._rest and not changed and not gone
        self._rest, self._units = rest, units
        self.snapshots += 0 if unchanged else 1
        # The server's time rides as the event's id (the page sets its clocks by it), so the
        # data of a site where nothing moved is the same bytes: sent only to pages without it.
        now = _now_ms()
        delta = _frame(now, False, changed, gone, rest)
        full: bytes | None = None
        for index, sub in enumerate(list(self._subscribers)):
            if index and not index % OFFER_BATCH:
                await asyncio.sleep(0)
            if sub.fresh or sub.pending:  # nothing yet, or its last frame never left: all
                full = full or _frame(now, True, list(units.values()), [], rest)
                sub.offer(full)
            elif not unchanged:
                sub.offer(delta)

    def _unit_fragments(self) -> tuple[dict[str, bytes], int]:
        """Each unit's entry as JSON, dumped again only when the unit changed; and the total."""
        cache = self._unit_cache
        fresh: dict[str, tuple[tuple[Any, ...], bytes]] = {}
        entries, total = unit_entries(self._gw, self._positions)
        for entry in entries:
            position = entry["position"]
            key = (
                entry["name"], entry["configured"], entry["availability"], entry["via"],
                entry["heard_ms"], None if position is None else (position["lat"], position["lon"]),
            )  # fmt: skip
            held = cache.get(entry["id"])
            fresh[entry["id"]] = (
                held if held is not None and held[0] == key else (key, _dumps(entry))
            )
        self._unit_cache = fresh
        return {uid: frag for uid, (_key, frag) in fresh.items()}, total


def _frame(now_ms: int, full: bool, units: list[bytes], gone: list[str], rest: bytes) -> bytes:
    head = b'{"full":%b,"units":[%b],"gone":%b,' % (
        b"true" if full else b"false",
        b",".join(units),
        _dumps(gone),
    )
    return b"event: status\nid: %d\ndata: %b%b\n\n" % (now_ms, head, rest[1:])


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def snapshot(
    gw: Gateway, positions: dict[bytes, dict[str, Any]], *, units: bool = True
) -> dict[str, Any]:
    """The page's view of the gateway now; every list bounded. ``positions`` caches parsed
    position payloads from one snapshot to the next (a payload is parsed once, not once per
    second; replaced whole each time, so it never outgrows the units). Without ``units`` the
    units are left out (the feed sends them apart)."""
    view = {
        "gateway": gw.config.gateway.id,
        "version": __version__,
        "language": gw.config.http.language,
        "sla": {stage: gw.config.sla.target_s(stage) for stage in SLA_CLOCKS},
        "mqtt": {"connected": gw.bridge.connected, "outbox": gw.journal.outbox_depth},
        "alarms": [_alarm(a) for a in reversed(gw.alarms.active())],  # newest first
        "links": [_link(gw, index) for index in range(len(gw.supervisors))],
        **_tasks(gw),
    }
    if units:
        view["units"], view["units_total"] = unit_entries(gw, positions)
    return view


def _alarm(payload: dict[str, Any]) -> dict[str, Any]:
    out = {k: payload.get(k) for k in ("unit", "kind", "at", "link", "device", "detail")}
    position = payload.get("position")
    if isinstance(position, str):  # the journal keeps it as text
        try:
            position = json.loads(position)
        except ValueError:
            position = None
    if isinstance(position, dict):
        out["position"] = {"lat": position.get("lat"), "lon": position.get("lon")}
    return out


def _link(gw: Gateway, index: int) -> dict[str, Any]:
    sup = gw.supervisors[index]
    c = sup.counters
    status = sup.status
    out: dict[str, Any] = {
        "name": sup.cfg.name,
        "protocol": sup.cfg.protocol,
        "state": status.state.value,
        "since": status.since.isoformat(),
        "error": status.error,
        "rx_bytes": c.rx_bytes,
        "tx_bytes": c.tx_bytes,
        "frames": c.frames,
        "positions": c.positions,
        "rejected": c.rejected,
        "reconnects": c.reconnects,
    }
    if sup.sessions is not None:
        out["sessions"] = sup.sessions.snapshot().get("open")
    return out


def unit_entries(
    gw: Gateway, cache: dict[bytes, dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """The units the page lists (configured first, at most :data:`MAX_UNITS_SHOWN`), and how
    many units there are."""
    states = gw.unit_states()
    now_ms = time.time() * 1000
    parsed: dict[bytes, dict[str, Any]] = {}
    units = []
    for unit, state in list(states.items())[:MAX_UNITS_SHOWN]:
        raw = state["position"]
        position = None
        if isinstance(raw, bytes):
            position = cache.get(raw)
            if position is None:
                full = json.loads(raw)
                position = {"lat": full["lat"], "lon": full["lon"]}
            parsed[raw] = position
        units.append(
            {
                "id": unit,
                "name": state["name"],
                "configured": state["configured"],
                "availability": state["availability"],
                "via": state["via"],
                # When, not how long ago: the same until the unit is heard again, so a
                # snapshot of a quiet site is the same bytes and is not sent again.
                "heard_ms": _heard_ms(now_ms, state["heard_s_ago"]),
                "position": position,
            }
        )
    cache.clear()
    cache.update(parsed)
    return units, len(states)


def _now_ms() -> int:
    return round(time.time() * 1000)


def _heard_ms(now_ms: float, ago_s: float | None) -> int | None:
    """To the second (what the page shows): the same value from one snapshot to the next."""
    return None if ago_s is None else round((now_ms - ago_s * 1000) / 1000) * 1000


def _tasks(gw: Gateway) -> dict[str, Any]:
    dispatcher = gw.dispatcher
    assignments = [a for unit in gw.config.units for a in dispatcher.open_assignments(unit.id)]
    assignments.sort(key=lambda a: a.task.created_at, reverse=True)
    tasks = []
    for a in assignments[:MAX_TASKS_SHOWN]:
        task = a.task
        stages = {k: v for k, v in a.reached.items() if v and not k.startswith(Stage.ESCALATED)}
        escalated = sorted(k.partition(":")[2] for k in a.reached if k.startswith("escalated:"))
        entry: dict[str, Any] = {
            "task_id": task.task_id,
            "ref": a.row.ref,
            "unit": a.unit,
            "priority": task.priority,
            "text": task.text[:MAX_TEXT_CHARS],
            "created_ms": round(task.created_at.timestamp() * 1000),
            "stages": stages,
            "escalated": escalated,
        }
        if task.incident is not None:
            entry["incident"] = {
                "lat": task.incident.lat,
                "lon": task.incident.lon,
                "radius_m": task.incident.radius_m,
            }
        tasks.append(entry)
    return {"tasks": tasks, "tasks_total": len(assignments)}
