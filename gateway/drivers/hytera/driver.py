"""Hytera DMR radios: one radio on the gateway (serial HRNP or its USB network), and through it
every radio on the air: text (TMP), location (LP), registration (RRS), emergency.

The link (``../shared/notes/hytera.md`` for the protocol facts and their sources):

* **Serial or TCP** (``/dev/ttyUSB0``, ``tcp://``): one HRNP stream carries every service. The
  driver sends CONNECT and waits for ACCEPT, numbers its DATA frames and resends each until
  the radio's DATA_ACK (``hrnp_ack_timeout_s``, ``hrnp_retries``: no ack ends the link, and
  the supervisor reopens it with back-off), and answers every DATA with a DATA_ACK.
* **USB network** (``udp://radio:3005``): HRNP radio control on the URL's port; RRS, LP and TMP
  as bare HDAP datagrams on their own ports (``rrs_port`` ... to the radio, ``local_*_port``
  on the gateway). This split follows HyteraNetRpt's captures (**inferred**: the notes say to
  confirm on hardware); a datagram that arrives wrapped in HRNP on a service port is accepted
  too (and acked).

Once the session is up the driver asks the radio to forward the messages it receives (RCP
``0x1847``) and for its own radio id (RCP ``0x0452``), the source of every text it sends.
After ``keepalive_s`` of silence it asks for the id again: the HRNP ack proves the link.

Decisions:

* **Text out** goes as a private TMP message (ack requested, bit 7, the majority reading of
  the sources) to the unit's radio id in ``subnet``; text longer than ``text_limit`` UTF-16
  units goes as numbered parts, split between characters (never inside a surrogate pair),
  at most ``max_parts``. Each part has its own request id, kept on resends. The radio's TMP
  ack decides: result 0 is ``delivered`` (the network's confirmation, not a person's),
  *channel busy* waits ``busy_backoff_s`` (doubling) and resends, any other result fails with
  its name. No ack after the last of ``retry_intervals_s`` fails with "no ack".
* **Text in**: a private message to us is acked (TMP ``A2``, result 0) when the radio asks for
  an ack (**inferred**: whether the gateway must answer is to be confirmed on hardware), a
  leading CR LF (the Motorola subject/body convention) is stripped, and the text goes to
  dispatch. A text that is exactly a key of ``status_stages`` is a status: it goes as a
  :class:`~gateway.model.UnitAnswer` with that stage. A radio's text that carries the request
  id of one of our messages to it (**inferred**: radios number their own messages from 1, ours
  start far above) names that message: ``reply_to`` picks its task (SPEC section 5). The same
  text from the same radio with the same request id within :data:`DUPLICATE_WINDOW_S` is a
  resend (our ack was lost) and is passed on once. Group texts mark the sender heard only.
* **Registration** (RRS ``00 03``) marks the radio heard, is answered with result 0 and
  :data:`RENEW_S`, and sets up its location reports: periodic every ``location_interval_s``
  (LP ``C001``) or, with ``location_distance_m``, on distance or time, whichever first (LP
  ``D001`` trigger 4). A radio first heard some other way gets the same set-up once per session.
  De-registration (a radio switched off) takes it offline at once (``sink.offline``), and
  its location set-up is forgotten.
* **Location**: every LP report or answer with status ``A`` becomes a position (speed from
  knots, course from the heading); a void fix (``V``, NUL fields) is no position, and counted.
  ``poll_location`` sends an immediate request (``A001``).
* **Emergency**: an LP emergency report (``B003``) raises an ``emergency`` alarm with its fix,
  or the radio's last known position when the report has none. The meaning of its type byte
  is not documented: a report whose type is ``emergency_cancel_type`` (**inferred**, 255 by
  default) clears the alarm instead. ``confirm_alarm`` (the centre handled it) sends the LP
  emergency stop request (``B001``) so the radio stops repeating.
* **Duplicate HRNP packets**: a DATA frame with the same packet number and data as the one
  before it is acked again and dropped (the radio did not hear our first ack).
* Bad input never ends the link: HRNP noise, headers, checksums, HDAP and service errors are
  counted (``rejected_by_reason``) and logged with a hex dump at most every 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Final

from gateway.channel import NORMAL, URGENT, Channel
from gateway.config import LinkConfig
from gateway.drivers.base import (
    Driver,
    EventSink,
    OnTransmitted,
    Transmissions,
    first_error,
    send_in_parts,
)
from gateway.drivers.hytera.spec import SERIAL_BAUDRATE, parse_status_stage
from gateway.drivers.hytera.spec import radio_id as normalise_radio_id
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
    UnitAnswer,
    utc_now,
)
from gateway.transport import Connection, DatagramSocket, open_datagram_socket
from protocols.hytera.errors import HyteraError
from protocols.hytera.hdap import HdapEnvelope, Service, decode_envelope, encode_envelope
from protocols.hytera.hrnp import (
    PC_ADDRESS,
    RADIO_ADDRESS,
    HrnpDecoder,
    HrnpFrame,
    HrnpOpcode,
    HrnpRejected,
    decode_frame,
    encode_frame,
)
from protocols.hytera.services import (
    DdsReport,
    GpsFix,
    LpAnswer,
    LpLocation,
    LpOpcode,
    LpRequest,
    RcpMessage,
    RcpOpcode,
    RrsMessage,
    RrsOpcode,
    ServiceMessage,
    TmpAck,
    TmpMessage,
    TmpResult,
    TmpShortData,
    decode_service,
    encode_service,
    interval_text,
    radio_id,
    radio_ip,
)

__all__ = ["DUPLICATE_WINDOW_S", "RENEW_S", "HyteraDriver", "split_text"]

log = logging.getLogger(__name__)

RENEW_S: Final = 1800
"""Registration renew time given to radios (a dispatcher's config: ``RRSFirstTimerInMin 35``)."""
DUPLICATE_WINDOW_S: Final = 60.0
"""A radio's text repeated (same radio, request id and text) this soon is a resend."""
CACHE_MAX: Final = 4096
"""Entries of every map keyed by what radios send (radios heard, last fixes, dedupe)."""
REPLY_BACKLOG_MAX: Final = 64
"""Answers to radios (acks, registration answers) in flight at once; beyond it, dropped."""
QUEUE_TIMEOUT_S: Final = 600.0
"""Longest a frame waits for the radio channel before its send is given up."""
TX_GAP_S: Final = 0.0
"""Pause between two of our frames on the channel. None: the connected radio queues what it
takes, and its HRNP DATA_ACK paces us (the channel waits for it before the next frame)."""
MOTOROLA_PREFIX: Final = "\r\n"

_EMERGENCY_STOP: Final = LpOpcode.EMERGENCY_STOP_REQUEST


def split_text(text: str, limit: int, max_parts: int) -> list[str]:
    """``text`` as TMP messages of at most ``limit`` UTF-16 units, numbered ``(i/n) `` when
    more than one, never cut inside a character; ValueError when it needs more than
    ``max_parts``."""
    if _units(text) <= limit:
        return [text]
    for parts_count in range(2, max_parts + 1):
        prefix = len(f"({parts_count}/{parts_count}) ")
        chunks = _chunks(text, limit - prefix)
        if len(chunks) <= parts_count:
            n = len(chunks)
            return [f"({i}/{n}) {chunk}" for i, chunk in enumerate(chunks, 1)]
    raise ValueError(
        f"text of {len(text)} characters needs more than {max_parts} messages of "
        f"{limit} UTF-16 units"
    )


def _units(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _chunks(text: str, limit: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if size + width > limit:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(ch)
        size += width
    if current:
        chunks.append("".join(current))
    return chunks


class _BoundedMap(OrderedDict[Any, Any]):
    """An insertion-ordered map that forgets its oldest entries beyond ``max_entries``."""

    def __init__(self, max_entries: int = CACHE_MAX) -> None:
        super().__init__()
        self.max_entries = max_entries

    def put(self, key: object, value: object) -> None:
        self.pop(key, None)
        self[key] = value
        while len(self) > self.max_entries:
            self.popitem(last=False)


class _Hrnp:
    """The PC side of one HRNP session over a byte stream (or a UDP "connection")."""

    def __init__(
        self,
        link: str,
        write: Callable[[bytes], Awaitable[None]],
        ack_timeout_s: float,
        retries: int,
    ) -> None:
        self.link = link
        self._write = write
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        self.me = PC_ADDRESS
        self.peer = RADIO_ADDRESS
        self._numbers = itertools.count(1)
        self._acks: dict[int, asyncio.Future[None]] = {}
        self.accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.broken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Fails when a DATA frame went unacknowledged: the session is over."""
        self._last_data: tuple[int, bytes] | None = None

    def frame(self, opcode: int, number: int = 0, data: bytes = b"") -> bytes:
        return encode_frame(HrnpFrame(opcode, self.me, self.peer, number, data))

    async def connect(self) -> None:
        await self._write(self.frame(HrnpOpcode.CONNECT))
        try:
            async with asyncio.timeout(self.ack_timeout_s * (self.retries + 1)):
                await asyncio.shield(self.accepted)
        except TimeoutError:
            raise LinkError(self.link, "the radio did not accept the HRNP connection") from None

    async def send_data(self, data: bytes) -> None:
        """Send one DATA frame and wait for its DATA_ACK, resending; LinkError when none."""
        number = next(self._numbers) & 0xFFFF
        frame = self.frame(HrnpOpcode.DATA, number, data)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[number] = waiter
        try:
            for _ in range(self.retries + 1):
                await self._write(frame)
                done, _ = await asyncio.wait((waiter,), timeout=self.ack_timeout_s)
                if done:
                    return
            error = LinkError(
                self.link, f"no HRNP DATA_ACK for packet {number} after {self.retries + 1} tries"
            )
            if not self.broken.done():
                self.broken.set_exception(error)  # whoever sent it, the link is down
            raise error
        finally:
            self._acks.pop(number, None)
            if not waiter.done():
                waiter.cancel()

    def fail_all(self) -> None:
        for waiter in self._acks.values():
            if not waiter.done():
                waiter.cancel()
        if not self.accepted.done():
            self.accepted.cancel()
        if not self.broken.done():
            self.broken.cancel()

    async def on_frame(self, frame: HrnpFrame) -> bytes | None:
        """Handle one received frame; the HDAP data of a new DATA frame, else None."""
        op = frame.opcode
        if op == HrnpOpcode.DATA:
            await self._write(
                encode_frame(
                    HrnpFrame(HrnpOpcode.DATA_ACK, self.me, self.peer, frame.packet_number)
                )
            )
            key = (frame.packet_number, frame.data)
            if key == self._last_data:
                return None
            self._last_data = key
            return frame.data
        if op == HrnpOpcode.DATA_ACK:
            waiter = self._acks.get(frame.packet_number)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif op == HrnpOpcode.ACCEPT:
            if not self.accepted.done():
                # HyteraNetRpt takes its own address from the ACCEPT (notes section 2).
                if frame.dst:
                    self.me = frame.dst
                self.peer = frame.src or RADIO_ADDRESS
                self.accepted.set_result(None)
        elif op == HrnpOpcode.REJECT:
            raise LinkError(self.link, "the radio rejected the HRNP connection")
        elif op == HrnpOpcode.CLOSE:
            await self._write(self.frame(HrnpOpcode.CLOSE_ACK))
            raise LinkError(self.link, "the radio closed the HRNP session")
        return None

    def is_duplicate(self, frame: HrnpFrame) -> bool:
        return frame.opcode == HrnpOpcode.DATA and (frame.packet_number, frame.data) == (
            self._last_data
        )


class HyteraDriver(Driver):
    """One radio connected to the gateway, and through it the radios on the air."""

    def __init__(self, link: LinkConfig, sink: EventSink, counters: LinkCounters) -> None:
        super().__init__(link, sink, counters)
        opt = link.options
        self.subnet = int(_num(opt, "subnet", 10))
        self.text_limit = int(_num(opt, "text_limit", 256))
        self.max_parts = int(_num(opt, "max_parts", 4))
        self.retry_intervals_s = tuple(
            _float(v) for v in _seq(opt, "retry_intervals_s", (10.0, 20.0, 40.0))
        )
        self.busy_backoff_s = _num(opt, "busy_backoff_s", 3.0)
        self.location_interval_s = _num(opt, "location_interval_s", 60.0)
        self.location_distance_m = int(_num(opt, "location_distance_m", 0))
        self.hrnp_ack_timeout_s = _num(opt, "hrnp_ack_timeout_s", 1.0)
        self.hrnp_retries = int(_num(opt, "hrnp_retries", 3))
        self.keepalive_s = _num(opt, "keepalive_s", 30.0)
        self.emergency_cancel_type = int(_num(opt, "emergency_cancel_type", 255))
        self.status_stages = dict(
            parse_status_stage(str(entry)) for entry in _seq(opt, "status_stages", ())
        )
        self.tx_gap_s = TX_GAP_S
        self.queue_timeout_s = QUEUE_TIMEOUT_S
        self.own_id: int | None = None
        """The connected radio's own id (RCP), the source of our texts."""
        self._udp = link.transport == "udp"
        if link.transport == "serial" and link.serial.baudrate != SERIAL_BAUDRATE:
            log.warning(
                "%s: Hytera radios speak HRNP at %d baud; this link is set to %d (baudrate)",
                link.name, SERIAL_BAUDRATE, link.serial.baudrate,
            )  # fmt: skip
        self._radio_host = link.endpoint[0] if self._udp and link.endpoint else ""
        self._hrnp: _Hrnp | None = None
        self._channel: Channel | None = None
        self._sockets: dict[int, tuple[DatagramSocket, tuple[str, int]]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._replies_in_flight = 0
        self._request_ids = itertools.count(((int(time.time()) << 8) & 0x3FFFFFFF) | 0x40000000)
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._rcp_waiters: dict[int, asyncio.Future[RcpMessage]] = {}
        self._sent_orders = _BoundedMap()  # (radio, request id) -> order key
        self._last_fix = _BoundedMap()  # radio -> Position
        self._texts_seen = _BoundedMap()  # (radio, request id, text) -> monotonic time
        self._set_up = _BoundedMap()  # radios whose location reporting was set up this session
        self._last_rx = time.monotonic()

    # -- the link ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """The session is up and the connected radio said its id."""
        return self._channel is not None and self.own_id is not None

    @property
    def pending(self) -> int:
        """Texts waiting for a TMP ack (for tests and health)."""
        return len(self._pending)

    async def run(self, conn: Connection) -> None:
        if self._hrnp is not None:
            raise LinkError(self.link.name, "one radio connection at a time")

        async def write(data: bytes) -> None:
            await conn.write(data)
            self.counters.tx_bytes += len(data)

        hrnp = _Hrnp(self.link.name, write, self.hrnp_ack_timeout_s, self.hrnp_retries)
        self._hrnp = hrnp
        self._set_up.clear()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._read_hrnp(conn, hrnp), name=f"{self.link.name}:hrnp")
                tasks.create_task(_until_broken(hrnp), name=f"{self.link.name}:hrnp-acks")
                await hrnp.connect()
                if self._udp:
                    await self._open_service_sockets(tasks)
                channel = Channel(self.link.name, self._transmit, lambda _f: 0.0,
                                  gap_s=self.tx_gap_s)  # fmt: skip
                tasks.create_task(channel.run(), name=f"{self.link.name}:channel")
                self._channel = channel  # radios may register while the setup runs
                await self._radio_setup(hrnp)
                log.info("%s: HRNP session up with radio %s", self.link.name, self.own_id)
                tasks.create_task(self._keepalive(hrnp), name=f"{self.link.name}:keepalive")
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        finally:
            self._link_down()

    def _link_down(self) -> None:
        channel, self._channel = self._channel, None
        self.own_id = None
        if channel is not None:
            channel.fail_all("link down")
        if self._hrnp is not None:
            self._hrnp.fail_all()
        self._hrnp = None
        self._tasks = None
        for waiter in list(self._pending.values()) + list(self._rcp_waiters.values()):
            if not waiter.done():
                waiter.set_exception(LinkError(self.link.name, "link down"))
        for sock, _ in self._sockets.values():
            sock.close()
        self._sockets.clear()

    async def _open_service_sockets(self, tasks: asyncio.TaskGroup) -> None:
        opt = self.link.options
        host = str(opt.get("local_host", "0.0.0.0"))  # noqa: S104 - the spec's default
        for service, port_key, local_key, default in (
            (Service.RRS, "rrs_port", "local_rrs_port", 3002),
            (Service.LP, "lp_port", "local_lp_port", 3003),
            (Service.TMP, "tmp_port", "local_tmp_port", 3004),
        ):
            sock = await open_datagram_socket(
                self.link.name, host, int(_num(opt, local_key, default))
            )
            self._sockets[service] = (sock, (self._radio_host, int(_num(opt, port_key, default))))
            tasks.create_task(self._read_udp(sock), name=f"{self.link.name}:{service.name}")

    async def _radio_setup(self, hrnp: _Hrnp) -> None:
        """Ask the radio to forward what it receives, and for its own id."""
        await hrnp.send_data(
            encode_envelope(
                encode_service(RcpMessage(RcpOpcode.BROADCAST_MESSAGE_CONFIG, flags=0x01))
            )
        )
        reply = await self._rcp_request(
            hrnp, RcpMessage(RcpOpcode.RADIO_ID_REQUEST, target=0), RcpOpcode.RADIO_ID_REPLY
        )
        if reply.result or reply.value is None:
            raise LinkError(self.link.name, f"the radio refused its id (result {reply.result})")
        self.own_id = reply.value & 0xFFFFFF

    async def _rcp_request(self, hrnp: _Hrnp, request: RcpMessage, answer: int) -> RcpMessage:
        waiter: asyncio.Future[RcpMessage] = asyncio.get_running_loop().create_future()
        self._rcp_waiters[answer] = waiter
        try:
            await hrnp.send_data(encode_envelope(encode_service(request)))
            async with asyncio.timeout(self.hrnp_ack_timeout_s * (self.hrnp_retries + 1)):
                return await waiter
        except TimeoutError:
            raise LinkError(
                self.link.name, f"no RCP answer 0x{answer:04X} from the radio"
            ) from None
        finally:
            if self._rcp_waiters.get(answer) is waiter:
                del self._rcp_waiters[answer]
            if not waiter.done():
                waiter.cancel()

    async def _keepalive(self, hrnp: _Hrnp) -> None:
        while True:
            idle = time.monotonic() - self._last_rx
            if idle < self.keepalive_s:
                await asyncio.sleep(self.keepalive_s - idle)
                continue
            await self._rcp_request(
                hrnp, RcpMessage(RcpOpcode.RADIO_ID_REQUEST, target=0), RcpOpcode.RADIO_ID_REPLY
            )
            self._last_rx = time.monotonic()

    async def _read_hrnp(self, conn: Connection, hrnp: _Hrnp) -> None:
        decoder = HrnpDecoder()
        while True:
            if decoder.buffered:
                # Part of a frame waits: if the rest never comes, it was noise after all.
                try:
                    async with asyncio.timeout(self.hrnp_ack_timeout_s):
                        data = await conn.read()
                except TimeoutError:
                    await self._hrnp_items(hrnp, decoder.resync())
                    continue
            else:
                data = await conn.read()
            self.counters.rx_bytes += len(data)
            self._last_rx = time.monotonic()
            await self._hrnp_items(hrnp, decoder.feed(data))

    async def _hrnp_items(self, hrnp: _Hrnp, items: list[HrnpFrame | HrnpRejected]) -> None:
        for item in items:
            if isinstance(item, HrnpRejected):
                self.rejects.reject(f"hrnp-{item.reason}", item.raw)
                continue
            if hrnp.is_duplicate(item):
                self.rejects.reject("hrnp-duplicate", item.raw, "packet number repeated")
            payload = await hrnp.on_frame(item)
            if payload is not None:
                self.handle_hdap(payload)

    async def _read_udp(self, sock: DatagramSocket) -> None:
        while True:
            data, addr = await sock.recv()
            self.counters.rx_bytes += len(data)
            self._last_rx = time.monotonic()
            if data[:1] == b"\x7e":  # wrapped in HRNP after all: ack it where it came from
                try:
                    frame = decode_frame(data)
                except HyteraError as exc:
                    self.rejects.reject("hrnp", data, str(exc))
                    continue
                if frame.opcode != HrnpOpcode.DATA:
                    continue
                with contextlib.suppress(LinkError):
                    sock.send(
                        encode_frame(
                            HrnpFrame(
                                HrnpOpcode.DATA_ACK, frame.dst, frame.src, frame.packet_number
                            )
                        ),
                        addr,
                    )
                data = frame.data
            self.handle_hdap(data)

    # -- receive -----------------------------------------------------------------------------

    def handle_hdap(self, data: bytes) -> None:
        """One HDAP PDU from the radio: decode it and report what it says. Answers to the
        radio are sent by owned tasks. Free of I/O itself, so benchmarks can drive it."""
        self.counters.frames += 1
        try:
            env = decode_envelope(data)
            message = decode_service(env)
        except HyteraError as exc:
            self.rejects.reject("hdap", data, str(exc))
            return
        if env.end_byte != 0x03:
            self.rejects.reject("hdap-end", data, f"end byte 0x{env.end_byte:02X} (kept)")
        self.on_message(message)

    def on_message(self, message: ServiceMessage) -> None:
        if isinstance(message, TmpMessage):
            self._on_text(message)
        elif isinstance(message, TmpAck):
            self._on_tmp_ack(message)
        elif isinstance(message, LpLocation):
            self._on_location(message)
        elif isinstance(message, RrsMessage):
            self._on_rrs(message)
        elif isinstance(message, RcpMessage):
            waiter = self._rcp_waiters.get(message.opcode)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
        elif isinstance(message, LpAnswer):
            if message.result:
                log.info("%s: radio %s answered LP 0x%04X with result %d", self.link.name,
                         radio_id(message.radio), message.opcode, message.result)  # fmt: skip
        elif isinstance(message, DdsReport):
            if message.result:
                log.info(
                    "%s: delivery of 0x%04X to radio %s: result %d",
                    self.link.name,
                    message.protocol_opcode,
                    radio_id(message.radio),
                    message.result,
                )
        elif isinstance(message, TmpShortData):
            self._heard(radio_id(message.src))
        # LP requests are what we send; a radio never sends them.

    def _heard(self, radio: int) -> DeviceRef | None:
        if not 1 <= radio <= 0xFFFFFF or radio == self.own_id:
            return None
        device = DeviceRef(self.link.name, str(radio))
        self.sink.heard(device)
        if radio not in self._set_up and self._channel is not None:
            self._set_up.put(radio, True)
            self._spawn(self._set_up_location(radio))
        return device

    def _on_text(self, message: TmpMessage) -> None:
        radio = radio_id(message.src)
        device = self._heard(radio)
        if device is None or message.group:
            return
        if message.ack_requested:
            # An ack repeats the message's destination and source (the HSTRP capture and
            # ok-dmrlib's vector agree, notes section 3 and 5).
            ack = TmpAck(message.request_id, message.dest, message.src, TmpResult.OK)
            self._spawn(self._send(encode_service(ack), URGENT))
        now = time.monotonic()
        key = (radio, message.request_id, message.text)
        seen = self._texts_seen.get(key)
        self._texts_seen.put(key, now)
        if seen is not None and now - seen < DUPLICATE_WINDOW_S:
            log.debug("%s: text from %s repeated; passed on once", self.link.name, radio)
            return
        text = message.text.removeprefix(MOTOROLA_PREFIX).strip()
        reply_to = self._sent_orders.get((radio, message.request_id))
        stage = self.status_stages.get(text)
        at = utc_now()
        if stage is not None:
            self.sink.answer(UnitAnswer(device, stage, at, reply_to=reply_to))
        else:
            self.sink.text(TextFromUnit(device, text, at, reply_to=reply_to))

    def _on_tmp_ack(self, ack: TmpAck) -> None:
        waiter = self._pending.get(ack.request_id)
        if waiter is None:
            log.debug("%s: TMP ack %d matches nothing pending", self.link.name, ack.request_id)
            return
        if not waiter.done():
            waiter.set_result(ack.result)

    def _position(self, radio: int, gps: GpsFix) -> Position | None:
        if not gps.valid or gps.lat is None or gps.lon is None:
            return None
        received = utc_now()
        return Position(
            device=DeviceRef(self.link.name, str(radio)),
            lat=gps.lat,
            lon=gps.lon,
            fix_time=_fix_time(gps, received),
            received_at=received,
            source="hytera",
            speed_kmh=None if gps.speed_knots is None else round(gps.speed_knots * 1.852, 2),
            course_deg=None if gps.direction is None else float(gps.direction),
        )

    def _on_location(self, message: LpLocation) -> None:
        radio = radio_id(message.radio)
        device = self._heard(radio)
        if device is None:
            return
        position = self._position(radio, message.gps) if message.result == 0 else None
        if position is not None:
            self.counters.positions += 1
            self._last_fix.put(radio, position)
            self.sink.position(position)
        elif message.opcode != LpOpcode.EMERGENCY_REPORT:
            self.counters.reject("void-fix")
        if message.opcode == LpOpcode.EMERGENCY_REPORT:
            raised = message.emergency_type != self.emergency_cancel_type
            last = position or self._last_fix.get(radio)
            detail = f"emergency type {message.emergency_type}"
            self.sink.alarm(
                Alarm(device, AlarmKind.EMERGENCY, raised, utc_now(), position=last, detail=detail)
            )

    def _on_rrs(self, message: RrsMessage) -> None:
        radio = radio_id(message.radio)
        if message.opcode == RrsOpcode.REGISTRATION:
            answer = RrsMessage(RrsOpcode.REGISTRATION_ANSWER, message.radio, 0, RENEW_S)
            self._spawn(self._send(encode_service(answer), URGENT))
            self._set_up.pop(radio, None)  # a radio that registers again starts afresh
            self._heard(radio)
        elif message.opcode == RrsOpcode.DEREGISTRATION:
            log.info("%s: radio %s de-registered", self.link.name, radio)
            self._set_up.pop(radio, None)
            if 1 <= radio <= 0xFFFFFF and radio != self.own_id:
                self.sink.offline(DeviceRef(self.link.name, str(radio)))
        elif message.opcode == RrsOpcode.ONLINE_CHECK_ANSWER and message.online:
            self._heard(radio)

    # -- send --------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        tasks = self._tasks
        if tasks is None or self._replies_in_flight >= REPLY_BACKLOG_MAX:
            coro.close()
            self.counters.reject("reply-backlog")
            return
        self._replies_in_flight += 1

        async def owned() -> None:
            try:
                await coro
            except (LinkError, TimeoutError) as exc:
                log.debug("%s: an answer to a radio was not sent: %s", self.link.name, exc)
            finally:
                self._replies_in_flight -= 1

        tasks.create_task(owned())

    async def _send(self, env: HdapEnvelope, priority: int) -> None:
        """Queue one envelope on the channel; LinkError/TimeoutError when it was not sent."""
        channel = self._channel
        if channel is None:
            raise LinkError(self.link.name, "link down")
        async with asyncio.timeout(self.queue_timeout_s):
            await channel.transmit(encode_envelope(env), priority)

    async def _transmit(self, data: bytes) -> None:
        """The channel's writer: bare HDAP to a service port, or HRNP DATA (acked)."""
        service = data[0] & 0x7F
        target = self._sockets.get(service)
        if target is not None:
            sock, addr = target
            sock.send(data, addr)
            self.counters.tx_bytes += len(data)
            return
        hrnp = self._hrnp
        if hrnp is None:
            raise LinkError(self.link.name, "link down")
        await hrnp.send_data(data)

    async def _set_up_location(self, radio: int) -> None:
        if self.location_interval_s <= 0 and self.location_distance_m <= 0:
            return
        interval = interval_text(self.location_interval_s or 3600)
        ip = radio_ip(radio, self.subnet)
        request_id = next(self._request_ids) & 0xFFFFFFFF
        if self.location_distance_m > 0:
            request = LpRequest(LpOpcode.CONDITION_REQUEST, request_id, ip, interval=interval,
                                trigger=4, distance_m=self.location_distance_m,
                                max_interval=interval)  # fmt: skip
        else:
            request = LpRequest(LpOpcode.TRIGGERED_REQUEST, request_id, ip, interval=interval)
        await self._send(encode_service(request), NORMAL)

    def can_reach(self, address: str) -> bool:
        return self._channel is not None and self.own_id is not None and _radio(address) is not None

    async def poll_location(self, address: str) -> bool:
        radio = _radio(address)
        if radio is None or self._channel is None:
            return False
        request = LpRequest(LpOpcode.IMMEDIATE_REQUEST, next(self._request_ids) & 0xFFFFFFFF,
                            radio_ip(radio, self.subnet))  # fmt: skip
        try:
            await self._send(encode_service(request), NORMAL)
        except (LinkError, TimeoutError):
            return False
        return True

    async def confirm_alarm(self, address: str, kind: AlarmKind) -> bool:
        """The centre handled the alarm: ask the radio to stop its emergency reports."""
        radio = _radio(address)
        if radio is None or kind is not AlarmKind.EMERGENCY or self._channel is None:
            return False
        request = LpRequest(_EMERGENCY_STOP, next(self._request_ids) & 0xFFFFFFFF,
                            radio_ip(radio, self.subnet))  # fmt: skip
        try:
            await self._send(encode_service(request), URGENT)
        except (LinkError, TimeoutError):
            return False
        return True

    async def send_text(self, order: TextOrder, on_transmitted: OnTransmitted) -> DeliveryReport:
        radio = _radio(order.address)
        if radio is None:
            return DeliveryReport(Delivery.FAILED, f"{order.address!r} is not a radio id")
        text = order.text.strip()
        if not text:
            return DeliveryReport(Delivery.FAILED, "nothing to send: empty text")
        if self._channel is None or self.own_id is None:
            return DeliveryReport(Delivery.FAILED, "link down")
        try:
            parts = split_text(text, self.text_limit, self.max_parts)
        except ValueError as exc:
            return DeliveryReport(Delivery.FAILED, f"text cannot be sent: {exc}")
        return await send_in_parts(
            parts,
            functools.partial(self._send_part, radio, order),
            on_transmitted,
            f"{self.link.name}: {order.key or 'text'} to {radio}",
        )

    async def _send_part(  # noqa: PLR0911 - each way a message ends, named where it ends
        self, radio: int, order: TextOrder, text: str, sent: Transmissions
    ) -> str | None:
        """One TMP message until the radio's ack settles it; the failure, or None."""
        own = self.own_id or 0
        request_id = next(self._request_ids) & 0xFFFFFFFF
        message = TmpMessage(request_id, radio_ip(radio, self.subnet), radio_ip(own, self.subnet),
                             text)  # fmt: skip
        data = encode_envelope(encode_service(message))
        if order.key:
            self._sent_orders.put((radio, request_id), order.key)
        backoff = self.busy_backoff_s
        try:
            for interval in self.retry_intervals_s:
                waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                self._pending[request_id] = waiter  # before the write: an ack can be quick
                channel = self._channel
                if channel is None:
                    return "link down"
                try:
                    async with asyncio.timeout(self.queue_timeout_s):
                        await channel.transmit(data, order.priority)
                except LinkError:
                    return "link down"
                except TimeoutError:
                    return f"waited {self.queue_timeout_s:.0f} s for the channel"
                sent.written()
                done, _ = await asyncio.wait((waiter,), timeout=interval)
                if not done:
                    continue
                try:
                    result = waiter.result()
                except LinkError:
                    return "link down"
                if result == TmpResult.OK:
                    return None
                if result != TmpResult.CHANNEL_BUSY:
                    return f"the radio network answered {TmpResult.describe(result)}"
                log.info("%s: radio %s: channel busy, again in %.1f s", self.link.name, radio,
                         backoff)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff *= 2
            return f"no ack after {len(self.retry_intervals_s)} tries"
        finally:
            left = self._pending.pop(request_id, None)
            if left is not None and not left.done():
                left.cancel()
            elif left is not None and not left.cancelled():
                left.exception()  # retrieved: a link-down error is reported, not logged


def _fix_time(gps: GpsFix, received: datetime) -> datetime:
    """The block's UTC date and time, never after ``received``; ``received`` when absent."""
    if gps.time is None or gps.date is None:
        return received
    d, t = gps.date, gps.time  # DDMMYY, HHMMSS: six digits each (the codec checks)
    try:
        at = datetime(2000 + int(d[4:]), int(d[2:4]), int(d[:2]), int(t[:2]), int(t[2:4]),
                      int(t[4:]), tzinfo=UTC)  # fmt: skip
    except ValueError:
        return received
    return min(at, received)


def _radio(address: str) -> int | None:
    try:
        return int(normalise_radio_id(address.strip()))
    except ValueError:
        return None


def _num(options: Any, key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"option {key} is {type(value).__name__}, not a number")
    return float(value)


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _seq(options: Any, key: str, default: tuple[object, ...]) -> tuple[object, ...]:
    value = options.get(key, default)
    if not isinstance(value, tuple | list):
        raise TypeError(f"option {key} is {type(value).__name__}, not a list")
    return tuple(value)


async def _until_broken(hrnp: _Hrnp) -> None:
    """Raise the session's fatal error when it comes (ending the link's task group)."""
    await hrnp.broken
