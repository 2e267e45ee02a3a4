"""A simulated radio channel: every KISS frame one station sends, every other station hears.

The gateway connects to it like to a TNC's KISS TCP port (``tcp://host:port``); the
stations are in-process radios (``firmware_stubs.aprs_radio.AprsRadio``) attached with
:meth:`RadioNet.attach`, or other KISS TCP clients. Frames are delivered whole, in the
order they were sent; with ``airtime_s`` set, the channel carries one frame at a time
and each holds it for its airtime, as a half-duplex 1200 baud channel would.

Used by tests, benchmarks and ``fieldlink demo`` to put many walkie-talkies on one link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

from protocols.kiss import KissDecoder, KissFrame, encode_frame

log = logging.getLogger(__name__)

QUEUE_FRAMES = 1024
"""Frames waiting for one station before the oldest are dropped (a station that stalls)."""


class _Port:
    """One station's side of the channel: frames for it queue here."""

    def __init__(self, net: RadioNet, name: str) -> None:
        self.net = net
        self.name = name
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_FRAMES)
        self.decoder = KissDecoder()
        self.closed = False

    def deliver(self, kiss_bytes: bytes) -> None:
        if self.inbox.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.inbox.get_nowait()
            self.net.dropped += 1
        self.inbox.put_nowait(kiss_bytes)

    async def read(self) -> bytes:
        if self.closed:
            raise ConnectionError(f"{self.name}: detached")
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            # Only data frames go on air; TNC parameter commands stay with the TNC.
            if isinstance(item, KissFrame) and item.command == 0:
                await self.net.send(self, item.payload)


class RadioNet:
    """One shared channel. Run :meth:`serve` (KISS TCP for the gateway) as a task."""

    def __init__(self, *, airtime_s: Callable[[bytes], float] | None = None) -> None:
        self._ports: list[_Port] = []
        self._airtime_s = airtime_s
        self._air = asyncio.Lock()
        self.frames = 0
        self.dropped = 0
        self.log: list[tuple[float, str, bytes]] = []
        """(time.monotonic(), sender, AX.25 frame) of everything sent, for tests and benchmarks."""

    def attach(self, name: str, *, first: bool = False) -> _Port:
        """A station's in-memory KISS stream (``read``/``write``) onto the channel.

        ``first`` puts the station at the head of the delivery order: a KISS TCP client
        (the gateway) hears each frame before the in-process radios start decoding it,
        so the radios' own work does not show up as the gateway's latency.
        """
        port = _Port(self, name)
        if first:
            self._ports.insert(0, port)
        else:
            self._ports.append(port)
        return port

    def detach(self, port: _Port) -> None:
        port.closed = True
        if port in self._ports:
            self._ports.remove(port)
        port.deliver(b"")  # wake a reader

    async def send(self, sender: _Port, ax25_frame: bytes) -> None:
        if self._airtime_s is not None:
            async with self._air:
                await asyncio.sleep(self._airtime_s(ax25_frame))
                self._broadcast(sender, ax25_frame)
        else:
            self._broadcast(sender, ax25_frame)

    def _broadcast(self, sender: _Port, ax25_frame: bytes) -> None:
        self.frames += 1
        if len(self.log) < 100_000:
            self.log.append((time.monotonic(), sender.name, ax25_frame))
        wire = encode_frame(ax25_frame)
        for port in self._ports:
            if port is not sender and not port.closed:
                port.deliver(wire)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        on_ready: Callable[[str, int], None] | None = None,
    ) -> None:
        """Accept KISS TCP clients (the gateway) until cancelled."""
        sessions: set[asyncio.Task[None]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            sessions.add(task)
            station = self.attach(f"tcp:{writer.get_extra_info('peername')}", first=True)
            sock = writer.get_extra_info("socket")
            if sock is not None:  # frames are small and latency matters: no Nagle
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            async def pump_out() -> None:
                while True:
                    data = await station.read()
                    if not data:
                        return
                    writer.write(data)
                    await writer.drain()

            out = asyncio.create_task(pump_out())
            try:
                while data := await reader.read(65536):
                    await station.write(data)
            except ConnectionError:
                pass
            except asyncio.CancelledError:
                # serve() is stopping: end quietly. Left to propagate, asyncio's stream server
                # asks the cancelled task for its exception and logs the CancelledError.
                pass
            finally:
                self.detach(station)
                out.cancel()
                await asyncio.gather(out, return_exceptions=True)
                writer.close()
                sessions.discard(task)

        server = await asyncio.start_server(accept, host, port)
        try:
            bound = server.sockets[0].getsockname()
            if on_ready is not None:
                on_ready(str(bound[0]), int(bound[1]))
            await asyncio.Future()  # until cancelled
        finally:
            server.close()
            for task in list(sessions):
                task.cancel()
            if sessions:
                await asyncio.gather(*sessions, return_exceptions=True)
