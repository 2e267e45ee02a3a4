"""A simulated Hytera radio on the gateway's cable, and the radios it hears on the air, built
from our own codecs (``protocols/hytera``).

:class:`HyteraRadio` is the radio connected to the gateway: it accepts the HRNP session
(CONNECT -> ACCEPT), acks every DATA with DATA_ACK, answers radio control (forwarding config
``0x1847``, its own id ``0x0452``), and relays HDAP between the gateway and the radios "on the
air", each an :class:`AirRadio`:

* it registers (RRS) once the session is up;
* it reports positions along its route: periodically once the gateway asks (LP ``C001`` or
  ``D001``, every ``report_interval_s`` when set, else at the interval asked), and at once on an
  immediate request (``A001``);
* it acks a text (TMP ``A2``) with ``ack_result`` after ``ack_delay_s`` (``None``: never;
  ``ack_sequence`` gives the first results, such as one *channel busy*),
  and the person replies ``reply`` after ``reply_delay_s``, carrying the text's request id when
  ``reply_names_message`` (how a reply names the message it answers);
* :meth:`HyteraRadio.emergency` sends an LP emergency report (``B003``, type 1) or its cancel
  (type :data:`EMERGENCY_CANCEL_TYPE`), with the radio's position.

Where it runs: ``mode="pty"`` makes a pty pair (the gateway opens :attr:`device_path`, HRNP
carries everything); ``mode="tcp"`` serves the same HRNP stream on :attr:`tcp_port` (a serial
server in front of the radio); ``mode="udp"`` binds loopback UDP ports as the radio's USB network
interface would: HRNP radio control on :attr:`rcp_port`, bare HDAP for RRS, LP and TMP on
:attr:`service_ports`, sent to the gateway's ``gateway_ports``.

Misbehaviour on demand (:class:`Misbehaviour`, changeable while running): ``bad_checksums``
(each of our HRNP frames is preceded by a copy with a broken checksum, each bare HDAP datagram
by one with a broken envelope checksum), ``duplicate_packets`` (each HRNP DATA goes twice with
the same packet number), ``silent`` (nothing is answered or sent at all), ``garbage`` (noise
bytes between frames). ``main`` is ``python -m firmware_stubs.hytera_radio``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import os
import signal
import sys
import tty
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Literal

from protocols.hytera.errors import HyteraError
from protocols.hytera.hdap import Service, decode_envelope, encode_envelope
from protocols.hytera.hrnp import (
    PC_ADDRESS,
    RADIO_ADDRESS,
    HrnpDecoder,
    HrnpFrame,
    HrnpOpcode,
    HrnpRejected,
    encode_frame,
)
from protocols.hytera.services import (
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
    decode_service,
    encode_service,
    interval_seconds,
    radio_id,
    radio_ip,
)

__all__ = ["DEFAULT_ROUTE", "EMERGENCY_CANCEL_TYPE", "AirRadio", "HyteraRadio", "Misbehaviour"]

log = logging.getLogger(__name__)

DEFAULT_ROUTE: Final[tuple[tuple[float, float], ...]] = (
    (31.2304, 121.4737),
    (31.2330, 121.4712),
    (31.2357, 121.4745),
    (31.2341, 121.4793),
)
"""A loop around People's Square, Shanghai, as the other stubs use."""
EMERGENCY_TYPE: Final = 1
EMERGENCY_CANCEL_TYPE: Final = 255
"""The driver's default ``emergency_cancel_type`` (an inference: see the driver)."""
_SERVICES: Final = (Service.RRS, Service.LP, Service.TMP)


@dataclass
class AirRadio:
    """A radio on the air, heard through the connected radio."""

    radio_id: int
    route: Sequence[tuple[float, float]] = DEFAULT_ROUTE
    report_interval_s: float | None = None
    ack_result: int | None = 0
    ack_sequence: list[int] = field(default_factory=list)
    """Results for the first acks, in order (``[4]``: channel busy once), then ``ack_result``."""
    ack_delay_s: float = 0.0
    reply: str | None = "收到"
    reply_delay_s: float = 0.2
    reply_names_message: bool = False
    register: bool = True
    received: list[str] = field(default_factory=list)
    """Texts received, once per request id."""
    acks_received: int = 0
    _step: int = 0
    seen_ids: set[int] = field(default_factory=set)

    def position(self) -> tuple[float, float, int]:
        """The next point along the route, and the heading to the one after."""
        a = self.route[self._step % len(self.route)]
        b = self.route[(self._step + 1) % len(self.route)]
        self._step += 1
        heading = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])) % 360
        return a[0], a[1], int(heading)


@dataclass
class Misbehaviour:
    bad_checksums: bool = False
    duplicate_packets: bool = False
    silent: bool = False
    garbage: bool = False


