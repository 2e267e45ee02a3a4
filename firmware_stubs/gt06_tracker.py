"""A GT06 tracker (the device role), built from the gateway's own codec, on real TCP.

One :class:`Gt06Tracker` is one tracker on one connection: it logs in with its IMEI, reports
locations along a route and heartbeats on its own timers (:meth:`Gt06Tracker.start_reporting`)
or when told to (:meth:`Gt06Tracker.send_location`, :meth:`Gt06Tracker.send_heartbeat`,
:meth:`Gt06Tracker.send_alarm`), waits for the acks that must echo its serials, and answers
the server's 0x80 online commands with 0x15 (or 0x21 when ``long_replies``) echoing the
server flag. :class:`TrackerFleet` runs many of them from one process.

It misbehaves on demand: :meth:`~Gt06Tracker.send_bad_crc`, :meth:`~Gt06Tracker.send_garbage`,
:meth:`~Gt06Tracker.send_truncated`, :meth:`~Gt06Tracker.send_oversized`, and
``login=False`` (connects and never logs in: silence).

As a program::

    python -m firmware_stubs.gt06_tracker --port 5023 --count 100 --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

from protocols.gt06 import (
    PROTO_ALARM,
    PROTO_LOCATION,
    PROTO_LOCATION_UTC,
    Ack,
    Cell,
    Command,
    FrameSplitter,
    GpsFix,
    Gt06Error,
    TerminalStatus,
    TimeRequest,
    decode,
    encode_alarm,
    encode_heartbeat,
    encode_location,
    encode_login,
    encode_reply,
)
from protocols.gt06.framing import Frame

__all__ = ["DEFAULT_ROUTE", "Gt06Tracker", "ReceivedCommand", "TrackerFleet", "main"]

log = logging.getLogger(__name__)

ACK_TIMEOUT_S: Final = 5.0
"""VL03: the server must answer a login or heartbeat within 5 s."""
CONNECT_TIMEOUT_S: Final = 10.0
DEFAULT_ROUTE: Final = (
    (31.230416, 121.473701),
    (31.231200, 121.475300),
    (31.232100, 121.477000),
    (31.233000, 121.478500),
    (31.231800, 121.479900),
    (31.230300, 121.477800),
)
"""A loop near People's Square, Shanghai (lat, lon)."""
_CELL: Final = Cell(460, 0, 0x1234, 0xABCD)
STATUS_GPS_ON: Final = 0x46
"""Terminal information: GPS tracking, charging, ACC on; alarm bits 000."""


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    """An 0x80 command the tracker got."""

    flag: int
    command: str
    serial: int


