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
loses data at the kernel, never our memory. Every connection counts the bytes it
moved and when it last received any (``rx_bytes``, ``tx_bytes``, ``last_rx``), so
the sessions above it (:mod:`gateway.sessions`) need no wrapper on the hot path.

A :class:`Server` only accepts: it caps the peers it serves (a TCP peer over the
cap is closed at once, a UDP datagram from a new peer over the cap is dropped
before anything is allocated for it) and runs a handler per peer. Who the peer
is, idle timeouts and allow lists are the business of :mod:`gateway.sessions`.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import cast

import serial_asyncio_fast

from gateway.config import SerialSettings
from gateway.errors import LinkError
from gateway.logs import RateLimitedLog
from gateway.urls import Endpoint, parse_link_url

log = logging.getLogger(__name__)

READ_CHUNK = 65536
UDP_QUEUE_MAX = 256
"""Datagrams waiting per UDP connection before new ones are dropped (and counted)."""
LISTEN_BACKLOG = 1024
"""Pending TCP connections the kernel queues for a ``listen://`` link (capped by somaxconn):
a city's trackers all redialling after an outage must not wait out SYN retries."""
UDP_SERVER_RCVBUF_BYTES = 1 << 20
"""Receive buffer asked for on a ``udp-listen://`` socket (the kernel caps it at rmem_max):
many peers share one socket, and a burst from all of them must not be lost at the kernel."""
REFUSAL_LOG_INTERVAL_S = 10.0
"""At most one log line per server in this interval for peers refused over the cap."""


def parse_url(url: str) -> Endpoint:
    """Split a link URL into its kind and address; ``ValueError`` if malformed."""
    return parse_link_url(url)


