"""GT06 trackers (Concox and compatible) dialling in over TCP: positions, status, alarms, text.

Each TCP connection is a session of the link (:mod:`gateway.sessions`). Protocol facts are
from ``../shared/notes/gt06.md``; the decisions are here.

* **Login first.** The first thing a tracker sends is its login (0x01, the IMEI). The session
  binds the IMEI (an IMEI the link does not accept closes the connection: no ack, so the
  tracker's log shows it unanswered and the gateway's counts ``refused.not_allowed``). Packets
  before a login are counted (``not_logged_in``), not acked, not used. A connection without a
  login after ``login_timeout_s`` is closed (session close reason ``login_timeout``).
* **Acks.** Login (0x01), heartbeat (0x13), locations (0x12, 0x22) and alarms (0x16, 0x26,
  0x27) are acked with the same protocol number and **the device's serial** (a tracker resends
  until the ack names its serial). Every copy is acked, duplicates too. VL03 requires no ack
  for 0x22; acking it is harmless. A time request (0x8A) gets the gateway's UTC time.
  Packets whose CRC failed are discarded unacked (vendor rule); so are malformed logins. A
  location, status or alarm packet whose CRC verified but whose content this codec cannot
  read is acked (the tracker would resend it forever) and counted (``malformed``).
* **Published once.** A location or alarm packet seen again from the same tracker with the
  same protocol, serial and content within :data:`DUPLICATE_WINDOW_S` is a resend: acked, not
  published again. The memory of them is bounded (:data:`DUPLICATE_MAX`).
* **Positions** come from location packets and the GPS block of alarm packets, when the
  tracker says it is positioned (bit 12 of the course/status word); others only mark it heard.
* **Times.** 0x22, 0x26 and 0x27 are UTC. 0x12 and 0x16 are in the zone set on the tracker:
  the link's ``time_zone`` says which (``"UTC"``, ``"+08:00"``, or ``"login"`` for the zone
  of the tracker's extended login). Everything is published in UTC.
* **Alarms** (SPEC section 5). The alarm byte of 0x16/0x26/0x27 raises: 0x01 SOS
  ``emergency``, 0x02 ``power_cut``, 0x03 vibration ``tamper`` (detail ``vibration``), 0x05
  exit fence ``geofence``, 0x06 ``overspeed``, 0x0E/0x0F ``low_battery``, 0x13 ``tamper``,
  others ``other`` with the code as detail; 0x04 (enter fence) **clears** ``geofence``, and
  0x00, 0xFE/0xFF (ACC on/off) are no alarm. The terminal information byte of status and
  alarm packets (bits 3-5) states the tracker's alarm now: SOS, low battery, power cut,
  vibration raise as above, and **000 clears** ``emergency``, ``low_battery``, ``power_cut``
  and ``tamper``. So an SOS is cleared by the tracker's next heartbeat that no longer shows
  it. ``overspeed``, ``other`` (and ``geofence`` without an enter-fence packet) stay raised
  until the centre clears them (``clear_alarm``).
* **Text** (``has_screen = true`` only): an 0x80 online command carrying the text, with a 32-bit
  server flag the tracker echoes in its reply (0x15 or 0x21): the reply with that flag makes
  the order delivered. The same flag is sent again after each ``retry_intervals_s``.
  Trackers without a screen have no way to show text: text to them fails at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from gateway.config import LinkConfig
from gateway.drivers.base import Driver, EventSink, OnTransmitted
from gateway.drivers.gt06.spec import SPEC, imei, time_zone_offset_minutes
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
    utc_now,
)
from gateway.sessions import Session
from gateway.transport import Connection
from protocols.gt06 import (
    ALARM_PROTOCOLS,
    LOCATION_PROTOCOLS,
    PROTO_HEARTBEAT,
    AlarmCode,
    AlarmReport,
    CommandReply,
    Frame,
    FrameSplitter,
    GpsFix,
    Gt06Error,
    Heartbeat,
    Location,
    Login,
    Rejected,
    TerminalStatus,
    TimeRequest,
    decode,
    encode_ack,
    encode_command,
    encode_time_response,
)

__all__ = ["DUPLICATE_MAX", "DUPLICATE_WINDOW_S", "Gt06Driver"]

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S: Final = 600.0
"""A location or alarm packet repeated within this time (same tracker, protocol, serial and
content) is a resend of one already published."""
DUPLICATE_MAX: Final = 8192
"""Packets remembered for that, over all trackers of the link (oldest forgotten first)."""
PENDING_MAX: Final = 4096
"""Texts waiting for a tracker's reply at once, over the link; beyond, a send fails at once."""
WRITE_TIMEOUT_S: Final = 10.0
"""A tracker that does not take our bytes within this time has its session ended."""
COMMAND_MAX_BYTES: Final = 251
"""An 0x80 command's length byte counts the 4-byte flag too."""

