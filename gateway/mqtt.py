"""The MQTT session: aiomqtt with MQTT 5, a persistent session and a durable outbox.

This module is the only one that imports aiomqtt or paho. It knows topics and
payload bytes, never protocol frames. What it promises (SPEC sections 5 and 7):

* a stable client id, ``clean_start=False`` and a session expiry, so the broker
  keeps our subscriptions and queues tasks while we are away (aiomqtt's default
  clean-start option would wipe the session on every reconnect);
* a last will: ``state`` goes ``offline`` (retained) when the process dies;
* retained topics (state, info, link states, availability, positions, health)
  are kept here as current values and republished after every connect;
* QoS 1 events live in the journal's outbox; they are published in order with a
  bounded window and deleted only after the broker's PUBACK;
* urgent events (alarms) overtake everything else: they have a lane of their own in the
  outbox drain (in order among themselves, acknowledged like the rest, with window slots
  no other row may take, so paho never queues one behind a task event), and while one is
  waiting to be handed to paho the QoS 0 position stream pauses; paho's unsent backlog is
  kept short (:data:`PAHO_BACKLOG_MAX_BYTES`) and so is the kernel's (:data:`NOTSENT_LOWAT_BYTES`),
  so an alarm is never written behind thousands of queued positions;
* inbound messages are committed to the journal *before* the broker gets its
  PUBACK: paho's manual acknowledgement is switched on; the CONNECT property
  Receive Maximum asks the broker to keep at most 100 unacknowledged messages in
  flight, and aiomqtt's incoming queue is bounded far above the broker's own queue;
* the CONNECT property Maximum Packet Size (from ``mqtt.max_inbound_bytes``) keeps
  the broker from sending anything larger, so no payload can fill memory;
* the receive loop never waits on anything but the journal: the inbound handler is a
  plain function that must return at once (the gateway starts tasks for slow work),
  and responses go through a bounded queue of their own;
* a session that fails for any reason other than the broker's ends with MQTT 5's
  "disconnect with will message" after an explicit ``offline``, so the retained
  ``state`` never claims ``online`` for a gateway that is not;
* reconnects back off exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import payloads
from gateway.backoff import Backoff
from gateway.config import MqttConfig
from gateway.journal import Journal, OutboxRow
from gateway.topics import Topics

log = logging.getLogger(__name__)

PAHO_INFLIGHT_MAX = 20
"""QoS 1 publishes paho puts on the wire at once (the rest wait in its queue, in order):
paho's default, and mosquitto's default Receive Maximum, which a client must respect."""
URGENT_WINDOW = 2
"""Outbox slots only urgent rows (alarms) use: one is never queued behind a task event."""
OUTBOX_WINDOW = PAHO_INFLIGHT_MAX - URGENT_WINDOW - 2
"""Other QoS 1 events in flight at once. With the urgent slots, one response and one
retained QoS 1 value it fills :data:`PAHO_INFLIGHT_MAX` exactly, so nothing we hand to
paho waits in its queue."""
RECEIVE_MAXIMUM = 100
"""Unacknowledged inbound QoS 1 messages the broker may send us at once."""
INCOMING_QUEUE_MAX = 50_000
"""aiomqtt's queue of received messages. Brokers do not all keep to Receive Maximum
(mosquitto 2.0 sent a subscriber that acks as it goes far more than 100 unacknowledged
messages in a burst), so this bound is set well above any broker's per-client queue; a
message dropped past it was never acknowledged and comes again after a reconnect."""
PUBLISH_TIMEOUT_S = 15.0
STOP_FLUSH_TIMEOUT_S = 5.0
LIVE_QUEUE_MAX = 10_000
"""QoS 0 values waiting to be written while connected; the oldest go first when full."""
LIVE_BATCH_MAX = 64
"""QoS 0 values handed to paho at once, as one buffer of back-to-back PUBLISH packets: one
entry in paho's queue, one ``send`` and one read for the broker per batch instead of per
position. paho's own ``publish`` costs per packet (a message info, a send, and for every
QoS 0 packet written an ``on_publish`` callback that builds a reason code and a properties
object) were a third of the daemon's time at saturation (``docs/performance.md``)."""
LIVE_BURST_MAX = 1024
"""QoS 0 values written before the live drain yields to the other tasks even though the
socket takes them: the drain empties what the drivers queued in one turn, so a fast link
does not make the queue overflow, and no turn runs long (about 1 ms for 1,024)."""
PAHO_BACKLOG_MAX_BYTES = 16_384
"""QoS 0 bytes paho may hold unsent before we stop handing it more and let the socket drain:
an alarm handed to paho is written behind at most this plus one batch (about 34 kB, some 120
positions), as before batching (50 packets plus a burst of 64). Against a local mosquitto the
backlog is written within a loop iteration; through a slow uplink it bounds what an alarm
waits behind, with :data:`NOTSENT_LOWAT_BYTES` bounding the kernel's share."""
PACKET_OVERHEAD_BYTES = 8192
"""Room in the announced Maximum Packet Size for the topic and properties beside the payload."""
RESPONSE_QUEUE_MAX = 1000
"""Responses waiting to be published; the oldest are dropped (and counted) beyond this."""
ABANDON_TIMEOUT_S = 2.0
"""How long a failing session may spend saying ``offline`` before it lets go."""
NOTSENT_LOWAT_BYTES = 16_384
"""Unsent bytes the kernel may hold for the broker's socket (Linux ``TCP_NOTSENT_LOWAT``).
Beyond it a write waits, so on an uplink slower than the position stream the backlog stays
in paho's queue, which :data:`PAHO_BACKLOG_MAX_BYTES` bounds, instead of megabytes of kernel send
buffer that an alarm would queue behind (1 MB/s uplink, 5,000 positions/s: alarm p99 1.27 s
without it, 0.23 s with it at a backlog of 200). No effect on loopback or a fast LAN."""
_SOCKET_OPTIONS: list[tuple[int, int, int]] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
if hasattr(socket, "TCP_NOTSENT_LOWAT"):  # Linux, macOS
    _SOCKET_OPTIONS.append((socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, NOTSENT_LOWAT_BYTES))
