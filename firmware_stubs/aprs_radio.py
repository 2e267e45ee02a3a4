"""Simulated APRS handheld on a KISS link, built from our own KISS, AX.25 and APRS codecs.

An :class:`AprsRadio` is what a person carries: it beacons its position along a route, rotating
through the three position formats (uncompressed with a timestamp, compressed, Mic-E), acks the
messages addressed to its callsign (normally, late, twice, never, or with a reject), and after a
delay sends the person's reply (``收到`` by default; ``#12`` appended when the task text carries a
``#12`` reference), retried until acked like a real handheld. It answers the ``?APRSP`` query with
a position, and counts what it received. Its emergency button (:meth:`AprsRadio.emergency`) sets
the Mic-E message code to "Emergency" and beacons at once; while it lasts every beacon is a Mic-E
Emergency, and resetting it beacons once more in Mic-E with the normal code.

Where it talks KISS:

* ``await radio.run(("127.0.0.1", 8001))``: a TCP client of a TNC's KISS port (direwolf);
* ``await radio.run(stream)``: any object with ``async read()`` / ``async write(data)`` (a gateway
  :class:`~gateway.transport.Connection` fits);
* ``await radio.serve(host, port, on_ready)``: a KISS TCP server, so a gateway's ``tcp://`` link
  connects to the radio directly, as if the radio were the TNC (no audio, no airtime).

Variants for tests: ``ack`` (``normal``/``late``/``twice``/``never``/``reject``),
``reply_once_per_text`` (the person answers a text they have seen before only once),
``reply_copies`` (send the reply this many times even when acked: crossing acks),
``echo_copies`` (every frame also arrives as copies "heard through" digipeaters ``DIGI1*``,
``DIGI2*``...), ``digipeat`` (repeat the peer's frames whose next hop is ``WIDEn-N``, marked used:
the peer hears its own transmissions back). ``main`` is ``fieldlink simulate aprs-radio``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import re
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from protocols import ProtocolError, ax25, kiss
from protocols.aprs import (
    AprsAck,
    AprsMessage,
    AprsRej,
    decode_frame,
    encode_ack,
    encode_message,
    encode_mic_e,
    encode_position,
    encode_rej,
)

__all__ = ["ACK_MODES", "DEFAULT_ROUTE", "AprsRadio", "ByteStream", "RadioCounts", "main"]

log = logging.getLogger(__name__)

#: A loop around People's Square, Shanghai, as the NMEA stub uses.
DEFAULT_ROUTE: Final[tuple[tuple[float, float], ...]] = (
    (31.2304, 121.4737),
    (31.2330, 121.4712),
    (31.2357, 121.4745),
    (31.2341, 121.4793),
    (31.2299, 121.4801),
    (31.2281, 121.4760),
)
ACK_MODES: Final = ("normal", "late", "twice", "never", "reject")
FORMATS: Final = ("uncompressed", "compressed", "mic-e")
TOCALL: Final = "APZFLR"  # experimental tocall range (APZ): the fieldlink radio simulator
POSITION_QUERY: Final = "?APRSP"
STEPS_PER_LEG: Final = 4
_REF_RE: Final = re.compile(r"#(\d+)")
_READ_CHUNK: Final = 4096


class ByteStream(Protocol):
    """What the radio needs of a link: a gateway ``Connection`` has this shape."""

    async def read(self) -> bytes:
        """The next chunk; raises ``ConnectionError`` (or returns ``b""``) when closed."""
        ...

    async def write(self, data: bytes) -> None: ...


class _TcpStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        return await self._reader.read(_READ_CHUNK)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    def abort(self) -> None:
        """Close the socket now: the session's pending read ends."""
        self._writer.transport.abort()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)


class _SessionEnded(Exception):
    """The link closed: ends the session's task group."""


@dataclass(slots=True)
class RadioCounts:
    """What the radio saw and did; only ever grows."""

    frames: int = 0
    messages: int = 0  # copies of messages addressed to the radio
    unique_messages: int = 0
    acks_sent: int = 0
    rejs_sent: int = 0
    acks_received: int = 0
    beacons: int = 0
    reply_transmissions: int = 0
    queries: int = 0
    digipeated: int = 0


