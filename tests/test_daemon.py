"""The daemon as systemd runs it (``fieldlink run``, a child process) with real parts:
mosquitto on loopback, GPS receivers on real ptys and sockets, kill -9 and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.nmea_gps import GpsPty, NmeaGps
from gateway.devkit.broker import Mosquitto, free_port
from gateway.journal import Journal
from protocols.nmea.framing import encode_sentence
from tests.conftest import ROOT
from tests.support import Collector, GatewayProcess, Received, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

BASE = "fieldlink/gw1"


def config_text(data_dir: Path, broker: Mosquitto, links: str, *, health_s: float = 1.0) -> str:
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[mqtt]
url = "{broker.url}"
health_interval_s = {health_s}
reconnect_min_s = 0.1
reconnect_max_s = 0.5
keepalive_s = 5
{links}
"""


def nmea_link(name: str, url: str, unit: str) -> str:
    return f"""
[[links]]
name = "{name}"
protocol = "nmea"
url = "{url}"
unit = "{unit}"
reconnect_min_s = 0.1
reconnect_max_s = 0.3
"""


class PtyFeeder:
    """A GPS receiver on a pty, driven from a thread so the test body stays synchronous."""

    def __init__(self, link_path: Path, gps: NmeaGps) -> None:
        self.gps = gps
        self.pty = GpsPty(link_path)
        self.pty.open()

    def epoch(self) -> None:
        self.pty.write(self.gps.epoch())

    def raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.pty.master_fd, view[:4096])
            except BlockingIOError:
                written = 0
            if not written:
                threading.Event().wait(0.001)  # the reader catches up
            view = view[written:]

    def close(self) -> None:
        self.pty.close()


@pytest.fixture
def feeder(tmp_path: Path) -> Iterator[PtyFeeder]:
    feed = PtyFeeder(tmp_path / "gps0", NmeaGps(profile="ublox", rate_hz=10, speed_kmh=36))
    yield feed
    feed.close()


@pytest.fixture
def collector(mosquitto: Mosquitto) -> Iterator[Collector]:
    coll = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
    yield coll
    coll.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for proc in started:
        proc.ensure_stopped()


def start_daemon(
    tmp_path: Path, mosquitto: Mosquitto, links: str, started: list[GatewayProcess]
) -> GatewayProcess:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_text(tmp_path / "data", mosquitto, links))
    proc = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    started.append(proc)
    return proc


def positions(messages: list[Received], unit: str) -> list[dict[str, object]]:
    return [m.json() for m in messages if m.topic == f"{BASE}/units/{unit}/position"]


def test_positions_flow_and_bad_input_is_counted(
    tmp_path: Path,
    mosquitto: Mosquitto,
    feeder: PtyFeeder,
    collector: Collector,
    daemon_factory: list[GatewayProcess],
) -> None:
    daemon = start_daemon(
        tmp_path, mosquitto, nmea_link("gps0", str(tmp_path / "gps0"), "car-1"), daemon_factory
    )
    collector.wait_for(
        lambda ms: any(m.topic == f"{BASE}/links/gps0/state" and b'"up"' in m.payload for m in ms),
        15,
        "link up",
    )
    for _ in range(3):
        feeder.epoch()
    collector.wait_for(lambda ms: len(positions(ms, "car-1")) >= 2, 10, "first positions")

    good = encode_sentence("GN", "TXT", ["01", "01", "02", "after the noise"])
    bad_checksum = good[:-4] + b"00\r\n"
    feeder.raw(b"\x00\xff\xfe garbage \x01\x02" * 50 + b"\r\n")  # binary noise
    feeder.raw(bad_checksum * 5)  # wrong checksums
    feeder.raw(b"$GPRMC,123519,A,4807.03")  # truncated ...
    feeder.raw(b"\r\n$$" + good)  # ... then a `$$` line
    feeder.raw(b"x" * (10 * 1024 * 1024))  # 10 MB without a newline
    feeder.raw(b"\r\n")
    before = len(positions(collector.snapshot(), "car-1"))
    for _ in range(3):
        feeder.epoch()
    collector.wait_for(
        lambda ms: len(positions(ms, "car-1")) >= before + 2, 20, "positions after the noise"
    )

    def health_counts(ms: list[Received]) -> dict[str, int]:
        found = [m.json() for m in ms if m.topic == f"{BASE}/health"]
        return found[-1]["links"]["gps0"]["rejected_by_reason"] if found else {}

    final = collector.wait_for(
        lambda ms: {"checksum", "oversize"} <= set(health_counts(ms)), 10, "rejections in health"
    )
    counts = health_counts(final)
    assert counts["checksum"] >= 5
    assert counts["oversize"] >= 1
    last = positions(final, "car-1")[-1]
    assert {"lat", "lon", "fix_time", "received_at", "source", "link"} <= set(last)
    assert last["source"] == "nmea"
    assert last["link"] == "gps0"
    log = daemon.log()
    assert "gps0: rejected input" in log
    assert log.count("rejected input") <= 3  # once per burst, not once per bad line
    assert daemon.terminate() == 0