_WILL_DISCONNECT = 0x04
"""MQTT 5 DISCONNECT reason code "Disconnect with Will Message"."""
_AUTH_FAILURES = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes meaning bad credentials or not authorised (3.1.1 and 5)."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message from the broker, already committed to the journal as ``seq``."""

    seq: int
    topic: str
    payload: bytes
    response_topic: str | None
    correlation_data: bytes | None


InboundHandler = Callable[[InboundMessage], None]
"""Takes a journaled message; returns at once (slow work goes on tasks of its own). The
handler owns the journal row from then on: it marks it handled or quarantines it."""


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call] # paho leaves it untyped


class _SessionEnd(Exception):
    """Raised inside a session's task group to end it on a graceful stop."""


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """Server verification on by default; a client certificate when configured."""
    if cfg.scheme != "mqtts":
        return None
    ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    if cfg.cert_file is not None:
        ctx.load_cert_chain(
            str(cfg.cert_file), str(cfg.key_file) if cfg.key_file is not None else None
        )
    if cfg.tls_insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class MqttBridge:
    """One gateway's MQTT session, supervised: run :meth:`run` as a task."""

    def __init__(
        self,
        cfg: MqttConfig,
        topics: Topics,
        journal: Journal,
        *,
        version: str,
        started_at: datetime,
        on_inbound: InboundHandler,
    ) -> None:
        self._cfg = cfg
        self._topics = topics
        self._journal = journal
        self._on_inbound = on_inbound
        self._online = payloads.gateway_state("online", version=version, started_at=started_at)
        self._offline = payloads.gateway_state("offline", version=version, started_at=started_at)
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._dirty: dict[str, None] = {}  # insertion-ordered set of topics to (re)publish
        self._dirty_event = asyncio.Event()
        self._live: deque[tuple[str, bytes]] = deque(maxlen=LIVE_QUEUE_MAX)
        self.coalesced = 0
        self._responses: deque[tuple[str, bytes, bytes | None]] = deque()
        self._responses_event = asyncio.Event()
        self.responses_dropped = 0
        self._outbox_event = asyncio.Event()
        self._urgent_handed_count = 0  # urgent rows in the outbox that paho has
        self._urgent_handed = asyncio.Event()
        self._drained = asyncio.Event()
        self._connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
        self.connects = 0
        self.published = 0
        self.inbound_rejected = 0
        self.last_error: str | None = None

    # -- what the rest of the gateway calls ------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    def set_retained(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Record the current value of a retained topic and publish it when possible.

        While connected, every QoS 0 value (a position) goes out in order, so subscribers
        see the whole track; the queue for them is bounded and drops the oldest when the
        broker cannot keep up. While disconnected only the latest value per topic is kept,
        and republished on reconnect.
        """
        self._retained[topic] = (payload, qos)
        if qos == 0 and self._connected.is_set() and topic not in self._dirty:
            if len(self._live) == LIVE_QUEUE_MAX:
                self.coalesced += 1
            self._live.append((topic, payload))
        else:
            self._dirty[topic] = None
        self._dirty_event.set()

    def emit(self, topic: str, payload: bytes, *, urgent: bool = False) -> int:
        """Commit a QoS 1 event to the outbox; it is published as soon as possible.

        An ``urgent`` event (an alarm) is published ahead of every other event and of the
        position stream. Inside :meth:`Journal.transaction` the row commits with the rest.
        """
        seq = self._journal.append(topic, payload, urgent=urgent)
        self._outbox_event.set()
        return seq

    def _urgent_waiting(self) -> bool:
        """An urgent row is in the outbox and not yet handed to paho."""
        return self._journal.urgent_depth > self._urgent_handed_count

    def stop(self) -> None:
        """Ask :meth:`run` to flush the outbox (bounded), say offline and return."""
        self._stop.set()

    # -- the supervisor ---------------------------------------------------------

    async def run(self) -> None:
        while not self._stop.is_set():
            client = self._new_client()
            ended = False
            try:
                async with client:
                    self.connects += 1
                    self._backoff.connected()
                    log.info(
                        "mqtt connected to %s:%s as %s",
                        self._cfg.host,
                        self._cfg.port,
                        self._cfg.client_id,
                    )
                    await self._session(client)
            except* aiomqtt.MqttError as group:
                self.last_error = "; ".join(str(e) for e in group.exceptions)
                self._log_auth_failure(group)
            except* _SessionEnd:
                ended = True
            except* Exception as group:
                # A bug inside the session: said offline already (see _session); reconnect.
                log.exception("mqtt session failed")
                self.last_error = "; ".join(f"{type(e).__name__}: {e}" for e in group.exceptions)
            finally:
                was_connected = self._connected.is_set()
                self._connected.clear()
                self._client = None
                self._live.clear()  # the retained map holds the latest of each
                self._responses.clear()  # a response only matters to a live requester
            if ended or self._stop.is_set():
                return
            if was_connected:
                log.info("mqtt disconnected: %s", self.last_error)
            delay = self._backoff.next_delay()
            log.info("mqtt reconnecting in %.1f s (%s)", delay, self.last_error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def _log_auth_failure(self, group: BaseExceptionGroup[aiomqtt.MqttError]) -> None:
        for exc in group.exceptions:
            rc = getattr(exc, "rc", None)
            code = getattr(rc, "value", rc)
            if isinstance(code, int) and code in _AUTH_FAILURES:
                log.error(
                    "mqtt broker %s:%s refused the login of %r: %s (check mqtt.username and"
                    " the password file)",
                    self._cfg.host,
                    self._cfg.port,
                    self._cfg.username,
                    exc,
                )
                return

    def _new_client(self) -> aiomqtt.Client:
        cfg = self._cfg
        v5 = cfg.protocol == "5"
        props: Properties | None = None
        will_props: Properties | None = None
        if v5:
            props = _properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = cfg.session_expiry_s
            props.ReceiveMaximum = RECEIVE_MAXIMUM
            props.MaximumPacketSize = cfg.max_inbound_bytes + PACKET_OVERHEAD_BYTES
            will_props = _properties(PacketTypes.WILLMESSAGE)
            will_props.ContentType = "application/json"
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=cfg.client_id,
            username=cfg.username or None,
            password=cfg.password or None,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            clean_session=None if v5 else False,
            properties=props,
            max_inflight_messages=PAHO_INFLIGHT_MAX,
            keepalive=cfg.keepalive_s,
            will=aiomqtt.Will(self._topics.state, self._offline, 1, True, will_props),
            tls_context=tls_context(cfg),
            max_queued_incoming_messages=INCOMING_QUEUE_MAX,
            # Without TCP_NODELAY a small publish can wait ~40 ms for Nagle's timer.
            socket_options=_SOCKET_OPTIONS,
            timeout=10,
        )
        # Our own window bounds what is in flight; aiomqtt's warning threshold must not be lower.
        client.pending_calls_threshold = PAHO_INFLIGHT_MAX + RECEIVE_MAXIMUM
        # The one reach into paho: hold PUBACKs until the journal has the message.
        client._client.manual_ack_set(True)  # noqa: SLF001 - aiomqtt 2.x has no public switch
        return client

    async def _session(self, client: aiomqtt.Client) -> None:
        self._client = client
        # Subscribed (SUBACK received) before saying online: a centre that sees "online" can
        # publish a task and know the broker routes it to this gateway.
        await self._subscribe(client)
        await client.publish(self._topics.state, self._online, qos=1, retain=True, timeout=10)
        for topic in self._retained:
            self._dirty[topic] = None
        self._dirty_event.set()
        self._connected.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._receive(client), name="mqtt-receive")
                tg.create_task(self._drain_outbox(client), name="mqtt-outbox")
                tg.create_task(self._publish_retained(client), name="mqtt-retained")
                tg.create_task(self._publish_responses(client), name="mqtt-responses")
                tg.create_task(self._graceful_stop(client), name="mqtt-stop")
        except BaseException as exc:
            if not _only(exc, (_SessionEnd, aiomqtt.MqttError)):
                await self._abandon(client)
            raise

    async def _abandon(self, client: aiomqtt.Client) -> None:
        """End a session that failed (a bug, or the process being torn down) so that the
        broker shows ``offline``: say it explicitly, then disconnect with the will."""
        self._connected.clear()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await client.publish(
                self._topics.state, self._offline, qos=1, retain=True, timeout=ABANDON_TIMEOUT_S
            )
        if self._cfg.protocol == "5":
            reason = ReasonCode(PacketTypes.DISCONNECT, identifier=_WILL_DISCONNECT)
            client._client.disconnect(reasoncode=reason)  # noqa: SLF001 - aiomqtt cannot say it

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        filters = self._topics.inbound_filters()
        if self._cfg.protocol == "5":
            opts = SubscribeOptions(qos=1, noLocal=True)
            await client.subscribe([(f, opts) for f in filters], timeout=10)
        else:
            await client.subscribe([(f, 1) for f in filters], timeout=10)

    async def _graceful_stop(self, client: aiomqtt.Client) -> None:
        await self._stop.wait()
        if self._journal.outbox_depth:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), STOP_FLUSH_TIMEOUT_S)
        if self._journal.outbox_depth:
            log.warning(
                "stopping with %d events still in the outbox; they go out after the restart",
                self._journal.outbox_depth,
            )
        await client.publish(self._topics.state, self._offline, qos=1, retain=True, timeout=5)
        raise _SessionEnd

    # -- inbound ----------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Journal, acknowledge, hand over; never waits on anything else."""
        paho_client = client._client  # noqa: SLF001 - manual PUBACK, see _new_client
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            response_topic: str | None = None
            correlation: bytes | None = None
            if message.properties is not None:
                response_topic = getattr(message.properties, "ResponseTopic", None)
                correlation = getattr(message.properties, "CorrelationData", None)
            if len(payload) > self._cfg.max_inbound_bytes:
                # Not journaled: an oversize payload is refused, not stored.
                self.inbound_rejected += 1
                log.warning(
                    "inbound %s: %d bytes exceeds max_inbound_bytes %d; rejected",
                    topic,
                    len(payload),
                    self._cfg.max_inbound_bytes,
                )
                seq = 0
            else:
                seq = self._journal.store_inbound(
                    topic, payload, response_topic=response_topic, correlation_data=correlation
                )
            if message.qos > 0:
                paho_client.ack(message.mid, message.qos)
            self._on_inbound(InboundMessage(seq, topic, payload, response_topic, correlation))

    def respond(self, topic: str, payload: bytes, *, correlation_data: bytes | None = None) -> None:
        """Queue a response (QoS 1, not journaled: it only matters while connected)."""
        if not self._connected.is_set():
            log.warning("response on %s dropped: not connected", topic)
            return
        if len(self._responses) >= RESPONSE_QUEUE_MAX:
            self._responses.popleft()
            self.responses_dropped += 1
        self._responses.append((topic, payload, correlation_data))
        self._responses_event.set()

    async def _publish_responses(self, client: aiomqtt.Client) -> None:
        while True:
            await self._responses_event.wait()
            self._responses_event.clear()
            while self._responses:
                topic, payload, correlation_data = self._responses.popleft()
                props: Properties | None = None
                if self._cfg.protocol == "5":
                    props = _properties(PacketTypes.PUBLISH)
                    props.ContentType = "application/json"
                    if correlation_data is not None:
                        props.CorrelationData = correlation_data
                await client.publish(
                    topic, payload, qos=1, properties=props, timeout=PUBLISH_TIMEOUT_S
                )

    # -- outbound ---------------------------------------------------------------

    async def _drain_outbox(self, client: aiomqtt.Client) -> None:
        """Publish the outbox: two lanes, urgent first, each in sequence order.

        Each lane is a window of publishes in flight, deleted from the journal in order as
        the broker acknowledges them (the completed prefix of each lane), and a cursor
        (``after``) past the last row handed to paho. The urgent lane's rows are fetched
        first on every pass, and a pass runs whenever a row is appended or a publish
        completes, so an alarm never waits for a task event's PUBACK.
        """
        lanes: dict[bool, deque[tuple[int, asyncio.Task[None]]]] = {True: deque(), False: deque()}
        after = {True: 0, False: 0}
        windows = {True: URGENT_WINDOW, False: OUTBOX_WINDOW}
        wake = self._outbox_event

        def completed(_: asyncio.Task[None]) -> None:
            wake.set()

        try:
            while True:
                wake.clear()
                for urgent in (True, False):
                    lane = lanes[urgent]
                    room = windows[urgent] - len(lane)
                    if room <= 0 or (urgent and self._journal.urgent_depth <= len(lane)):
                        continue
                    for row in self._journal.pending(after[urgent], room, urgent=urgent):
                        task = asyncio.create_task(self._publish_row(client, row))
                        task.add_done_callback(completed)
                        lane.append((row.seq, task))
                        after[urgent] = row.seq
                self._urgent_handed.set()  # the position stream rechecks (after a rollback)
                done: list[int] = []
                for urgent, lane in lanes.items():
                    while lane and lane[0][1].done():
                        seq, task = lane.popleft()
                        task.result()  # a failed publish ends the session; the row stays
                        done.append(seq)
                        if urgent:
                            self._urgent_handed_count -= 1
                if done:
                    self._journal.acknowledge(done)
                    self.published += len(done)
                    if not self._journal.outbox_depth:
                        self._drained.set()
                    continue  # room again: fetch before waiting
                await wake.wait()
        finally:
            self._urgent_handed_count = 0
            tasks = [task for lane in lanes.values() for _, task in lane]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _publish_row(self, client: aiomqtt.Client, row: OutboxRow) -> None:
        if row.urgent:
            # aiomqtt hands the message to paho before its first suspension, so from this
            # step on the alarm is in paho's queue, ahead of whatever is handed after it.
            self._urgent_handed_count += 1
            self._urgent_handed.set()
        await client.publish(
            row.topic, row.payload, qos=row.qos, retain=row.retain, timeout=PUBLISH_TIMEOUT_S
        )

    async def _publish_retained(self, client: aiomqtt.Client) -> None:
        paho_client = client._client  # noqa: SLF001 - QoS 0 without a task per message
        live = self._live
        # Per topic: its PUBLISH variable header (length-prefixed name, MQTT 5's empty
        # property list), validated as paho would; for this session, bounded.
        topic_fields: dict[str, bytes] = {}
        v5 = self._cfg.protocol == "5"
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            burst = 0
            while live or self._dirty:
                if self._urgent_waiting():
                    # An alarm is about to be handed to paho: nothing goes ahead of it.
                    self._urgent_handed.clear()
                    await self._urgent_handed.wait()
                    continue
                if live:
                    batch = [live.popleft() for _ in range(min(len(live), LIVE_BATCH_MAX))]
                    _write_retained_qos0(paho_client, batch, topic_fields, v5=v5)
                    self.published += len(batch)
                    burst += len(batch)
                    if (
                        burst >= LIVE_BURST_MAX
                        or _unsent_bytes(paho_client) > PAHO_BACKLOG_MAX_BYTES
                    ):
                        burst = 0
                        await self._let_socket_drain(paho_client)
                    continue
                topic = next(iter(self._dirty))
                del self._dirty[topic]
                payload, qos = self._retained[topic]
                if qos == 0:
                    try:
                        _write_retained_qos0(paho_client, [(topic, payload)], topic_fields, v5=v5)
                    except aiomqtt.MqttError:
                        self._dirty[topic] = None
                        raise
                else:
                    await client.publish(
                        topic, payload, qos=qos, retain=True, timeout=PUBLISH_TIMEOUT_S
                    )
                self.published += 1

    @staticmethod
    async def _let_socket_drain(paho_client: paho.Client) -> None:
        """Yield to the other tasks; wait while paho's unsent backlog is large."""
        await asyncio.sleep(0)
        # paho offers no event for "backlog drained"; this polls at 1 ms while it is large.
        while _unsent_bytes(paho_client) > PAHO_BACKLOG_MAX_BYTES:  # noqa: ASYNC110
            await asyncio.sleep(0.001)