def _route_points(route: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    points = []
    for i, (lat, lon) in enumerate(route):
        lat2, lon2 = route[(i + 1) % len(route)]
        for step in range(STEPS_PER_LEG):
            f = step / STEPS_PER_LEG
            points.append((lat + (lat2 - lat) * f, lon + (lon2 - lon) * f))
    return points


def _bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> int:
    lat1, lat2 = math.radians(a[0]), math.radians(b[0])
    dlon = math.radians(b[1] - a[1])
    x = math.sin(dlon) * math.cos(lat2)
    y = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon)
    return round(math.degrees(math.atan2(x, y))) % 360


class AprsRadio:
    """An APRS handheld: beacons, acks, a person's replies. See the module docstring."""

    def __init__(
        self,
        callsign: str,
        *,
        route: Sequence[tuple[float, float]] = DEFAULT_ROUTE,
        beacon_interval_s: float | None = None,
        speed_kmh: float = 5.0,
        ack: str = "normal",
        ack_delay_s: float = 2.0,
        reply: str | None = "收到",
        reply_delay_s: float = 1.0,
        reply_retry_intervals_s: Sequence[float] = (30.0, 60.0, 120.0),
        reply_copies: int = 1,
        reply_once_per_text: bool = False,
        echo_ref: bool = True,
        echo_copies: int = 1,
        digipeat: bool = False,
        path: Sequence[str] = ("WIDE1-1",),
        kiss_port: int = 0,
    ) -> None:
        if ack not in ACK_MODES:
            raise ValueError(f"ack must be one of {ACK_MODES}, not {ack!r}")
        if len(route) < 2:
            raise ValueError("a route needs at least two points")
        if echo_copies < 1 or reply_copies < 1:
            raise ValueError("echo_copies and reply_copies must be at least 1")
        if not reply_retry_intervals_s:
            raise ValueError("reply_retry_intervals_s needs at least one interval")
        self.address = ax25.parse_address(callsign)
        self.callsign = self.address.call_ssid
        self.beacon_interval_s = beacon_interval_s
        self.speed_kmh = speed_kmh
        self.ack = ack
        self.ack_delay_s = ack_delay_s
        self.reply = reply
        self.reply_delay_s = reply_delay_s
        self.reply_retry_intervals_s = tuple(reply_retry_intervals_s)
        self.reply_copies = reply_copies
        self.reply_once_per_text = reply_once_per_text
        self._answered: set[tuple[str, str]] = set()
        self.echo_ref = echo_ref
        self.echo_copies = echo_copies
        self.digipeat = digipeat
        self.path = tuple(ax25.parse_address(hop) for hop in path)
        self.kiss_port = kiss_port
        self.counts = RadioCounts()
        self.received: list[tuple[str, str]] = []
        """(sender, text) of each message received, once per (sender, msgno)."""
        self.replies_acked: list[str] = []
        self._points = _route_points(route)
        self._beacon_no = 0
        self._reply_no = 0
        self._seen: set[tuple[str, str]] = set()
        self._reply_acks: dict[tuple[str, str], asyncio.Event] = {}
        self.sessions = 0
        """KISS sessions started (a test waits for the first before sending)."""
        self.in_emergency = False
        """The emergency button is on: every beacon is a Mic-E "Emergency"."""
        self._streams: list[ByteStream] = []

    # -- where it runs ---------------------------------------------------------------

    async def run(self, target: ByteStream | tuple[str, int]) -> None:
        """Serve one KISS link until it closes (connect first when given ``(host, port)``)."""
        if isinstance(target, tuple):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), 10.0)
            stream = _TcpStream(reader, writer)
            try:
                await self._session(stream)
            finally:
                await stream.close()
        else:
            await self._session(target)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        on_ready: Callable[[str, int], None] | None = None,
    ) -> None:
        """A KISS TCP server until cancelled; ``on_ready(host, port)`` once it listens."""
        sessions: dict[asyncio.Task[None], _TcpStream] = {}

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            stream = sessions[task] = _TcpStream(reader, writer)
            try:
                await self._session(stream)
            except* ConnectionError as group:
                log.info("%s: KISS client gone: %s", self.callsign, group.exceptions[0])
            finally:
                sessions.pop(task, None)
                await stream.close()

        server = await asyncio.start_server(accept, host, port)
        try:
            bound = server.sockets[0].getsockname()
            if on_ready is not None:
                on_ready(str(bound[0]), int(bound[1]))
            await asyncio.Future()  # until cancelled
        finally:
            server.close()
            # Closing a session's socket ends its read, so it finishes on its own (a cancelled
            # client task would be reported by asyncio's stream callback as an error).
            for stream in sessions.values():
                stream.abort()
            if sessions:
                done, running = await asyncio.wait(list(sessions), timeout=5.0)
                for task in running:
                    task.cancel()
                await asyncio.gather(*done, *running, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _session(self, stream: ByteStream) -> None:
        self.sessions += 1
        self._streams.append(stream)
        try:
            async with asyncio.TaskGroup() as tasks:
                if self.beacon_interval_s is not None:
                    tasks.create_task(self._beacons(stream, self.beacon_interval_s))
                await self._receive(stream, tasks)
        except* _SessionEnded:
            pass
        finally:
            self._streams.remove(stream)

    async def emergency(self, on: bool = True) -> None:
        """The person presses (``on``) or resets the emergency button: the radio beacons its
        position in Mic-E at once, with the message code "Emergency" or back to normal."""
        self.in_emergency = on
        for stream in list(self._streams):
            await self.beacon(stream, mic_e=True)

    # -- transmit --------------------------------------------------------------------

    async def _send(self, stream: ByteStream, info: bytes, dest: str = TOCALL) -> None:
        """One frame, plus ``echo_copies - 1`` copies as if repeated by digipeaters."""
        dest_address = ax25.parse_address(dest)
        for copy in range(self.echo_copies):
            digis = self.path if copy == 0 else (ax25.Address(f"DIGI{copy}", 1, h_bit=True),)
            frame = ax25.Ax25Frame(dest_address, self.address, digis, info=info)
            await stream.write(kiss.encode_frame(ax25.encode(frame), self.kiss_port))

    def position_frame(
        self, number: int, now: datetime | None = None, *, mic_e: bool = False
    ) -> tuple[str, bytes]:
        """``(destination, info)`` of beacon ``number``; the format rotates with the number,
        except that in an emergency (or with ``mic_e``) it is Mic-E, the format that says so."""
        here = self._points[number % len(self._points)]
        ahead = self._points[(number + 1) % len(self._points)]
        course = _bearing_deg(here, ahead)
        fmt = FORMATS[number % len(FORMATS)]
        if fmt == "mic-e" or self.in_emergency or mic_e:
            status = "Emergency" if self.in_emergency else "En Route"
            return encode_mic_e(
                here[0], here[1], speed_kmh=self.speed_kmh, course_deg=course, status=status
            )
        stamp = (now or datetime.now(UTC)) if fmt == "uncompressed" else None
        info = encode_position(
            here[0],
            here[1],
            messaging=True,
            timestamp=stamp,
            course_deg=course,
            speed_kmh=self.speed_kmh,
            compressed=fmt == "compressed",
        )
        return TOCALL, info

    async def beacon(self, stream: ByteStream, *, mic_e: bool = False) -> None:
        dest, info = self.position_frame(self._beacon_no, mic_e=mic_e)
        self._beacon_no += 1
        self.counts.beacons += 1
        await self._send(stream, info, dest)

    async def _beacons(self, stream: ByteStream, interval_s: float) -> None:
        while True:
            await self.beacon(stream)
            await asyncio.sleep(interval_s)

    # -- receive ---------------------------------------------------------------------

    async def _receive(self, stream: ByteStream, tasks: asyncio.TaskGroup) -> None:
        """Until the link closes: then :class:`_SessionEnded` ends the session's tasks."""
        decoder = kiss.KissDecoder()
        while True:
            try:
                data = await stream.read()
            except ConnectionError as exc:
                raise _SessionEnded from exc
            if not data:
                raise _SessionEnded
            for item in decoder.feed(data):
                if isinstance(item, kiss.KissFrame) and item.command == kiss.KissCommand.DATA:
                    await self._on_frame(stream, item.payload, tasks)

    async def _on_frame(self, stream: ByteStream, payload: bytes, tasks: asyncio.TaskGroup) -> None:
        try:
            frame = ax25.decode(payload)
            if frame.source.call_ssid == self.callsign:
                return
            packet = decode_frame(frame)
        except ProtocolError as exc:
            log.debug("%s: undecodable frame: %s", self.callsign, exc)
            return
        self.counts.frames += 1
        if self.digipeat:
            await self._digipeat(stream, frame)
        if not _is_for(packet, self.callsign):
            return
        sender = frame.source.call_ssid
        if isinstance(packet, AprsAck):
            self.counts.acks_received += 1
            self._reply_acked(sender, packet.msgno)
        elif isinstance(packet, AprsMessage):
            if packet.reply_ack:
                self._reply_acked(sender, packet.reply_ack)
            await self._on_message(stream, sender, packet, tasks)

    async def _digipeat(self, stream: ByteStream, frame: ax25.Ax25Frame) -> None:
        """Repeat the frame once if its next unused hop is WIDEn-N (TRACE-style: our call, used)."""
        for i, hop in enumerate(frame.digipeaters):
            if hop.h_bit:
                continue
            if not hop.callsign.startswith("WIDE"):
                return
            digis = (
                *frame.digipeaters[:i],
                ax25.Address(self.address.callsign, self.address.ssid, h_bit=True),
                *frame.digipeaters[i + 1 :],
            )
            repeated = ax25.Ax25Frame(frame.dest, frame.source, digis, info=frame.info)
            self.counts.digipeated += 1
            await stream.write(kiss.encode_frame(ax25.encode(repeated), self.kiss_port))
            return

    async def _on_message(
        self, stream: ByteStream, sender: str, message: AprsMessage, tasks: asyncio.TaskGroup
    ) -> None:
        self.counts.messages += 1
        if message.msgno is not None:
            await self._acknowledge(stream, sender, message, tasks)
        if message.text.strip() == POSITION_QUERY:
            self.counts.queries += 1
            await self.beacon(stream)
            return
        key = (sender, message.msgno or message.text)
        if key in self._seen:
            return
        self._seen.add(key)
        self.counts.unique_messages += 1
        self.received.append((sender, message.text))
        if self.reply_once_per_text:
            # A person who gets the same text again (the gateway sent it once more after a
            # restart) has answered it already.
            if (sender, message.text) in self._answered:
                return
            self._answered.add((sender, message.text))
        if self.reply is not None:
            text = self.reply
            ref = _REF_RE.search(message.text)
            if self.echo_ref and ref is not None:
                text = f"{text} #{ref.group(1)}"
            tasks.create_task(self._send_reply(stream, sender, text))

    async def _acknowledge(
        self, stream: ByteStream, sender: str, message: AprsMessage, tasks: asyncio.TaskGroup
    ) -> None:
        assert message.msgno is not None
        reply = "" if message.reply_ack is not None else None
        if self.ack == "never":
            return
        if self.ack == "reject":
            self.counts.rejs_sent += 1
            await self._send(stream, encode_rej(sender, message.msgno, reply))
            return
        ack = encode_ack(sender, message.msgno, reply)
        if self.ack == "late":
            tasks.create_task(self._late_ack(stream, ack))
            return
        for _ in range(2 if self.ack == "twice" else 1):
            self.counts.acks_sent += 1
            await self._send(stream, ack)

    async def _late_ack(self, stream: ByteStream, ack: bytes) -> None:
        await asyncio.sleep(self.ack_delay_s)
        self.counts.acks_sent += 1
        await self._send(stream, ack)

    def _reply_acked(self, sender: str, msgno: str) -> None:
        event = self._reply_acks.get((sender, msgno))
        if event is not None and not event.is_set():
            event.set()
            self.replies_acked.append(msgno)

    async def _send_reply(self, stream: ByteStream, to: str, text: str) -> None:
        """The person's answer after ``reply_delay_s``, retried until acked (and sent at least
        ``reply_copies`` times)."""
        await asyncio.sleep(self.reply_delay_s)
        self._reply_no += 1
        msgno = f"R{self._reply_no}"
        acked = asyncio.Event()
        self._reply_acks[(to, msgno)] = acked
        info = encode_message(to, text, msgno)
        try:
            for attempt, interval in enumerate(self.reply_retry_intervals_s, 1):
                if acked.is_set() and attempt > self.reply_copies:
                    return
                self.counts.reply_transmissions += 1
                await self._send(stream, info)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(acked.wait(), interval)
        finally:
            self._reply_acks.pop((to, msgno), None)


def _is_for(packet: object, callsign: str) -> bool:
    if not isinstance(packet, AprsMessage | AprsAck | AprsRej):
        return False
    try:
        return ax25.parse_address(packet.addressee).call_ssid == callsign
    except ax25.Ax25Error:
        return False


# -- command line ----------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldlink simulate aprs-radio",
        description="A simulated APRS handheld on a KISS link (TCP client or server).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--connect", type=_host_port, metavar="HOST:PORT",
                       help="connect to a TNC's KISS TCP port (direwolf KISSPORT)")  # fmt: skip
    where.add_argument("--listen", type=_host_port, metavar="HOST:PORT",
                       help="serve KISS over TCP for a gateway tcp:// link")  # fmt: skip
    parser.add_argument("--callsign", default="BG5XYZ-7")
    parser.add_argument("--beacon-interval", type=float, default=60.0, metavar="S",
                        help="seconds between position beacons; 0 for none")  # fmt: skip
    parser.add_argument("--speed-kmh", type=float, default=5.0)
    parser.add_argument("--ack", choices=ACK_MODES, default="normal")
    parser.add_argument("--ack-delay", type=float, default=2.0, metavar="S")
    parser.add_argument("--reply", default="收到", help="the person's reply; '' for none")
    parser.add_argument("--reply-delay", type=float, default=5.0, metavar="S")
    parser.add_argument("--no-ref", action="store_true", help="do not echo the task's #ref")
    parser.add_argument("--digipeat", action="store_true", help="repeat WIDEn-N frames")
    parser.add_argument("--path", default="WIDE1-1", help="comma-separated digipeater path")
    parser.add_argument("--kiss-port", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the radio; prints where it serves or connects (one line). 0 when stopped, 2 on usage."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        radio = AprsRadio(
            args.callsign,
            beacon_interval_s=args.beacon_interval or None,
            speed_kmh=args.speed_kmh,
            ack=args.ack,
            ack_delay_s=args.ack_delay,
            reply=args.reply or None,
            reply_delay_s=args.reply_delay,
            echo_ref=not args.no_ref,
            digipeat=args.digipeat,
            path=[hop for hop in args.path.split(",") if hop],
            kiss_port=args.kiss_port,
        )
    except (ValueError, ProtocolError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, me.cancel)
        try:
            if args.listen is not None:
                host, port = args.listen
                await radio.serve(
                    host,
                    port,
                    on_ready=lambda h, p: print(
                        f"aprs-radio {radio.callsign} serving KISS on {h}:{p}", flush=True
                    ),
                )
            else:
                host, port = args.connect
                print(f"aprs-radio {radio.callsign} connecting to KISS {host}:{port}", flush=True)
                await radio.run((host, port))
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        asyncio.run(run())
    except asyncio.CancelledError:
        pass
    except (OSError, TimeoutError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    print(f"aprs-radio {radio.callsign}: {radio.counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