def test_pty_unplugged_and_back(
    tmp_path: Path,
    mosquitto: Mosquitto,
    feeder: PtyFeeder,
    collector: Collector,
    daemon_factory: list[GatewayProcess],
) -> None:
    start_daemon(
        tmp_path, mosquitto, nmea_link("gps0", str(tmp_path / "gps0"), "car-1"), daemon_factory
    )
    link_topic = f"{BASE}/links/gps0/state"

    def link_states(ms: list[Received]) -> list[str]:
        return [m.json()["state"] for m in ms if m.topic == link_topic]

    collector.wait_for(lambda ms: "up" in link_states(ms), 15, "link up")
    feeder.epoch()
    feeder.epoch()
    collector.wait_for(lambda ms: len(positions(ms, "car-1")) >= 1, 10, "a position")

    feeder.pty.close()  # unplugged: the symlink goes, the old pts hangs up
    collector.wait_for(lambda ms: link_states(ms)[-1:] == ["down"], 10, "link down")
    feeder.pty.open()  # plugged back in: a new pts behind the same name
    collector.wait_for(lambda ms: link_states(ms)[-1:] == ["up"], 10, "link up again")
    before = len(positions(collector.snapshot(), "car-1"))
    for _ in range(3):
        feeder.epoch()
    final = collector.wait_for(
        lambda ms: len(positions(ms, "car-1")) > before, 10, "positions resume"
    )
    assert final[-1].topic  # the collector is still live
    ups = [m.json() for m in final if m.topic == link_topic and m.json()["state"] == "up"]
    assert ups[-1]["reconnects"] >= 1


def test_broker_restart_republishes_retained(
    tmp_path: Path,
    mosquitto: Mosquitto,
    feeder: PtyFeeder,
    daemon_factory: list[GatewayProcess],
) -> None:
    start_daemon(
        tmp_path, mosquitto, nmea_link("gps0", str(tmp_path / "gps0"), "car-1"), daemon_factory
    )
    first = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/state"]).start()
    first.wait_for(lambda ms: bool(ms) and b"online" in ms[-1].payload, 15, "online")
    first.stop()
    feeder.epoch()
    feeder.epoch()

    mosquitto.kill()  # a crash: no retained state survives in memory
    (mosquitto.workdir / "data" / "mosquitto.db").unlink(missing_ok=True)
    stop = threading.Event()

    def keep_feeding() -> None:
        while not stop.wait(0.1):
            feeder.epoch()

    thread = threading.Thread(target=keep_feeding)
    thread.start()
    try:
        threading.Event().wait(1.0)
        mosquitto.start()
        # A newcomer after the restart sees every retained topic again.
        late = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
        topics = {
            f"{BASE}/state",
            f"{BASE}/info",
            f"{BASE}/links/gps0/state",
            f"{BASE}/units/car-1/position",
            f"{BASE}/units/car-1/availability",
        }
        messages = late.wait_for(
            lambda ms: topics <= {m.topic for m in ms}, 20, "retained topics republished"
        )
        late.stop()
    finally:
        stop.set()
        thread.join()
    state = [m.json() for m in messages if m.topic == f"{BASE}/state"]
    assert state[-1]["state"] == "online"


