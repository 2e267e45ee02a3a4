"""Prometheus metrics of the running gateway, served at ``GET /metrics``.

Almost everything is read from the gateway's own state when Prometheus scrapes
(:class:`GatewayCollector`): links, the MQTT session, the outbox, alarms, units and
dial-in sessions already keep their counters, so the hot paths (a position, a frame)
do no work for the metrics at all. Only what needs a distribution is observed as it
happens, on paths that are rare by nature:

* a task stage (a few per task): ``fieldlink_task_stages_total`` and, for the stages
  with an SLA clock, ``fieldlink_task_stage_latency_seconds`` (seconds since the task
  was created, bucketed at the ``[sla]`` targets);
* an alarm raised: ``fieldlink_alarms_raised_total``;
* an outbox row acknowledged by the broker: ``fieldlink_mqtt_publish_latency_seconds``
  (from the commit of the event to the broker's PUBACK), measured by
  :class:`ObservedJournal` around the journal's own append and acknowledge.

Label sets are bounded: links and stages are configuration and an enum, alarm kinds an
enum, rejection reasons are the drivers' fixed codes (capped per link all the same).
Units are labels only with ``http.unit_metrics = true``, and only configured units.
The names are listed in ``docs/operations.md``; a test checks both ways.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.config import SLA_CLOCKS, SlaConfig
from gateway.journal import Journal
from gateway.model import AlarmKind, LinkState
from gateway.stages import Stage

if TYPE_CHECKING:
    from gateway.daemon import Gateway

__all__ = [
    "MAX_REASONS_PER_LINK",
    "PUBLISH_BUCKETS_S",
    "GatewayMetrics",
    "ObservedJournal",
    "stage_buckets",
]

log = logging.getLogger(__name__)

FINE_BUCKETS_S: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0)
"""Below a minute: delivery and acknowledgement of a task by a radio at hand."""
SLA_BUCKETS_S: Final = (60.0, 90.0, 120.0, 180.0, 300.0, 480.0, 600.0, 900.0, 1800.0, 3600.0)
LONG_BUCKETS_S: Final = (7200.0, 14400.0, 43200.0, 86400.0)
PUBLISH_BUCKETS_S: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)  # fmt: skip
"""From an event's commit to the outbox to the broker's acknowledgement; long tails are outages."""
MAX_REASONS_PER_LINK: Final = 32
"""Rejection reasons shown per link; the rest are summed under ``reason="other"``."""
MAX_TRACKED_ROWS: Final = 20_000
"""Outbox rows whose append time is kept for the publish latency; older ones are forgotten
(an outage longer than this many events loses only their latency samples)."""
OBSERVED_STAGES: Final[tuple[str, ...]] = (
    Stage.TRANSMITTED.value,
    Stage.DELIVERED.value,
    *SLA_CLOCKS,
)
"""Stages whose time since the task's creation is a histogram: the five SLA clocks, and
the radio's part before them."""


def stage_buckets(sla: SlaConfig) -> tuple[float, ...]:
    """Fine below a minute, then the SLA targets (the defaults and the configured ones), so
    "within the target" is a bucket boundary: ``le="60"`` for acknowledgement."""
    targets = {sla.target_s(stage) for stage in SLA_CLOCKS}
    return tuple(sorted({*FINE_BUCKETS_S, *SLA_BUCKETS_S, *LONG_BUCKETS_S, *targets}))