_ACKED: Final = LOCATION_PROTOCOLS | ALARM_PROTOCOLS | {PROTO_HEARTBEAT}
_STATUS_ALARMS: Final[dict[int, tuple[AlarmKind, str | None]]] = {
    4: (AlarmKind.EMERGENCY, None),
    3: (AlarmKind.LOW_BATTERY, None),
    2: (AlarmKind.POWER_CUT, None),
    1: (AlarmKind.TAMPER, "vibration"),
}
_CLEARED_BY_STATUS: Final = (
    AlarmKind.EMERGENCY,
    AlarmKind.LOW_BATTERY,
    AlarmKind.POWER_CUT,
    AlarmKind.TAMPER,
)
_ALARM_CODES: Final[dict[int, tuple[AlarmKind, str | None]]] = {
    AlarmCode.SOS: (AlarmKind.EMERGENCY, None),
    AlarmCode.POWER_CUT: (AlarmKind.POWER_CUT, None),
    AlarmCode.VIBRATION: (AlarmKind.TAMPER, "vibration"),
    AlarmCode.EXIT_FENCE: (AlarmKind.GEOFENCE, "exit"),
    AlarmCode.OVERSPEED: (AlarmKind.OVERSPEED, None),
    AlarmCode.LOW_EXTERNAL_BATTERY: (AlarmKind.LOW_BATTERY, None),
    AlarmCode.LOW_EXTERNAL_BATTERY_2: (AlarmKind.LOW_BATTERY, None),
    AlarmCode.TAMPER: (AlarmKind.TAMPER, None),
}
_NO_ALARM: Final = frozenset({AlarmCode.NORMAL, AlarmCode.ACC_ON, AlarmCode.ACC_OFF})


T = TypeVar("T")


