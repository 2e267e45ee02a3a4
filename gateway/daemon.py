"""The running gateway: links and drivers in, the MQTT bridge out, the journal beneath.

:class:`Gateway` is the :class:`~gateway.drivers.base.EventSink` of every driver:
it resolves devices to units, tracks presence, and hands domain events to the
MQTT bridge as payload bytes on contract topics. It owns every task it starts
(one TaskGroup), and :meth:`Gateway.run` returns only after a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import __version__, gcpolicy, jsonin, payloads, plausible
from gateway.alarms import AlarmBook, AlarmNotRaised
from gateway.channel import NORMAL
from gateway.clock import clock_sync
from gateway.config import Config, effective_config
from gateway.dispatch import Dispatcher, StageRefused, text_problem
from gateway.drivers.base import AlarmConfirmer, TextSender, hex_dump
from gateway.drivers.registry import PROTOCOLS, not_built_message
from gateway.errors import ConfigError, FieldlinkError
from gateway.journal import MAX_HANDLING_ATTEMPTS, Journal, OutboxFull
from gateway.links import LinkSupervisor
from gateway.logs import RateLimitedLog
from gateway.metrics import GatewayMetrics, ObservedJournal
from gateway.model import (
    Alarm,
    AlarmKind,
    Availability,
    Delivery,
    DeviceRef,
    LinkCounters,
    LinkStatus,
    Position,
    Presence,
    TextFromUnit,
    TextOrder,
    UnitAnswer,
    rfc3339,
    utc_now,
)
from gateway.mqtt import InboundMessage, MqttBridge
from gateway.replies import distance_m
from gateway.sessions import Session, allowed_addresses
from gateway.systemd import Notifier
from gateway.topics import Topics
from gateway.units import UnitDirectory

log = logging.getLogger(__name__)

PRESENCE_CHECK_INTERVAL_S = 1.0
FALLBACK_OFFLINE_AFTER_S = 1800.0


MAX_REQUESTS_IN_FLIGHT = 32
"""Requests handled at once; beyond this a request is answered ``busy`` at once."""
REQUEST_KEYS: dict[str, set[str]] = {
    "task_status": {"task_id"},
    "units": set(),
    "nearest_units": {"lat", "lon", "limit"},
    "sla": {"since"},
    "poll_location": {"unit"},
    "send_text": {"unit", "text"},
    "report_stage": {"task_id", "unit", "stage", "at", "by", "note"},
    "alarms": set(),
    "clear_alarm": {"unit", "kind"},
}
"""The keys each request takes besides ``transaction``: anything else is refused, so a typo
(``untis``) is an error, not an answer to a different question."""
MAX_DEVICES_TRACKED = 16
"""Devices of one unit whose last hearing is kept (a unit has a radio or two, a tracker)."""
ALARM_CONFIRM_TIMEOUT_S = 10.0
"""Longest a clear_alarm request waits for the device's link to take the confirmation."""
DEFAULT_REQUEST_TIMEOUT_S = 30.0
REQUEST_TIMEOUTS_S = {"send_text": 3600.0}
"""Per command, how long an answer may take; a request past it is answered with an error.
``send_text`` waits for the device's confirmation through the link's retries;
``poll_location`` waits ``dispatch.poll_timeout_s`` per device."""

_TASK_ID_IN_JSON = re.compile(rb'"task_id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9._:-]{0,127})"')


class RequestError(FieldlinkError, ValueError):
    """A request that cannot be answered; the message goes back to the requester."""