def test_kill9_last_will_and_outbox_survives(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector: Collector,
    daemon_factory: list[GatewayProcess],
) -> None:
    """Events a killed gateway left in its outbox are delivered, in order, after it restarts,
    even when it is killed again while draining them."""
    data_dir = tmp_path / "data"
    events = f"{BASE}/tasks/left-over/events"
    journal = Journal.open(data_dir / "journal.sqlite")
    for n in range(2000):
        journal.append(events, json.dumps({"n": n}).encode())
    journal.close()

    daemon = start_daemon(tmp_path, mosquitto, "", daemon_factory)
    collector.wait_for(lambda ms: any(m.topic == events for m in ms), 15, "draining started")
    daemon.kill9()
    collector.wait_for(
        lambda ms: any(m.topic == f"{BASE}/state" and b"offline" in m.payload for m in ms),
        10,
        "the last will",
    )
    start_daemon(tmp_path, mosquitto, "", daemon_factory)

    def first_sightings(ms: list[Received]) -> list[int]:
        seen: dict[int, None] = {}
        for m in ms:
            if m.topic == events:
                seen.setdefault(m.json()["n"], None)
        return list(seen)

    final = collector.wait_for(lambda ms: len(first_sightings(ms)) == 2000, 30, "every event")
    assert first_sightings(final) == list(range(2000))
    states = [m.json()["state"] for m in final if m.topic == f"{BASE}/state"]
    assert states[-1] == "online"
    wait_until(
        lambda: Journal.open(data_dir / "journal.sqlite").outbox_depth == 0, 10, "outbox empty"
    )


def test_dispatch_is_journaled_and_received(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector: Collector,
    daemon_factory: list[GatewayProcess],
) -> None:
    unit = '\n[[units]]\nid = "zhang-wei"\nname = "张伟"\n'
    daemon = start_daemon(tmp_path, mosquitto, unit, daemon_factory)
    collector.wait_for(
        lambda ms: any(m.topic == f"{BASE}/state" and b"online" in m.payload for m in ms),
        15,
        "online",
    )
    task = {
        "task_id": "t-100",
        "units": ["zhang-wei"],
        "text": "到人民广场",
        "priority": "urgent",
        "created_at": "2026-11-28T08:00:00.000Z",
    }
    pub = collector.client
    for _ in range(2):  # the same task twice: received once
        pub.publish(f"{BASE}/tasks/dispatch", json.dumps(task), qos=1).wait_for_publish(5)
    pub.publish(f"{BASE}/tasks/dispatch", b"{not json", qos=1).wait_for_publish(5)
    pub.publish(f"{BASE}/tasks/dispatch", b'{"task_id":"t-101"}', qos=1).wait_for_publish(5)
    # Over max_inbound_bytes (256 KiB) but within the packet size the gateway announced
    # (the payload plus room for topic and properties): the broker sends it, and the
    # gateway refuses it by name. Anything larger the broker never sends at all.
    big = b'{"task_id":"t-big","text":"' + b"x" * (256 * 1024) + b'"}'
    pub.publish(f"{BASE}/tasks/dispatch", big, qos=1).wait_for_publish(5)
    events = collector.wait_for(
        lambda ms: (
            any(m.topic == f"{BASE}/tasks/t-101/events" for m in ms)
            and sum(m.topic == f"{BASE}/tasks/t-100/events" for m in ms) >= 2
        ),
        10,
        "rejection, and the task's end",
    )
    received = [m.json() for m in events if m.topic == f"{BASE}/tasks/t-100/events"]
    # The unit has no radio: received once (the duplicate is idempotent), then failed.
    assert [e["stage"] for e in received] == ["received", "failed"]
    assert received[0]["unit"] == "zhang-wei"
    assert isinstance(received[0]["since_created_s"], float)
    big_rejected = collector.wait_for(
        lambda ms: any(m.topic == f"{BASE}/tasks/t-big/events" for m in ms), 10, "oversize refused"
    )
    refusal = next(m.json() for m in big_rejected if m.topic == f"{BASE}/tasks/t-big/events")
    assert refusal["stage"] == "rejected"
    assert "max_inbound_bytes" in refusal["detail"]
    rejected = collector.last_json(f"{BASE}/tasks/t-101/events")
    assert rejected["stage"] == "rejected"
    assert "units" in rejected["detail"]
    assert daemon.terminate() == 0
    journal = Journal.open(tmp_path / "data" / "journal.sqlite")
    stored = journal.db.execute("SELECT count(*) FROM inbound").fetchone()[0]
    journal.close()
    assert stored == 0  # handled rows are pruned; the oversize payload was never stored
    assert "malformed JSON" in daemon.log()


