"""Transports over real sockets and ptys: one factory, every kind, and its failures."""

from __future__ import annotations

import asyncio
import os
import socket
import tty
from pathlib import Path

import pytest

from gateway.config import SerialSettings
from gateway.devkit.broker import free_port
from gateway.errors import LinkError
from gateway.transport import (
    Connection,
    Server,
    open_connection,
    open_datagram_socket,
    parse_url,
)
from tests.support import run_async

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("/dev/ttyUSB0", "serial"),
        ("tcp://127.0.0.1:8001", "tcp"),
        ("udp://10.0.0.1:3005", "udp"),
        ("listen://0.0.0.0:7611", "listen"),
        ("udp-listen://0.0.0.0:3002", "udp-listen"),
    ],
)
def test_parse_url(url: str, kind: str) -> None:
    assert parse_url(url).kind == kind


@pytest.mark.parametrize("url", ["http://x:1", "tcp://hostonly", "ttyUSB0"])
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match=r"expected|a port is required"):
        parse_url(url)


def test_serial_pty_read_write_and_hangup() -> None:
    async def scenario() -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        conn = await open_connection("gps", parse_url(os.ttyname(slave)), SerialSettings())
        os.write(master, b"$GPTXT,hello\r\n")
        assert await asyncio.wait_for(conn.read(), 5) == b"$GPTXT,hello\r\n"
        await conn.write(b"to the device")
        assert os.read(master, 100) == b"to the device"
        os.close(master)  # unplugged
        with pytest.raises(LinkError):
            await asyncio.wait_for(conn.read(), 5)
        await conn.close()
        os.close(slave)

    run_async(scenario())


def test_serial_device_missing_is_a_link_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(LinkError, match="open failed"):
            await open_connection("gps", parse_url(str(tmp_path / "absent")), SerialSettings())

    run_async(scenario())


def test_tcp_client_and_peer_close() -> None:
    async def scenario() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = await open_connection("net", parse_url(f"tcp://127.0.0.1:{port}"), SerialSettings())
        assert await conn.read() == b"hello"
        with pytest.raises(LinkError, match="closed by peer"):
            await conn.read()
        await conn.close()
        server.close()
        await server.wait_closed()

    run_async(scenario())


def test_tcp_refused_is_a_link_error() -> None:
    async def scenario() -> None:
        port = free_port()
        with pytest.raises(LinkError):
            await open_connection("net", parse_url(f"tcp://127.0.0.1:{port}"), SerialSettings())

    run_async(scenario())


def test_udp_client_round_trip() -> None:
    async def scenario() -> None:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        port = peer.getsockname()[1]
        conn = await open_connection("dmr", parse_url(f"udp://127.0.0.1:{port}"), SerialSettings())
        await conn.write(b"ping")
        loop = asyncio.get_running_loop()
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(peer, 100), 5)
        assert data == b"ping"
        await loop.sock_sendto(peer, b"pong", addr)
        assert await asyncio.wait_for(conn.read(), 5) == b"pong"
        await conn.close()
        peer.close()

    run_async(scenario())


def test_listen_serves_each_peer_and_caps_connections() -> None:
    async def scenario() -> None:
        seen: list[bytes] = []
        port = free_port()

        async def echo(conn: Connection) -> None:
            while True:
                data = await conn.read()
                seen.append(data)
                await conn.write(data.upper())

        server = Server("trackers", echo, max_connections=2)
        await server.start(parse_url(f"listen://127.0.0.1:{port}"))
        peers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for i, (reader, writer) in enumerate(peers):
            writer.write(f"hi{i}".encode())
            assert await asyncio.wait_for(reader.read(10), 5) == f"HI{i}".encode()
        reader3, _writer3 = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader3.read(10), 5) == b""  # refused: over the cap
        assert server.refused == 1
        assert server.connections == 2
        for _, writer in peers:
            writer.close()
        _writer3.close()
        await server.close()

    run_async(scenario())


def test_udp_listen_one_connection_per_peer() -> None:
    async def scenario() -> None:
        port = free_port()
        got: dict[str, bytes] = {}

        async def record(conn: Connection) -> None:
            data = await conn.read()
            got[conn.peer] = data
            await conn.write(b"ack:" + data)

        server = Server("dmr", record, max_connections=10)
        await server.start(parse_url(f"udp-listen://127.0.0.1:{port}"))
        loop = asyncio.get_running_loop()
        socks = []
        for i in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
            await loop.sock_sendto(sock, f"radio{i}".encode(), ("127.0.0.1", port))
            reply, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 100), 5)
            assert reply == f"ack:radio{i}".encode()
        assert sorted(got.values()) == [b"radio0", b"radio1"]
        for sock in socks:
            sock.close()
        await server.close()

    run_async(scenario())