class Connection(abc.ABC):
    """A byte stream to one peer, whatever carries it.

    ``rx_bytes`` and ``tx_bytes`` count what went through it, ``last_rx`` is the
    :func:`time.monotonic` time bytes last arrived (the opening time before any did).
    """

    __slots__ = ()

    peer: str
    rx_bytes: int
    tx_bytes: int
    last_rx: float

    @abc.abstractmethod
    async def read(self) -> bytes:
        """The next chunk (a datagram for UDP); raises :class:`LinkError` when closed."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Write and wait until the transport buffer has drained."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class StreamConnection(Connection):
    __slots__ = ("_link", "_reader", "_writer", "last_rx", "peer", "rx_bytes", "tx_bytes")

    def __init__(
        self, link: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        self._link = link
        self._reader = reader
        self._writer = writer
        self.peer = peer
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_rx = time.monotonic()

    async def read(self) -> bytes:
        try:
            data = await self._reader.read(READ_CHUNK)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise LinkError(self._link, f"read failed: {exc}") from exc
        except Exception as exc:  # serial.SerialException is not an OSError
            raise LinkError(self._link, f"read failed: {exc}") from exc
        if not data:
            raise LinkError(self._link, "closed by peer")
        self.rx_bytes += len(data)
        self.last_rx = time.monotonic()
        return data

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise LinkError(self._link, "write on a closed link")
        try:
            self._writer.write(data)
            self.tx_bytes += len(data)
            await self._writer.drain()
        except OSError as exc:
            raise LinkError(self._link, f"write failed: {exc}") from exc

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)


PeerAddress = tuple[str, int]


class _DatagramInbox(asyncio.DatagramProtocol):
    """Routes each datagram to its peer's :class:`DatagramConnection`.

    A datagram from a peer with no connection goes to ``on_new_peer`` (a server's), which
    returns the new connection, or ``None`` when it refuses the peer: then nothing at all is
    kept for it. ``dropped`` counts datagrams lost because their peer's queue was full.
    """

    def __init__(
        self, on_new_peer: Callable[[PeerAddress], DatagramConnection | None] | None = None
    ) -> None:
        self.peers: dict[PeerAddress, DatagramConnection] = {}
        self.dropped = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_new_peer = on_new_peer
        self.default_peer: PeerAddress | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        peer = self.default_peer
        if peer is None:
            peer = (str(addr[0]), int(addr[1]))
        conn = self.peers.get(peer)
        if conn is None:
            if self._on_new_peer is None:
                self.dropped += 1  # a client's connection already closed
                return
            conn = self._on_new_peer(peer)
            if conn is None:
                return  # refused: counted by the server
        if not conn.feed(data):
            self.dropped += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        for conn in list(self.peers.values()):
            conn.lost()
        if not self.closed.done():
            self.closed.set_result(None)


class DatagramConnection(Connection):
    """One UDP peer: its datagrams wait in a short list; a reader waits on one future.

    An idle peer costs this object, its empty list and the task that reads it: no queue
    object and no task per read.
    """

    __slots__ = (
        "_addr",
        "_closed",
        "_inbox",
        "_link",
        "_owns",
        "_pending",
        "_send_addr",
        "_transport",
        "_waiter",
        "last_rx",
        "peer",
        "rx_bytes",
        "tx_bytes",
    )

    def __init__(
        self,
        link: str,
        transport: asyncio.DatagramTransport,
        inbox: _DatagramInbox,
        peer_addr: PeerAddress,
        *,
        owns_transport: bool,
    ) -> None:
        self._link = link
        self._transport = transport
        self._inbox = inbox
        self._addr = peer_addr
        self._pending: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._owns = owns_transport
        # A connected client socket has its peer fixed; a server socket names it per datagram.
        self._send_addr = None if owns_transport else peer_addr
        self.peer = f"{peer_addr[0]}:{peer_addr[1]}"
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_rx = time.monotonic()
        inbox.peers[peer_addr] = self

    def feed(self, data: bytes) -> bool:
        """A datagram arrived; False when the queue is full and it was dropped."""
        if len(self._pending) >= UDP_QUEUE_MAX:
            return False
        self._pending.append(data)
        self.rx_bytes += len(data)
        self.last_rx = time.monotonic()
        self._wake()
        return True

    def lost(self) -> None:
        """The socket under this connection closed."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        while not self._pending:
            if self._closed:
                raise LinkError(self._link, "udp socket closed")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._pending.pop(0)

    async def write(self, data: bytes) -> None:
        if self._closed or self._transport.is_closing():
            raise LinkError(self._link, "write on a closed link")
        self._transport.sendto(data, self._send_addr)
        self.tx_bytes += len(data)

    async def close(self) -> None:
        if self._inbox.peers.get(self._addr) is self:
            del self._inbox.peers[self._addr]
        self._pending.clear()
        self.lost()
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
    """A listening endpoint; each accepted peer runs ``handler`` as an owned task.

    At most ``max_connections`` peers are served at once, for ``listen://`` and
    ``udp-listen://`` alike. A TCP peer over the cap is closed at once; a datagram from a
    new UDP peer over the cap is dropped before a connection or queue exists for it. Each
    refusal is counted in :attr:`refused`, reported to ``on_refused(peer)`` and logged at
    most once per :data:`REFUSAL_LOG_INTERVAL_S`.
    """

    def __init__(
        self,
        link: str,
        handler: ConnectionHandler,
        *,
        max_connections: int,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._link = link
        self._handler = handler
        self._max = max_connections
        self._on_refused = on_refused
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closers: list[Callable[[], None]] = []
        self._inbox: _DatagramInbox | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._refusal_log = RateLimitedLog(log, REFUSAL_LOG_INTERVAL_S)

    @property
    def connections(self) -> int:
        return len(self._tasks)

    @property
    def dropped(self) -> int:
        """UDP datagrams dropped because their peer's queue was full."""
        return 0 if self._inbox is None else self._inbox.dropped

    def _has_room(self, peer: PeerAddress | str) -> bool:
        if len(self._tasks) < self._max:
            return True
        self.refused += 1
        name = peer if isinstance(peer, str) else f"{peer[0]}:{peer[1]}"
        self._refusal_log.warning(
            "%s: refusing %s: %d connections open (max_connections)", self._link, name, self._max
        )
        if self._on_refused is not None:
            self._on_refused(name)
        return False

    def _spawn(self, conn: Connection) -> None:
        task = asyncio.create_task(self._serve_one(conn), name=f"{self._link}:{conn.peer}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_one(self, conn: Connection) -> None:
        try:
            await self._handler(conn)
        except LinkError as exc:
            log.debug("%s: peer %s gone: %s", self._link, conn.peer, exc.reason)
        except Exception:
            log.exception("%s: session with %s failed", self._link, conn.peer)
        finally:
            await conn.close()

    async def start(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        if endpoint.kind == "listen":

            def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                # A plain function, not a coroutine: no task per accepted socket, and a
                # refused one is closed before this returns.
                peername = writer.get_extra_info("peername")
                peer = f"{peername[0]}:{peername[1]}" if peername else "?"
                if not self._has_room(peer):
                    writer.close()
                    return
                self._spawn(StreamConnection(self._link, reader, writer, peer))

            server = await asyncio.start_server(
                accept, endpoint.host, endpoint.port, backlog=LISTEN_BACKLOG
            )
            self._closers.append(server.close)
        elif endpoint.kind == "udp-listen":
            transport_box: list[asyncio.DatagramTransport] = []

            def new_peer(addr: PeerAddress) -> DatagramConnection | None:
                if not transport_box or not self._has_room(addr):
                    return None
                conn = DatagramConnection(
                    self._link, transport_box[0], inbox, addr, owns_transport=False
                )
                self._spawn(conn)
                return conn

            inbox = self._inbox = _DatagramInbox(new_peer)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: inbox, local_addr=(endpoint.host, endpoint.port)
            )
            sock = cast(socket.socket | None, transport.get_extra_info("socket"))
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SERVER_RCVBUF_BYTES)
            transport_box.append(transport)
            self._udp = transport
            self._closers.append(transport.close)
        else:
            raise LinkError(self._link, f"{endpoint.kind} is not a server endpoint")

    def send_datagram(self, data: bytes, addr: PeerAddress) -> None:
        """Send from a ``udp-listen://`` server's socket to ``addr``, which need not have a
        session (a protocol whose server speaks first: MOTOTRBO's ARS query after a restart);
        raises :class:`LinkError` on any other server or once closed."""
        udp = self._udp
        if udp is None or udp.is_closing():
            raise LinkError(self._link, "no open udp-listen socket to send from")
        try:
            udp.sendto(data, addr)
        except OSError as exc:
            raise LinkError(self._link, f"send to {addr[0]}:{addr[1]} failed: {exc}") from exc

    async def close(self) -> None:
        for closer in self._closers:
            closer()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.closed.done():
            self.closed.set_result(None)


class _SocketInbox(asyncio.DatagramProtocol):
    """What a :class:`DatagramSocket` received: a bounded list and one waiting reader."""

    def __init__(self, queue_max: int) -> None:
        self.pending: collections.deque[tuple[bytes, PeerAddress]] = collections.deque()
        self.queue_max = queue_max
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.dropped = 0
        self.rx_bytes = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if len(self.pending) >= self.queue_max:
            self.dropped += 1
            return
        self.pending.append((data, (str(addr[0]), int(addr[1]))))
        self.rx_bytes += len(data)
        self._wake()

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)  # an ICMP port unreachable from a peer: not fatal

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class DatagramSocket:
    """A bound UDP socket that talks with many peers, for a driver whose protocol uses more
    service ports than its link's URL names (MOTOTRBO's TMS and LRRP ports, Hytera's
    per-service ports): datagrams in with the address they came from, out to any address.

    What waits to be read is bounded (``queue_max`` datagrams; beyond it new ones are dropped
    and counted in :attr:`dropped`), so a flood costs the flood, never our memory.
    """

    __slots__ = ("_inbox", "_link", "_transport", "local", "tx_bytes")

    def __init__(
        self, link: str, transport: asyncio.DatagramTransport, inbox: _SocketInbox
    ) -> None:
        self._link = link
        self._transport = transport
        self._inbox = inbox
        sockname = transport.get_extra_info("sockname")
        self.local: PeerAddress = (str(sockname[0]), int(sockname[1])) if sockname else ("", 0)
        """The address the socket is bound to (the port the kernel chose for port 0)."""
        self.tx_bytes = 0

    @property
    def rx_bytes(self) -> int:
        return self._inbox.rx_bytes

    @property
    def dropped(self) -> int:
        """Datagrams dropped because too many waited to be read."""
        return self._inbox.dropped

    async def recv(self) -> tuple[bytes, PeerAddress]:
        """The next datagram and its source; raises :class:`LinkError` once closed."""
        inbox = self._inbox
        while not inbox.pending:
            if inbox.closed:
                raise LinkError(self._link, "udp socket closed")
            waiter = inbox.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                inbox.waiter = None
        return inbox.pending.popleft()

    def send(self, data: bytes, addr: PeerAddress) -> None:
        """Send one datagram to ``addr`` (UDP never blocks: the kernel drops what it cannot
        take); raises :class:`LinkError` once closed."""
        if self._inbox.closed or self._transport.is_closing():
            raise LinkError(self._link, "send on a closed udp socket")
        try:
            self._transport.sendto(data, addr)
        except OSError as exc:
            raise LinkError(self._link, f"send to {addr[0]}:{addr[1]} failed: {exc}") from exc
        self.tx_bytes += len(data)

    def close(self) -> None:
        self._transport.close()
        self._inbox.pending.clear()


async def open_datagram_socket(
    link: str, host: str, port: int, *, queue_max: int = UDP_QUEUE_MAX
) -> DatagramSocket:
    """Bind a :class:`DatagramSocket` to ``host:port`` (port 0: any free port); raises
    :class:`LinkError` when the address cannot be bound."""
    loop = asyncio.get_running_loop()
    inbox = _SocketInbox(queue_max)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: inbox, local_addr=(host, port))
    except OSError as exc:
        raise LinkError(link, f"cannot bind udp {host}:{port}: {exc}") from exc
    return DatagramSocket(link, transport, inbox)
