"""JT/T 808 terminals dialling in: registration, authentication, positions, alarms, dispatch.

Each TCP connection a ``listen://`` link accepts is one session (:mod:`gateway.sessions`)
served by :meth:`Jt808Driver.serve_session`. Protocol facts: ``../shared/notes/jt808.md``;
the codec is :mod:`protocols.jt808`.

Decisions:

* **Session.** 0x0100 registers (0x8100 with the terminal's authentication code, kept across
  restarts by :mod:`gateway.drivers.jt808.authcodes`; result 4 "terminal not in DB" for a
  terminal the link does not accept, then the connection is closed); 0x0102 authenticates
  (0x8001 result 0, and the session binds the phone number; a wrong code gets result 1 and
  the terminal may register again). A terminal that has not authenticated after
  ``auth_timeout_s`` is disconnected; until then its other messages get result 1 and nothing
  is published.
* **Logout** (0x0003): acked, the session unbinds and the unit is offline at once
  (``sink.offline``), unless another of its devices is heard.
* **Every uplink acked, duplicates too, published once.** Every terminal message that is not
  itself a reply gets its 0x8001 (a 0x0100 its 0x8100), in the edition of the frame it
  answers. A copy with the same message id, serial and body as one of the last
  :data:`DEDUPE_WINDOW` messages of the connection is acked again and otherwise ignored.
* **Bad input.** Garbage between frames, a frame over the size cap, a wrong check code or
  escape: counted, logged at a bounded rate, and dropped without an answer (the terminal
  retransmits what mattered; notes section 1). A frame that checks but whose body is
  malformed: result 2 (message error). An encrypted body or a message the gateway does not
  handle: result 3 (not supported).
* **Positions.** A 0x0200 with the fix bit becomes a :class:`~gateway.model.Position` (time
  converted from GMT+8); one without a fix only marks the terminal heard. 0x0704 batches:
  only items newer than the terminal's last published fix are published (a back-filled batch
  of old positions must not move the unit's retained position backwards; the model has no
  separate historical stream yet). Subpackaged 0x0704 and 0x0200 are reassembled (each
  packet acked); other subpackaged messages (photos) are acked and dropped.
* **Alarms.** The alarm bits of each live 0x0200 are compared with the previous report of
  the connection; a kind whose bits changed is reported raised or cleared (the first report
  of a connection states every kind). ``clear_alarm`` from the centre sends 0x8203 with the
  kind's bits and the serial of the report that raised it (:meth:`Jt808Driver.confirm_alarm`).
* **Dispatch.** 0x8300 with "display", "TTS" when the order asks for voice, "emergency" for
  urgent ones, in the terminal's edition (2013 flag bits or 2019 bits 0-1 plus the text type);
  re-sent after each of ``retry_intervals_s`` until the terminal's 0x0001 names its serial.
  With ``ask_to_accept`` a 2013 terminal then gets the 0x8302 question; its 0x0302 answer
  names the question's serial and becomes ``acknowledged`` or ``declined`` for that task.
  Serials and their waiters are per connection and bounded (:data:`MAX_PENDING`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Final

from gateway.channel import URGENT
from gateway.config import LinkConfig
from gateway.drivers.base import Driver, EventSink, OnTransmitted
from gateway.drivers.jt808.authcodes import AuthCodes
from gateway.drivers.jt808.spec import phone_number
from gateway.errors import LinkError
from gateway.model import (
    Alarm,
    AlarmKind,
    Delivery,
    DeliveryReport,
    DeviceRef,
    LinkCounters,
    Position,
    TextOrder,
    UnitAnswer,
    utc_now,
)
from gateway.sessions import DeviceNotAllowed, Session
from gateway.transport import Connection
from protocols.jt808 import messages as m
from protocols.jt808.framing import (
    MAX_BODY_BYTES,
    Frame,
    FrameSplitter,
    Jt808Error,
    Rejected,
    decode_frame,
    encode_frame,
)
from protocols.jt808.reassembly import Reassembler

__all__ = ["ALARM_KIND_BITS", "DEDUPE_WINDOW", "MAX_PENDING", "Jt808Driver"]

log = logging.getLogger(__name__)

DEDUPE_WINDOW: Final = 32
"""Recent uplinks remembered per connection to recognise a retransmitted copy."""
MAX_PENDING: Final = 32
"""Downlinks waiting for their 0x0001 per connection; more are refused (``failed``)."""
WRITE_TIMEOUT_S: Final = 10.0
"""A terminal that does not take what we write for this long (it stopped reading) is dropped."""
MAX_QUESTIONS: Final = 64
"""Question serials remembered per connection, each naming the task it asks about."""

FLAG_EMERGENCY_2013: Final = 0x01
FLAG_SERVICE_2019: Final = 0x01
FLAG_EMERGENCY_2019: Final = 0x02
FLAG_DISPLAY: Final = 0x04
FLAG_TTS: Final = 0x08
TEXT_TYPE_NOTICE: Final = 1
TEXT_TYPE_SERVICE: Final = 2
ANSWER_ACCEPT: Final = 1
ANSWER_DECLINE: Final = 2
ANSWERS: Final = [(ANSWER_ACCEPT, "接受"), (ANSWER_DECLINE, "拒绝")]


def _bits(*numbers: int) -> int:
    return sum(1 << n for n in numbers)


ALARM_KIND_BITS: Final[dict[AlarmKind, int]] = {
    AlarmKind.EMERGENCY: _bits(0),
    AlarmKind.OVERSPEED: _bits(1),
    AlarmKind.LOW_BATTERY: _bits(7),
    AlarmKind.POWER_CUT: _bits(8),
    AlarmKind.GEOFENCE: _bits(20, 21, 23),
    AlarmKind.TAMPER: _bits(26, 27, 28, 31),
    AlarmKind.OTHER: _bits(2, 3, 29, 30),
}
"""Which 0x0200 alarm bits (notes section 6) make each alarm kind. Equipment faults (GNSS,
antenna, screen, TTS, camera) and pre-warnings are not dispatch alarms and are not reported.
The 0x8203 alarm-type DWORD uses the same bit positions (inferred: the notes give only the
field's size)."""
_ALARM_MASK: Final = sum(ALARM_KIND_BITS.values())

# Messages answered with 0x8001 result 0 and otherwise only marking the terminal heard.
_ACK_ONLY: Final = frozenset({m.HEARTBEAT, 0x0900, 0x0104, 0x0107, 0x0301})
# Replies: never answered.
_REPLIES: Final = frozenset({m.TERMINAL_RESPONSE, m.POSITION_REPLY, 0x0104, 0x0107, 0x0005})
_REASSEMBLED: Final = frozenset({m.LOCATION, m.BATCH})
_ENROL: Final = frozenset({m.REGISTER, m.AUTHENTICATE})


class _Terminal:
    """What one connection knows about the terminal at its other end."""

    __slots__ = (
        "_serial",
        "address",
        "alarm_serials",
        "authenticated",
        "conn",
        "device",
        "last_alarm",
        "last_fix",
        "parts",
        "pending",
        "phone_bcd",
        "questions",
        "seen",
        "session",
        "version",
    )

    def __init__(self, session: Session, conn: Connection) -> None:
        self.session = session
        self.conn = conn
        self.phone_bcd = b""
        self.version: int | None = None
        self.authenticated = False
        self.address = ""
        self.device: DeviceRef | None = None
        self._serial = 0
        self.seen: OrderedDict[tuple[int, int, int], None] | None = None
        self.pending: dict[int, asyncio.Future[m.GeneralResponse]] = {}
        # created on first use: thousands of idle terminals, each a few objects fewer for
        # the memory and for the garbage collector's full passes
        self.questions: OrderedDict[int, str] | None = None
        self.last_alarm: int | None = None
        self.alarm_serials: dict[AlarmKind, int] | None = None
        self.last_fix: datetime | None = None
        self.parts: Reassembler | None = None

    def next_serial(self) -> int:
        serial = self._serial
        self._serial = (serial + 1) & 0xFFFF
        return serial

    def frame(self, msg_id: int, body: bytes, serial: int | None = None) -> bytes:
        return encode_frame(
            msg_id,
            self.phone_bcd,
            self.next_serial() if serial is None else serial,
            body,
            version=self.version,
        )

    def ack(self, frame: Frame, result: int = m.RESULT_OK) -> bytes:
        header = frame.header
        body = m.encode_general_response(header.serial, header.msg_id, result)
        return encode_frame(
            m.PLATFORM_RESPONSE, frame.phone_bcd, self.next_serial(), body, version=header.version
        )

    def duplicate(self, frame: Frame) -> bool:
        """True for a copy of a recent uplink; remembers this one otherwise."""
        # the body's hash, not the body: 32 keys of three small ints per terminal
        key = (frame.header.msg_id, frame.header.serial, hash(frame.body))
        seen = self.seen
        if seen is None:
            seen = self.seen = OrderedDict()
        elif key in seen:
            return True
        seen[key] = None
        if len(seen) > DEDUPE_WINDOW:
            seen.popitem(last=False)
        return False

    def fail_pending(self, reason: str) -> None:
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(LinkError(self.session.link, reason))
        self.pending.clear()


class Jt808Driver(Driver):
    """A ``listen://`` link of JT/T 808 terminals; also a :class:`TextSender` and an
    :class:`AlarmConfirmer`."""

    def __init__(self, link: LinkConfig, sink: EventSink, counters: LinkCounters) -> None:
        super().__init__(link, sink, counters)
        self.auth_timeout_s = float(link.options.get("auth_timeout_s", 60.0))  # type: ignore[arg-type]
        self.accept_unregistered = bool(link.options.get("accept_unregistered", False))
        intervals = link.options.get("retry_intervals_s", (10.0, 20.0, 40.0))
        assert isinstance(intervals, tuple | list)
        self.retry_intervals_s: tuple[float, ...] = tuple(float(i) for i in intervals)
        self.ask_to_accept = bool(link.options.get("ask_to_accept", False))
        self.question = str(link.options.get("question", "接受任务?"))
        self._terminals: dict[str, _Terminal] = {}
        self._auth: AuthCodes | None = None
        self.clock: Callable[[], float] = time.monotonic

    # -- authentication codes --------------------------------------------------------

    @property
    def auth_codes(self) -> AuthCodes:
        """The link's codes, in the gateway's journal (in memory where the driver runs
        without one)."""
        if self._auth is None:
            journal = self.journal
            self._auth = AuthCodes(self.link.name, None if journal is None else journal.db.conn)
            if not self._auth.persistent:
                log.warning(
                    "%s: no journal: JT/T 808 auth codes are kept in memory only (terminals"
                    " must register again after a restart)",
                    self.link.name,
                )
        return self._auth

    # -- serving a connection --------------------------------------------------------

    async def run(self, conn: Connection) -> None:
        raise LinkError(self.link.name, "JT/T 808 terminals dial in: use a listen:// URL")

    async def serve_session(self, conn: Connection, session: Session) -> None:
        terminal = _Terminal(session, conn)
        splitter = FrameSplitter()
        loop = asyncio.get_running_loop()
        auth_deadline = loop.time() + self.auth_timeout_s
        try:
            while True:
                if terminal.authenticated:
                    data = await conn.read()
                else:
                    try:
                        async with asyncio.timeout_at(auth_deadline):
                            data = await conn.read()
                    except TimeoutError:
                        self.rejects.reject(
                            "unauthenticated", b"", f"{session.peer} did not authenticate"
                        )
                        return
                self.counters.rx_bytes += len(data)
                replies: list[bytes] = []
                for item in splitter.feed(data):
                    if isinstance(item, Rejected):
                        self.rejects.reject(item.reason, item.data)
                        continue
                    try:
                        frame = decode_frame(item)
                    except Jt808Error as exc:
                        self.rejects.reject(exc.reason, item, str(exc))
                        continue
                    self.counters.frames += 1
                    session.rx_frames += 1
                    msg_id = frame.header.msg_id
                    if msg_id in _ENROL:
                        await self._write(terminal, replies)
                        replies = []
                        await self._enrol(terminal, frame)
                        continue
                    replies.extend(self._on_frame(terminal, frame))
                await self._write(terminal, replies)
        finally:
            terminal.fail_pending("terminal disconnected")
            if terminal.address and self._terminals.get(terminal.address) is terminal:
                del self._terminals[terminal.address]

    async def _write(self, terminal: _Terminal, frames: list[bytes]) -> None:
        """Write ``frames`` at once; a terminal that has not taken them within
        :data:`WRITE_TIMEOUT_S` (it stopped reading) is disconnected: :class:`LinkError`."""
        if not frames:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await terminal.conn.write(data)
        except TimeoutError:
            terminal.session.close("stalled")
            raise LinkError(self.link.name, f"{terminal.session.peer} stopped reading") from None
        self.counters.tx_bytes += len(data)
        terminal.session.tx_frames += len(frames)

    async def _enrol(self, terminal: _Terminal, frame: Frame) -> None:
        """0x0100 or 0x0102: the two messages that may come before authentication."""
        header = frame.header
        terminal.phone_bcd, terminal.version = frame.phone_bcd, header.version
        address = phone_number(header.phone)
        allowed = (
            self.sessions is None
            or self.sessions.allowed is None
            or (address in self.sessions.allowed)
        )
        if header.msg_id == m.REGISTER:
            try:
                registration = m.decode_registration(frame.body, header.edition_2019)
            except Jt808Error as exc:
                self.rejects.reject("malformed", frame.body, f"0x0100: {exc}")
                await self._write(terminal, [terminal.ack(frame, m.RESULT_MESSAGE_ERROR)])
                return
            if not allowed:
                body = m.encode_registration_response(header.serial, m.REGISTER_TERMINAL_NOT_IN_DB)
                with contextlib.suppress(LinkError):
                    await self._write(terminal, [terminal.frame(m.REGISTER_RESPONSE, body)])
                terminal.session.bind(address)  # raises DeviceNotAllowed: counted, logged, closed
                return
            code = self.auth_codes.issue(address)
            log.info(
                "%s: terminal %s registered (%s %s %s, plate %r)", self.link.name, address,
                registration.layout, registration.maker, registration.model, registration.plate,
            )  # fmt: skip
            body = m.encode_registration_response(header.serial, m.REGISTER_OK, code)
            await self._write(terminal, [terminal.frame(m.REGISTER_RESPONSE, body)])
            return
        try:
            auth = m.decode_authentication(frame.body, header.edition_2019)
        except Jt808Error as exc:
            self.rejects.reject("malformed", frame.body, f"0x0102: {exc}")
            await self._write(terminal, [terminal.ack(frame, m.RESULT_MESSAGE_ERROR)])
            return
        known = self.auth_codes.get(address)
        if not (self.accept_unregistered if known is None else auth.auth_code == known):
            self.rejects.reject("auth", frame.body, f"terminal {address}: wrong or no code")
            await self._write(terminal, [terminal.ack(frame, m.RESULT_FAILED)])
            return
        try:
            terminal.session.bind(address)
        except DeviceNotAllowed:
            with contextlib.suppress(LinkError):
                await self._write(terminal, [terminal.ack(frame, m.RESULT_FAILED)])
            raise
        old = self._terminals.get(address)
        if old is not None and old is not terminal:
            old.fail_pending("terminal reconnected")
        terminal.authenticated = True
        terminal.address = address
        terminal.device = DeviceRef(self.link.name, address)
        self._terminals[address] = terminal
        self.sink.heard(terminal.device)
        await self._write(terminal, [terminal.ack(frame)])

    def _on_frame(self, terminal: _Terminal, frame: Frame) -> list[bytes]:  # noqa: PLR0911, PLR0912 - one branch per message id, flat on the hot path
        """Everything but 0x0100/0x0102: the frames to send back. Free of I/O."""
        header = frame.header
        terminal.phone_bcd, terminal.version = frame.phone_bcd, header.version
        msg_id = header.msg_id
        device = terminal.device
        if device is None or not terminal.authenticated:
            if msg_id in _REPLIES:
                return []
            self.rejects.reject("unauthenticated", frame.body, f"0x{msg_id:04x} before 0x0102")
            return [terminal.ack(frame, m.RESULT_FAILED)]
        if header.encrypt:
            self.rejects.reject("encrypted", frame.body)
            return [terminal.ack(frame, m.RESULT_NOT_SUPPORTED)]
        body = frame.body
        if header.parts is not None:
            ack = terminal.ack(frame)
            if msg_id not in _REASSEMBLED:
                return [ack]
            if terminal.parts is None:
                terminal.parts = Reassembler()
            total, index = header.parts
            try:
                whole = terminal.parts.add(
                    msg_id, header.serial, total, index, body, now=self.clock()
                )
            except Jt808Error as exc:
                self.rejects.reject("subpackage", body, str(exc))
                return [ack]
            if whole is None:
                return [ack]
            body = whole
            replies = [ack]
        else:
            if msg_id in _REPLIES:
                self._on_reply(terminal, device, frame)
                return []
            replies = [terminal.ack(frame)]
            if terminal.duplicate(frame):
                return replies
        self.sink.heard(device)
        try:
            if msg_id == m.LOCATION:
                self._on_location(terminal, device, m.decode_location(body), header.serial)
            elif msg_id == m.BATCH:
                self._on_batch(terminal, device, m.decode_batch(body))
            elif msg_id == m.QUESTION_ANSWER:
                self._on_answer(terminal, device, m.decode_question_answer(body), header.serial)
            elif msg_id == m.LOGOUT:
                log.info("%s: terminal %s logged out", self.link.name, terminal.address)
                terminal.authenticated = False
                self.sink.offline(device)
                if self.sessions is not None:
                    self.sessions.unbind(terminal.session)
            elif msg_id not in _ACK_ONLY:
                return [terminal.ack(frame, m.RESULT_NOT_SUPPORTED)]
        except Jt808Error as exc:
            self.rejects.reject("malformed", body, f"0x{msg_id:04x}: {exc}")
            return [terminal.ack(frame, m.RESULT_MESSAGE_ERROR)]
        return replies

    def _on_reply(self, terminal: _Terminal, device: DeviceRef, frame: Frame) -> None:
        msg_id = frame.header.msg_id
        try:
            if msg_id == m.TERMINAL_RESPONSE:
                response = m.decode_general_response(frame.body)
                waiter = terminal.pending.get(response.reply_serial)
                if waiter is not None and not waiter.done():
                    waiter.set_result(response)
            elif msg_id == m.POSITION_REPLY:
                reply = m.decode_location_reply(frame.body)
                self.sink.heard(device)
                self._on_location(terminal, device, reply.location, frame.header.serial)
        except Jt808Error as exc:
            self.rejects.reject("malformed", frame.body, f"0x{msg_id:04x}: {exc}")

    def _on_location(
        self, terminal: _Terminal, device: DeviceRef, location: m.Location, serial: int
    ) -> None:
        position = self._position(terminal, device, location)
        alarm = location.alarm & _ALARM_MASK
        previous = terminal.last_alarm
        if alarm == previous:
            return
        changed = _ALARM_MASK if previous is None else alarm ^ previous
        terminal.last_alarm = alarm
        now = utc_now()
        for kind, bits in ALARM_KIND_BITS.items():
            if changed & bits:
                raised = bool(alarm & bits)
                if raised:
                    if terminal.alarm_serials is None:
                        terminal.alarm_serials = {}
                    terminal.alarm_serials[kind] = serial
                detail = ",".join(
                    name for n, name in m.ALARM_BITS.items() if alarm & bits & (1 << n)
                )
                self.sink.alarm(Alarm(device, kind, raised, now, position, detail or None))

    def _position(
        self, terminal: _Terminal, device: DeviceRef, location: m.Location
    ) -> Position | None:
        fix_time = location.time
        if not location.status & m.STATUS_FIX or fix_time is None:
            return None
        if terminal.last_fix is None or fix_time > terminal.last_fix:
            terminal.last_fix = fix_time
        self.counters.positions += 1
        position = Position(
            device, location.lat, location.lon, fix_time, utc_now(), "jt808",
            float(location.alt_m), location.speed_kmh, float(location.course),
            location.satellites,
        )  # fmt: skip
        self.sink.position(position)
        return position

    def _on_batch(self, terminal: _Terminal, device: DeviceRef, batch: m.LocationBatch) -> None:
        """Only items newer than the last fix published are published (see the module doc)."""
        dated = [loc for loc in batch.locations if loc.time is not None]
        for location in sorted(dated, key=_fix_time):
            if terminal.last_fix is None or _fix_time(location) > terminal.last_fix:
                self._position(terminal, device, location)

    def _on_answer(
        self, terminal: _Terminal, device: DeviceRef, answer: m.QuestionAnswer, serial: int
    ) -> None:
        key = terminal.questions.get(answer.reply_serial) if terminal.questions else None
        if key is None:
            log.info(
                "%s: terminal %s answered question %d, which it was not asked on this connection",
                self.link.name, terminal.address, answer.reply_serial,
            )  # fmt: skip
        if answer.answer_id not in (ANSWER_ACCEPT, ANSWER_DECLINE):
            self.rejects.reject("answer", bytes((answer.answer_id,)), "not accept nor decline")
            return
        stage = "acknowledged" if answer.answer_id == ANSWER_ACCEPT else "declined"
        self.sink.answer(
            UnitAnswer(
                device, stage, utc_now(), reply_to=key,
                message_id=f"0302:{answer.reply_serial}:{serial}",
            )
        )  # fmt: skip

    # -- TextSender ------------------------------------------------------------------

    def _terminal(self, address: str) -> _Terminal | None:
        try:
            key = phone_number(address)
        except ValueError:
            return None
        terminal = self._terminals.get(key)
        if terminal is None or not terminal.authenticated or terminal.session.closed:
            return None
        return terminal

    def can_reach(self, address: str) -> bool:
        return self._terminal(address) is not None

    async def poll_location(self, address: str) -> bool:
        terminal = self._terminal(address)
        if terminal is None:
            return False
        try:
            await self._write(terminal, [terminal.frame(m.POSITION_QUERY, b"")])
        except LinkError:
            return False
        return True

    async def confirm_alarm(self, address: str, kind: AlarmKind) -> bool:
        """0x8203 for the bits of ``kind``, naming the report that raised it (0: all)."""
        terminal = self._terminal(address)
        bits = ALARM_KIND_BITS.get(kind)
        if terminal is None or bits is None:
            return False
        serials = terminal.alarm_serials or {}
        body = m.encode_alarm_confirmation(serials.get(kind, 0), bits)
        try:
            await self._write(terminal, [terminal.frame(m.ALARM_CONFIRM, body)])
        except LinkError:
            return False
        log.info("%s: sent 0x8203 for %s to %s", self.link.name, kind.value, terminal.address)
        return True

    def _text_body(self, terminal: _Terminal, order: TextOrder) -> bytes:
        edition_2019 = terminal.version is not None
        flag = FLAG_DISPLAY | (FLAG_TTS if order.voice else 0)
        urgent = order.priority == URGENT
        if edition_2019:
            flag |= FLAG_EMERGENCY_2019 if urgent else FLAG_SERVICE_2019
            text = m.gbk_text(order.text, MAX_BODY_BYTES - 2)
            return m.encode_text(flag, text, TEXT_TYPE_NOTICE if urgent else TEXT_TYPE_SERVICE)
        flag |= FLAG_EMERGENCY_2013 if urgent else 0
        return m.encode_text(flag, m.gbk_text(order.text, MAX_BODY_BYTES - 1), None)

    async def send_text(  # noqa: PLR0911, PLR0912 - one return per outcome, each with its reason
        self, order: TextOrder, on_transmitted: OnTransmitted
    ) -> DeliveryReport:
        terminal = self._terminal(order.address)
        if terminal is None:
            return DeliveryReport(Delivery.FAILED, "terminal not connected")
        if not order.text.strip():
            return DeliveryReport(Delivery.FAILED, "nothing to send: empty text")
        try:
            self._text_body(terminal, order)  # refuse what no frame can carry before waiting
        except Jt808Error as exc:
            return DeliveryReport(Delivery.FAILED, f"text cannot be sent: {exc}")
        waiter: asyncio.Future[m.GeneralResponse] = asyncio.get_running_loop().create_future()
        registered: list[tuple[_Terminal, int]] = []
        transmissions = 0
        try:
            frame = b""
            for interval in self.retry_intervals_s:
                current = self._terminal(order.address)
                if current is None:
                    return DeliveryReport(Delivery.FAILED, "terminal disconnected", transmissions)
                if current is not terminal or not frame:  # first try, or the terminal redialled
                    terminal = current
                    if len(terminal.pending) >= MAX_PENDING:
                        return DeliveryReport(
                            Delivery.FAILED, "too many texts waiting for this terminal",
                            transmissions,
                        )  # fmt: skip
                    serial = terminal.next_serial()
                    terminal.pending[serial] = waiter  # before the write: an ack can be quick
                    registered.append((terminal, serial))
                    frame = terminal.frame(m.TEXT, self._text_body(terminal, order), serial)
                try:
                    await self._write(terminal, [frame])
                except LinkError:
                    continue
                transmissions += 1
                if transmissions == 1:
                    on_transmitted()
                await asyncio.wait((waiter,), timeout=interval)
                if waiter.done():
                    break
            if not waiter.done():
                return DeliveryReport(
                    Delivery.FAILED, f"no 0x0001 after {transmissions} tries", transmissions
                )
            try:
                response = waiter.result()
            except LinkError as exc:
                return DeliveryReport(Delivery.FAILED, exc.reason, transmissions)
            if response.result != m.RESULT_OK:
                return DeliveryReport(
                    Delivery.FAILED, f"terminal answered result {response.result}", transmissions
                )
            await self._ask(terminal, order)
            return DeliveryReport(Delivery.DELIVERED, transmissions=transmissions)
        finally:
            for holder, serial in registered:
                if holder.pending.get(serial) is waiter:
                    del holder.pending[serial]
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                waiter.exception()  # retrieved: reported above, not logged by asyncio

    async def _ask(self, terminal: _Terminal, order: TextOrder) -> None:
        """The 0x8302 question after a delivered task text (2013 terminals, ``ask_to_accept``)."""
        if not self.ask_to_accept or not order.key or terminal.version is not None:
            return
        try:
            body = m.encode_question(FLAG_DISPLAY | FLAG_TTS, self.question, ANSWERS)
        except Jt808Error as exc:
            log.warning("%s: the question cannot be sent: %s", self.link.name, exc)
            return
        serial = terminal.next_serial()
        questions = terminal.questions
        if questions is None:
            questions = terminal.questions = OrderedDict()
        questions[serial] = order.key
        while len(questions) > MAX_QUESTIONS:
            questions.popitem(last=False)
        with contextlib.suppress(LinkError):
            await self._write(terminal, [terminal.frame(m.QUESTION, body, serial)])


def _fix_time(location: m.Location) -> datetime:
    assert location.time is not None
    return location.time