def test_udp_listen_caps_peers_without_keeping_anything_for_the_refused() -> None:
    async def scenario() -> None:
        port = free_port()
        refused: list[str] = []

        async def echo(conn: Connection) -> None:
            while True:
                await conn.write(await conn.read())

        server = Server("dmr", echo, max_connections=1, on_refused=refused.append)
        await server.start(parse_url(f"udp-listen://127.0.0.1:{port}"))
        loop = asyncio.get_running_loop()
        socks = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        first, second = socks
        await loop.sock_sendto(first, b"one", ("127.0.0.1", port))
        assert (await asyncio.wait_for(loop.sock_recvfrom(first, 100), 5))[0] == b"one"
        tasks = len(asyncio.all_tasks())
        for _ in range(3):
            await loop.sock_sendto(second, b"over the cap", ("127.0.0.1", port))
        async with asyncio.timeout(5):
            while server.refused < 3:  # noqa: ASYNC110 - polls the server's counter
                await asyncio.sleep(0.01)
        assert refused == [f"127.0.0.1:{second.getsockname()[1]}"] * 3
        assert server.connections == 1
        assert len(asyncio.all_tasks()) == tasks  # reading a peer starts no task per datagram
        await loop.sock_sendto(first, b"two", ("127.0.0.1", port))
        assert (await asyncio.wait_for(loop.sock_recvfrom(first, 100), 5))[0] == b"two"
        for sock in socks:
            sock.close()
        await server.close()

    run_async(scenario())


def test_connections_count_bytes_and_the_last_receipt() -> None:
    async def scenario() -> None:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        port = peer.getsockname()[1]
        conn = await open_connection("dmr", parse_url(f"udp://127.0.0.1:{port}"), SerialSettings())
        opened = conn.last_rx
        await conn.write(b"ping")
        loop = asyncio.get_running_loop()
        _, addr = await asyncio.wait_for(loop.sock_recvfrom(peer, 100), 5)
        await loop.sock_sendto(peer, b"pong!", addr)
        assert await asyncio.wait_for(conn.read(), 5) == b"pong!"
        assert (conn.rx_bytes, conn.tx_bytes) == (5, 4)
        assert conn.last_rx > opened
        await conn.close()
        with pytest.raises(LinkError):
            await conn.read()
        peer.close()

    run_async(scenario())


def test_datagram_socket_talks_with_many_peers_and_bounds_its_queue() -> None:
    async def scenario() -> None:
        sock = await open_datagram_socket("svc", "127.0.0.1", 0, queue_max=4)
        peers = [await open_datagram_socket("peer", "127.0.0.1", 0) for _ in range(2)]
        try:
            for i, peer in enumerate(peers):
                peer.send(b"hello %d" % i, sock.local)
            got = {await asyncio.wait_for(sock.recv(), 2.0) for _ in peers}
            assert got == {(b"hello %d" % i, peer.local) for i, peer in enumerate(peers)}
            sock.send(b"back", peers[1].local)
            assert await asyncio.wait_for(peers[1].recv(), 2.0) == (b"back", sock.local)
            for _ in range(10):  # nobody reads: four wait, the rest are dropped and counted
                peers[0].send(b"x", sock.local)
            for _ in range(100):
                if sock.dropped + 4 >= 10:
                    break
                await asyncio.sleep(0.01)
            assert sock.dropped == 6
            assert sock.rx_bytes == 7 + 7 + 4
        finally:
            sock.close()
            for peer in peers:
                peer.close()
        with pytest.raises(LinkError):
            await asyncio.wait_for(sock.recv(), 2.0)  # what waited is gone with the socket
        with pytest.raises(LinkError):
            sock.send(b"late", peers[0].local)

    run_async(scenario())


def test_datagram_socket_that_cannot_bind_is_a_link_error() -> None:
    async def scenario() -> None:
        first = await open_datagram_socket("a", "127.0.0.1", 0)
        try:
            with pytest.raises(LinkError, match="cannot bind"):
                await open_datagram_socket("b", "127.0.0.1", first.local[1])
        finally:
            first.close()

    run_async(scenario())