def test_systemd_notify_ready_watchdog_stopping(
    tmp_path: Path, mosquitto: Mosquitto, daemon_factory: list[GatewayProcess]
) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(10)
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_text(tmp_path / "data", mosquitto, ""))
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOTIFY_SOCKET=str(sock_path))
    env["WATCHDOG_USEC"] = "400000"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        seen: list[str] = []
        while "WATCHDOG=1" not in seen or "READY=1" not in seen:
            seen.extend(sock.recv(4096).decode().splitlines())
        assert seen.index("READY=1") < seen.index("WATCHDOG=1")
        proc.terminate()
        while "STOPPING=1" not in seen:
            seen.extend(sock.recv(4096).decode().splitlines())
        assert proc.wait(15) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        sock.close()


def test_tcp_and_dial_in_links(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector: Collector,
    daemon_factory: list[GatewayProcess],
) -> None:
    """A receiver the gateway dials (tcp://) and one that dials the gateway (listen://)."""
    server_port = free_port()
    listen_port = free_port()
    links = nmea_link("net", f"tcp://127.0.0.1:{server_port}", "car-2") + nmea_link(
        "dialin", f"listen://127.0.0.1:{listen_port}", "car-3"
    )

    async def scenario() -> None:
        gps = NmeaGps(profile="bd", rate_hz=20)
        clients: list[asyncio.StreamWriter] = []

        async def accept(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            clients.append(writer)

        server = await asyncio.start_server(accept, "127.0.0.1", server_port)
        start_daemon(tmp_path, mosquitto, links, daemon_factory)
        try:
            async with asyncio.timeout(20):
                while not clients:  # noqa: ASYNC110 - waits for the daemon to dial in
                    await asyncio.sleep(0.05)
                _, dial = await asyncio.open_connection("127.0.0.1", listen_port)
                while not (
                    positions(collector.snapshot(), "car-2")
                    and positions(collector.snapshot(), "car-3")
                ):
                    chunk = gps.epoch()
                    clients[0].write(chunk)
                    dial.write(chunk)
                    await asyncio.sleep(0.05)
                dial.close()
                clients[0].close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_a_burst_of_tasks_loses_none(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector: Collector,
    daemon_factory: list[GatewayProcess],
) -> None:
    """800 tasks at once: brokers may send more than Receive Maximum, and nothing may be
    dropped on the way into the journal (a regression: aiomqtt's queue once dropped 358)."""
    unit = '\n[[units]]\nid = "zhang-wei"\nname = "张伟"\n'
    start_daemon(tmp_path, mosquitto, unit, daemon_factory)
    collector.wait_for(
        lambda ms: any(m.topic == f"{BASE}/state" and b"online" in m.payload for m in ms),
        15,
        "online",
    )
    created = "2026-11-28T08:00:00.000Z"
    for n in range(800):
        task = {"task_id": f"burst-{n}", "units": ["zhang-wei"], "text": "x",
                "priority": "normal", "created_at": created}  # fmt: skip
        collector.client.publish(f"{BASE}/tasks/dispatch", json.dumps(task), qos=1)

    def received(ms: list[Received]) -> set[str]:
        return {
            m.topic.split("/")[3]
            for m in ms
            if m.topic.endswith("/events") and b'"received"' in m.payload
        }

    got = collector.wait_for(lambda ms: len(received(ms)) == 800, 60, "800 tasks received")
    assert received(got) == {f"burst-{n}" for n in range(800)}
