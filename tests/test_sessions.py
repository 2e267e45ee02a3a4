"""Dial-in sessions over real loopback sockets: caps, idle timeouts, the allow list, one session
per device, and the memory an idle peer costs.

The links are real :class:`~gateway.links.LinkSupervisor` instances on ``listen://`` and
``udp-listen://`` with a small line protocol driver: ``HELLO <address>`` binds the device,
anything else is recorded and echoed back as ``ECHO <line>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable, Set
from contextlib import asynccontextmanager
from types import MappingProxyType

import pytest

from firmware_stubs.nmea_gps import NmeaGps
from gateway.config import LinkConfig, UnitConfig
from gateway.devkit.broker import free_port
from gateway.devkit.sinks import CountingSink, RecordingSink
from gateway.drivers.base import Driver
from gateway.drivers.nmea.driver import NmeaDriver
from gateway.links import LinkSupervisor
from gateway.model import (
    DeviceRef,
    LinkCounters,
    LinkState,
    LinkStatus,
)
from gateway.sessions import Session, SessionRegistry, allowed_addresses
from gateway.transport import Connection
from tests.support import run_async

pytestmark = pytest.mark.timeout(60)

PEERS = 1000
CAP = 500
MAX_BYTES_PER_IDLE_PEER = 10 * 1024
FDS_NEEDED = 4 * PEERS + 200  # TCP: client and server ends; UDP: one socket per peer; slack


@pytest.fixture(autouse=True, scope="module")
def _enough_file_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= FDS_NEEDED:
        return
    if hard != resource.RLIM_INFINITY and hard < FDS_NEEDED:
        pytest.skip(f"needs {FDS_NEEDED} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))


class LineDriver(Driver):
    """``HELLO <address>`` binds; any other line is recorded and echoed."""

    def __init__(self, link: LinkConfig) -> None:
        super().__init__(link, CountingSink(), LinkCounters())
        self.lines: list[bytes] = []

    async def run(self, conn: Connection) -> None:
        await self._serve(conn, None)

    async def serve_session(self, conn: Connection, session: Session) -> None:
        await self._serve(conn, session)

    async def _serve(self, conn: Connection, session: Session | None) -> None:
        buffer = b""
        while True:
            buffer += await conn.read()
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if session is not None:
                    session.rx_frames += 1
                if line.startswith(b"HELLO ") and session is not None:
                    session.bind(line[6:].decode())
                    await conn.write(b"OK\n")
                else:
                    self.lines.append(line)
                    await conn.write(b"ECHO " + line + b"\n")


def link_config(url: str, **options: object) -> LinkConfig:
    return LinkConfig(name="trk", protocol="jt808", url=url, options=MappingProxyType(options))


@asynccontextmanager
async def running_link(
    kind: str, allowed: Set[str] | None = None, **options: object
) -> AsyncIterator[tuple[LinkSupervisor, LineDriver, int]]:
    port = free_port()
    cfg = link_config(f"{kind}://127.0.0.1:{port}", **options)
    driver = LineDriver(cfg)
    statuses: list[LinkStatus] = []
    supervisor = LinkSupervisor(cfg, driver, driver.counters, statuses.append, allowed=allowed)
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: bool(statuses) and statuses[-1].state is LinkState.UP, "link up")
        yield supervisor, driver, port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls counters the gateway keeps
            await asyncio.sleep(0.01)
    assert predicate(), what


def registry(supervisor: LinkSupervisor) -> SessionRegistry:
    assert supervisor.sessions is not None
    return supervisor.sessions


class TcpPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> TcpPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def say(self, line: str) -> bytes:
        self.writer.write(line.encode() + b"\n")
        return await asyncio.wait_for(self.reader.readline(), 5)

    async def closed_by_gateway(self) -> bool:
        return await asyncio.wait_for(self.reader.read(100), 5) == b""

    def close(self) -> None:
        self.writer.close()


class UdpPeer:
    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.port = port

    async def send(self, line: str) -> None:
        await asyncio.get_running_loop().sock_sendto(
            self.sock, line.encode() + b"\n", ("127.0.0.1", self.port)
        )

    async def say(self, line: str) -> bytes:
        await self.send(line)
        data, _ = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recvfrom(self.sock, 100), 5
        )
        return data


async def talk(peer: TcpPeer | UdpPeer, stop: asyncio.Event, said: list[bytes]) -> None:
    """A device that keeps talking while the others crowd in; every line must come back."""
    n = 0
    while not stop.is_set():
        reply = await peer.say(f"fix {n}")
        said.append(reply)
        assert reply == f"ECHO fix {n}\n".encode()
        n += 1
        await asyncio.sleep(0.01)


def traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def at_eof(sock: socket.socket) -> bool:
    """The gateway closed this connection (without consuming anything)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False