class ObservedJournal(Journal):
    """The journal, timing each outbox row from its append to its acknowledgement.

    Two dict operations per QoS 1 event (positions are not outbox rows); the times of at
    most :data:`MAX_TRACKED_ROWS` rows are kept. A row appended and then rolled back is
    never acknowledged: it ages out of the bounded map.
    """

    def __init__(self, conn: sqlite3.Connection, *, outbox_max_rows: int) -> None:
        super().__init__(conn, outbox_max_rows=outbox_max_rows)
        self._appended: dict[int, float] = {}
        self.on_published: Callable[[float], None] | None = None

    def append(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        urgent: bool = False,
    ) -> int:
        seq = super().append(topic, payload, qos=qos, retain=retain, urgent=urgent)
        appended = self._appended
        if len(appended) >= MAX_TRACKED_ROWS:
            del appended[next(iter(appended))]  # the oldest: insertion order
        appended[seq] = time.monotonic()
        return seq

    def acknowledge(self, seqs: Iterable[int]) -> None:
        seq_list = list(seqs)
        super().acknowledge(seq_list)
        observe = self.on_published
        now = time.monotonic()
        for seq in seq_list:
            started = self._appended.pop(seq, None)
            if started is not None and observe is not None:
                observe(now - started)

    def oldest_outbox_at(self) -> str | None:
        """``created_at`` of the oldest row in the outbox (RFC 3339), or None when empty."""
        if not self.outbox_depth:
            return None
        row = self.db.conn.execute("SELECT created_at FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else str(row[0])


class GatewayMetrics:
    """The gateway's registry: the scrape-time collector, the few observed series, and the
    process metrics. One per :class:`~gateway.daemon.Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        # The `_created` series say when a counter started: the gateway's start, which
        # `fieldlink_uptime_seconds` says once. Process-wide, as prometheus_client has it.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        # The process metrics the default registry has, in this gateway's own registry (two
        # gateways in one process, as in tests, share no series).
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.stages = Counter(
            "fieldlink_task_stages",
            "Task stages recorded (one per task and unit), by stage.",
            ["stage"],
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "fieldlink_task_stage_latency_seconds",
            "Seconds from a task's creation to each of its stages, per unit; buckets at the"
            " SLA targets.",
            ["stage"],
            buckets=stage_buckets(gateway.config.sla),
            registry=self.registry,
        )
        self.alarms_raised = Counter(
            "fieldlink_alarms_raised",
            "Alarms raised by units' devices (repeats of a raised alarm not counted), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "fieldlink_mqtt_publish_latency_seconds",
            "Seconds from an event's commit to the outbox to the broker's acknowledgement.",
            buckets=PUBLISH_BUCKETS_S,
            registry=self.registry,
        )
        for every in Stage:
            self.stages.labels(every.value)  # every stage shows, at 0 until it happens
        for observed in OBSERVED_STAGES:
            self.stage_latency.labels(observed)
        for kind in AlarmKind:
            self.alarms_raised.labels(kind.value)
        journal = gateway.journal
        if isinstance(journal, ObservedJournal):
            journal.on_published = self.publish_latency.observe
        self.registry.register(GatewayCollector(gateway))

    def task_event(self, payload: bytes) -> None:
        """A task event committed to the outbox (its JSON, as published)."""
        try:
            event = json.loads(payload)
            stage = str(event["stage"])
        except (ValueError, KeyError, TypeError):
            log.warning("a task event without a stage was not counted: %.200r", payload)
            return
        if stage not in Stage.__members__.values():
            return
        self.stages.labels(stage).inc()
        since = event.get("since_created_s")
        if stage in OBSERVED_STAGES and isinstance(since, int | float) and since >= 0:
            self.stage_latency.labels(stage).observe(float(since))

    def alarm_event(self, payload: bytes) -> None:
        """An alarm event committed to the outbox: a raise is counted, a clear is not."""
        try:
            event = json.loads(payload)
        except ValueError:
            return
        kind = event.get("kind") if isinstance(event, dict) else None
        if event.get("state") == "raised" and kind in {k.value for k in AlarmKind}:
            self.alarms_raised.labels(kind).inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _bounded(by_reason: Mapping[str, int]) -> dict[str, int]:
    """At most :data:`MAX_REASONS_PER_LINK` reasons (the largest), the rest as ``other``."""
    if len(by_reason) <= MAX_REASONS_PER_LINK:
        return dict(by_reason)
    ranked = sorted(by_reason.items(), key=lambda item: -item[1])
    kept = dict(ranked[: MAX_REASONS_PER_LINK - 1])
    kept["other"] = kept.get("other", 0) + sum(n for _, n in ranked[MAX_REASONS_PER_LINK - 1 :])
    return kept


class GatewayCollector(Collector):
    """Reads the gateway's state at scrape time; nothing of it runs between scrapes."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    def describe(self) -> Iterable[Metric]:
        return []  # the names depend on nothing but the code; no need to collect to describe

    def collect(self) -> Iterator[Metric]:
        gw = self._gw
        info = InfoMetricFamily("fieldlink", "The gateway's version and id.")
        info.add_metric([], {"version": __version__, "gateway": gw.config.gateway.id})
        yield info
        uptime = _gauge("fieldlink_uptime_seconds", "Seconds since the gateway started.")
        uptime.add_metric([], (datetime.now(UTC) - gw.started_at).total_seconds())
        yield uptime
        yield from self._links()
        yield from self._mqtt()
        yield from self._tasks()
        yield from self._alarms()
        yield from self._units()

    def _links(self) -> Iterator[Metric]:
        up = _gauge("fieldlink_link_up", "1 while the link is up, else 0.", ["link"])
        reconnects = _counter("fieldlink_link_reconnects", "Reconnects of the link.", ["link"])
        rx = _counter("fieldlink_link_rx_bytes", "Bytes read from the link.", ["link"])
        tx = _counter("fieldlink_link_tx_bytes", "Bytes written to the link.", ["link"])
        frames = _counter("fieldlink_link_frames", "Frames decoded on the link.", ["link"])
        positions = _counter("fieldlink_link_positions", "Positions decoded on the link.", ["link"])
        rejected = _counter(
            "fieldlink_link_rejected", "Input refused on the link, by reason.", ["link", "reason"]
        )
        implausible = _counter(
            "fieldlink_link_implausible",
            "Positions or fields dropped as implausible, by reason.",
            ["link", "reason"],
        )
        sessions_open = _gauge(
            "fieldlink_link_sessions_open", "Dial-in sessions open on the link.", ["link"]
        )
        sessions_refused = _counter(
            "fieldlink_link_sessions_refused",
            "Dial-in sessions refused on the link, by reason.",
            ["link", "reason"],
        )
        for sup in self._gw.supervisors:
            name = sup.cfg.name
            c = sup.counters
            up.add_metric([name], 1.0 if sup.status.state is LinkState.UP else 0.0)
            reconnects.add_metric([name], c.reconnects)
            rx.add_metric([name], c.rx_bytes)
            tx.add_metric([name], c.tx_bytes)
            frames.add_metric([name], c.frames)
            positions.add_metric([name], c.positions)
            for reason, count in _bounded(c.rejected_by_reason).items():
                rejected.add_metric([name, reason], count)
            for reason, count in _bounded(c.implausible).items():
                implausible.add_metric([name, reason], count)
            if sup.sessions is not None:
                snapshot = sup.sessions.snapshot()
                open_now = snapshot.get("open")
                sessions_open.add_metric(
                    [name], float(open_now) if isinstance(open_now, int) else 0
                )
                refused = snapshot.get("refused")
                if isinstance(refused, dict):
                    for reason, count in _bounded(refused).items():
                        sessions_refused.add_metric([name, reason], count)
        yield from (up, reconnects, rx, tx, frames, positions, rejected, implausible)
        yield from (sessions_open, sessions_refused)

    def _mqtt(self) -> Iterator[Metric]:
        gw = self._gw
        bridge = gw.bridge
        connected = _gauge("fieldlink_mqtt_connected", "1 while connected to the broker.")
        connected.add_metric([], 1.0 if bridge.connected else 0.0)
        connects = _counter("fieldlink_mqtt_connects", "Sessions opened with the broker.")
        connects.add_metric([], bridge.connects)
        published = _counter("fieldlink_mqtt_published", "Messages published to the broker.")
        published.add_metric([], bridge.published)
        coalesced = _counter(
            "fieldlink_mqtt_positions_coalesced",
            "Positions dropped from the live stream because the broker fell behind.",
        )
        coalesced.add_metric([], bridge.coalesced)
        depth = _gauge("fieldlink_mqtt_outbox_rows", "Events in the outbox, not yet acknowledged.")
        depth.add_metric([], gw.journal.outbox_depth)
        age = _gauge(
            "fieldlink_mqtt_outbox_oldest_age_seconds",
            "Age of the oldest event in the outbox (0 when it is empty).",
        )
        oldest = gw.journal.oldest_outbox_at() if isinstance(gw.journal, ObservedJournal) else None
        age.add_metric([], _age_s(oldest))
        inbound = _counter(
            "fieldlink_mqtt_inbound_rejected", "Inbound messages refused (invalid or oversize)."
        )
        inbound.add_metric([], gw.inbound_rejected + bridge.inbound_rejected)
        quarantined = _gauge(
            "fieldlink_journal_quarantined", "Inbound messages quarantined in the journal."
        )
        quarantined.add_metric([], gw.journal.quarantined)
        yield from (connected, connects, published, coalesced, depth, age, inbound, quarantined)

    def _tasks(self) -> Iterator[Metric]:
        dispatcher = self._gw.dispatcher
        open_units: dict[str, int] = {}
        tasks: set[str] = set()
        for unit in self._gw.config.units:
            for a in dispatcher.open_assignments(unit.id):
                tasks.add(a.task.task_id)
                latest = max(a.reached, key=_rank, default="received")
                open_units[latest] = open_units.get(latest, 0) + 1
        open_tasks = _gauge("fieldlink_tasks_open", "Tasks open (not ended for every unit).")
        open_tasks.add_metric([], len(tasks))
        in_stage = _gauge(
            "fieldlink_task_assignments_open",
            "Open assignments (a task's part for one unit), by the furthest stage reached.",
            ["stage"],
        )
        for stage, count in sorted(open_units.items()):
            in_stage.add_metric([stage], count)
        rejected = _counter("fieldlink_tasks_rejected", "Tasks and cancels refused.")
        rejected.add_metric([], dispatcher.rejected)
        yield from (open_tasks, in_stage, rejected)

    def _alarms(self) -> Iterator[Metric]:
        book = self._gw.alarms
        by_kind = dict.fromkeys((k.value for k in AlarmKind), 0)
        for alarm in book.active():
            kind = str(alarm.get("kind"))
            if kind in by_kind:
                by_kind[kind] += 1
        active = _gauge("fieldlink_alarms_active", "Alarms raised now, by kind.", ["kind"])
        for kind, count in by_kind.items():
            active.add_metric([kind], count)
        repeats = _counter(
            "fieldlink_alarm_repeats", "Reports of an alarm already raised (not published again)."
        )
        repeats.add_metric([], book.repeats)
        yield from (active, repeats)

    def _units(self) -> Iterator[Metric]:
        gw = self._gw
        states = gw.unit_states()
        online = _gauge("fieldlink_units_online", "Units online now (configured and implicit).")
        online.add_metric([], sum(1 for s in states.values() if s["availability"] == "online"))
        configured = _gauge("fieldlink_units_configured", "Units in the configuration.")
        configured.add_metric([], len(gw.config.units))
        implicit = _gauge(
            "fieldlink_units_implicit", "Devices heard but not listed, kept as implicit units."
        )
        implicit.add_metric([], gw.units.implicit_units)
        refused = _counter(
            "fieldlink_units_implicit_refused",
            "Devices heard but not listed and not admitted (gateway.max_implicit_units reached).",
        )
        refused.add_metric([], gw.units.implicit_refused)
        yield from (online, configured, implicit, refused)
        if not gw.config.http.unit_metrics:
            return
        unit_online = _gauge(
            "fieldlink_unit_online", "1 while a configured unit is online.", ["unit"]
        )
        heard = _gauge(
            "fieldlink_unit_last_heard_age_seconds",
            "Seconds since a configured unit was last heard (absent until heard).",
            ["unit"],
        )
        for unit, state in states.items():
            if not state["configured"]:
                continue
            unit_online.add_metric([unit], 1.0 if state["availability"] == "online" else 0.0)
            if state["heard_s_ago"] is not None:
                heard.add_metric([unit], float(state["heard_s_ago"]))
        yield from (unit_online, heard)


_RANKS: Final = {stage.value: index for index, stage in enumerate(Stage)}


def _rank(reached: str) -> int:
    """Order of a reached key (``escalated:<stage>`` keys rank lowest: not progress)."""
    return _RANKS.get(reached, -1) if reached != Stage.ESCALATED else -1


def _age_s(rfc3339_text: str | None) -> float:
    if not rfc3339_text:
        return 0.0
    try:
        at = datetime.fromisoformat(rfc3339_text.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - at).total_seconds())
