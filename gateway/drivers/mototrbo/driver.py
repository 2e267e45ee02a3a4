"""MOTOTRBO radios through a control station's network interface: ARS, TMS and LRRP over UDP.

A control-station radio on USB is a network interface; with "forward to PC" its subscribers'
data reaches the gateway as UDP, each radio from its own address
``<cai>.(id>>16).((id>>8)&255).(id&255)`` (``../shared/notes/mototrbo.md``, section 1).

- **ARS** (the link's ``udp-listen://`` port): each radio is a dial-in session of the link. A
  registration binds the session to the radio (online) and is answered at once with the refresh
  time (an unanswered radio retries forever and floods the channel); a radio the link does not
  accept gets the "device not authorised" answer, so it stops asking. Deregistration unbinds it
  (offline); a missed refresh ends its session by the idle timeout (offline).
- **On registration** the gateway sends the radio a triggered location request (every
  ``location_interval_s``, after ``location_distance_m``) and, with ``arm_emergency``, a second
  one with the emergency condition; both stop on deregistration.
- **LRRP** (``lrrp_port``): reports become positions; a report for the emergency request raises an
  ``emergency`` alarm with its position. ``poll_location`` sends an immediate request. Operation
  errors and reports without a shape are not positions.
- **TMS** (``tms_port``): dispatch text goes as a text with ack requested; the radio's ack is
  ``delivered``; with no ack after every ``retry_intervals_s`` (the same sequence number each
  time) the order fails. Each new message takes the radio's next sequence number (7 bits). Text
  from radios is acked (every copy: a copy means our ack was lost), its subject line or leading
  CR LF stripped, and passed on once with its sequence number as ``message_id``; a preset text
  of ``status_stages`` becomes that stage's answer. Text beyond ``text_limit`` goes as numbered
  parts, each acked before the next.

What the gateway sends goes through a :class:`~gateway.channel.Channel`: one datagram at a time,
the channel held ``channel_hold_s`` after each, most urgent first (acks, then urgent tasks), so
the control station's own FIFO never makes an urgent task wait behind routine traffic.

The TMS and LRRP sockets are bound on the url's host (not the wildcard when a host is given)
for as long as the link listens. A radio cannot use TMS or LRRP before it registers, and
unregistered radios' datagrams are rejected; so when the link starts (a restart of the gateway,
while the radios stay registered with the control station for up to ``ars_refresh_min``), the
gateway sends an ARS query to each radio it knows (the link's allow list, or the units' radios
on it) at ``ars_port``, paced by ``channel_hold_s``: a radio that answers "present" is
registered again and its location triggers are set up again. Every map keyed by what radios
send is bounded: radios by the link's session cap, caches by :data:`CACHE_MAX`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import socket
import time
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Final

from gateway.channel import NORMAL, ROUTINE, URGENT, Channel
from gateway.config import LinkConfig
from gateway.drivers.base import Driver, EventSink, OnTransmitted, Transmissions, send_in_parts
from gateway.errors import LinkError
from gateway.logs import RateLimitedLog
from gateway.model import (
    Alarm,
    AlarmKind,
    Delivery,
    DeliveryReport,
    DeviceRef,
    LinkCounters,
    Position,
    TextFromUnit,
    TextOrder,
    UnitAnswer,
    utc_now,
)
from gateway.sessions import Session
from gateway.transport import (
    Connection,
    DatagramSocket,
    Server,
    open_datagram_socket,
    parse_url,
)
from protocols.mototrbo import MototrboError, ars, lrrp, radio_id_of, radio_ip, tms

__all__ = ["CACHE_MAX", "DUPLICATE_WINDOW_S", "MototrboDriver"]

log = logging.getLogger(__name__)

CACHE_MAX: Final = 4096
"""Entries per cache keyed by what radios send (duplicate texts, sequence numbers)."""
DUPLICATE_WINDOW_S: Final = 600.0
"""A text with the sequence number and text of one received this recently is a retry."""
REQUEST_PERIODIC: Final = 0x01
REQUEST_EMERGENCY: Final = 0x02
REQUEST_IMMEDIATE: Final = 0x03
"""First byte of our LRRP request ids: which request a report answers (the rest: the radio
id, or a counter for immediate requests)."""
SOURCE: Final = "mototrbo"
TX_BACKLOG_MAX: Final = 256
"""Acks and location requests waiting for the channel at once; beyond this they are dropped
and counted (``tx-backlog``): radios retry texts, and registrations are answered on ARS."""
QUEUE_TIMEOUT_S: Final = 600.0
"""Longest a datagram may wait for the channel before its send is given up."""
STOP_WAIT_S: Final = 10.0
"""How long a deregistration waits for its stop requests to leave, before the session ends."""
CHANNEL_HOLD_S: Final = 0.5
"""Default hold of the radio channel per datagram sent (``channel_hold_s``)."""
_SN_START: Final = random.Random()  # spreads sequence numbers; nothing secret
_TMS: Final = 0
_LRRP: Final = 1
_LOG_INTERVAL_S: Final = 10.0

_Handler = Callable[[bytes, tuple[str, int]], None]


@dataclass(slots=True)
class _Radio:
    """A registered radio: its session and what was asked of it."""

    radio_id: int
    ip: str
    session: Session
    reporting: bool = False


@dataclass(slots=True)
class _Services:
    """The TMS and LRRP sockets, the channel that paces what goes out of them, and the task
    that runs them (its task group owns the fire-and-forget sends)."""

    tms: DatagramSocket
    lrrp: DatagramSocket
    channel: Channel | None = None
    task: asyncio.Task[None] | None = None
    tasks: asyncio.TaskGroup | None = None
    users: int = 0
    backlog: int = 0
    closed: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _Pending:
    radio_id: int
    sn: int
    waiter: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def sanitize_text(text: str) -> str:
    """What a radio can show: control and format characters become spaces (no injected
    framing), characters outside UCS-2 become ``?``, white space is trimmed."""
    out = []
    for ch in text:
        if ord(ch) > 0xFFFF:
            out.append("?")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out).strip()


def split_text(text: str, max_chars: int) -> list[str]:
    """``text`` in parts of at most ``max_chars``, numbered ``(1/2) ...`` when more than one."""
    if len(text) <= max_chars:
        return [text]
    room = max_chars - len("(99/99) ")
    chunks = [text[i : i + room] for i in range(0, len(text), room)]
    return [f"({n}/{len(chunks)}) {chunk}" for n, chunk in enumerate(chunks, 1)]


class MototrboDriver(Driver):
    """One control station: ARS sessions per radio, TMS and LRRP sockets beside them."""

    def __init__(self, link: LinkConfig, sink: EventSink, counters: LinkCounters) -> None:
        super().__init__(link, sink, counters)
        endpoint = parse_url(link.url)
        self.host = endpoint.host
        self.ars_port = link.option("ars_port", int) or endpoint.port
        self.tms_port = link.option("tms_port", int)
        self.lrrp_port = link.option("lrrp_port", int)
        self.cai = link.option("cai", int)
        self.location_interval_s = _whole_seconds(link.options.get("location_interval_s", 60.0))
        self.location_distance_m = link.option("location_distance_m", int)
        self.arm_emergency = link.option("arm_emergency", bool)
        self.refresh_min = link.option("ars_refresh_min", int)
        self.retry_intervals_s = tuple(float(s) for s in link.option("retry_intervals_s", tuple))
        self.max_text_chars = link.option("text_limit", int)
        self.channel_hold_s = link.option("channel_hold_s", float)
        self.presets: dict[str, str] = {}
        for entry in link.option("status_stages", tuple):
            text, _, stage = str(entry).rpartition("=")
            self.presets[_fold(text)] = stage
        self._services: _Services | None = None
        self._services_lock = asyncio.Lock()
        self._radios: dict[int, _Radio] = {}
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._next_sn: OrderedDict[int, int] = OrderedDict()
        self._texts_seen: OrderedDict[tuple[int, int | None, str], float] = OrderedDict()
        self._immediate_counter = 0
        self._service_log = RateLimitedLog(log, _LOG_INTERVAL_S)

    # -- ARS: one session per radio ---------------------------------------------------------

    @property
    def pending(self) -> int:
        """Texts waiting for an ack (for tests and health)."""
        return len(self._pending)

    @property
    def registered(self) -> frozenset[int]:
        return frozenset(self._radios)

    async def run(self, conn: Connection) -> None:
        raise LinkError(self.link.name, "mototrbo runs only on a udp-listen:// link")

    async def serve_session(self, conn: Connection, session: Session) -> None:
        async with self._services_held():
            try:
                while True:
                    data = await conn.read()
                    self.counters.rx_bytes += len(data)
                    self.counters.frames += 1
                    session.rx_frames += 1
                    if not await self._on_ars(data, session):
                        return
            finally:
                self._radio_gone(session)

    async def _on_ars(self, data: bytes, session: Session) -> bool:
        """Handle one ARS datagram; False when the session is over (deregistration)."""
        try:
            message = ars.decode(data).message
        except MototrboError as exc:
            self.rejects.reject("ars", data, str(exc))
            return True
        ip = session.peer.rpartition(":")[0]
        radio_id = radio_id_of(ip, self.cai)
        if radio_id is None:
            self.rejects.reject("address", data, f"{session.peer} is not on CAI {self.cai}")
            return False  # not a radio: free the session
        address = str(radio_id)
        if isinstance(message, ars.ArsRegistration | ars.ArsResponse):
            if isinstance(message, ars.ArsResponse) and not message.success:
                return True  # "not present": nothing to do
            allowed = self.sessions.allowed if self.sessions is not None else None
            if allowed is not None and address not in allowed:
                # Told, so it stops retrying (and flooding the channel); bind() then refuses
                # it, counts it and ends the session.
                refusal = ars.ArsResponse(False, reason=ars.ArsFailure.DEVICE_NOT_AUTHORISED)
                with contextlib.suppress(LinkError):
                    await session.write(ars.encode(refusal))
            session.bind(address)
            self.sink.heard(DeviceRef(self.link.name, address))
            radio = self._radios.get(radio_id)
            if radio is None or radio.session is not session:
                radio = self._radios[radio_id] = _Radio(radio_id, ip, session)
            if isinstance(message, ars.ArsRegistration):
                answer = ars.registration_answer(self.refresh_min)
                await session.write(answer)
                self.counters.tx_bytes += len(answer)
                if message.event != ars.ArsEvent.REFRESH or not radio.reporting:
                    self._start_reporting(radio)
            elif not radio.reporting:  # "present", answering our query after a restart
                log.info("%s: radio %s is present", self.link.name, address)
                self._start_reporting(radio)
            return True
        if isinstance(message, ars.ArsDeregistration):
            radio = self._radios.get(radio_id)
            if radio is not None and radio.session is session:
                await self._stop_reporting(radio)
            if self.sessions is not None and session.address is not None:
                self.sessions.unbind(session)
            log.info("%s: radio %s deregistered", self.link.name, address)
            return False
        self.rejects.reject("ars-unexpected", data, type(message).__name__)
        return True

    async def serve_listener(self, server: Server) -> None:
        """Hold the TMS and LRRP sockets while the link listens, and ask the radios the link
        knows whether they are there (see the module's docstring)."""
        async with self._services_held():
            known = self.sessions.allowed if self.sessions is not None else None
            query = ars.encode(ars.ArsQuery())
            for address in sorted(known or (), key=int):  # bounded: it is configuration
                ip = radio_ip(int(address), self.cai)
                try:
                    server.send_datagram(query, (ip, self.ars_port))
                except LinkError as exc:
                    self._service_log.warning("%s: ARS query to radio %s: %s", self.link.name,
                                              address, exc.reason)  # fmt: skip
                    break
                self.counters.tx_bytes += len(query)
                await asyncio.sleep(self.channel_hold_s)
            await asyncio.Event().wait()  # until the link stops

    def _radio_gone(self, session: Session) -> None:
        for radio_id, radio in list(self._radios.items()):
            if radio.session is session:
                del self._radios[radio_id]
                for pending in list(self._pending.values()):
                    if pending.radio_id == radio_id and not pending.waiter.done():
                        pending.waiter.set_exception(
                            LinkError(self.link.name, f"radio {radio_id} went offline")
                        )

    def _request_id(self, kind: int, radio_id: int) -> bytes:
        return bytes([kind]) + radio_id.to_bytes(3, "big")

    def _start_reporting(self, radio: _Radio) -> None:
        if self.location_interval_s or self.location_distance_m:
            self._post_lrrp(
                radio,
                lrrp.triggered_request(
                    self._request_id(REQUEST_PERIODIC, radio.radio_id),
                    interval_s=self.location_interval_s or None,
                    distance_m=self.location_distance_m or None,
                ),
            )
        if self.arm_emergency:
            self._post_lrrp(
                radio,
                lrrp.triggered_request(
                    self._request_id(REQUEST_EMERGENCY, radio.radio_id),
                    condition=lrrp.TRIGGER_CONDITION_EMERGENCY,
                ),
            )
        radio.reporting = True

    async def _stop_reporting(self, radio: _Radio) -> None:
        """Stop both triggers; waits (bounded) until the requests are out, because the
        sockets may close as soon as the radio's session ends."""
        if not radio.reporting:
            return
        radio.reporting = False
        services = self._services
        if services is None:
            return
        for kind in (REQUEST_PERIODIC, REQUEST_EMERGENCY):
            document = lrrp.stop_request(self._request_id(kind, radio.radio_id))
            try:
                async with asyncio.timeout(STOP_WAIT_S):
                    await self._transmit(services, _LRRP, (radio.ip, self.lrrp_port), document,
                                         ROUTINE)  # fmt: skip
            except (LinkError, TimeoutError):
                log.info("%s: stop request to radio %d not sent", self.link.name, radio.radio_id)
                return

    def _post_lrrp(self, radio: _Radio, document: bytes, priority: int = ROUTINE) -> bool:
        services = self._services
        if services is None:
            return False
        return self._post(services, _LRRP, (radio.ip, self.lrrp_port), document, priority)

    # -- the channel: one datagram at a time, most urgent first ----------------------------

    async def _transmit(
        self,
        services: _Services,
        service: int,
        addr: tuple[str, int],
        payload: bytes,
        priority: int,
    ) -> None:
        """Queue ``payload`` for ``addr`` on the channel; returns once it is sent. Raises
        :class:`LinkError` when the services closed or the channel's queue is full."""
        channel = services.channel
        if channel is None or services.closed:
            raise LinkError(self.link.name, "link down")
        await channel.transmit(_wrap(service, addr, payload), priority)

    def _post(
        self,
        services: _Services,
        service: int,
        addr: tuple[str, int],
        payload: bytes,
        priority: int,
    ) -> bool:
        """Send without waiting (acks, location requests), owned by the services' task group;
        False when the backlog is full or the services are closing."""
        tasks = services.tasks
        if tasks is None or services.closed:
            return False
        if services.backlog >= TX_BACKLOG_MAX:
            self.counters.reject("tx-backlog")
            return False
        services.backlog += 1
        tasks.create_task(self._post_one(services, service, addr, payload, priority))
        return True

    async def _post_one(
        self,
        services: _Services,
        service: int,
        addr: tuple[str, int],
        payload: bytes,
        priority: int,
    ) -> None:
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_S):
                await self._transmit(services, service, addr, payload, priority)
        except (LinkError, TimeoutError) as exc:
            self._service_log.warning("%s: a datagram to %s was not sent: %s", self.link.name,
                                      addr[0], getattr(exc, "reason", "timed out"))  # fmt: skip
        finally:
            services.backlog -= 1

    async def _write_frame(self, services: _Services, frame: bytes) -> None:
        """The channel's write: unwrap the destination and send from the service's socket."""
        service, addr, payload = _unwrap(frame)
        sock = services.tms if service == _TMS else services.lrrp
        sock.send(payload, addr)
        self.counters.tx_bytes += len(payload)

    # -- the TMS and LRRP sockets, held while any radio has a session ----------------------

    @contextlib.asynccontextmanager
    async def _services_held(self) -> AsyncIterator[_Services]:
        async with self._services_lock:
            services = self._services
            if services is None:
                try:
                    services = self._services = await self._open_services()
                except LinkError as exc:
                    self._service_log.error("%s: %s", self.link.name, exc.reason)
                    raise
            services.users += 1
        try:
            yield services
        finally:
            services.users -= 1
            if services.users == 0 and self._services is services:
                self._services = None
                await self._close_services(services)

    async def _open_services(self) -> _Services:
        name = self.link.name
        tms_socket = await open_datagram_socket(name, self.host, self.tms_port)
        try:
            lrrp_socket = await open_datagram_socket(name, self.host, self.lrrp_port)
        except LinkError:
            tms_socket.close()
            raise
        services = _Services(tms_socket, lrrp_socket)
        services.channel = Channel(
            f"{name}:radio",
            functools.partial(self._write_frame, services),
            lambda _frame: self.channel_hold_s,
        )
        services.task = asyncio.create_task(self._serve_services(services), name=f"{name}:tms+lrrp")
        async with asyncio.timeout(5.0):
            await services.ready.wait()  # its task group exists: sends can be posted
        log.info("%s: TMS on %s:%d, LRRP on %s:%d", name, self.host, self.tms_port, self.host,
                 self.lrrp_port)  # fmt: skip
        return services

    async def _close_services(self, services: _Services) -> None:
        services.closed = True
        services.tms.close()
        services.lrrp.close()
        task = services.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkError):
                await task
        for pending in list(self._pending.values()):
            if not pending.waiter.done():
                pending.waiter.set_exception(LinkError(self.link.name, "link down"))

    async def _serve_services(self, services: _Services) -> None:
        assert services.channel is not None
        async with asyncio.TaskGroup() as tasks:
            services.tasks = tasks
            services.ready.set()
            tasks.create_task(services.channel.run())
            tasks.create_task(self._receive(services.tms, self.handle_tms))
            tasks.create_task(self._receive(services.lrrp, self.handle_lrrp))

    async def _receive(self, sock: DatagramSocket, handle: _Handler) -> None:
        while True:
            try:
                data, peer = await sock.recv()
            except LinkError:
                return  # closed
            self.counters.rx_bytes += len(data)
            self.counters.frames += 1
            try:
                handle(data, peer)
            except LinkError as exc:  # a reply could not be sent: the socket closed
                self._service_log.warning("%s: %s", self.link.name, exc.reason)
            except Exception:  # noqa: BLE001 - a bug must not take the radios' services down
                self._service_log.exception("%s: datagram from %s not handled", self.link.name,
                                            peer[0])  # fmt: skip

    def _sender(self, data: bytes, peer: tuple[str, int], service: str) -> _Radio | None:
        """The registered radio that sent ``data``, or None (rejected and counted)."""
        radio_id = radio_id_of(peer[0], self.cai)
        if radio_id is None:
            self.rejects.reject("address", data, f"{service} from {peer[0]}, not on CAI {self.cai}")
            return None
        radio = self._radios.get(radio_id)
        if radio is None:
            self.rejects.reject("unregistered", data, f"{service} from radio {radio_id}")
            return None
        return radio

    # -- LRRP -----------------------------------------------------------------------------------

    def handle_lrrp(self, data: bytes, peer: tuple[str, int]) -> None:
        """One LRRP datagram from ``peer``: positions, and the emergency alarm."""
        radio = self._sender(data, peer, "LRRP")
        if radio is None:
            return
        try:
            document = lrrp.decode(data)
        except MototrboError as exc:
            self.rejects.reject("lrrp", data, str(exc))
            return
        if not isinstance(document, lrrp.LrrpReport):
            self.rejects.reject("lrrp-unexpected", data, document.doc.name)
            return
        device = DeviceRef(self.link.name, str(radio.radio_id))
        self.sink.heard(device)
        kind = document.request_id[0] if document.request_id else None
        if document.doc in (
            lrrp.DocId.TRIGGERED_LOCATION_START_ANSWER,
            lrrp.DocId.TRIGGERED_LOCATION_STOP_ANSWER,
        ):
            if document.result_code:
                log.warning("%s: radio %d refused a location request (%s): result %d",
                            self.link.name, radio.radio_id, document.doc.name,
                            document.result_code)  # fmt: skip
            return
        position = self._position(device, document) if document.has_position else None
        if position is not None:
            self.counters.positions += 1
            self.sink.position(position)
        elif document.operation_error or document.result_code:
            log.info("%s: radio %d has no position (result %s)", self.link.name,
                     radio.radio_id, document.result_code)  # fmt: skip
        if kind == REQUEST_EMERGENCY and document.doc == lrrp.DocId.TRIGGERED_LOCATION_REPORT:
            self.sink.alarm(Alarm(device, AlarmKind.EMERGENCY, True, utc_now(), position=position))

    def _position(self, device: DeviceRef, report: lrrp.LrrpReport) -> Position:
        received = utc_now()
        fix_time = received
        if report.info_time is not None:
            fix_time = min(report.info_time.astimezone(UTC), received)
        return Position(
            device=device,
            lat=report.lat,
            lon=report.lon,
            fix_time=fix_time,
            received_at=received,
            source=SOURCE,
            alt_m=report.alt_m,
            speed_kmh=report.speed_kmh,
            course_deg=report.course_deg,
        )

    async def poll_location(self, address: str) -> bool:
        radio = self._radio_for(address)
        if radio is None:
            return False
        self._immediate_counter = (self._immediate_counter + 1) % 0x1000000
        request_id = bytes([REQUEST_IMMEDIATE]) + self._immediate_counter.to_bytes(3, "big")
        services = self._services
        if services is None:
            return False
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_S):
                await self._transmit(services, _LRRP, (radio.ip, self.lrrp_port),
                                     lrrp.immediate_request(request_id), NORMAL)  # fmt: skip
        except (LinkError, TimeoutError):
            return False
        return True

    # -- TMS ------------------------------------------------------------------------------------

    def handle_tms(self, data: bytes, peer: tuple[str, int]) -> None:
        """One TMS datagram from ``peer``: acks complete our texts; texts are acked, then
        passed on once."""
        radio = self._sender(data, peer, "TMS")
        if radio is None:
            return
        try:
            message = tms.decode(data)
        except MototrboError as exc:
            self.rejects.reject("tms", data, str(exc))
            return
        device = DeviceRef(self.link.name, str(radio.radio_id))
        self.sink.heard(device)
        services = self._services
        if isinstance(message, tms.TmsAck):
            self._on_ack(radio.radio_id, message)
            return
        if isinstance(message, tms.TmsAvailability):
            if message.ack_requested and services is not None:
                ack = tms.encode_ack(b"", first_header=0x9F)
                self._post(services, _TMS, peer, ack, URGENT)
            return
        if message.ack_requested and services is not None:
            # Urgent: short, and the radio repeats its text (occupying the channel) until acked.
            self._post(services, _TMS, peer, tms.encode_ack(message), URGENT)
        now = time.monotonic()
        key = (radio.radio_id, message.sn, message.text)
        seen = self._texts_seen.get(key)
        if seen is not None and now - seen < DUPLICATE_WINDOW_S:
            log.debug("%s: radio %d repeated text %s", self.link.name, radio.radio_id, message.sn)
            return
        self._texts_seen.pop(key, None)
        self._texts_seen[key] = now
        while len(self._texts_seen) > CACHE_MAX:
            self._texts_seen.popitem(last=False)
        body = sanitize_text(message.body)
        if not body:
            return
        message_id = None if message.sn is None else str(message.sn)
        at = utc_now()
        stage = self.presets.get(_fold(body))
        if stage is not None:
            self.sink.answer(UnitAnswer(device, stage, at, message_id=message_id))
        else:
            self.sink.text(TextFromUnit(device, body, at, message_id=message_id))

    def _on_ack(self, radio_id: int, ack: tms.TmsAck) -> None:
        for (rid, sn), pending in self._pending.items():
            if rid == radio_id and ack.matches(sn) and not pending.waiter.done():
                pending.waiter.set_result(None)
                return
        log.debug("%s: ack %s from radio %d matches nothing pending", self.link.name, ack.sn,
                  radio_id)  # fmt: skip

    def _radio_for(self, address: str) -> _Radio | None:
        if not address.isascii() or not address.isdigit():
            return None
        return self._radios.get(int(address))

    def can_reach(self, address: str) -> bool:
        return self._services is not None and self._radio_for(address) is not None

    def _sn_for(self, radio_id: int) -> int:
        """The radio's next sequence number. The first of a run is random: some radios drop a
        text whose number repeats the last one they showed (until rebooted), and a restarted
        gateway starting at 0 again would hit that one time in 128 instead of every time."""
        sn = self._next_sn.pop(radio_id, None)
        if sn is None:
            sn = _SN_START.randrange(tms.MAX_SN + 1)
        self._next_sn[radio_id] = (sn + 1) % (tms.MAX_SN + 1)
        while len(self._next_sn) > CACHE_MAX:
            self._next_sn.popitem(last=False)
        return sn

    async def send_text(self, order: TextOrder, on_transmitted: OnTransmitted) -> DeliveryReport:
        if not order.address.isascii() or not order.address.isdigit():
            return DeliveryReport(Delivery.FAILED, f"{order.address!r} is not a radio id")
        text = sanitize_text(order.text)
        if not text:
            return DeliveryReport(Delivery.FAILED, "nothing to send: empty text")
        radio = self._radio_for(order.address)
        if radio is None or self._services is None:
            return DeliveryReport(Delivery.FAILED, f"radio {order.address} is not registered")
        parts = split_text(text, self.max_text_chars)
        return await send_in_parts(
            parts,
            functools.partial(self._send_part, radio.radio_id, order.priority),
            on_transmitted,
            f"{self.link.name}: {order.key or 'text'} to radio {order.address}",
        )

    async def _send_part(
        self, radio_id: int, priority: int, text: str, sent: Transmissions
    ) -> str | None:
        """Send one TMS until acked (same sequence number each time); the failure reason."""
        sn = self._sn_for(radio_id)
        frame = tms.encode_text(text, sn)
        pending = _Pending(radio_id, sn)
        key = (radio_id, sn)
        old = self._pending.pop(key, None)
        if old is not None and not old.waiter.done():  # 128 texts in flight to one radio
            old.waiter.set_exception(LinkError(self.link.name, "sequence number reused"))
        self._pending[key] = pending  # registered before the first write: acks are quick
        try:
            for interval in self.retry_intervals_s:
                radio = self._radios.get(radio_id)
                services = self._services
                if radio is None or services is None or pending.waiter.done():
                    break
                try:
                    async with asyncio.timeout(QUEUE_TIMEOUT_S):
                        await self._transmit(services, _TMS, (radio.ip, self.tms_port), frame,
                                             priority)  # fmt: skip
                except LinkError:
                    return "link down"
                except TimeoutError:
                    return f"waited {QUEUE_TIMEOUT_S:.0f} s for the channel"
                sent.written()
                await asyncio.wait((pending.waiter,), timeout=interval)
            if not pending.waiter.done():
                if radio_id not in self._radios:
                    return "radio went offline"
                return f"no ack after {len(self.retry_intervals_s)} tries"
            exc = pending.waiter.exception()
            if exc is None:
                return None
            return exc.reason if isinstance(exc, LinkError) else str(exc)
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]
            if not pending.waiter.done():
                pending.waiter.cancel()


def _wrap(service: int, addr: tuple[str, int], payload: bytes) -> bytes:
    """A channel frame: service, IPv4 address and port of the radio, then the datagram (the
    channel carries bytes; its airtime is the same for every datagram)."""
    return bytes([service]) + socket.inet_aton(addr[0]) + addr[1].to_bytes(2, "big") + payload


def _unwrap(frame: bytes) -> tuple[int, tuple[str, int], bytes]:
    return frame[0], (socket.inet_ntoa(frame[1:5]), int.from_bytes(frame[5:7], "big")), frame[7:]


def _whole_seconds(value: object) -> int:
    """An LRRP interval: whole seconds, at least 1 unless 0 (none)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return 0
    return max(1, round(value))


def _fold(text: str) -> str:
    """Preset texts match without regard to case, width or surrounding white space."""
    return unicodedata.normalize("NFKC", text).strip().casefold()