class Gateway:
    """Wire configuration, journal, links and MQTT together; run until stopped."""

    def __init__(self, config: Config, *, notifier: Notifier | None = None) -> None:
        self.config = config
        self.started_at = utc_now()
        self._started_mono = time.monotonic()
        self.topics = Topics(config.mqtt.base_topic, config.gateway.id)
        self.units = UnitDirectory(config)
        self.notifier = notifier or Notifier()
        self.counters: dict[str, LinkCounters] = {}
        self.supervisors: list[LinkSupervisor] = []
        for index, link in enumerate(config.links):
            if not link.enabled:
                continue
            spec = PROTOCOLS.get(link.protocol)
            if spec is None or not spec.built:
                raise ConfigError(f"links[{index}].protocol", not_built_message(link.protocol))
            counters = LinkCounters()
            self.counters[link.name] = counters
            driver = spec.driver_class()(link, self, counters)
            supervisor = LinkSupervisor(
                link, driver, counters, self._link_status,
                allowed=allowed_addresses(link, config.units),
            )  # fmt: skip
            if supervisor.sessions is not None:
                supervisor.sessions.on_bind = self._session_bound
                supervisor.sessions.on_unbind = self._session_gone
            self.supervisors.append(supervisor)
        self.journal: Journal = ObservedJournal.open(
            config.gateway.data_dir / "journal.sqlite",
            outbox_max_rows=config.mqtt.outbox_max_rows,
        )
        for supervisor in self.supervisors:
            supervisor.driver.journal = self.journal
        self.metrics = GatewayMetrics(self)
        self.changed = asyncio.Event()
        """Set on a task stage, an alarm, a link's state or a unit's availability (the status
        page's cue to refresh at once; positions it picks up on its own clock)."""
        self._by_link = {sup.cfg.name: sup for sup in self.supervisors}
        self.bridge = MqttBridge(
            config.mqtt,
            self.topics,
            self.journal,
            version=__version__,
            started_at=self.started_at,
            on_inbound=self.on_inbound,
        )
        self.dispatcher = Dispatcher(
            config, self.journal, self.topics, emit=self._task_event, senders=self._sender_for
        )
        self.alarms = AlarmBook(
            self.journal,
            self.topics,
            emit=self._emit_urgent,
            publish_summary=self._publish_alarms,
        )
        self._last_position: dict[str, bytes] = {}
        # Presence: unit -> (last heard on the monotonic clock, via which link, offline after s)
        self._last_heard: dict[str, tuple[float, str, float]] = {}
        # Per unit, when each of its devices was last heard: a device that leaves (a tracker
        # hangs up, a radio deregisters) takes its unit offline only if no other is fresh.
        self._heard_devices: dict[str, dict[DeviceRef, float]] = {}
        self._availability: dict[str, Availability] = {}
        self.inbound_rejected = 0
        self.inbound_failed = 0
        self.responses_refused = 0
        self._refusal_log = RateLimitedLog(log, 60.0)
        self._implausible_log = RateLimitedLog(log, 10.0)
        self._sink_log = RateLimitedLog(log, 10.0)
        self._requests_in_flight: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- EventSink -------------------------------------------------------------

    def heard(self, device: DeviceRef) -> None:
        unit = self.units.admit(device)
        if unit is None:
            return
        link = device.link
        last = self._last_heard.get(unit)
        # A link's offline time is configuration: looked up again only when the link changes.
        offline_after = last[2] if last is not None and last[1] == link else None
        if offline_after is None:
            offline_after = self._offline_after(link)
        now = time.monotonic()
        self._last_heard[unit] = (now, link, offline_after)
        devices = self._heard_devices.get(unit)
        if devices is None:
            devices = self._heard_devices[unit] = {}
        elif device not in devices and len(devices) >= MAX_DEVICES_TRACKED:
            del devices[next(iter(devices))]  # bounded whatever spellings a driver reports
        devices[device] = now
        if self._availability.get(unit) is not Availability.ONLINE:
            self._set_availability(unit, Availability.ONLINE, link)

    def position(self, position: Position) -> None:
        unit = self.units.admit(position.device)
        if unit is None:
            return
        now = utc_now()
        max_fix_age_s = self.config.gateway.max_fix_age_s
        if not plausible.clean(position, now, max_fix_age_s=max_fix_age_s):
            verdict = plausible.check(position, now, max_fix_age_s=max_fix_age_s)
            if verdict.dropped:
                self._implausible(position, verdict.dropped, whole=verdict.position is None)
            if verdict.position is None:
                return
            position = verdict.position
        payload = payloads.position(position)
        self._last_position[unit] = payload
        self.bridge.set_retained(self.topics.position(unit), payload, qos=0)
        self.dispatcher.on_position(unit, position.lat, position.lon, position.received_at)

    def _implausible(self, position: Position, reasons: tuple[str, ...], *, whole: bool) -> None:
        counters = self.counters.get(position.device.link)
        if counters is not None:
            for reason in reasons:
                counters.implausible[reason] = counters.implausible.get(reason, 0) + 1
        self._implausible_log.warning(
            "%s: implausible position from %s (%s) %s",
            position.device.link,
            position.device,
            ", ".join(reasons),
            "not published" if whole else "those fields dropped",
        )

    def text(self, text: TextFromUnit) -> None:
        try:
            unit = self.units.admit(text.device)
            if unit is None:
                return
            if self.dispatcher.on_reply(unit, text):
                return  # an answer to a task (its stage event says so), or a repeat
            body = {"text": text.text, "at": rfc3339(text.at), "link": text.device.link}
            self._emit(self.topics.message(unit), payloads.dumps(body))
        except Exception:  # noqa: BLE001 - a bug here must not take the driver's link down
            self._sink_log.exception("text from %s could not be handled", text.device)

    def answer(self, answer: UnitAnswer) -> None:
        try:
            unit = self.units.admit(answer.device)
            if unit is None:
                return
            if not self.dispatcher.on_answer(unit, answer):
                log.info(
                    "unit %s answered %s, and no task waits for that answer", unit, answer.stage
                )
        except Exception:  # noqa: BLE001 - a bug here must not take the driver's link down
            self._sink_log.exception("answer from %s could not be handled", answer.device)

    def alarm(self, alarm: Alarm) -> None:
        unit = self.units.admit(alarm.device)
        if unit is None:
            return
        if not alarm.raised and not self.alarms.is_raised(unit, alarm.kind):
            return  # "no alarm", as every Mic-E beacon says: nothing to clear
        if alarm.position is not None:
            # The same fix was checked (and counted) as a position already; keep what passed.
            verdict = plausible.check(
                alarm.position, utc_now(), max_fix_age_s=self.config.gateway.max_fix_age_s
            )
            if verdict.position is not alarm.position:
                alarm = dataclasses.replace(alarm, position=verdict.position)
        try:
            self.alarms.on_alarm(unit, alarm)
        except OutboxFull as exc:
            log.error("alarm lost: unit %s %s: %s", unit, alarm.kind.value, exc)  # noqa: TRY400 - the cause is stated
        except Exception:  # a bug here must not take the driver's link down
            log.exception("alarm of unit %s could not be handled", unit)

    # -- state published as retained topics ------------------------------------

    def _session_bound(self, session: Session) -> None:
        """A device dialled in and said who it is: it is online, via its link."""
        if session.address is not None:
            self.heard(DeviceRef(session.link, session.address))

    def _session_gone(self, session: Session, reason: str) -> None:
        """A dialled-in device's last session closed: offline now, not after a silence."""
        if session.address is None:
            return
        device = DeviceRef(session.link, session.address)
        self._device_left(device, f"its session closed ({reason})")

    def offline(self, device: DeviceRef) -> None:
        """The device said it is leaving (a radio switched off deregisters)."""
        self._device_left(device, "it deregistered")

    def _device_left(self, device: DeviceRef, why: str) -> None:
        """``device`` is gone: its unit is offline now, unless another of its devices was
        heard within that device's link's offline time (a unit's radio stays online when its
        tracker hangs up)."""
        unit = self.units.admit(device)
        if unit is None:
            return
        devices = self._heard_devices.get(unit, {})
        devices.pop(device, None)
        if self._availability.get(unit) is not Availability.ONLINE:
            return
        now = time.monotonic()
        for other, at in devices.items():
            if now - at < self._offline_after(other.link):
                log.info("unit %s: %s left (%s); still online via %s", unit, device, why, other)
                return
        log.info("unit %s: %s left (%s)", unit, device, why)
        self._set_availability(unit, Availability.OFFLINE, device.link)

    def _offline_after(self, link: str) -> float:
        cfg = self.units.link(link)
        value = cfg.options.get("offline_after_s") if cfg else None
        if isinstance(value, int | float):
            return float(value)
        spec = PROTOCOLS.get(cfg.protocol) if cfg else None
        return spec.offline_after_s if spec is not None else FALLBACK_OFFLINE_AFTER_S

    def _set_availability(self, unit: str, state: Availability, via: str) -> None:
        self._availability[unit] = state
        presence = Presence(DeviceRef(via), state, utc_now())
        log.info("unit %s %s via %s", unit, state.value, via)
        self.changed.set()
        self.bridge.set_retained(
            self.topics.availability(unit), payloads.availability(presence, via), qos=1
        )

    def _link_status(self, status: LinkStatus) -> None:
        self.changed.set()
        self.bridge.set_retained(
            self.topics.link_state(status.link), payloads.link_state(status), qos=1
        )

    def _emit_urgent(self, topic: str, payload: bytes) -> None:
        """An alarm: ahead of everything else; OutboxFull reaches the caller (the book)."""
        self.bridge.emit(topic, payload, urgent=True)
        self.metrics.alarm_event(payload)

    def _publish_alarms(self, payload: bytes) -> None:
        self.bridge.set_retained(self.topics.alarms, payload, qos=1)
        self.changed.set()

    def _task_event(self, topic: str, payload: bytes) -> None:
        if self._emit(topic, payload):
            self.metrics.task_event(payload)
            self.changed.set()

    def _emit(self, topic: str, payload: bytes) -> bool:
        try:
            self.bridge.emit(topic, payload)
        except OutboxFull as exc:
            log.error("event lost: %s", exc)  # noqa: TRY400 - the cause is stated, no trace needed
            return False
        return True

    def info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "started_at": rfc3339(self.started_at),
            "links": [
                {"name": s.cfg.name, "protocol": s.cfg.protocol, "url": s.cfg.url}
                for s in self.supervisors
            ],
            "units": [
                {"id": u.id, "name": u.name, "devices": [str(d) for d in u.devices]}
                for u in self.config.units
            ],
            "config": effective_config(self.config),
        }

    def unit_states(self) -> dict[str, dict[str, Any]]:
        """Every unit configured or heard: its name, availability, the link it was last heard
        on and how many seconds ago, and its last position's payload (the status page's view)."""
        now = time.monotonic()
        names = {u.id: u.name for u in self.config.units}
        states: dict[str, dict[str, Any]] = {}
        for unit in [*names, *(u for u in self._last_heard if u not in names)]:
            heard = self._last_heard.get(unit)
            availability = self._availability.get(unit)
            states[unit] = {
                "name": names.get(unit, unit),
                "configured": unit in names,
                "availability": availability.value if availability else "unknown",
                "via": heard[1] if heard else None,
                "heard_s_ago": now - heard[0] if heard else None,
                "position": self._last_position.get(unit),
            }
        return states

    def health(self) -> dict[str, Any]:
        return {
            "at": rfc3339(utc_now()),
            "uptime_s": round(time.monotonic() - self._started_mono, 1),
            "outbox_depth": self.journal.outbox_depth,
            "mqtt": {
                "connected": self.bridge.connected,
                "connects": self.bridge.connects,
                "published": self.bridge.published,
                "inbound_rejected": self.inbound_rejected + self.bridge.inbound_rejected,
                "inbound_failed": self.inbound_failed,
                "quarantined": self.journal.quarantined,
                "responses_refused": self.responses_refused,
                "responses_dropped": self.bridge.responses_dropped,
                "requests_in_flight": len(self._requests_in_flight),
                "coalesced": self.bridge.coalesced,
            },
            "alarms": {
                "raised": self.alarms.raised,
                "repeats": self.alarms.repeats,
                "overflow": self.alarms.overflow,
            },
            "units": {
                "configured": len(self.config.units),
                "implicit": self.units.implicit_units,
                "implicit_refused": self.units.implicit_refused,
            },
            "links": {
                s.cfg.name: {
                    "state": s.status.state.value,
                    "rx_bytes": s.counters.rx_bytes,
                    "tx_bytes": s.counters.tx_bytes,
                    "frames": s.counters.frames,
                    "positions": s.counters.positions,
                    "rejected": s.counters.rejected,
                    "rejected_by_reason": dict(s.counters.rejected_by_reason),
                    "implausible": dict(s.counters.implausible),
                    "reconnects": s.counters.reconnects,
                    **({"sessions": s.sessions.snapshot()} if s.sessions is not None else {}),
                }
                for s in self.supervisors
            },
            "clock": clock_sync(),
        }

    # -- inbound -----------------------------------------------------------------

    def on_inbound(self, message: InboundMessage) -> None:
        """Take one journaled message from the bridge (or a replay); returns at once.

        Tasks and cancels are handled here and now (no radio is waited on); requests run on
        tasks of their own, at most :data:`MAX_REQUESTS_IN_FLIGHT` at once. Whatever a
        handler raises is logged once, answered where it can be, and the message is
        quarantined: no input can stop the gateway or crash it again after a restart.
        """
        try:
            self._handle_inbound(message)
        except Exception as exc:  # noqa: BLE001 - the catch-all the gateway's life depends on
            self._handler_failed(message, exc)

    def _handle_inbound(self, message: InboundMessage) -> None:
        topic = message.topic
        if not message.seq:  # refused (and counted) by the bridge: oversize; answer only
            why = f"payload of {len(message.payload)} bytes is over mqtt.max_inbound_bytes"
            if topic in (self.topics.dispatch, self.topics.cancel):
                # Name the task if its id can be read from the first bytes, so the sender
                # learns which task was refused.
                found = _TASK_ID_IN_JSON.search(message.payload[:4096])
                task_id = found.group(1).decode() if found else None
                self.dispatcher.reject(task_id, why, payload=message.payload)
            self._answer(message, self._command(topic), "error", error=why)
            return
        if topic == self.topics.dispatch:
            outcome, reason = self.dispatcher.dispatch(message.payload)
        elif topic == self.topics.cancel:
            outcome, reason = self.dispatcher.cancel(message.payload)
        elif topic.startswith(self.topics.request("")):
            self._start_request(message, topic.rsplit("/", 1)[-1])
            return
        else:
            log.warning("inbound message on unexpected topic %s ignored", topic[:200])
            self.journal.mark_handled(message.seq)
            return
        if outcome == "rejected":
            self.inbound_rejected += 1
        status = "error" if outcome == "rejected" else "ok"
        self._answer(message, None, status, data={"outcome": outcome}, error=reason)
        self.journal.mark_handled(message.seq)

    def _command(self, topic: str) -> str | None:
        prefix = self.topics.request("")
        return topic[len(prefix) :] if topic.startswith(prefix) else None

    def _handler_failed(self, message: InboundMessage, exc: Exception) -> None:
        self.inbound_failed += 1
        log.error(
            "inbound %s (journal seq %d, %d bytes: %s) failed its handler; quarantined",
            message.topic[:200],
            message.seq,
            len(message.payload),
            hex_dump(message.payload),
            exc_info=exc,
        )
        if message.seq:
            self.journal.quarantine(message.seq, f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            self._answer(
                message,
                self._command(message.topic),
                "error",
                error="internal error while handling this message; it was quarantined",
            )

    def _answer(
        self,
        message: InboundMessage,
        command: str | None,
        status: str,
        *,
        data: object = None,
        error: str | None = None,
        transaction: object = None,
    ) -> None:
        """Reply on ``response/<command>`` (requests) and on the MQTT 5 response topic."""
        body: dict[str, Any] = {"status": status}
        if transaction is not None:
            body["transaction"] = transaction
        if data is not None:
            body["data"] = data
        if error:
            body["error"] = error
        payload = payloads.dumps(body)
        if command is not None:
            self.bridge.respond(self.topics.response(command), payload)
        if message.response_topic:
            if self._response_topic_allowed(message.response_topic):
                self.bridge.respond(
                    message.response_topic, payload, correlation_data=message.correlation_data
                )
            else:
                self.responses_refused += 1
                self._refusal_log.warning(
                    "response topic %r refused: not under %s (mqtt.response_topic_prefixes"
                    " allows more)",
                    message.response_topic[:200],
                    self.topics.response(""),
                )

    def _response_topic_allowed(self, topic: str) -> bool:
        if not topic or any(ch in topic for ch in "+#\0") or len(topic.encode()) > 65535:
            return False
        prefixes = (
            self.topics.response(""),
            *(p + "/" for p in self.config.mqtt.response_topic_prefixes),
        )
        return topic.startswith(prefixes)

    def _start_request(self, message: InboundMessage, command: str) -> None:
        if len(self._requests_in_flight) >= MAX_REQUESTS_IN_FLIGHT:
            self.inbound_rejected += 1
            self._answer(
                message,
                command,
                "error",
                error=f"busy: {MAX_REQUESTS_IN_FLIGHT} requests in flight; try again later",
            )
            self.journal.mark_handled(message.seq)
            return
        task = asyncio.get_running_loop().create_task(
            self._run_request(message, command), name=f"request:{command[:40]}"
        )
        self._requests_in_flight.add(task)
        task.add_done_callback(self._requests_in_flight.discard)

    async def _run_request(self, message: InboundMessage, command: str) -> None:
        try:
            await self._on_request(message, command)
        except asyncio.CancelledError:
            if self._stop.is_set():  # a graceful stop: say so, nothing to replay
                with contextlib.suppress(Exception):
                    self._answer(message, command, "error", error="the gateway is stopping")
                    self.journal.mark_handled(message.seq)
            raise
        except Exception as exc:  # noqa: BLE001 - see on_inbound
            self._handler_failed(message, exc)
            return
        self.journal.mark_handled(message.seq)

    async def _on_request(self, message: InboundMessage, command: str) -> None:
        try:
            request = jsonin.loads_object(
                message.payload or b"{}",
                what="a request",
                max_bytes=self.config.mqtt.max_inbound_bytes,
            )
        except jsonin.JsonInputError as exc:
            self.inbound_rejected += 1
            self._answer(message, command, "error", error=str(exc))
            return
        transaction = request.get("transaction")
        if transaction is not None and not _valid_transaction(transaction):
            self.inbound_rejected += 1
            self._answer(
                message, command, "error",
                error="transaction must be a string of up to 200 characters or an integer",
            )  # fmt: skip
            return
        handler = self._requests.get(command)
        unknown = sorted(set(request) - REQUEST_KEYS.get(command, set()) - {"transaction"})
        if handler is not None and unknown:
            self.inbound_rejected += 1
            self._answer(
                message, command, "error", error=f"unknown keys: {', '.join(unknown)[:200]}",
                transaction=transaction,
            )  # fmt: skip
            return
        if handler is None:
            self.inbound_rejected += 1
            self._answer(
                message, command, "error", error=f"unknown command {command[:40]!r}",
                transaction=transaction,
            )  # fmt: skip
            return
        timeout_s = REQUEST_TIMEOUTS_S.get(command, DEFAULT_REQUEST_TIMEOUT_S)
        if command == "poll_location":
            timeout_s = max(timeout_s, 4 * self.config.dispatch.poll_timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                data = await handler(request)
        except RequestError as exc:
            self.inbound_rejected += 1
            self._answer(message, command, "error", error=str(exc), transaction=transaction)
            return
        except TimeoutError:
            self._answer(
                message, command, "error", error=f"no answer within {timeout_s:g} s",
                transaction=transaction,
            )  # fmt: skip
            return
        self._answer(message, command, "ok", data=data, transaction=transaction)

    # -- requests ------------------------------------------------------------------

    @property
    def _requests(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[object]]]:
        return {
            "task_status": self._req_task_status,
            "units": self._req_units,
            "nearest_units": self._req_nearest_units,
            "sla": self._req_sla,
            "poll_location": self._req_poll_location,
            "send_text": self._req_send_text,
            "report_stage": self._req_report_stage,
            "alarms": self._req_alarms,
            "clear_alarm": self._req_clear_alarm,
        }

    async def _req_alarms(self, request: dict[str, Any]) -> object:
        del request
        return {"alarms": self.alarms.active()}

    async def _req_clear_alarm(self, request: dict[str, Any]) -> object:
        unit = request.get("unit")
        if not isinstance(unit, str) or not (
            self.dispatcher.known_unit(unit) or self.alarms.has_unit(unit)
        ):
            raise RequestError("unit must name a configured unit or one with an alarm raised")
        kind = request.get("kind")
        if not isinstance(kind, str) or kind not in {k.value for k in AlarmKind}:
            raise RequestError(f"kind must be one of {', '.join(k.value for k in AlarmKind)}")
        device = self.alarms.device_of(unit, AlarmKind(kind))
        try:
            cleared = self.alarms.clear(unit, AlarmKind(kind))
        except AlarmNotRaised as exc:
            raise RequestError(str(exc)) from None
        if device is not None:
            await self._confirm_alarm(device, AlarmKind(kind))
        return cleared

    async def _confirm_alarm(self, device: str, kind: AlarmKind) -> None:
        """Pass the centre's clear to the device, where its protocol wants one (JT/T 808's
        0x8203). The clear stands whatever happens here: a device that keeps reporting the
        alarm raises it again (:mod:`gateway.alarms`)."""
        link, _, address = device.partition(":")
        supervisor = self._by_link.get(link)
        if supervisor is None:
            return
        driver = supervisor.driver
        if not isinstance(driver, AlarmConfirmer):
            return
        try:
            async with asyncio.timeout(ALARM_CONFIRM_TIMEOUT_S):
                sent = await driver.confirm_alarm(address, kind)
        except Exception:
            log.exception("%s: confirming the %s alarm to %s failed", link, kind.value, device)
            return
        if not sent:
            log.warning("%s: could not confirm the %s alarm to %s", link, kind.value, device)

    async def _req_report_stage(self, request: dict[str, Any]) -> object:
        try:
            return self.dispatcher.report_stage(request)
        except StageRefused as exc:
            raise RequestError(str(exc)) from None

    def _unit_arg(self, request: dict[str, Any]) -> str:
        unit = request.get("unit")
        if not isinstance(unit, str) or not self.dispatcher.known_unit(unit):
            raise RequestError("unit must name a configured unit")
        return unit

    async def _req_task_status(self, request: dict[str, Any]) -> object:
        task_id = request.get("task_id")
        if not isinstance(task_id, str):
            raise RequestError("task_id must be a string")
        status = self.dispatcher.status(task_id)
        if status is None:
            raise RequestError(f"unknown task {task_id[:128]!r}")
        return status

    def _unit_summary(self, unit_id: str, name: str) -> dict[str, Any]:
        summary: dict[str, Any] = {"id": unit_id, "name": name}
        state = self._availability.get(unit_id)
        summary["availability"] = state.value if state else "unknown"
        last = self._last_position.get(unit_id)
        if last is not None:
            summary["position"] = json.loads(last)
        return summary

    async def _req_units(self, request: dict[str, Any]) -> object:
        del request
        return [self._unit_summary(u.id, u.name) for u in self.config.units]

    async def _req_nearest_units(self, request: dict[str, Any]) -> object:
        lat, lon = request.get("lat"), request.get("lon")
        limit = request.get("limit", 5)
        if not _number_in(lat, -90, 90) or not _number_in(lon, -180, 180):
            raise RequestError("lat must be a number in -90..90 and lon in -180..180")
        assert isinstance(lat, int | float)
        assert isinstance(lon, int | float)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise RequestError("limit must be an integer 1..1000")
        ranked = []
        for unit in self.config.units:
            last = self._last_position.get(unit.id)
            if last is None:
                continue
            pos = json.loads(last)
            distance = distance_m(float(lat), float(lon), pos["lat"], pos["lon"])
            entry = self._unit_summary(unit.id, unit.name)
            entry["distance_m"] = round(distance, 1)
            ranked.append(entry)
        ranked.sort(key=lambda e: float(e["distance_m"]))
        return ranked[:limit]

    async def _req_sla(self, request: dict[str, Any]) -> object:
        from gateway import sla  # noqa: PLC0415 - the report is rarely asked for

        since_text = request.get("since")
        now = utc_now()
        try:
            since = sla.parse_since(since_text, now) if isinstance(since_text, str) else None
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        report = sla.build_report(self.journal.db.conn, self.config.sla, since=since, now=now)
        return sla.report_to_json(report)

    async def _req_poll_location(self, request: dict[str, Any]) -> object:
        unit = self._unit_arg(request)
        polled = []
        failures = []
        limit_s = self.config.dispatch.poll_timeout_s
        for device in self._devices_of(unit):
            sender = self._sender_for(device)
            if sender is None or not sender.can_reach(device.address):
                continue
            try:
                async with asyncio.timeout(limit_s):
                    asked = await sender.poll_location(device.address)
            except TimeoutError:
                failures.append(f"{device}: the channel stayed busy for {limit_s:g} s")
                continue
            if asked:
                polled.append(str(device))
        if not polled:
            why = "; ".join(failures) or "no reachable device can be asked for a position"
            raise RequestError(f"{unit}: {why}")
        return {"polled": polled}

    async def _req_send_text(self, request: dict[str, Any]) -> object:
        unit = self._unit_arg(request)
        text = request.get("text")
        problem = text_problem(text, self.config.dispatch.max_text_chars)
        if problem is not None:
            raise RequestError(problem)
        assert isinstance(text, str)
        for device in self._devices_of(unit):
            sender = self._sender_for(device)
            if sender is None or not sender.can_reach(device.address):
                continue
            order = TextOrder(device.address, text, NORMAL, key=f"text/{unit}")
            report = await sender.send_text(order, lambda: None)
            if report.outcome is Delivery.DELIVERED:
                return {"device": str(device), "outcome": report.outcome.value}
        raise RequestError(f"no device of {unit} confirmed the text")

    def _devices_of(self, unit: str) -> tuple[DeviceRef, ...]:
        for cfg in self.config.units:
            if cfg.id == unit:
                return cfg.devices
        return ()

    def _sender_for(self, device: DeviceRef) -> TextSender | None:
        supervisor = self._by_link.get(device.link)
        if supervisor is None:
            return None
        driver = supervisor.driver
        return driver if isinstance(driver, TextSender) else None

    # -- running -----------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def _replay_unhandled(self) -> None:
        """Inbound messages journaled but not handled before the process ended: handle them
        now (task ids make this idempotent), but never one whose handling already started
        twice: that one is quarantined, so no message can crash every start."""
        for row in self.journal.unhandled_inbound():
            if row.attempts >= MAX_HANDLING_ATTEMPTS:
                self.inbound_failed += 1
                log.error(
                    "inbound %s (journal seq %d, %d bytes: %s) was being handled when the"
                    " process ended, %d times; quarantined, not replayed",
                    row.topic[:200], row.seq, len(row.payload), hex_dump(row.payload),
                    row.attempts,
                )  # fmt: skip
                self.journal.quarantine(
                    row.seq, f"handling did not finish in {row.attempts} attempts"
                )
                continue
            self.journal.retry_inbound(row.seq)
            self.on_inbound(
                InboundMessage(
                    row.seq, row.topic, row.payload, row.response_topic, row.correlation_data
                )
            )

    async def run(self) -> None:
        self.bridge.set_retained(self.topics.info, payloads.dumps(self.info()), qos=1)
        self.alarms.start()  # the raised set from the journal, and its retained summary
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks["mqtt"] = tg.create_task(self.bridge.run(), name="mqtt")
                self._tasks["dispatch"] = tg.create_task(self.dispatcher.run(), name="dispatch")
                self._replay_unhandled()
                for sup in self.supervisors:
                    self._tasks[f"link:{sup.cfg.name}"] = tg.create_task(
                        sup.run(), name=f"link:{sup.cfg.name}"
                    )
                self._tasks["presence"] = tg.create_task(self._presence_loop(), name="presence")
                self._tasks["health"] = tg.create_task(self._health_loop(), name="health")
                self._tasks["gc"] = tg.create_task(gcpolicy.run(), name="gc")
                if self.config.http.enabled:
                    from gateway.web import StatusServer  # noqa: PLC0415 - aiohttp only when used

                    server = StatusServer(self, self.config.http)
                    self._tasks["http"] = tg.create_task(server.run(), name="http")
                if self.notifier.watchdog_interval_s:
                    self._tasks["watchdog"] = tg.create_task(
                        self._watchdog_loop(self.notifier.watchdog_interval_s), name="watchdog"
                    )
                self.notifier.ready(f"{len(self.supervisors)} links")
                log.info(
                    "fieldlink %s started: gateway %s, %d links, %d units",
                    __version__,
                    self.config.gateway.id,
                    len(self.supervisors),
                    len(self.config.units),
                )
                await self._stop.wait()
                self.notifier.stopping()
                log.info("stopping: flushing the outbox")
                for name, task in self._tasks.items():
                    if name != "mqtt":
                        task.cancel()
                for request in list(self._requests_in_flight):
                    request.cancel()
                self.bridge.stop()
        finally:
            self.journal.close()

    def dead_tasks(self) -> list[str]:
        """Names of the essential tasks that have ended (empty when all is well)."""
        return [name for name, task in self._tasks.items() if task.done()]

    async def _watchdog_loop(self, interval_s: float) -> None:
        while True:
            dead = self.dead_tasks()
            if dead:
                log.error("watchdog withheld: %s not running", ", ".join(dead))
            else:
                self.notifier.watchdog()
            await asyncio.sleep(interval_s)

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_CHECK_INTERVAL_S)
            now = time.monotonic()
            for unit, (last, via, offline_after) in list(self._last_heard.items()):
                silent = now - last >= offline_after
                if silent and self._availability.get(unit) is Availability.ONLINE:
                    self._set_availability(unit, Availability.OFFLINE, via)

    async def _health_loop(self) -> None:
        interval = self.config.mqtt.health_interval_s
        while True:
            self.bridge.set_retained(self.topics.health, payloads.dumps(self.health()), qos=0)
            await asyncio.sleep(interval)


def _valid_transaction(value: object) -> bool:
    if isinstance(value, str):
        return len(value) <= 200
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _number_in(value: object, low: float, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return low <= value <= high
