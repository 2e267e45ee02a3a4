"""Analog radios through a KISS TNC (direwolf, a hardware TNC): APRS positions and messages.

Receive: KISS -> AX.25 UI -> APRS. Every frame from a station marks it heard; positions in all
three formats (uncompressed, compressed, Mic-E) become :class:`~gateway.model.Position`; numbered
messages addressed to the gateway's callsign are acked (every copy, see below) and passed on once
as :class:`~gateway.model.TextFromUnit`; acks and rejects addressed to us complete our pending
messages.

Send (:class:`~gateway.drivers.base.TextSender`): the text is sanitised and split by the codec's
rules (67 UTF-8 bytes, numbered parts ``(1/2) ...``), each part gets its own message number and is
sent, in order, through the link's :class:`~gateway.channel.Channel`, retried after each interval
of the link's ``retry_intervals_s`` until the station acks or rejects it. Part 2 goes out only
after part 1 is acked.

Decisions (``../shared/notes/kiss-ax25-aprs.md`` for the protocol facts):

* **Tocall** ``APZFLK``: ``APZ`` is the APRS tocall range for experimental software that has not
  registered its own; register one (https://github.com/aprsorg/aprs-deviceid) before wide use.
* **Own echoes**: every frame whose source is the gateway's callsign-SSID is dropped first (a
  digipeater repeating our own transmission), before presence, dedupe and message logic.
* **Duplicates**: a frame with the same source, destination and information field as one heard
  within :data:`DUPLICATE_WINDOW_S` is the same packet heard through another digipeater (or a
  stationary beacon repeated) and is handled once; the cache is bounded.
  Messages addressed to us are the exception, because the rule is to ack every copy (a retry means
  our ack was lost): they are acked again unless an ack for the same message went out within
  :data:`ACK_HOLDOFF_S` (copies arriving that close together are digipeated duplicates, not
  retries, and one ack answers them all). Their text reaches the sink once per
  ``(source, msgno, text)`` within :data:`DELIVERED_WINDOW_S`; the text is part of the key so a
  radio that restarts its message counter is not silenced.
* **Reply-acks** (APRS 1.1): a message ``{MM}AA`` from a station acks our message ``AA``; a
  station seen using that form gets ``{MM}AA`` messages from us (``AA`` the last number we got from
  it) and acks of the form ``ackMM}``; other stations get the plain APRS101 forms. The text of
  such a message answers our message ``AA``: it reaches the sink with ``reply_to`` naming the
  order ``AA`` carried (remembered for the last :data:`CACHE_MAX` messages sent), so dispatch
  gives the answer to that task whatever else is waiting. Every numbered message reaches the
  sink with its number as ``message_id``, so a repeat is applied once even after a restart.
* **Message numbers**: five base-36 digits from the UTC time of day (600 numbers per second of
  the day, as a floor) and a counter, so numbers are unique per link across restarts within a day.
* **Status reports** (``>...``) mark the station heard and nothing else: they are a device's
  beacon text (battery, software), not a person's message. Bulletins, objects and other data
  types likewise.
* **Mic-E emergency** (message bits 000): the position is reported, then an ``emergency``
  :class:`~gateway.model.Alarm` raised with it. Every Mic-E position states the station's message
  code, so one that is not Emergency reports the alarm cleared (the gateway ignores clears of
  alarms that are not raised, and publishes one ``raised`` per raise however often a radio
  repeats it). Uncompressed and compressed positions carry no such code and say nothing.
* **poll_location** sends the APRS directed query ``?APRSP`` as an unnumbered message to the
  station (APRS101 ch.15); stations that implement queries answer with a position report.
* **Voice**: APRS cannot carry speech; a ``voice`` order is sent as text.
* **Acks** go out at :data:`~gateway.channel.URGENT` priority: they are short and the peer
  retries (occupying the channel again) until it hears one.
* "Transmitted" means written to the TNC: KISS has no transmit confirmation. The channel holds
  the link for each frame's airtime at 1200 baud (plus ``gap_s``), so the TNC never holds more than
  one of our frames and an urgent frame never waits in its FIFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Final

from gateway.channel import NORMAL, URGENT, Channel, afsk1200_airtime_s
from gateway.config import LinkConfig, normalise_address
from gateway.drivers.base import (
    Driver,
    EventSink,
    OnTransmitted,
    Transmissions,
    first_error,
    send_in_parts,
)
from gateway.errors import LinkError
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
    utc_now,
)
from gateway.transport import Connection
from protocols import ax25, kiss
from protocols.aprs import (
    AprsAck,
    AprsError,
    AprsMessage,
    AprsPacket,
    AprsPosition,
    AprsRej,
    decode_frame,
    encode_ack,
    encode_message,
    sanitize_text,
    split_message_text,
)

__all__ = [
    "ACK_HOLDOFF_S",
    "DEFAULT_GAP_S",
    "DELIVERED_WINDOW_S",
    "DUPLICATE_WINDOW_S",
    "POSITION_QUERY",
    "TOCALL",
    "AprsDriver",
    "MessageNumbers",
    "TtlCache",
]

log = logging.getLogger(__name__)

TOCALL: Final = "APZFLK"
"""Destination of our frames: the APRS "software type" (experimental APZ range)."""
POSITION_QUERY: Final = "?APRSP"
DUPLICATE_WINDOW_S: Final = 30.0
"""A frame repeating one heard this recently (same source, destination, info) is a duplicate."""
ACK_HOLDOFF_S: Final = 5.0
"""Copies of a message to us arriving this soon after we acked it are digipeated duplicates."""
DELIVERED_WINDOW_S: Final = 3600.0
"""How long a delivered (source, msgno, text) is remembered, so retries are not delivered twice."""
CACHE_MAX: Final = 4096
"""Entries per dedupe cache: bounded whatever the channel carries."""
ACK_BACKLOG_MAX: Final = 64
"""Acks waiting for the channel at once; beyond this, copies are not acked (the peer retries)."""
DEFAULT_GAP_S: Final = 0.1
"""Pause after each frame's airtime before the next (the TNC's persistence/slot time)."""
QUEUE_TIMEOUT_S: Final = 600.0
"""Longest a frame may wait for the channel before its send is given up."""
TXDELAY_S: Final = 0.3
"""Key-up delay counted in each frame's airtime (direwolf's default TXDELAY is 300 ms); the
link's ``txdelay_s`` overrides it, as ``gap_s`` and ``channel_baud`` override theirs."""
TXTAIL_S: Final = 0.05