def test_a_thousand_idle_tcp_peers_against_a_cap_of_500() -> None:
    async def scenario() -> None:
        with contextlib.ExitStack() as cleanup:
            # Plain sockets, made before measuring: only the gateway's side is counted.
            socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(PEERS)]
            for sock in socks:
                cleanup.callback(sock.close)
                sock.setblocking(False)
            async with running_link("listen", None, max_connections=CAP, idle_timeout_s=60.0) as (
                supervisor,
                _driver,
                port,
            ):
                sessions = registry(supervisor)
                talker = await TcpPeer.connect(port)
                cleanup.callback(talker.close)
                assert await talker.say("HELLO 013800000001") == b"OK\n"
                stop, said = asyncio.Event(), list[bytes]()
                talking = asyncio.create_task(talk(talker, stop, said))
                loop = asyncio.get_running_loop()
                tracemalloc.start()
                try:
                    before = traced_bytes()
                    for i in range(0, PEERS, 100):
                        batch = socks[i : i + 100]
                        await asyncio.gather(
                            *(loop.sock_connect(s, ("127.0.0.1", port)) for s in batch)
                        )
                    await until(lambda: sessions.refused["cap"] == PEERS - (CAP - 1), "refusals")
                    await until(lambda: len(sessions) == CAP, "sessions")
                    after = traced_bytes()
                finally:
                    tracemalloc.stop()
                per_peer = (after - before) / (CAP - 1)
                print(f"tcp: {per_peer:.0f} bytes per idle connection")  # shown with -s
                assert per_peer < MAX_BYTES_PER_IDLE_PEER

                # The refused were closed at once (end of file); the admitted stay open.
                await until(lambda: sum(map(at_eof, socks)) == PEERS - CAP + 1, "refused closed")
                snap = sessions.snapshot()
                assert snap["open"] == CAP
                assert snap["refused"] == {"cap": PEERS - CAP + 1, "not_allowed": 0, "idle": 0}
                assert snap["devices"] == 1

                stop.set()
                await talking
                assert len(said) >= 2
                assert sessions.lookup("13800000001") is not None  # never replaced or closed
                cleanup.close()
                await until(lambda: len(sessions) == 0, "all sessions closed")
                assert sessions.closed == {"peer": CAP}

    run_async(scenario(), timeout_s=40)