class Gt06Tracker:
    """One tracker on one TCP connection; see the module docstring.

    ``tz_minutes`` is the zone of the tracker's clock: 0x12 and 0x16 times are written in it
    (0x22 is always UTC), and an extended login states it when ``extended_login``.
    """

    def __init__(
        self,
        imei: str,
        host: str,
        port: int,
        *,
        route: Sequence[tuple[float, float]] = DEFAULT_ROUTE,
        report_interval_s: float = 10.0,
        heartbeat_interval_s: float = 60.0,
        location_protocol: int = PROTO_LOCATION,
        tz_minutes: int = 0,
        extended_login: bool = False,
        login: bool = True,
        answer_commands: bool = True,
        long_replies: bool = False,
        reply_text: str = "OK",
        ack_timeout_s: float = ACK_TIMEOUT_S,
    ) -> None:
        self.imei = imei
        self.host = host
        self.port = port
        self.route = tuple(route)
        self.report_interval_s = report_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.location_protocol = location_protocol
        self.tz_minutes = tz_minutes
        self.extended_login = extended_login
        self.login_on_start = login
        self.answer_commands = answer_commands
        self.long_replies = long_replies
        self.reply_text = reply_text
        self.ack_timeout_s = ack_timeout_s
        self.commands: list[ReceivedCommand] = []
        self.acks: list[tuple[int, int]] = []
        """(protocol, serial) of every ack received, in order."""
        self.times: list[datetime] = []
        self._serial = 0
        self._step = 0
        self._waiters: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        """Set when the gateway closed the connection (or it broke)."""

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, start reading, and log in (unless ``login=False``)."""
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._spawn(self._read_loop(), "read")
        if self.login_on_start:
            await self.login()

    async def stop(self) -> None:
        """Stop every timer and close the connection."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._writer.wait_closed()
        self._fail_waiters()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start_reporting(self) -> None:
        """Locations every ``report_interval_s``, heartbeats every ``heartbeat_interval_s``."""
        self._spawn(self._every(self.report_interval_s, self.send_location), "locations")
        self._spawn(self._every(self.heartbeat_interval_s, self.send_heartbeat), "heartbeats")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=f"gt06 {self.imei} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self, interval_s: float, send: Callable[[], Awaitable[object]]) -> None:
        while not self.closed.is_set():
            try:
                await send()
            except (TimeoutError, ConnectionError, Gt06Error) as exc:
                log.debug("tracker %s: %s", self.imei, exc)
            await asyncio.sleep(interval_s)

    # -- uplink -----------------------------------------------------------------------------

    def next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    async def send_raw(self, data: bytes) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise ConnectionError("tracker not connected")
        writer.write(data)
        async with asyncio.timeout(self.ack_timeout_s):
            await writer.drain()

    async def send_packet(self, packet: bytes, protocol: int, serial: int, *, ack: bool) -> None:
        """Send ``packet``; with ``ack``, wait for the ack echoing ``serial``
        (:class:`TimeoutError` after ``ack_timeout_s``)."""
        if not ack:
            await self.send_raw(packet)
            return
        key = (protocol, serial)
        waiter = self._waiters.get(key)
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[key] = waiter  # before the write: acks are quick
        try:
            await self.send_raw(packet)
            async with asyncio.timeout(self.ack_timeout_s):
                await asyncio.shield(waiter)
        finally:
            if waiter.done() or not self._writer or self._writer.is_closing():
                self._waiters.pop(key, None)

    async def login(self) -> None:
        serial = self.next_serial()
        packet = encode_login(
            self.imei,
            serial,
            type_code=0x3600 if self.extended_login else None,
            tz_minutes=self.tz_minutes if self.extended_login else None,
            language=2,
        )
        await self.send_packet(packet, 0x01, serial, ack=True)

    def _clock(self, utc: bool) -> datetime:
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        return now if utc else now + timedelta(minutes=self.tz_minutes)

    def fix(self, *, utc: bool, positioned: bool = True) -> GpsFix:
        """The next point of the route, as a GPS block."""
        lat, lon = self.route[self._step % len(self.route)]
        nlat, nlon = self.route[(self._step + 1) % len(self.route)]
        self._step += 1
        course = round(math.degrees(math.atan2(nlon - lon, nlat - lat))) % 360
        return GpsFix(self._clock(utc), 9, lat, lon, 30, course, positioned)

    async def send_location(
        self, *, protocol: int | None = None, ack: bool = True, serial: int | None = None
    ) -> int:
        """The next route point as 0x12 or 0x22; returns its serial (``serial`` resends)."""
        protocol = protocol or self.location_protocol
        serial = self.next_serial() if serial is None else serial
        gps = self.fix(utc=protocol == PROTO_LOCATION_UTC)
        packet = encode_location(gps, serial, cell=_CELL, protocol=protocol, acc=1)
        await self.send_packet(packet, protocol, serial, ack=ack)
        return serial

    async def send_heartbeat(self, alarm_bits: int = 0, *, ack: bool = True) -> int:
        serial = self.next_serial()
        status = TerminalStatus(STATUS_GPS_ON | (alarm_bits & 7) << 3, 5, 4)
        await self.send_packet(encode_heartbeat(status, serial), 0x13, serial, ack=ack)
        return serial

    def alarm_packet(self, code: int, alarm_bits: int, serial: int) -> bytes:
        """An 0x16 alarm at the current route point (for sending, and resending as is)."""
        status = TerminalStatus(STATUS_GPS_ON | (alarm_bits & 7) << 3, 4, 3)
        return encode_alarm(self.fix(utc=False), status, code, serial, cell=_CELL)

    async def send_alarm(self, code: int, alarm_bits: int = 0, *, ack: bool = True) -> int:
        """An 0x16 alarm (``code`` per :class:`~protocols.gt06.AlarmCode`); its serial."""
        serial = self.next_serial()
        packet = self.alarm_packet(code, alarm_bits, serial)
        await self.send_packet(packet, PROTO_ALARM, serial, ack=ack)
        return serial

    # -- misbehaviour -----------------------------------------------------------------------

    async def send_bad_crc(self) -> int:
        """A heartbeat whose CRC is wrong (the gateway must not ack it); its serial."""
        serial = self.next_serial()
        packet = bytearray(encode_heartbeat(TerminalStatus(STATUS_GPS_ON, 5, 4), serial))
        packet[-3] ^= 0xFF
        await self.send_raw(bytes(packet))
        return serial

    async def send_garbage(self, size: int = 256) -> None:
        """Bytes that are no packet (with a stray start marker inside)."""
        pattern = b"\x00\xff\x78garbage\x79\x0d\x0a"
        await self.send_raw((pattern * (size // len(pattern) + 1))[:size])

    async def send_truncated(self) -> None:
        """The first half of a location packet, never completed."""
        packet = encode_location(self.fix(utc=False), self.next_serial(), cell=_CELL)
        await self.send_raw(packet[: len(packet) // 2])

    async def send_oversized(self, length: int = 0xFFFF) -> None:
        """A ``79 79`` header announcing a ``length``-byte packet, and some of it."""
        await self.send_raw(b"\x79\x79" + length.to_bytes(2, "big") + b"\x12" + b"\x00" * 512)

    # -- downlink ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reader = self._reader
        assert reader is not None
        splitter = FrameSplitter(max_frame_bytes=4096)
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for item in splitter.feed(data):
                    if isinstance(item, Frame):
                        await self._on_frame(item)
        except (ConnectionError, OSError) as exc:
            log.debug("tracker %s: connection lost: %s", self.imei, exc)
        finally:
            self.closed.set()
            self._fail_waiters()

    async def _on_frame(self, frame: Frame) -> None:
        try:
            message = decode(frame)
        except Gt06Error as exc:
            log.warning("tracker %s: bad packet from the server: %s", self.imei, exc)
            return
        if isinstance(message, Ack):
            self.acks.append((frame.protocol, frame.serial))
            waiter = self._waiters.pop((frame.protocol, frame.serial), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif isinstance(message, Command):
            self.commands.append(ReceivedCommand(message.flag, message.command, frame.serial))
            if self.answer_commands:
                reply = encode_reply(
                    message.flag, self.reply_text, self.next_serial(), long=self.long_replies
                )
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await self.send_raw(reply)
        elif isinstance(message, TimeRequest) and message.time is not None:
            self.times.append(message.time)

    def _fail_waiters(self) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection closed"))
                waiter.exception()  # retrieved: a sender that gave up is not an error
        self._waiters.clear()


async def keep_dialling(
    stop: asyncio.Event, make: Callable[[], Gt06Tracker], redial_s: float = 1.0
) -> None:
    """A tracker in the field: dials in, logs in and reports on its timers; dials in again
    ``redial_s`` after its connection ends (or could not be made), until ``stop`` is set.
    ``make`` builds each connection's tracker."""
    while not stop.is_set():
        tracker = make()
        try:
            await tracker.start()
            tracker.start_reporting()
            ends = {
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(tracker.closed.wait()),
            }
            try:
                await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for end in ends:
                    end.cancel()
        except (OSError, TimeoutError):
            pass  # nobody listening yet, or the connection broke while logging in
        finally:
            await tracker.stop()
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), redial_s)


class TrackerFleet:
    """``count`` trackers from one process, IMEIs counting up from ``imei_base``."""

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        *,
        imei_base: int = 860_000_000_000_000,
        **kwargs: object,
    ) -> None:
        self.trackers = [
            Gt06Tracker(f"{imei_base + n:015d}", host, port, **kwargs)  # type: ignore[arg-type]
            for n in range(count)
        ]

    async def start(self, *, reporting: bool = True, concurrency: int = 200) -> None:
        """Connect and log in every tracker (``concurrency`` at a time)."""
        limit = asyncio.Semaphore(concurrency)

        async def one(tracker: Gt06Tracker) -> None:
            async with limit:
                await tracker.start()
            if reporting:
                tracker.start_reporting()

        async with asyncio.TaskGroup() as group:
            for tracker in self.trackers:
                group.create_task(one(tracker))

    async def stop(self) -> None:
        await asyncio.gather(*(t.stop() for t in self.trackers), return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _run(args: argparse.Namespace) -> None:
    fleet = TrackerFleet(
        args.host,
        args.port,
        args.count,
        imei_base=args.imei_base,
        report_interval_s=args.interval,
        heartbeat_interval_s=args.heartbeat,
        location_protocol=PROTO_LOCATION_UTC if args.utc else PROTO_LOCATION,
        login=args.misbehave != "silent",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await fleet.start(reporting=args.misbehave != "silent")
    try:
        while not stop.is_set():
            for tracker in fleet.trackers:
                with contextlib.suppress(ConnectionError, TimeoutError):
                    if args.misbehave == "bad-crc":
                        await tracker.send_bad_crc()
                    elif args.misbehave == "garbage":
                        await tracker.send_garbage()
                    elif args.misbehave == "truncated":
                        await tracker.send_truncated()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.interval):
                    await stop.wait()
    finally:
        await fleet.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GT06 trackers for fieldlink's listen:// links")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5023)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--imei-base", type=int, default=860_000_000_000_000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between locations")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="seconds between heartbeats")
    parser.add_argument("--utc", action="store_true", help="send 0x22 (UTC) instead of 0x12")
    parser.add_argument(
        "--misbehave",
        choices=("none", "bad-crc", "garbage", "truncated", "silent"),
        default="none",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
