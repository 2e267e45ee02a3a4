"""The simulated receiver over real ptys and TCP, decoded with our own codec."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from firmware_stubs.nmea_gps import PROFILES, GpsPty, NmeaGps, main, serve_pty, serve_tcp
from protocols.nmea import Fix, FixAssembler, RawSentence, SentenceSplitter, parse

T = TypeVar("T")
START = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)


def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine and insist that it left no task behind."""

    async def wrapper() -> T:
        try:
            return await coro
        finally:
            current = asyncio.current_task()
            left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
            assert not left, left

    return asyncio.run(wrapper())


def decode(data: bytes) -> tuple[list[RawSentence], list[Fix]]:
    splitter, assembler = SentenceSplitter(), FixAssembler()
    sentences: list[RawSentence] = []
    fixes: list[Fix] = []
    for item in splitter.feed(data):
        assert isinstance(item, RawSentence), item
        sentences.append(item)
        msg = parse(item)
        if msg is not None and (fix := assembler.feed(msg)) is not None:
            fixes.append(fix)
    if (fix := assembler.flush()) is not None:
        fixes.append(fix)
    return sentences, fixes


def truth(n: int, **kw: Any) -> list[tuple[datetime, tuple[float, float]]]:
    gps = NmeaGps(start=START, **kw)
    out = []
    for _ in range(n):
        gps.epoch()
        out.append((gps.time, gps.position))
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_decode_to_the_true_route(profile: str) -> None:
    gps = NmeaGps(profile=profile, rate_hz=5, speed_kmh=50, cold_start_epochs=3, start=START)
    data = b"".join(gps.epoch() for _ in range(20))
    sentences, fixes = decode(data)
    kinds = {s.talker + s.kind for s in sentences}
    assert {"RMC", "GGA"} <= {s.kind for s in sentences}
    if profile == "ublox":
        assert {"GNGSA", "GPGSV", "GLGSV", "GAGSV", "GBGSV", "GNVTG", "GNGLL", "GNZDA"} <= kinds
    if profile == "bd":
        assert {"GNRMC", "GNGGA", "BDGSA", "BDGSV", "GPGSV", "GPTXT"} <= kinds
    assert all(len(s.raw) + 2 <= 82 for s in sentences)
    expected = truth(20, profile=profile, rate_hz=5, speed_kmh=50)[3:]  # no fix while cold
    assert [f.fix_time for f in fixes] == [t for t, _ in expected]
    for fix, (_, (lat, lon)) in zip(fixes, expected, strict=True):
        assert fix.lat == pytest.approx(lat, abs=1e-6)
        assert fix.lon == pytest.approx(lon, abs=1e-6)
        assert fix.speed_kmh == pytest.approx(50, abs=0.01)
        assert fix.alt_m == 12.0


def test_route_moves_at_speed_and_loops() -> None:
    gps = NmeaGps(profile="minimal", rate_hz=1, speed_kmh=36, start=START)  # 10 m per epoch
    gps.epoch()
    first = gps.position
    gps.epoch()
    dlat = (gps.position[0] - first[0]) * 111_195
    dlon = (gps.position[1] - first[1]) * 111_195 * 0.855
    assert (dlat**2 + dlon**2) ** 0.5 == pytest.approx(10, rel=0.01)
    for _ in range(2000):  # the loop is a few km long: we come back near the start
        gps.epoch()
    assert abs(gps.position[0] - 31.2304) < 0.02


def test_high_rate_epochs_have_distinct_times() -> None:
    gps = NmeaGps(profile="minimal", rate_hz=5000, start=START)
    _, fixes = decode(b"".join(gps.epoch() for _ in range(500)))
    assert len(fixes) == 500
    assert len({f.fix_time for f in fixes}) == 500


async def _read_until(fd: int, want: int, timeout_s: float) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        async with asyncio.timeout(timeout_s):
            while len(got) < want:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError as exc:  # EIO: the other side went away
                    if exc.errno == errno.EIO:
                        break
                    raise
                if not chunk:
                    break
                got += chunk
    finally:
        loop.remove_reader(fd)
    return bytes(got)


@pytest.mark.timeout(20)
def test_pty_reader_gets_sentences_and_fixes(tmp_path: Path) -> None:
    link = tmp_path / "gps0"

    async def scenario() -> bytes:
        gps = NmeaGps(profile="gps", rate_hz=50, start=START)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(
            serve_pty(gps, link_path=link, epochs=40, on_ready=ready.set_result)
        )
        path = await ready
        assert path == str(link)
        assert os.readlink(link).startswith("/dev/pts/")
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            os.write(fd, b"$PUBX,00*33\r\n")  # a reader may talk back; must not block anything
            data = await _read_until(fd, 20 * 200, 10)
        finally:
            os.close(fd)
        await server
        assert not link.exists()  # symlink removed on close
        return data

    data = arun(scenario())
    _, fixes = decode(data)
    assert len(fixes) >= 10
    expected = dict(truth(40, profile="gps", rate_hz=50))
    for fix in fixes:
        lat, lon = expected[fix.fix_time]
        assert fix.lat == pytest.approx(lat, abs=1e-6)
        assert fix.lon == pytest.approx(lon, abs=1e-6)


@pytest.mark.timeout(20)
def test_pty_reopen_repoints_symlink(tmp_path: Path) -> None:
    link = tmp_path / "gps0"

    async def scenario() -> None:
        gps = NmeaGps(profile="minimal", rate_hz=100, start=START)
        device = GpsPty(link)
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(
            serve_pty(gps, pty=device, stop=stop, on_ready=ready.set_result)
        )
        await ready
        first = os.readlink(link)
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            assert await _read_until(fd, 100, 5)
            device.reopen()  # unplug: the old device goes away
            second = os.readlink(link)
            assert second != first
            assert second == device.path
            await _read_until(fd, 10**9, 5)  # ends with EIO/EOF, not by timeout
        finally:
            os.close(fd)
        fd2 = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            _, fixes = decode(b"\n" + await _read_until(fd2, 500, 5))
            assert fixes
        finally:
            os.close(fd2)
        stop.set()
        await server

    arun(scenario())


@pytest.mark.timeout(20)
def test_tcp_serves_each_client() -> None:
    async def scenario() -> list[bytes]:
        gps = NmeaGps(profile="bd", rate_hz=50, start=START)
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(
            serve_tcp(gps, "127.0.0.1", 0, stop=stop, on_ready=ready.set_result)
        )
        host, port = (await ready).rsplit(":", 1)
        got = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                data = b""
                async with asyncio.timeout(5):
                    while data.count(b"GNRMC") < 5:
                        data += await reader.read(4096)
                got.append(data)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        stop.set()
        await server
        return got

    for data in arun(scenario()):
        _, fixes = decode(data[data.index(b"$") :])
        assert len(fixes) >= 3


def test_main_usage_and_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", "nope"]) == 2
    assert main(["--tcp", "no-port"]) == 2
    assert main(["--pty", str(tmp_path / "x"), "--tcp", "127.0.0.1:1"]) == 2
    capsys.readouterr()
    link = tmp_path / "gps"
    assert main(["--pty", str(link), "--epochs", "3", "--rate", "100", "--profile", "minimal"]) == 0
    assert capsys.readouterr().out == f"{link}\n"