def test_a_thousand_udp_peers_against_a_cap_of_500() -> None:
    def link_tasks() -> int:
        return sum(1 for t in asyncio.all_tasks() if t.get_name().startswith("trk:"))

    async def scenario() -> None:
        with contextlib.ExitStack() as cleanup:
            async with running_link(
                "udp-listen", None, max_connections=CAP, idle_timeout_s=60.0
            ) as (supervisor, driver, port):
                sessions = registry(supervisor)
                talker = UdpPeer(port)
                cleanup.callback(talker.sock.close)
                assert await talker.say("HELLO 013800000002") == b"OK\n"
                stop, said = asyncio.Event(), list[bytes]()
                talking = asyncio.create_task(talk(talker, stop, said))
                peers = [UdpPeer(port) for _ in range(PEERS)]
                for peer in peers:
                    cleanup.callback(peer.sock.close)
                link_tasks_before = link_tasks()
                tracemalloc.start()
                try:
                    before = traced_bytes()
                    for i in range(0, PEERS, 50):  # paced: the kernel drops a 1000-datagram burst
                        await asyncio.gather(*(p.send("hi") for p in peers[i : i + 50]))
                        await asyncio.sleep(0.002)
                    await until(lambda: sessions.refused["cap"] == PEERS - (CAP - 1), "refusals")
                    await until(lambda: driver.lines.count(b"hi") == CAP - 1, "datagrams read")
                    after = traced_bytes()
                finally:
                    tracemalloc.stop()
                per_peer = (after - before) / (CAP - 1)
                print(f"udp: {per_peer:.0f} bytes per idle peer")  # shown with -s
                assert per_peer < MAX_BYTES_PER_IDLE_PEER
                # One task per admitted peer (its driver's read loop, named after the link and
                # the peer), nothing more; other tasks of the test may come and go meanwhile.
                assert link_tasks() - link_tasks_before == CAP - 1
                assert len(sessions) == CAP

                # A refused peer that keeps sending is refused again: nothing is kept for it.
                refused_before = sessions.refused["cap"]
                for peer in peers[-10:]:
                    await peer.send("again")
                await until(lambda: sessions.refused["cap"] == refused_before + 10, "refused")
                assert len(sessions) == CAP

                stop.set()
                await talking
                assert len(said) >= 2
                assert sessions.lookup("13800000002") is not None

    run_async(scenario(), timeout_s=40)


def test_a_device_that_redials_replaces_its_session_and_lookup_reaches_it() -> None:
    async def scenario() -> None:
        async with running_link("listen", None) as (supervisor, _driver, _port):
            port = _port
            sessions = registry(supervisor)
            bound: list[str | None] = []
            unbound: list[tuple[str | None, str]] = []
            sessions.on_bind = lambda s: bound.append(s.address)
            sessions.on_unbind = lambda s, reason: unbound.append((s.address, reason))

            first = await TcpPeer.connect(port)
            assert await first.say("HELLO 013800138000") == b"OK\n"
            old = sessions.lookup("13800138000")
            assert old is not None
            await old.write(b"to the first\n")
            assert await first.reader.readline() == b"to the first\n"

            # The same terminal on a new connection, its number padded to 2019's 20 digits.
            second = await TcpPeer.connect(port)
            assert await second.say("HELLO 00000000013800138000") == b"OK\n"
            assert await first.closed_by_gateway()
            await until(lambda: sessions.closed.get("replaced") == 1, "old session closed")
            assert old.close_reason == "replaced"
            new = sessions.lookup("013800138000")
            assert new is not None
            assert new is not old
            await new.write(b"to the second\n")
            assert await second.reader.readline() == b"to the second\n"
            assert new.tx_frames == 1
            assert new.rx_frames == 1
            assert bound == ["13800138000", "13800138000"]
            assert unbound == []  # replaced: the device never went away

            second.close()
            await until(lambda: sessions.lookup("13800138000") is None, "unbound on close")
            assert unbound == [("13800138000", "peer")]
            assert sessions.snapshot()["devices"] == 0
            first.close()

    run_async(scenario())


def test_a_udp_peer_on_a_new_port_replaces_its_session() -> None:
    async def scenario() -> None:
        async with running_link("udp-listen", None) as (supervisor, _driver, port):
            sessions = registry(supervisor)
            first, second = UdpPeer(port), UdpPeer(port)
            assert await first.say("HELLO 013900000001") == b"OK\n"
            old = sessions.lookup("13900000001")
            assert await second.say("HELLO 013900000001") == b"OK\n"  # after a NAT rebinding
            await until(lambda: len(sessions) == 1, "old session closed")
            assert old is not None
            assert old.close_reason == "replaced"
            new = sessions.lookup("13900000001")
            assert new is not None
            await new.write(b"to the new port\n")
            data, _ = await asyncio.wait_for(
                asyncio.get_running_loop().sock_recvfrom(second.sock, 100), 5
            )
            assert data == b"to the new port\n"
            first.sock.close()
            second.sock.close()

    run_async(scenario())


