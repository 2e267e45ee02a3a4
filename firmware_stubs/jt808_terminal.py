"""Simulated JT/T 808 terminal (a vehicle tracker or a PoC walkie-talkie), built from our own
codec (:mod:`protocols.jt808`).

A :class:`Jt808Terminal` dials a platform over TCP, registers (0x0100, unless it already has
a code), authenticates (0x0102), and then does what a test or a benchmark asks: position
reports (0x0200) with alarm bits, heartbeats, batches (0x0704, normal or back-filled,
optionally split into subpackages), raw bytes. It answers the platform the way a terminal
does: 0x0001 for a text (0x8300; it records the flags, so TTS is visible), for a question
(0x8302, then the person's answer 0x0302 after ``answer_delay_s``), for an alarm confirmation
(0x8203); 0x0201 for a position query (0x8201). Both editions (``edition="2013"`` or
``"2019"``).

Programmatic use::

    async with Jt808Terminal(("127.0.0.1", 7808), phone="013800138000") as terminal:
        await terminal.report(31.23, 121.47)

Misbehaviour on demand: :meth:`send_raw` (garbage, unterminated or oversize frames, a wrong
check code via :func:`corrupt_check`), ``authenticate=False`` (connects and never
authenticates), ``ack_texts=False`` (never confirms a text), ``repeat`` on :meth:`report`
(the same frame several times, as a terminal whose ack was late).

``main`` runs a fleet from the command line: ``python -m firmware_stubs.jt808_terminal
--gateway 127.0.0.1:7808 --count 100 --interval 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Final

from protocols.jt808 import messages as m
from protocols.jt808.framing import (
    Frame,
    FrameSplitter,
    Jt808Error,
    Rejected,
    decode_frame,
    encode_bcd_phone,
    encode_frame,
)

__all__ = ["Jt808Terminal", "ReceivedText", "corrupt_check", "main"]

log = logging.getLogger(__name__)

REPLY_TIMEOUT_S: Final = 10.0
"""How long the terminal waits for the platform's answer to one of its messages."""
MAX_WAITERS: Final = 256


@dataclass(frozen=True, slots=True)
class ReceivedText:
    """A 0x8300 the terminal received (``tts``: it would have spoken it)."""

    serial: int
    flag: int
    text: str
    text_type: int | None

    @property
    def tts(self) -> bool:
        return bool(self.flag & 0x08)

    @property
    def display(self) -> bool:
        return bool(self.flag & 0x04)


@dataclass(slots=True)
class _Record:
    texts: list[ReceivedText] = field(default_factory=list)
    questions: list[tuple[int, m.Question]] = field(default_factory=list)
    answers_sent: list[tuple[int, int]] = field(default_factory=list)
    confirmations: list[m.AlarmConfirmation] = field(default_factory=list)
    queries: int = 0
    acks: dict[int, int] = field(default_factory=dict)
    """serial of our message -> result of the platform's 0x8001 (the last ones)."""
    ack_editions: list[bool] = field(default_factory=list)
    """For each 0x8001 received: was it in the 2019 layout."""


def corrupt_check(frame: bytes) -> bytes:
    """``frame`` (a whole wire frame) with its check code inverted (when not an escape)."""
    check = frame[-2]
    if check in (0x01, 0x02):  # the second byte of an escape: leave the frame readable
        return frame[:-3] + bytes((frame[-3] ^ 0x10,)) + frame[-2:]
    return (
        frame[:-2]
        + bytes((check ^ 0xFF if check ^ 0xFF not in (0x7E, 0x7D) else 0x00,))
        + frame[-1:]
    )