_PUBLISH_QOS0_RETAIN = 0x31
"""PUBLISH fixed header, first byte: type 3, DUP 0, QoS 0, RETAIN 1."""
_TOPIC_FIELDS_MAX = 100_000
"""Topics whose PUBLISH variable header one session keeps ready (one per unit, and a few)."""
_FIXED_HEADERS: dict[int, bytes] = {}
"""Remaining length -> PUBLISH fixed header (for lengths below 16 kB: a few hundred at most)."""


def _fixed_header(remaining: int) -> bytes:
    """0x31 and the MQTT variable byte integer of ``remaining``."""
    header = _FIXED_HEADERS.get(remaining)
    if header is not None:
        return header
    if remaining > 268_435_455:
        raise ValueError("Packet too large")
    out = bytearray((_PUBLISH_QOS0_RETAIN,))
    rest = remaining
    while True:
        byte = rest & 0x7F
        rest >>= 7
        out.append(byte | 0x80 if rest else byte)
        if not rest:
            break
    header = bytes(out)
    if remaining < 16_384:
        _FIXED_HEADERS[remaining] = header
    return header


def _topic_field(topic: str, *, v5: bool) -> bytes:
    """A PUBLISH variable header for QoS 0: the topic name, and MQTT 5's empty properties."""
    name = topic.encode()
    # paho's own checks (Client._raise_for_invalid_topic), which publish() would make.
    if b"+" in name or b"#" in name:
        raise ValueError("Publish topic cannot contain wildcards.")
    if not name or len(name) > 65535:
        raise ValueError("Publish topic is empty or too long.")
    return len(name).to_bytes(2, "big") + name + (b"\x00" if v5 else b"")