def test_idle_peers_are_closed_after_the_timeout() -> None:
    async def scenario() -> None:
        async with (
            running_link("listen", None, idle_timeout_s=0.3) as (tcp_link, _, tcp_port),
            running_link("udp-listen", None, idle_timeout_s=0.3) as (udp_link, _, udp_port),
        ):
            tcp, udp = registry(tcp_link), registry(udp_link)
            talker = await TcpPeer.connect(tcp_port)
            assert await talker.say("HELLO 013800000003") == b"OK\n"
            stop, said = asyncio.Event(), list[bytes]()
            talking = asyncio.create_task(talk(talker, stop, said))
            silent = [await TcpPeer.connect(tcp_port) for _ in range(5)]
            quiet = [UdpPeer(udp_port) for _ in range(5)]
            for peer in quiet:
                assert await peer.say("once") == b"ECHO once\n"
            await until(lambda: len(udp) == 5, "udp sessions")
            for tcp_peer in silent:
                assert await tcp_peer.closed_by_gateway()
            await until(lambda: tcp.closed.get("idle") == 5, "tcp idle closes counted")
            await until(lambda: udp.closed.get("idle") == 5, "udp idle closes counted")
            assert tcp.refused["idle"] == 5
            assert udp.refused["idle"] == 5
            assert len(udp) == 0
            assert len(tcp) == 1  # the talker is never idle
            stop.set()
            await talking
            assert tcp.lookup("13800000003") is not None
            # A UDP peer that speaks again after its session closed gets a new one.
            assert await quiet[0].say("back") == b"ECHO back\n"
            assert len(udp) == 1
            for tcp_peer in silent:
                tcp_peer.close()
            for udp_peer in quiet:
                udp_peer.sock.close()
            talker.close()

    run_async(scenario())


def test_a_device_not_on_the_allow_list_is_closed_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with (
            running_link("listen", frozenset({"013800000004"})) as (tcp_link, driver, tcp_port),
            running_link("udp-listen", frozenset({"013800000004"})) as (udp_link, _, udp_port),
        ):
            tcp, udp = registry(tcp_link), registry(udp_link)
            known = await TcpPeer.connect(tcp_port)
            assert await known.say("HELLO 13800000004") == b"OK\n"
            stranger = await TcpPeer.connect(tcp_port)
            stranger.writer.write(b"HELLO 013999999999\nstolen position\n")
            assert await stranger.closed_by_gateway()
            await until(lambda: tcp.closed.get("not_allowed") == 1, "closed as not allowed")
            assert tcp.refused["not_allowed"] == 1
            assert b"stolen position" not in driver.lines  # nothing after the refused bind
            assert tcp.lookup("13999999999") is None
            assert await known.say("still here") == b"ECHO still here\n"

            udp_stranger = UdpPeer(udp_port)
            await udp_stranger.send("HELLO 013999999999")
            await until(lambda: udp.refused["not_allowed"] == 1, "udp refused")
            await until(lambda: len(udp) == 0, "udp session closed")
            known.close()
            stranger.close()
            udp_stranger.sock.close()

    with caplog.at_level(logging.WARNING, logger="gateway.sessions"):
        run_async(scenario())
    lines = [r.getMessage() for r in caplog.records if "not allowed" in r.getMessage()]
    assert len(lines) == 2  # one per link; the rate limit is per link
    assert "013999999999" in lines[0]
    assert "127.0.0.1" in lines[0]


