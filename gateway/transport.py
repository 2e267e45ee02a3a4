"""Transports: one URL-keyed factory, so drivers never know serial from TCP from UDP.

=====================  =========================================================
URL                    what it opens
=====================  =========================================================
``/dev/ttyUSB0``       a serial device (pyserial-asyncio-fast); a pty works too
``tcp://host:port``    a TCP client (a TNC's KISS port, a GPS on a network)
``udp://host:port``    a UDP "connection" to one peer (DMR over IP)
``listen://host:port`` a TCP server for devices that dial in (trackers)
``udp-listen://h:p``   a UDP server; each peer address is its own connection
=====================  =========================================================

Every :class:`Connection` reads in chunks into bounded buffers: a peer that
sends faster than we parse is slowed by TCP flow control or, for serial and UDP,
loses data at the kernel, never our memory.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import serial_asyncio_fast

from gateway.config import SerialSettings
from gateway.errors import LinkError

log = logging.getLogger(__name__)

READ_CHUNK = 65536
UDP_QUEUE_MAX = 256
"""Datagrams waiting per UDP connection before new ones are dropped (and counted)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: str  # serial | tcp | udp | listen | udp-listen
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_server(self) -> bool:
        return self.kind in {"listen", "udp-listen"}


def parse_url(url: str) -> Endpoint:
    """Split a link URL into its kind and address; raise ``ValueError`` if malformed."""
    if url.startswith("/"):
        return Endpoint("serial", path=url)
    parts = urlsplit(url)
    if parts.scheme not in {"tcp", "udp", "listen", "udp-listen"}:
        raise ValueError(f"unsupported link URL {url!r}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"link URL {url!r} needs host:port")
    return Endpoint(parts.scheme, host=parts.hostname, port=parts.port)


class Connection(abc.ABC):
    """A byte stream to one peer, whatever carries it."""

    peer: str

    @abc.abstractmethod
    async def read(self) -> bytes:
        """The next chunk (a datagram for UDP); raises :class:`LinkError` when closed."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Write and wait until the transport buffer has drained."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class StreamConnection(Connection):
    def __init__(
        self, link: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        self._link = link
        self._reader = reader
        self._writer = writer
        self.peer = peer

    async def read(self) -> bytes:
        try:
            data = await self._reader.read(READ_CHUNK)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise LinkError(self._link, f"read failed: {exc}") from exc
        except Exception as exc:  # serial.SerialException is not an OSError
            raise LinkError(self._link, f"read failed: {exc}") from exc
        if not data:
            raise LinkError(self._link, "closed by peer")
        return data

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise LinkError(self._link, "write on a closed link")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise LinkError(self._link, f"write failed: {exc}") from exc

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)


class _DatagramInbox(asyncio.DatagramProtocol):
    """Bounded per-peer queues of datagrams for UDP links."""

    def __init__(self, on_new_peer: Callable[[tuple[str, int]], None] | None = None) -> None:
        self.queues: dict[tuple[str, int], asyncio.Queue[bytes]] = {}
        self.dropped = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_new_peer = on_new_peer
        self.default_peer: tuple[str, int] | None = None

    def queue_for(self, addr: tuple[str, int]) -> asyncio.Queue[bytes]:
        queue = self.queues.get(addr)
        if queue is None:
            queue = self.queues[addr] = asyncio.Queue(UDP_QUEUE_MAX)
        return queue

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        if self.default_peer is not None:
            peer = self.default_peer
        is_new = peer not in self.queues
        queue = self.queue_for(peer)
        try:
            queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1
        if is_new and self._on_new_peer is not None:
            self._on_new_peer(peer)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class DatagramConnection(Connection):
    def __init__(
        self,
        link: str,
        transport: asyncio.DatagramTransport,
        inbox: _DatagramInbox,
        peer_addr: tuple[str, int],
        *,
        owns_transport: bool,
    ) -> None:
        self._link = link
        self._transport = transport
        self._inbox = inbox
        self._addr = peer_addr
        self._queue = inbox.queue_for(peer_addr)
        self._owns = owns_transport
        # A connected client socket has its peer fixed; a server socket names it per datagram.
        self._send_addr = None if owns_transport else peer_addr
        self.peer = f"{peer_addr[0]}:{peer_addr[1]}"

    async def read(self) -> bytes:
        get = asyncio.ensure_future(self._queue.get())
        waiters: set[asyncio.Future[Any]] = {get, self._inbox.closed}
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():
                get.cancel()
        if get in done:
            return get.result()
        raise LinkError(self._link, "udp socket closed")

    async def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise LinkError(self._link, "write on a closed link")
        self._transport.sendto(data, self._send_addr)

    async def close(self) -> None:
        self._inbox.queues.pop(self._addr, None)
        if self._owns:
            self._transport.close()


async def open_connection(
    link: str, endpoint: Endpoint, serial: SerialSettings, *, timeout_s: float = 10.0
) -> Connection:
    """Open a client connection (serial, tcp, udp); raise :class:`LinkError` on failure."""
    try:
        async with asyncio.timeout(timeout_s):
            if endpoint.kind == "serial":
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=endpoint.path,
                    baudrate=serial.baudrate,
                    bytesize=serial.bytesize,
                    parity=serial.parity,
                    stopbits=serial.stopbits,
                    rtscts=serial.rtscts,
                    xonxoff=serial.xonxoff,
                    exclusive=True,
                )
                return StreamConnection(link, reader, writer, endpoint.path)
            if endpoint.kind == "tcp":
                reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return StreamConnection(link, reader, writer, f"{endpoint.host}:{endpoint.port}")
            if endpoint.kind == "udp":
                loop = asyncio.get_running_loop()
                inbox = _DatagramInbox()
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: inbox, remote_addr=(endpoint.host, endpoint.port)
                )
                peer = (endpoint.host, endpoint.port)
                inbox.default_peer = peer
                return DatagramConnection(link, transport, inbox, peer, owns_transport=True)
    except TimeoutError as exc:
        raise LinkError(link, f"open timed out after {timeout_s} s") from exc
    except LinkError:
        raise
    except Exception as exc:  # OSError, serial.SerialException, ValueError from pyserial
        raise LinkError(link, f"open failed: {exc}") from exc
    raise LinkError(link, f"{endpoint.kind} is a server endpoint, not a client")


ConnectionHandler = Callable[[Connection], Awaitable[None]]


class Server:
    """A listening endpoint; each accepted peer runs ``handler`` as an owned task."""

    def __init__(self, link: str, handler: ConnectionHandler, *, max_connections: int) -> None:
        self._link = link
        self._handler = handler
        self._max = max_connections
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closers: list[Callable[[], None]] = []

    @property
    def connections(self) -> int:
        return len(self._tasks)

    def _spawn(self, conn: Connection) -> None:
        task = asyncio.create_task(self._serve_one(conn), name=f"{self._link}:{conn.peer}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_one(self, conn: Connection) -> None:
        try:
            await self._handler(conn)
        except LinkError as exc:
            log.info("%s: peer %s gone: %s", self._link, conn.peer, exc.reason)
        except Exception:
            log.exception("%s: session with %s failed", self._link, conn.peer)
        finally:
            await conn.close()

    async def start(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        if endpoint.kind == "listen":

            async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                peername = writer.get_extra_info("peername")
                peer = f"{peername[0]}:{peername[1]}" if peername else "?"
                if len(self._tasks) >= self._max:
                    self.refused += 1
                    log.warning("%s: refusing %s: %d connections open", self._link, peer, self._max)
                    writer.close()
                    return
                self._spawn(StreamConnection(self._link, reader, writer, peer))

            server = await asyncio.start_server(accept, endpoint.host, endpoint.port)
            self._closers.append(server.close)
        elif endpoint.kind == "udp-listen":
            transport_box: list[asyncio.DatagramTransport] = []

            def new_peer(addr: tuple[str, int]) -> None:
                if len(self._tasks) >= self._max:
                    self.refused += 1
                    inbox.queues.pop(addr, None)
                    return
                self._spawn(
                    DatagramConnection(
                        self._link, transport_box[0], inbox, addr, owns_transport=False
                    )
                )

            inbox = _DatagramInbox(new_peer)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: inbox, local_addr=(endpoint.host, endpoint.port)
            )
            transport_box.append(transport)
            self._closers.append(transport.close)
        else:
            raise LinkError(self._link, f"{endpoint.kind} is not a server endpoint")

    async def close(self) -> None:
        for closer in self._closers:
            closer()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.closed.done():
            self.closed.set_result(None)