def _write_retained_qos0(
    paho_client: paho.Client,
    batch: list[tuple[str, bytes]],
    topic_fields: dict[str, bytes],
    *,
    v5: bool,
) -> None:
    """Queue ``batch`` in paho as one buffer of retained QoS 0 PUBLISH packets and write it.

    The bytes are those ``paho_client.publish(topic, payload, 0, True)`` would queue for each.
    The buffer joins the end of paho's queue, so it is written in order with whatever is
    there (QoS 1 publishes handed over before it); it is written at once, here, as paho's
    socket writer would: what the socket does not take waits in the queue, and paho has the
    event loop's writer finish it.
    """
    if paho_client._sock is None:  # noqa: SLF001 - what publish() checks
        raise aiomqtt.MqttCodeError(paho.MQTT_ERR_NO_CONN, "could not publish: not connected")
    parts: list[bytes] = []
    append = parts.append
    for topic, payload in batch:
        field = topic_fields.get(topic)
        if field is None:
            if len(topic_fields) >= _TOPIC_FIELDS_MAX:
                topic_fields.clear()
            field = topic_fields[topic] = _topic_field(topic, v5=v5)
        append(_fixed_header(len(field) + len(payload)))
        append(field)
        append(payload)
    packet = b"".join(parts)
    # paho has no public way to queue bytes it did not build. Its queue entries are the
    # bytes and what to do once they are written; command 0 (no MQTT packet type) asks for
    # nothing: a QoS 0 PUBLISH entry would make paho build a message info, and call
    # on_publish with a new reason code and properties object, which nobody waits for.
    # Writing here (rather than Client._packet_queue, which asks for the event loop's writer
    # through call_soon_threadsafe every time) costs one send() per batch.
    paho_client._out_packet.append(  # noqa: SLF001
        {
            "command": 0,
            "mid": 0,
            "qos": 0,
            "pos": 0,
            "to_process": len(packet),
            "packet": packet,
            "info": None,
        }
    )
    rc = paho_client.loop_write()
    if rc != paho.MQTT_ERR_SUCCESS:
        raise aiomqtt.MqttCodeError(rc, "could not publish")


def _unsent_bytes(paho_client: paho.Client) -> int:
    """Bytes paho holds that are not yet written to the socket."""
    return sum(packet["to_process"] for packet in paho_client._out_packet)  # noqa: SLF001


def _only(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """True when ``exc`` (or every leaf of an exception group) is one of ``kinds``."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(e, kinds) for e in exc.exceptions)
    return isinstance(exc, kinds)