class Jt808Terminal:
    """One terminal over one TCP connection (see the module doc)."""

    def __init__(
        self,
        gateway: tuple[str, int],
        *,
        phone: str = "013800138000",
        edition: str = "2013",
        auth_code: str | None = None,
        register: bool = True,
        authenticate: bool = True,
        ack_texts: bool = True,
        answer: int | None = 1,
        answer_delay_s: float = 0.0,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        if edition not in ("2013", "2019"):
            raise ValueError(f"edition {edition!r}: 2013 or 2019")
        self.gateway = gateway
        self.phone = phone
        self.edition_2019 = edition == "2019"
        self.phone_bcd = encode_bcd_phone(phone.lstrip("0") or "0", self.edition_2019)
        self.auth_code = auth_code
        self.register = register
        self.authenticate = authenticate
        self.ack_texts = ack_texts
        self.answer = answer
        self.answer_delay_s = answer_delay_s
        self.reply_timeout_s = reply_timeout_s
        self.record = _Record()
        self.alarm = 0
        self.authenticated = False
        self._serial = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: dict[tuple[int, int], asyncio.Future[Frame]] = {}
        self.closed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Jt808Terminal:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def connect(self) -> None:
        """Open the TCP connection and start reading (no registration)."""
        async with asyncio.timeout(self.reply_timeout_s):
            self._reader, self._writer = await asyncio.open_connection(*self.gateway)
        self.closed.clear()
        self._spawn(self._read_loop())

    async def start(self) -> None:
        """Connect, register when it has no code, authenticate (each as configured)."""
        await self.connect()
        if self.register and self.auth_code is None:
            await self.do_register()
        if self.authenticate:
            await self.do_authenticate()

    async def stop(self) -> None:
        writer = self._writer
        self._writer = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                async with asyncio.timeout(2.0):
                    await writer.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()
        self.closed.set()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending ---------------------------------------------------------------------

    def next_serial(self) -> int:
        serial = self._serial
        self._serial = (serial + 1) & 0xFFFF
        return serial

    def frame(
        self,
        msg_id: int,
        body: bytes,
        serial: int | None = None,
        parts: tuple[int, int] | None = None,
    ) -> bytes:
        return encode_frame(
            msg_id,
            self.phone_bcd,
            self.next_serial() if serial is None else serial,
            body,
            version=1 if self.edition_2019 else None,
            parts=parts,
        )

    async def send_raw(self, data: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise ConnectionError("terminal not connected")
        writer.write(data)
        await writer.drain()

    async def request(self, msg_id: int, body: bytes, reply_id: int = m.PLATFORM_RESPONSE) -> Frame:
        """Send one message and wait for the platform's reply naming its serial."""
        serial = self.next_serial()
        frame = self.frame(msg_id, body, serial)
        return await self._exchange(frame, serial, reply_id)

    async def _exchange(self, frame: bytes, serial: int, reply_id: int) -> Frame:
        if len(self._waiters) >= MAX_WAITERS:
            raise RuntimeError("too many messages waiting for an answer")
        key = (reply_id, serial)
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiters[key] = waiter
        try:
            await self.send_raw(frame)
            async with asyncio.timeout(self.reply_timeout_s):
                return await waiter
        finally:
            self._waiters.pop(key, None)

    async def do_register(self) -> m.RegistrationResponse:
        layout = "2019" if self.edition_2019 else "2013"
        body = m.encode_registration(
            m.Registration(layout, 31, 101, "70111", "FL-T1", "A1B2C3D", 1, "沪A12345")
        )
        reply = await self.request(m.REGISTER, body, m.REGISTER_RESPONSE)
        response = m.decode_registration_response(reply.body)
        if response.result == m.REGISTER_OK:
            self.auth_code = response.auth_code
        return response

    async def do_authenticate(self, code: str | None = None) -> int:
        """0x0102 with ``code`` (default: the code from registration); the 0x8001 result."""
        auth = m.Authentication(
            code if code is not None else self.auth_code or "", "861234567890123", "V1.0.0"
        )
        reply = await self.request(m.AUTHENTICATE, m.encode_authentication(auth, self.edition_2019))
        result = m.decode_general_response(reply.body).result
        self.authenticated = result == m.RESULT_OK
        return result

    def location(
        self,
        lat: float,
        lon: float,
        *,
        when: datetime | None = None,
        speed_kmh: float = 36.5,
        course: int = 90,
        fix: bool = True,
        alarm: int | None = None,
    ) -> m.Location:
        moment = (when or datetime.now(UTC)).replace(microsecond=0)
        status = 0x0001 | (m.STATUS_FIX if fix else 0)
        items = ((m.ITEM_ODOMETER, (12345).to_bytes(4, "big")), (m.ITEM_SATELLITES, b"\x0b"))
        return m.Location(
            self.alarm if alarm is None else alarm, status, lat, lon, 12, speed_kmh, course,
            moment, items,
        )  # fmt: skip

    async def report(
        self,
        lat: float = 31.230416,
        lon: float = 121.473701,
        *,
        repeat: int = 1,
        wait: bool = True,
        when: datetime | None = None,
        fix: bool = True,
    ) -> int:
        """A 0x0200 (sent ``repeat`` times, same serial); waits for the 0x8001 of the last
        copy when ``wait``. Returns the serial."""
        serial = self.next_serial()
        body = m.encode_location(self.location(lat, lon, when=when, fix=fix))
        frame = self.frame(m.LOCATION, body, serial)
        for _ in range(repeat - 1):
            await self.send_raw(frame)
        if wait:
            await self._exchange(frame, serial, m.PLATFORM_RESPONSE)
        else:
            await self.send_raw(frame)
        return serial

    async def heartbeat(self) -> int:
        reply = await self.request(m.HEARTBEAT, b"")
        return m.decode_general_response(reply.body).result

    async def batch(
        self, locations: Sequence[m.Location], *, backfill: bool = False, packets: int = 1
    ) -> None:
        """0x0704, split into ``packets`` subpackages when more than 1; waits for every ack."""
        body = m.encode_batch(tuple(locations), backfill=backfill)
        if packets <= 1:
            await self.request(m.BATCH, body)
            return
        size = -(-len(body) // packets)
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        for index, chunk in enumerate(chunks, 1):
            serial = self.next_serial()
            frame = self.frame(m.BATCH, chunk, serial, parts=(len(chunks), index))
            await self._exchange(frame, serial, m.PLATFORM_RESPONSE)

    def emergency(self, on: bool = True) -> None:
        """Set or reset alarm bit 0 (SOS) for the following reports."""
        self.alarm = self.alarm | 1 if on else self.alarm & ~1

    # -- receiving -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reader = self._reader
        assert reader is not None
        splitter = FrameSplitter()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for item in splitter.feed(data):
                    if isinstance(item, Rejected):
                        continue
                    try:
                        frame = decode_frame(item)
                    except Jt808Error as exc:
                        log.warning("terminal %s: bad frame from the platform: %s", self.phone, exc)
                        continue
                    await self._on_frame(frame)
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    async def _on_frame(self, frame: Frame) -> None:
        header = frame.header
        msg_id = header.msg_id
        reply_serial: int | None = None
        if msg_id == m.PLATFORM_RESPONSE:
            response = m.decode_general_response(frame.body)
            self.record.acks[response.reply_serial] = response.result
            self.record.ack_editions.append(header.edition_2019)
            while len(self.record.acks) > 4096:
                del self.record.acks[next(iter(self.record.acks))]
            reply_serial = response.reply_serial
        elif msg_id == m.REGISTER_RESPONSE:
            reply_serial = m.decode_registration_response(frame.body).reply_serial
        elif msg_id == m.TEXT:
            text = m.decode_text(frame.body, header.edition_2019)
            self.record.texts.append(
                ReceivedText(header.serial, text.flag, text.text, text.text_type)
            )
            if self.ack_texts:
                await self._respond(frame)
        elif msg_id == m.QUESTION:
            question = m.decode_question(frame.body)
            self.record.questions.append((header.serial, question))
            await self._respond(frame)
            if self.answer is not None:
                self._spawn(self._answer(header.serial, self.answer))
        elif msg_id == m.ALARM_CONFIRM:
            self.record.confirmations.append(m.decode_alarm_confirmation(frame.body))
            self.alarm = 0
            await self._respond(frame)
        elif msg_id == m.POSITION_QUERY:
            self.record.queries += 1
            body = m.encode_location_reply(header.serial, self.location(31.230416, 121.473701))
            await self.send_raw(self.frame(m.POSITION_REPLY, body))
        else:
            await self._respond(frame, m.RESULT_NOT_SUPPORTED)
        if reply_serial is not None:
            waiter = self._waiters.get((msg_id, reply_serial))
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)

    async def _respond(self, frame: Frame, result: int = m.RESULT_OK) -> None:
        body = m.encode_general_response(frame.header.serial, frame.header.msg_id, result)
        await self.send_raw(self.frame(m.TERMINAL_RESPONSE, body))

    async def _answer(self, question_serial: int, answer_id: int) -> None:
        await asyncio.sleep(self.answer_delay_s)
        body = m.encode_question_answer(question_serial, answer_id)
        with contextlib.suppress(TimeoutError, ConnectionError):
            await self.request(m.QUESTION_ANSWER, body)
        self.record.answers_sent.append((question_serial, answer_id))


# -- command line -----------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_stubs.jt808_terminal",
        description="Simulated JT/T 808 terminals dialling a platform over TCP.",
    )
    parser.add_argument("--gateway", type=_host_port, default=("127.0.0.1", 7808))
    parser.add_argument("--count", type=int, default=1, help="terminals (one connection each)")
    parser.add_argument("--phone", default="13800138000", help="first phone number")
    parser.add_argument("--edition", choices=("2013", "2019"), default="2013")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between reports")
    parser.add_argument("--reports", type=int, default=0, help="stop after this many (0: run)")
    parser.add_argument(
        "--misbehave",
        choices=("none", "garbage", "bad-check", "never-auth", "oversize"),
        default="none",
    )
    return parser


async def _run_one(args: argparse.Namespace, index: int, stop: asyncio.Event) -> None:
    phone = str(int(args.phone) + index)
    terminal = Jt808Terminal(
        args.gateway, phone=phone, edition=args.edition,
        authenticate=args.misbehave != "never-auth",
    )  # fmt: skip
    async with terminal:
        sent = 0
        lat = 31.0 + index * 1e-4
        while not stop.is_set() and (args.reports == 0 or sent < args.reports):
            if args.misbehave == "garbage":
                await terminal.send_raw(b"\x00garbage\xff" * 8)
            elif args.misbehave == "oversize":
                await terminal.send_raw(b"\x7e" + b"\x11" * 65536)
            elif args.misbehave == "bad-check":
                body = m.encode_location(terminal.location(lat, 121.47))
                await terminal.send_raw(corrupt_check(terminal.frame(m.LOCATION, body)))
            elif terminal.authenticated:
                await terminal.report(lat, 121.47, wait=False)
            sent += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.interval):
                    await stop.wait()


async def _main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    results = await asyncio.gather(
        *(_run_one(args, i, stop) for i in range(args.count)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    for error in failed[:5]:
        log.error("terminal failed: %s", error)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(_main(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