def test_a_flood_of_strangers_is_logged_once() -> None:
    async def scenario() -> int:
        async with running_link("udp-listen", frozenset({"1"})) as (link, _, port):
            sessions = registry(link)
            strangers = [UdpPeer(port) for _ in range(20)]
            for peer in strangers:
                await peer.send(f"HELLO {peer.sock.getsockname()[1]}")
            await until(lambda: sessions.refused["not_allowed"] == 20, "all refused")
            for peer in strangers:
                peer.sock.close()
            return sessions.refused["not_allowed"]

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("gateway.sessions")
    logger.addHandler(handler)
    try:
        assert run_async(scenario()) == 20
    finally:
        logger.removeHandler(handler)
    assert len([r for r in records if "not allowed" in r.getMessage()]) == 1


def test_allowed_addresses_from_config() -> None:
    units = [
        UnitConfig("a", "A", (DeviceRef("trk", "013800000001"), DeviceRef("other", "2"))),
        UnitConfig("b", "B", (DeviceRef("trk", "13800000009"),)),
    ]
    url = "listen://0.0.0.0:7611"
    assert allowed_addresses(link_config(url), units) == frozenset({"13800000001", "13800000009"})
    assert allowed_addresses(link_config(url, allow=("0001",)), units) == frozenset({"1"})
    assert allowed_addresses(link_config(url, register="open"), units) is None
    assert allowed_addresses(link_config(url), []) == frozenset()  # nobody: said by check-config
    nmea = LinkConfig(name="gps", protocol="nmea", url=url)
    assert allowed_addresses(nmea, units) is None  # the link is its one device


def test_client_links_have_no_sessions() -> None:
    cfg = link_config("tcp://127.0.0.1:1")
    driver = LineDriver(cfg)
    supervisor = LinkSupervisor(cfg, driver, driver.counters, lambda _s: None)
    assert supervisor.sessions is None
    assert driver.sessions is None
    assert driver.session_for("1") is None


def test_supervisor_defaults_from_the_link_options() -> None:
    async def scenario() -> None:
        cfg = link_config("listen://127.0.0.1:7611", allow=("013800000001",), max_connections=7)
        driver = LineDriver(cfg)
        supervisor = LinkSupervisor(cfg, driver, driver.counters, lambda _s: None)
        sessions = registry(supervisor)
        assert driver.sessions is sessions
        assert sessions.allowed == frozenset({"13800000001"})
        assert sessions.max_sessions == 7
        assert supervisor.idle_timeout_s == 300.0
        open_link = LinkSupervisor(
            link_config("udp-listen://127.0.0.1:7611"), driver, driver.counters, lambda _s: None
        )
        assert registry(open_link).allowed is None
        assert registry(open_link).snapshot()["register"] == "open"

    run_async(scenario())


def test_a_gps_receiver_that_redials_replaces_its_old_connection() -> None:
    """NMEA: the link is the device, so the receiver binds it with its first good sentence."""

    async def scenario() -> None:
        port = free_port()
        cfg = LinkConfig(
            name="gps",
            protocol="nmea",
            url=f"listen://127.0.0.1:{port}",
            unit="car-1",
            options=MappingProxyType({"max_line_bytes": 82, "require_checksum": True}),
        )
        sink = RecordingSink()
        driver = NmeaDriver(cfg, sink, LinkCounters())
        supervisor = LinkSupervisor(cfg, driver, driver.counters, lambda _s: None)
        sessions = registry(supervisor)
        assert sessions.allowed is None
        task = asyncio.create_task(supervisor.run())
        gps = NmeaGps(profile="bd", rate_hz=10)
        try:
            await until(lambda: supervisor.status.state is LinkState.UP, "link up")
            old = await TcpPeer.connect(port)  # its network will drop without a FIN
            old.writer.write(gps.epoch())
            await until(lambda: sessions.lookup("") is not None, "bound")
            first = sessions.lookup("")
            new = await TcpPeer.connect(port)
            while len(sink.positions) < 3:
                new.writer.write(gps.epoch())
                await asyncio.sleep(0.02)
            assert await old.closed_by_gateway()
            assert first is not None
            assert first.close_reason == "replaced"
            second = sessions.lookup("")
            assert second is not None
            assert second.rx_frames > 0
            assert len(sessions) == 1
            old.close()
            new.close()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run_async(scenario())