class HyteraRadio:
    """The radio on the gateway's cable (see the module docstring)."""

    def __init__(
        self,
        radios: Sequence[AirRadio] = (),
        *,
        own_id: int = 1,
        subnet: int = 10,
        mode: Literal["pty", "udp", "tcp"] = "pty",
        host: str = "127.0.0.1",
        gateway_ports: dict[int, int] | None = None,
        misbehave: Misbehaviour | None = None,
    ) -> None:
        self.radios = {radio.radio_id: radio for radio in radios}
        self.own_id = own_id
        self.subnet = subnet
        self.mode = mode
        self.host = host
        self.gateway_ports = dict(gateway_ports or {})
        self.misbehave = misbehave or Misbehaviour()
        self.sessions = 0
        """HRNP sessions accepted (a test waits for the first)."""
        self.sent_to_gateway: list[ServiceMessage] = []
        self.from_gateway: list[ServiceMessage] = []
        self.device_path = ""
        self.rcp_port = 0
        self.service_ports: dict[int, int] = {}
        self._numbers = itertools.count(1)
        self._decoder = HrnpDecoder()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reporting: dict[int, asyncio.Task[None]] = {}
        self._master = -1
        self._slave = -1
        self._rcp: asyncio.DatagramTransport | None = None
        self._rcp_peer: tuple[str, int] | None = None
        self._udp: dict[int, asyncio.DatagramTransport] = {}
        self._server: asyncio.Server | None = None
        self._stream: asyncio.Transport | None = None
        self.tcp_port = 0
        self._session_up = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> HyteraRadio:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.mode == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.device_path = os.ttyname(self._slave)
            loop.add_reader(self._master, self._on_pty_readable)
            return
        if self.mode == "tcp":
            self._server = await loop.create_server(lambda: _Stream(self), self.host, 0)
            self.tcp_port = int(self._server.sockets[0].getsockname()[1])
            return
        rcp_transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._on_rcp_datagram), local_addr=(self.host, 0)
        )
        self._rcp = rcp_transport
        self.rcp_port = int(rcp_transport.get_extra_info("sockname")[1])
        for service in _SERVICES:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self._on_service_datagram), local_addr=(self.host, 0)
            )
            self._udp[service] = transport
            self.service_ports[service] = int(transport.get_extra_info("sockname")[1])

    async def stop(self) -> None:
        tasks = list(self._tasks) + list(self._reporting.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._reporting.clear()
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
        for transport in [self._rcp, *self._udp.values(), self._stream]:
            if transport is not None:
                transport.close()
        self._stream = None
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        self._rcp = None
        self._udp.clear()

    def _spawn(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("hytera stub task failed: %s", task.exception())

    # -- the wire ----------------------------------------------------------------------------

    def _write_hrnp(self, data: bytes) -> None:
        if self.misbehave.silent:
            return
        if self.misbehave.garbage:
            data = b"\x7e\x00garbage\x7e" + data
        if self._master >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._master, data)
        elif self._stream is not None:
            self._stream.write(data)
        elif self._rcp is not None and self._rcp_peer is not None:
            self._rcp.sendto(data, self._rcp_peer)

    def _send_frame(self, frame: HrnpFrame) -> None:
        data = encode_frame(frame)
        if self.misbehave.bad_checksums:
            broken = data[:10] + bytes((data[10] ^ 0xFF, data[11])) + data[12:]
            self._write_hrnp(broken)
        self._write_hrnp(data)
        if self.misbehave.duplicate_packets and frame.opcode == HrnpOpcode.DATA:
            self._write_hrnp(data)

    def send(self, message: ServiceMessage) -> None:
        """Send one service message to the gateway on the path of this mode."""
        if self.misbehave.silent:
            return
        self.sent_to_gateway.append(message)
        env = encode_service(message)
        data = encode_envelope(env)
        transport = self._udp.get(env.service)
        if transport is not None:
            port = self.gateway_ports.get(env.service)
            if port is None:
                return
            if self.misbehave.bad_checksums:
                transport.sendto(data[:-2] + bytes((data[-2] ^ 0x55, data[-1])), (self.host, port))
            transport.sendto(data, (self.host, port))
            return
        number = next(self._numbers) & 0xFFFF
        self._send_frame(HrnpFrame(HrnpOpcode.DATA, RADIO_ADDRESS, PC_ADDRESS, number, data))

    def _on_pty_readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, OSError):
            return
        self._feed_hrnp(data)

    def attach_stream(self, transport: asyncio.Transport) -> None:
        """A TCP client connected: it replaces any earlier one (one HRNP session at a time)."""
        if self._stream is not None:
            self._stream.close()
        self._stream = transport
        self._decoder = HrnpDecoder()

    def feed_stream(self, data: bytes) -> None:
        self._feed_hrnp(data)

    def _on_rcp_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self._rcp_peer = addr
        self._feed_hrnp(data)

    def _feed_hrnp(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, HrnpRejected):
                log.info("hytera stub: dropped %s bytes (%s)", len(item.raw), item.reason)
                continue
            if self.misbehave.silent:
                continue
            if item.opcode == HrnpOpcode.CONNECT:
                self.sessions += 1
                self._send_frame(HrnpFrame(HrnpOpcode.ACCEPT, RADIO_ADDRESS, item.src))
            elif item.opcode == HrnpOpcode.CLOSE:
                self._send_frame(HrnpFrame(HrnpOpcode.CLOSE_ACK, RADIO_ADDRESS, item.src))
            elif item.opcode == HrnpOpcode.DATA:
                ack = HrnpFrame(HrnpOpcode.DATA_ACK, RADIO_ADDRESS, item.src, item.packet_number)
                self._send_frame(ack)
                self._on_hdap(item.data)

    def _on_service_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.misbehave.silent:
            self._on_hdap(data)

    # -- the radios --------------------------------------------------------------------------

    def _on_hdap(self, data: bytes) -> None:
        try:
            message = decode_service(decode_envelope(data))
        except HyteraError as exc:
            log.info("hytera stub: bad HDAP from the gateway: %s", exc)
            return
        self.from_gateway.append(message)
        if isinstance(message, RcpMessage):
            self._on_rcp(message)
        elif isinstance(message, TmpMessage):
            radio = self.radios.get(radio_id(message.dest))
            if radio is not None:
                self._spawn(self._on_text(radio, message))
        elif isinstance(message, TmpAck):
            radio = self.radios.get(radio_id(message.src or 0))
            if radio is not None:
                radio.acks_received += 1
        elif isinstance(message, LpRequest):
            self._on_lp_request(message)

    def _on_rcp(self, message: RcpMessage) -> None:
        if message.opcode == RcpOpcode.BROADCAST_MESSAGE_CONFIG:
            self.send(RcpMessage(RcpOpcode.BROADCAST_MESSAGE_CONFIG_REPLY, result=0))
        elif message.opcode == RcpOpcode.RADIO_ID_REQUEST:
            if message.target == 0:
                self.send(RcpMessage(RcpOpcode.RADIO_ID_REPLY, result=0, target=0,
                                     value=self.own_id))  # fmt: skip
            else:
                ip = radio_ip(self.own_id, self.subnet)
                self.send(RcpMessage(RcpOpcode.RADIO_ID_REPLY, result=0, target=1, value=ip))
            if not self._session_up:
                self._session_up = True
                for radio in self.radios.values():
                    if radio.register:
                        self.register(radio.radio_id)

    def register(self, radio: int) -> None:
        """The radio ``radio`` comes online (RRS registration)."""
        self.send(RrsMessage(RrsOpcode.REGISTRATION, radio_ip(radio, self.subnet)))

    def deregister(self, radio: int) -> None:
        """The radio ``radio`` is switched off (RRS de-registration)."""
        self.send(RrsMessage(RrsOpcode.DEREGISTRATION, radio_ip(radio, self.subnet)))

    def _fix(self, radio: AirRadio) -> GpsFix:
        lat, lon, heading = radio.position()
        now = datetime.now(UTC)
        block = GpsFix.build(
            lat, lon, time=now.strftime("%H%M%S"), date=now.strftime("%d%m%y"),
            speed_knots=2.5, direction=heading,
        )  # fmt: skip
        return GpsFix.decode(block)

    def _on_lp_request(self, request: LpRequest) -> None:
        radio = self.radios.get(radio_id(request.radio))
        if radio is None:
            return
        ip = request.radio
        if request.opcode == LpOpcode.IMMEDIATE_REQUEST:
            self.send(LpLocation(LpOpcode.IMMEDIATE_ANSWER, request.request_id, ip,
                                 self._fix(radio)))  # fmt: skip
        elif request.opcode in (LpOpcode.TRIGGERED_REQUEST, LpOpcode.CONDITION_REQUEST):
            answer = (
                LpOpcode.TRIGGERED_ANSWER
                if request.opcode == LpOpcode.TRIGGERED_REQUEST
                else LpOpcode.CONDITION_ANSWER
            )
            trigger = request.trigger if answer == LpOpcode.CONDITION_ANSWER else None
            self.send(LpAnswer(answer, request.request_id, ip, 0, trigger))
            interval = radio.report_interval_s or float(interval_seconds(request.interval) or 60)
            old = self._reporting.pop(radio.radio_id, None)
            if old is not None:
                old.cancel()
            report = (
                LpOpcode.TRIGGERED_REPORT
                if request.opcode == LpOpcode.TRIGGERED_REQUEST
                else LpOpcode.CONDITION_REPORT
            )
            self._reporting[radio.radio_id] = asyncio.get_running_loop().create_task(
                self._report(radio, request.request_id, report, interval)
            )
        elif request.opcode == LpOpcode.EMERGENCY_STOP_REQUEST:
            self.send(LpAnswer(LpOpcode.EMERGENCY_STOP_ANSWER, request.request_id, ip, 0))

    async def _report(self, radio: AirRadio, request_id: int, opcode: int, interval: float) -> None:
        ip = radio_ip(radio.radio_id, self.subnet)
        while True:
            self.send(LpLocation(opcode, request_id, ip, self._fix(radio),
                                 time_remaining="00000000"))  # fmt: skip
            await asyncio.sleep(interval)

    async def _on_text(self, radio: AirRadio, message: TmpMessage) -> None:
        first = message.request_id not in radio.seen_ids
        radio.seen_ids.add(message.request_id)
        if first:
            radio.received.append(message.text)
        result = radio.ack_sequence.pop(0) if radio.ack_sequence else radio.ack_result
        if result is not None:
            await asyncio.sleep(radio.ack_delay_s)
            # The ack repeats the message's destination and source (notes sections 3 and 5).
            self.send(TmpAck(message.request_id, message.dest, message.src, result))
        if first and radio.reply is not None and result in (0, None):
            await asyncio.sleep(radio.reply_delay_s)
            request_id = message.request_id if radio.reply_names_message else 1
            self.send(TmpMessage(request_id, message.src, message.dest, radio.reply))

    def text_from(self, radio: int, text: str, request_id: int = 1) -> None:
        """The person on ``radio`` sends ``text`` to the gateway's radio."""
        src = radio_ip(radio, self.subnet)
        self.send(TmpMessage(request_id, radio_ip(self.own_id, self.subnet), src, text))

    def emergency(self, radio: int, on: bool = True) -> None:
        """``radio``'s emergency button: an LP emergency report (or its cancel) with its fix."""
        air = self.radios.get(radio)
        fix = self._fix(air) if air is not None else GpsFix.decode(GpsFix.build(0, 0))
        kind = EMERGENCY_TYPE if on else EMERGENCY_CANCEL_TYPE
        self.send(LpLocation(LpOpcode.EMERGENCY_REPORT, None, radio_ip(radio, self.subnet), fix,
                             emergency_type=kind))  # fmt: skip