def _option(link: LinkConfig, key: str, kind: type[T]) -> T:
    """A link option, or the spec's default when the config did not go through the loader."""
    value = link.options.get(key, SPEC.options[key].default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise TypeError(f"link {link.name}: option {key} is {type(value).__name__}, not {kind}")
    return value


class _Recent:
    """Keys seen within ``ttl_s`` (monotonic), at most ``max_entries``: oldest dropped."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._seen: OrderedDict[tuple[str, int, int, bytes], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, key: tuple[str, int, int, bytes], now: float) -> bool:
        """True when ``key`` was seen within the window; otherwise remember it."""
        seen = self._seen
        while seen:
            oldest, at = next(iter(seen.items()))
            if now - at < self._ttl_s and len(seen) < self._max:
                break
            del seen[oldest]
        if key in seen:
            return True
        seen[key] = now
        return False


class _Tracker:
    """What one connection knows about its tracker."""

    __slots__ = ("device", "imei", "session", "tz_minutes")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.imei: str | None = None
        self.device: DeviceRef | None = None
        self.tz_minutes: int | None = None


class Gt06Driver(Driver):
    """One ``listen://`` link of GT06 trackers; see the module docstring."""

    def __init__(self, link: LinkConfig, sink: EventSink, counters: LinkCounters) -> None:
        super().__init__(link, sink, counters)
        self.login_timeout_s = _option(link, "login_timeout_s", float)
        self.max_frame_bytes = _option(link, "max_frame_bytes", int)
        self.time_zone = _option(link, "time_zone", str)
        self._tz_minutes = time_zone_offset_minutes(self.time_zone)
        self.screen = _option(link, "has_screen", bool)
        self.text_encoding = _option(link, "text_encoding", str)
        self.retry_intervals_s = tuple(float(v) for v in _option(link, "retry_intervals_s", tuple))
        self._recent = _Recent(DUPLICATE_WINDOW_S, DUPLICATE_MAX)
        self._pending: dict[tuple[str, int], asyncio.Future[CommandReply]] = {}
        self._flag = secrets.randbits(32)  # server flags differ across restarts
        self._serial = 0

    @property
    def pending(self) -> int:
        """Texts waiting for a reply (for tests and health)."""
        return len(self._pending)

    async def run(self, conn: Connection) -> None:
        raise LinkError(self.link.name, "GT06 trackers dial in: give the link a listen:// URL")

    # -- receive ----------------------------------------------------------------------------

    async def serve_session(self, conn: Connection, session: Session) -> None:
        splitter = FrameSplitter(self.max_frame_bytes)
        tracker = _Tracker(session)
        loop = asyncio.get_running_loop()
        login_deadline = loop.time() + self.login_timeout_s
        counters, reject = self.counters, self.rejects.reject
        while True:
            if tracker.imei is None:
                try:
                    async with asyncio.timeout_at(login_deadline):
                        data = await conn.read()
                except TimeoutError:
                    log.info(
                        "%s: %s sent no login within %.0f s; closed",
                        self.link.name,
                        session.peer,
                        self.login_timeout_s,
                    )
                    session.close("login_timeout")
                    return
            else:
                data = await conn.read()
            counters.rx_bytes += len(data)
            replies: list[bytes] = []
            heard = False
            for item in splitter.feed(data):
                if isinstance(item, Rejected):
                    reject(item.reason, item.data)
                    continue
                counters.frames += 1
                session.rx_frames += 1
                reply = self._on_frame(tracker, item)
                heard = heard or tracker.device is not None
                if reply:
                    replies.append(reply)
            if replies:
                await self._write(session, b"".join(replies))
            if heard and tracker.device is not None:
                self.sink.heard(tracker.device)

    def _on_frame(self, tracker: _Tracker, frame: Frame) -> bytes | None:
        """Handle one packet; the bytes to send back, if any. Raises
        :class:`~gateway.sessions.DeviceNotAllowed` for a login the link refuses."""
        try:
            message = decode(frame)
        except Gt06Error as exc:
            self.rejects.reject("malformed", frame.raw, str(exc))
            if tracker.imei is not None and frame.protocol in _ACKED:
                return encode_ack(frame.protocol, frame.serial)
            return None
        if isinstance(message, Login):
            self._on_login(tracker, message)
            return encode_ack(frame.protocol, frame.serial)
        device = tracker.device
        if device is None:
            self.rejects.reject("not_logged_in", frame.raw)
            return None
        reply = encode_ack(frame.protocol, frame.serial) if frame.protocol in _ACKED else None
        if isinstance(message, Heartbeat):
            self._on_status(device, message.status, utc_now(), None)
        elif isinstance(message, Location | AlarmReport):
            assert tracker.imei is not None
            key = (tracker.imei, frame.protocol, frame.serial, frame.content)
            if self._recent.check_and_add(key, time.monotonic()):
                log.debug("%s: %s resent packet %d; acked again", self.link.name, device,
                          frame.serial)  # fmt: skip
                return reply
            self._on_report(tracker, device, message)
        elif isinstance(message, CommandReply):
            self._on_reply(tracker.imei, message)
        elif isinstance(message, TimeRequest) and message.time is None:
            reply = encode_time_response(utc_now().replace(tzinfo=None), frame.serial)
        return reply

    def _on_login(self, tracker: _Tracker, login: Login) -> None:
        tracker.session.bind(login.imei)  # DeviceNotAllowed ends the session, unacked
        tracker.imei = login.imei
        tracker.device = DeviceRef(self.link.name, login.imei)
        tracker.tz_minutes = login.tz_minutes

    def _fix_time(self, tracker: _Tracker, gps: GpsFix, utc: bool) -> datetime | None:
        offset = 0
        if not utc:
            offset = self._tz_minutes if self._tz_minutes is not None else tracker.tz_minutes or 0
        try:
            return (gps.time - timedelta(minutes=offset)).replace(tzinfo=UTC)
        except OverflowError:
            return None

    def _on_report(
        self, tracker: _Tracker, device: DeviceRef, report: Location | AlarmReport
    ) -> None:
        received = utc_now()
        position = None
        gps = report.gps
        fix_time = self._fix_time(tracker, gps, report.utc)
        if gps.positioned and fix_time is not None:
            position = Position(
                device=device,
                lat=gps.lat,
                lon=gps.lon,
                fix_time=fix_time,
                received_at=received,
                source="gt06",
                speed_kmh=float(gps.speed_kmh),
                course_deg=float(gps.course),
                satellites=gps.satellites,
            )
            self.counters.positions += 1
            self.sink.position(position)
        if isinstance(report, AlarmReport):
            self._on_alarm_code(device, report.alarm, received, position)
            self._on_status(device, report.status, received, position)

    def _on_alarm_code(
        self, device: DeviceRef, code: int, at: datetime, position: Position | None
    ) -> None:
        if code in _NO_ALARM:
            return
        if code == AlarmCode.ENTER_FENCE:
            self.sink.alarm(Alarm(device, AlarmKind.GEOFENCE, False, at, position, "enter"))
            return
        kind, detail = _ALARM_CODES.get(code, (AlarmKind.OTHER, f"gt06 alarm {code:#04x}"))
        self.sink.alarm(Alarm(device, kind, True, at, position, detail))

    def _on_status(
        self, device: DeviceRef, status: TerminalStatus, at: datetime, position: Position | None
    ) -> None:
        bits = status.alarm_bits
        if bits == 0:
            for kind in _CLEARED_BY_STATUS:
                self.sink.alarm(Alarm(device, kind, False, at, position))
            return
        raised = _STATUS_ALARMS.get(bits)
        if raised is not None:
            self.sink.alarm(Alarm(device, raised[0], True, at, position, raised[1]))

    def _on_reply(self, address: str | None, reply: CommandReply) -> None:
        waiter = None if address is None else self._pending.get((address, reply.flag))
        if waiter is None:
            log.debug("%s: reply with flag %#010x from %s matches nothing pending",
                      self.link.name, reply.flag, address)  # fmt: skip
            return
        if not waiter.done():
            waiter.set_result(reply)

    async def _write(self, session: Session, data: bytes) -> None:
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await session.write(data)
        except TimeoutError:
            raise LinkError(self.link.name, f"{session.peer} took no data for "
                            f"{WRITE_TIMEOUT_S:.0f} s") from None  # fmt: skip
        self.counters.tx_bytes += len(data)

    # -- send -------------------------------------------------------------------------------

    def can_reach(self, address: str) -> bool:
        try:
            return self.session_for(imei(address)) is not None
        except ValueError:
            return False

    async def poll_location(self, address: str) -> bool:
        return False  # trackers report on their own interval; WHERE# answers are free text

    def _next_flag(self) -> int:
        self._flag = (self._flag + 1) & 0xFFFFFFFF
        return self._flag

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    def _command_body(self, order: TextOrder) -> tuple[str, bytes] | str:
        """The tracker's IMEI and the encoded text, or why the order cannot be sent."""
        if not self.screen:
            return "GT06 trackers of this link have no screen (has_screen = false)"
        if len(self._pending) >= PENDING_MAX:
            return "too many texts waiting for replies"
        try:
            address = imei(order.address)
        except ValueError as exc:
            return str(exc)
        text = order.text.strip()
        try:
            body = text.encode(self.text_encoding)
        except UnicodeEncodeError:
            return f"text has characters {self.text_encoding} cannot write"
        if not body or len(body) > COMMAND_MAX_BYTES:
            return f"text is {len(body)} bytes; one command carries 1 to {COMMAND_MAX_BYTES}"
        return address, body

    async def send_text(self, order: TextOrder, on_transmitted: OnTransmitted) -> DeliveryReport:
        checked = self._command_body(order)
        if isinstance(checked, str):
            return DeliveryReport(Delivery.FAILED, checked)
        address, body = checked
        flag = self._next_flag()
        key = (address, flag)
        waiter: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._pending[key] = waiter  # registered before the first write: replies are quick
        sent = 0
        try:
            for interval in self.retry_intervals_s:
                if waiter.done():
                    break
                session = self.session_for(address)
                if session is not None:
                    frame = encode_command(flag, body, self._next_serial())
                    try:
                        await self._write(session, frame)
                    except LinkError as exc:
                        log.debug("%s: text to %s not written: %s", self.link.name, address, exc)
                    else:
                        sent += 1
                        if sent == 1:
                            on_transmitted()
                await asyncio.wait((waiter,), timeout=interval)
            if waiter.done():
                reply = waiter.result()
                log.info("%s: %s answered %s: %r", self.link.name, address,
                         order.key or "text", reply.text[:80])  # fmt: skip
                return DeliveryReport(Delivery.DELIVERED, transmissions=sent)
            reason = "not connected" if sent == 0 else f"no reply after {sent} sends"
            return DeliveryReport(Delivery.FAILED, reason, sent)
        finally:
            self._pending.pop(key, None)
            if not waiter.done():
                waiter.cancel()