_MSGNO_DIGITS: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MSGNO_SPACE: Final = 36**5
_MSGNO_PER_SECOND: Final = 600  # 86400 * 600 < 36**5: the time floor never wraps within a day


class TtlCache:
    """Keys remembered for ``ttl_s`` (monotonic), at most ``max_entries`` (oldest dropped)."""

    def __init__(self, ttl_s: float, max_entries: int = CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._seen: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, at = next(iter(seen.items()))
            if now - at < self.ttl_s and len(seen) <= self._max:
                break
            del seen[key]

    def seen_recently(self, key: Hashable, now: float | None = None) -> bool:
        """True when ``key`` was added within the window; never refreshes it."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        return key in self._seen

    def add(self, key: Hashable, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._seen.pop(key, None)
        self._seen[key] = now
        self._expire(now)

    def check_and_add(self, key: Hashable, now: float | None = None) -> bool:
        """True (a duplicate) when ``key`` is in the window; otherwise remember it."""
        now = time.monotonic() if now is None else now
        if self.seen_recently(key, now):
            return True
        self.add(key, now)
        return False


class MessageNumbers:
    """Five base-36 digits, unique per link across restarts within a UTC day.

    Each number is at least 600 x the seconds since UTC midnight and above the previous one, so a
    restarted gateway starts beyond every number the previous run could have used (unless that run
    sent more than 600 messages per second of its life: at 1200 baud it sends about one).
    """

    def __init__(self) -> None:
        self._last = -1

    def next(self, now: datetime | None = None) -> str:
        now = utc_now() if now is None else now
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        floor = int((now - midnight).total_seconds()) * _MSGNO_PER_SECOND
        value = max(floor, self._last + 1) % _MSGNO_SPACE
        self._last = value
        digits = []
        for _ in range(5):
            value, digit = divmod(value, 36)
            digits.append(_MSGNO_DIGITS[digit])
        return "".join(reversed(digits))


class _Answer:
    """What completed a pending message: an ack or a rej, and from whom."""

    __slots__ = ("rejected", "station")

    def __init__(self, station: str, rejected: bool) -> None:
        self.station = station
        self.rejected = rejected


def _callsign(text: str) -> str | None:
    """The normalised callsign-SSID, or None when ``text`` is not one."""
    try:
        return normalise_address("aprs", text.strip())
    except ValueError:
        return None


class AprsDriver(Driver):
    """One KISS TNC: APRS in (positions, messages, acks), messages out with retries."""

    def __init__(self, link: LinkConfig, sink: EventSink, counters: LinkCounters) -> None:
        super().__init__(link, sink, counters)
        self.callsign = normalise_address("aprs", link.option("callsign", str))
        self._source = ax25.parse_address(self.callsign)
        self._dest = ax25.parse_address(TOCALL)
        self._path = tuple(ax25.parse_address(str(hop)) for hop in link.option("path", tuple))
        self.retry_intervals_s = tuple(
            float(interval) for interval in link.option("retry_intervals_s", tuple)
        )
        self.kiss_port = link.option("kiss_port", int)
        self.gap_s = _float_option(link, "gap_s", DEFAULT_GAP_S)
        self.txdelay_s = _float_option(link, "txdelay_s", TXDELAY_S)
        self.channel_baud = _int_option(link, "channel_baud", 1200)
        self.txtail_s = _float_option(link, "txtail_s", TXTAIL_S)
        self.queue_timeout_s = QUEUE_TIMEOUT_S
        self.airtime_s: Callable[[bytes], float] = self.frame_airtime_s
        """How long each frame holds the channel; a test talking to a stub with no radio channel
        in between may shrink it, like the retry intervals."""
        self.numbers = MessageNumbers()
        self._channel: Channel | None = None
        self._pending: dict[tuple[str, str], asyncio.Future[_Answer]] = {}
        self._heard_frames = TtlCache(DUPLICATE_WINDOW_S)
        self._acked = TtlCache(ACK_HOLDOFF_S)
        self._delivered = TtlCache(DELIVERED_WINDOW_S)
        # Stations seen using reply-acks -> the last message number we got from each.
        self._reply_ack_peers: OrderedDict[str, str] = OrderedDict()
        # (station, our message number) -> the order it carried, so a reply-ack names it.
        self._sent_orders: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._acks_in_flight = 0

    # -- the link ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._channel is not None

    @property
    def pending(self) -> int:
        """Outgoing messages waiting for an ack (for tests and health)."""
        return len(self._pending)

    def frame_airtime_s(self, frame: bytes) -> float:
        """Channel time of one KISS frame: its AX.25 bytes at the link's baud rate (1200 AFSK
        unless ``channel_baud`` says otherwise) plus key-up delay and tail."""
        ax25_bytes = max(0, len(frame) - 3)  # FEND, type byte, FEND
        if self.channel_baud == 1200:
            return afsk1200_airtime_s(ax25_bytes, txdelay_s=self.txdelay_s, txtail_s=self.txtail_s)
        bits_s = afsk1200_airtime_s(ax25_bytes, txdelay_s=0.0, txtail_s=0.0) * 1200
        return self.txdelay_s + bits_s / self.channel_baud + self.txtail_s

    async def run(self, conn: Connection) -> None:
        if self._channel is not None:
            raise LinkError(self.link.name, "one TNC connection at a time")

        async def write(frame: bytes) -> None:
            await conn.write(frame)
            self.counters.tx_bytes += len(frame)

        channel = Channel(self.link.name, write, self.airtime_s, gap_s=self.gap_s)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(channel.run(), name=f"{self.link.name}:channel")
                self._channel = channel
                try:
                    await self._receive(conn, tasks)
                finally:
                    self._link_down(channel)
        except BaseExceptionGroup as group:
            raise first_error(group) from None

    def _link_down(self, channel: Channel) -> None:
        """Before the channel task stops: no new sends, every waiter fails."""
        self._channel = None
        channel.fail_all("link down")
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(LinkError(self.link.name, "link down"))

    async def _receive(self, conn: Connection, tasks: asyncio.TaskGroup) -> None:
        decoder = kiss.KissDecoder()
        while True:
            data = await conn.read()
            self.counters.rx_bytes += len(data)
            for item in decoder.feed(data):
                if isinstance(item, kiss.KissRejected):
                    self.rejects.reject(item.reason, item.raw)
                    continue
                for ack in self.handle_kiss_frame(item):
                    self._spawn_ack(tasks, ack)

    # -- receive ------------------------------------------------------------------

    def handle_kiss_frame(self, item: kiss.KissFrame) -> list[bytes]:
        """Decode one KISS frame and report what it says; returns the KISS frames to send back
        (acks). Free of I/O, so benchmarks and tests can drive it without a link."""
        decoded = self._decode(item)
        if decoded is None:
            return []
        station, frame, packet = decoded
        now = time.monotonic()
        if isinstance(packet, AprsMessage) and _callsign(packet.addressee) == self.callsign:
            return self._on_message(station, packet, now)
        if self._heard_frames.check_and_add((station, frame.dest.call_ssid, frame.info.rstrip())):
            return []
        if isinstance(packet, AprsPosition):
            self._on_position(station, packet)
        elif isinstance(packet, AprsAck | AprsRej) and _callsign(packet.addressee) == self.callsign:
            self._complete(station, packet.msgno, rejected=isinstance(packet, AprsRej))
        return []

    def _decode(self, item: kiss.KissFrame) -> tuple[str, ax25.Ax25Frame, AprsPacket] | None:
        """The station and packet of a frame from another station; None for anything else."""
        if item.command != kiss.KissCommand.DATA or item.port != self.kiss_port:
            return None  # another radio port of a multi-port TNC, or a TNC parameter echo
        self.counters.frames += 1
        try:
            frame = ax25.decode(item.payload)
        except ax25.Ax25Error as exc:
            self.rejects.reject("ax25", item.payload, str(exc))
            return None
        if not frame.is_ui:
            return None  # connected-mode AX.25 traffic of other stations
        station = frame.source.call_ssid
        if station == self.callsign:
            return None  # our own frame, digipeated back
        self.sink.heard(DeviceRef(self.link.name, station))
        try:
            packet = decode_frame(frame)
        except AprsError as exc:
            self.rejects.reject("aprs", item.payload, str(exc))
            return None
        return station, frame, packet

    def _on_position(self, station: str, packet: AprsPosition) -> None:
        received = utc_now()
        fix_time = received
        if packet.timestamp is not None and packet.timestamp.tzinfo is not None:
            fix_time = min(packet.timestamp.astimezone(UTC), received)  # never in the future
        self.counters.positions += 1
        device = DeviceRef(self.link.name, station)
        position = Position(
            device=device,
            lat=packet.lat,
            lon=packet.lon,
            fix_time=fix_time,
            received_at=received,
            source="aprs",
            alt_m=packet.alt_m,
            speed_kmh=packet.speed_kmh,
            course_deg=float(packet.course_deg) if packet.course_deg is not None else None,
        )
        self.sink.position(position)
        if packet.format == "mic-e":  # its message code: Emergency raises, any other clears
            self.sink.alarm(
                Alarm(device, AlarmKind.EMERGENCY, packet.emergency, received, position=position)
            )

    def _on_message(self, station: str, message: AprsMessage, now: float) -> list[bytes]:
        if message.reply_ack:  # {MM}AA: the station acks our message AA in passing
            self._complete(station, message.reply_ack, rejected=False)
        reply_to = (
            self._sent_orders.get((station, message.reply_ack)) if message.reply_ack else None
        )
        if message.msgno is None:
            if not self._heard_frames.check_and_add((station, "text", message.text), now):
                self._deliver(station, message.text, reply_to)
            return []
        if message.reply_ack is not None:
            self._reply_ack_peers.pop(station, None)
            self._reply_ack_peers[station] = message.msgno
            while len(self._reply_ack_peers) > CACHE_MAX:
                self._reply_ack_peers.popitem(last=False)
        acks: list[bytes] = []
        if not self._acked.check_and_add((station, message.msgno), now):
            reply = "" if message.reply_ack is not None else None
            acks.append(self.kiss_frame(encode_ack(station, message.msgno, reply)))
        if not self._delivered.check_and_add((station, message.msgno, message.text), now):
            self._deliver(station, message.text, reply_to, message.msgno)
        return acks

    def _deliver(
        self, station: str, text: str, reply_to: str | None = None, msgno: str | None = None
    ) -> None:
        device = DeviceRef(self.link.name, station)
        self.sink.text(TextFromUnit(device, text, utc_now(), reply_to=reply_to, message_id=msgno))

    def _complete(self, station: str, msgno: str, *, rejected: bool) -> None:
        waiter = self._pending.get((station, msgno))
        if waiter is None:
            log.debug("%s: %s for %s from %s matches nothing pending", self.link.name,
                      "rej" if rejected else "ack", msgno, station)  # fmt: skip
            return
        if not waiter.done():
            waiter.set_result(_Answer(station, rejected))

    def _spawn_ack(self, tasks: asyncio.TaskGroup, frame: bytes) -> None:
        if self._acks_in_flight >= ACK_BACKLOG_MAX:
            self.counters.reject("ack-backlog")
            return
        self._acks_in_flight += 1
        tasks.create_task(self._send_ack(frame))

    async def _send_ack(self, frame: bytes) -> None:
        try:
            channel = self._channel
            if channel is not None:
                with contextlib.suppress(LinkError):
                    async with asyncio.timeout(self.queue_timeout_s):
                        await channel.transmit(frame, URGENT)
        except TimeoutError:
            log.warning("%s: an ack waited %.0f s for the channel; dropped", self.link.name,
                        self.queue_timeout_s)  # fmt: skip
        finally:
            self._acks_in_flight -= 1

    # -- send ---------------------------------------------------------------------

    def kiss_frame(self, info: bytes) -> bytes:
        """A UI frame from our callsign to the tocall over the configured path, in KISS."""
        frame = ax25.Ax25Frame(self._dest, self._source, self._path, info=info)
        return kiss.encode_frame(ax25.encode(frame), self.kiss_port)

    def can_reach(self, address: str) -> bool:
        return self._channel is not None and _callsign(address) is not None

    async def poll_location(self, address: str) -> bool:
        station = _callsign(address)
        channel = self._channel
        if station is None or channel is None:
            return False
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await channel.transmit(
                    self.kiss_frame(encode_message(station, POSITION_QUERY)), NORMAL
                )
        except (LinkError, TimeoutError):
            return False
        return True

    async def send_text(self, order: TextOrder, on_transmitted: OnTransmitted) -> DeliveryReport:
        station = _callsign(order.address)
        if station is None:
            return DeliveryReport(Delivery.FAILED, f"{order.address!r} is not a callsign")
        text = sanitize_text(order.text).strip()
        if not text:
            return DeliveryReport(Delivery.FAILED, "nothing to send: empty text")
        if self._channel is None:
            return DeliveryReport(Delivery.FAILED, "link down")
        try:
            parts = split_message_text(text)
        except AprsError as exc:
            return DeliveryReport(Delivery.FAILED, f"text cannot be sent: {exc}")
        return await send_in_parts(
            parts,
            functools.partial(self._send_part, station, order),
            on_transmitted,
            f"{self.link.name}: {order.key or 'text'} to {station}",
        )

    async def _send_part(
        self, station: str, order: TextOrder, text: str, sent: Transmissions
    ) -> str | None:
        """Send one message until acked; the failure reason, or None when acked."""
        msgno = self.numbers.next()
        reply_ack = self._reply_ack_peers.get(station)
        frame = self.kiss_frame(encode_message(station, text, msgno, reply_ack))
        key = (station, msgno)
        waiter: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._pending[key] = waiter  # registered before the first write: an ack can be quick
        if order.key:
            self._sent_orders[key] = order.key
            while len(self._sent_orders) > CACHE_MAX:
                self._sent_orders.popitem(last=False)
        try:
            failure = await self._transmit_until_answered(frame, waiter, order.priority, sent)
            return failure if failure is not None else self._outcome(waiter)
        finally:
            self._pending.pop(key, None)
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                waiter.exception()  # mark a link-down error retrieved: reported, not logged

    async def _transmit_until_answered(
        self, frame: bytes, waiter: asyncio.Future[_Answer], priority: int, sent: Transmissions
    ) -> str | None:
        """Transmit ``frame``, then again after each retry interval, until ``waiter`` is done."""
        for interval in self.retry_intervals_s:
            channel = self._channel
            if channel is None or waiter.done():
                break
            try:
                async with asyncio.timeout(self.queue_timeout_s):
                    await channel.transmit(frame, priority)
            except LinkError:
                return "link down"
            except TimeoutError:
                return f"waited {self.queue_timeout_s:.0f} s for the channel"
            sent.written()
            await asyncio.wait((waiter,), timeout=interval)
        return None

    def _outcome(self, waiter: asyncio.Future[_Answer]) -> str | None:
        if not waiter.done():
            if self._channel is None:
                return "link down"
            return f"no ack after {len(self.retry_intervals_s)} tries"
        try:
            answer = waiter.result()
        except LinkError:
            return "link down"
        return f"rejected by {answer.station}" if answer.rejected else None


def _float_option(link: LinkConfig, key: str, default: float) -> float:
    value = link.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"link {link.name}: option {key} is {type(value).__name__}, not a number")
    return float(value)


def _int_option(link: LinkConfig, key: str, default: int) -> int:
    value = link.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise TypeError(f"link {link.name}: option {key} is {value!r}, not a positive integer")
    return value