class _Stream(asyncio.Protocol):
    """The HRNP stream of one TCP client (a serial server's view of the radio)."""

    def __init__(self, radio: HyteraRadio) -> None:
        self._radio = radio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._radio.attach_stream(transport)

    def data_received(self, data: bytes) -> None:
        self._radio.feed_stream(data)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: object) -> None:
        self._on = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        assert callable(self._on)
        self._on(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("hytera stub udp: %s", exc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_stubs.hytera_radio",
        description="A simulated Hytera radio on a pty (serial HRNP) or loopback UDP.",
    )
    parser.add_argument("--mode", choices=("pty", "udp", "tcp"), default="pty")
    parser.add_argument("--own-id", type=int, default=1)
    parser.add_argument("--radio", type=int, action="append", default=[],
                        help="a radio on the air (repeatable); default 1001")  # fmt: skip
    parser.add_argument("--report-interval", type=float, default=None, metavar="S")
    parser.add_argument("--ack-result", type=int, default=0, help="TMP ack result; -1: none")
    parser.add_argument("--reply", default="收到", help="the person's reply; '' for none")
    parser.add_argument("--gateway-ports", default="3002,3003,3004", metavar="RRS,LP,TMP",
                        help="udp mode: the gateway's service ports")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the radio until interrupted; prints where the gateway finds it."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        ports = [int(p) for p in args.gateway_ports.split(",")]
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    except ValueError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if len(ports) != 3:
        print(f"{parser.prog}: error: --gateway-ports takes three ports", file=sys.stderr)
        return 2
    radios = [
        AirRadio(
            radio,
            report_interval_s=args.report_interval,
            ack_result=None if args.ack_result < 0 else args.ack_result,
            reply=args.reply or None,
        )
        for radio in (args.radio or [1001])
    ]
    stub = HyteraRadio(
        radios, own_id=args.own_id, mode=args.mode,
        gateway_ports=dict(zip(_SERVICES, ports, strict=True)),
    )  # fmt: skip

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with stub:
            if stub.mode == "pty":
                print(f"hytera-radio {stub.own_id}: serial HRNP on {stub.device_path}", flush=True)
            elif stub.mode == "tcp":
                print(f"hytera-radio {stub.own_id}: tcp://{stub.host}:{stub.tcp_port}", flush=True)
            else:
                ports = ", ".join(f"{Service(s).name} {p}" for s, p in stub.service_ports.items())
                print(f"hytera-radio {stub.own_id}: udp://{stub.host}:{stub.rcp_port} ({ports})",
                      flush=True)  # fmt: skip
            await stop.wait()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
