"""No input can stop the gateway: the daemon (``fieldlink run``, a child process) against a
real mosquitto, a GPS receiver on a real pty and an APRS TNC on a real KISS TCP socket,
fed what a hostile or broken world sends.

Poison MQTT messages, a 50 MB payload, a radio that never acks on a busy channel, a
thousand large requests, two thousand strangers on the air, absurd GPS fixes, and a bug
inside the MQTT session: the daemon stays up, answers what it can, bounds its memory and
tells the truth about itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_stubs.nmea_gps import GpsPty
from gateway.config import load_config
from gateway.daemon import Gateway
from gateway.devkit.broker import Mosquitto
from gateway.journal import Journal
from gateway.model import DeviceRef, TextFromUnit, UnitAnswer, utc_now
from gateway.mqtt import InboundMessage, MqttBridge
from gateway.topics import Topics
from protocols import ax25, kiss
from protocols.aprs import AprsAck, AprsMessage, decode_frame, encode_position
from protocols.nmea.framing import encode_sentence
from tests.support import Collector, GatewayProcess, Received, run_async, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

BASE = "fieldlink/gw1"
GATEWAY_CALL = "BH4GW-10"


class KissTnc:
    """A KISS TCP "TNC" the daemon dials: the test puts frames on the air through it and
    reads what the gateway transmits. Nobody on its channel acks anything unless the test
    sends it. A gateway that reconnects (after a restart) is served again."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._conn: socket.socket | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self.transmitted = bytearray()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._conn = conn
            self.connections += 1
            self._connected.set()
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                with self._lock:
                    self.transmitted += data
            self._connected.clear()
            conn.close()

    def wait_connected(self, count: int = 1, timeout_s: float = 15.0) -> None:
        wait_until(
            lambda: self.connections >= count and self._connected.is_set(),
            timeout_s,
            f"gateway connection {count} to the TNC",
        )

    def send(self, frames: list[bytes]) -> None:
        assert self._connected.wait(15), "the gateway never connected to the TNC"
        assert self._conn is not None
        self._conn.sendall(b"".join(frames))

    def messages(self) -> list[AprsMessage | AprsAck]:
        """The APRS messages and acks the gateway has transmitted so far."""
        with self._lock:
            data = bytes(self.transmitted)
        out: list[AprsMessage | AprsAck] = []
        for item in kiss.KissDecoder().feed(data):
            if isinstance(item, kiss.KissFrame):
                packet = decode_frame(ax25.decode(item.payload))
                if isinstance(packet, AprsMessage | AprsAck):
                    out.append(packet)
        return out

    def close(self) -> None:
        self._server.close()
        if self._conn is not None:
            self._conn.close()


def aprs_frame(source: str, info: bytes) -> bytes:
    frame = ax25.Ax25Frame(ax25.parse_address("APZTST"), ax25.parse_address(source), (), info=info)
    return kiss.encode_frame(ax25.encode(frame))


def config_text(
    data_dir: Path, broker: Mosquitto, links: str = "", units: str = "", extra: str = ""
) -> str:
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"
{extra}

[mqtt]
url = "{broker.url}"
health_interval_s = 0.5
reconnect_min_s = 0.1
reconnect_max_s = 0.5
keepalive_s = 5

[dispatch]
poll_timeout_s = 1.0
{links}
{units}
"""


def aprs_link(url: str, **options: object) -> str:
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
    return f"""
[[links]]
name = "vhf"
protocol = "aprs"
url = "{url}"
callsign = "{GATEWAY_CALL}"
reconnect_min_s = 0.1
reconnect_max_s = 0.3
{lines}
"""


@pytest.fixture
def collector(mosquitto: Mosquitto) -> Iterator[Collector]:
    coll = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
    yield coll
    coll.stop()


@pytest.fixture
def daemons() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for proc in started:
        proc.ensure_stopped()


def start(tmp_path: Path, text: str, started: list[GatewayProcess]) -> GatewayProcess:
    cfg = tmp_path / "config.toml"
    cfg.write_text(text, encoding="utf-8")
    proc = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    started.append(proc)
    return proc


def wait_online(collector: Collector, after: int = 0) -> None:
    def online(ms: list[Received]) -> bool:
        states = [m for m in ms[after:] if m.topic == f"{BASE}/state"]
        return bool(states) and b'"online"' in states[-1].payload

    collector.wait_for(online, 20, "the gateway online")


def alive(proc: GatewayProcess) -> bool:
    return proc.proc is not None and proc.proc.poll() is None


def publish(
    client: paho.Client, topic: str, payload: bytes, *, response_topic: str | None = None
) -> None:
    props = None
    if response_topic is not None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic
        props.CorrelationData = b"c1"
    client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)


def valid_task(task_id: str, **changes: object) -> dict[str, object]:
    task: dict[str, object] = {
        "task_id": task_id,
        "units": ["zhang-wei"],
        "text": "到人民广场",
        "priority": "urgent",
        "created_at": datetime.now(UTC).isoformat(),
    }
    task.update(changes)
    return task


def events(messages: list[Received], task_id: str) -> list[str]:
    return [m.json()["stage"] for m in messages if m.topic == f"{BASE}/tasks/{task_id}/events"]


UNIT = '\n[[units]]\nid = "zhang-wei"\nname = "张伟"\n'

POISON_BODIES = {
    "brackets": b"[" * 5000,
    "long-int": b'{"task_id":"p-int","n":' + b"7" * 5000 + b"}",
    "utf16": b"\xff\xfe" + json.dumps(valid_task("p-utf16")).encode("utf-16-le"),
    "utf32": json.dumps(valid_task("p-utf32")).encode("utf-32"),
    "year-9999": json.dumps(valid_task("p-9999", created_at="9999-12-31T23:59:59Z")).encode(),
    "year-1": json.dumps(valid_task("p-0001", created_at="0001-01-01T00:00:00+14:00")).encode(),
    "controls": json.dumps(valid_task("p-ctl", text="\x01\x02\x07\x1b")).encode(),
}


def test_poison_messages_cannot_stop_the_daemon(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, daemons: list[GatewayProcess]
) -> None:
    daemon = start(tmp_path, config_text(tmp_path / "data", mosquitto, units=UNIT), daemons)
    wait_online(collector)
    pub = collector.client
    for body in POISON_BODIES.values():
        publish(pub, f"{BASE}/tasks/dispatch", body)
        publish(pub, f"{BASE}/tasks/cancel", body)
    requests = {
        "units": b"[" * 5000,
        "task_status": b'{"task_id":' + b"1" * 5000 + b"}",
        "nearest_units": json.dumps({"lat": 1e308, "lon": 0}).encode(),
        "sla": json.dumps({"since": "0001-01-01T00:00:00+14:00"}).encode(),
        "send_text": json.dumps({"unit": "zhang-wei", "text": "\x00\x01"}).encode(),
        "alarms": b'{"untis": 1}',  # a key no request takes
    }
    for command, body in requests.items():
        publish(pub, f"{BASE}/request/{command}", body)
    # A response topic outside the gateway's own tree, and one with wildcards: refused.
    publish(pub, f"{BASE}/request/units", b"{}", response_topic="elsewhere/x")
    publish(pub, f"{BASE}/request/units", b"{}", response_topic=f"{BASE}/response/+")

    publish(pub, f"{BASE}/tasks/dispatch", json.dumps(valid_task("t-after")).encode())
    got = collector.wait_for(
        lambda ms: (
            "received" in events(ms, "t-after")
            and sum(m.topic.startswith(f"{BASE}/response/") for m in ms) >= len(requests) + 2
        ),
        20,
        "the task after the poison, and every request answered",
    )
    assert alive(daemon), daemon.log()[-3000:]

    # Every request got an error answer, never silence.
    answers: dict[str, dict[str, str]] = {}
    for m in got:
        if "/response/" in m.topic:
            answers.setdefault(m.topic.rsplit("/", 1)[-1], m.json())
    for command in requests:
        assert answers[command]["status"] == "error", (command, answers[command])

    # Readable task ids get their rejected event; unreadable ones the rejected feed.
    for task_id in ("p-9999", "p-0001", "p-ctl"):
        # once for the task, once for the cancel naming it
        assert events(got, task_id) == ["rejected", "rejected"], task_id
    rejected_feed = [m.json() for m in got if m.topic == f"{BASE}/tasks/rejected"]
    digests = {r["sha256"] for r in rejected_feed}
    for name in ("brackets", "utf16", "utf32"):
        assert hashlib.sha256(POISON_BODIES[name]).hexdigest() in digests, name
    assert all(set(r) == {"reason", "at", "size", "sha256"} for r in rejected_feed)
    assert not any(m.topic == "elsewhere/x" for m in got)
    assert "response topic 'elsewhere/x' refused" in daemon.log()

    # kill -9 and restart: nothing is replayed into a crash, and the gateway still works.
    daemon.kill9()
    mark = len(collector.snapshot())
    daemon = start(tmp_path, config_text(tmp_path / "data", mosquitto, units=UNIT), daemons)
    wait_online(collector, mark)
    publish(pub, f"{BASE}/tasks/dispatch", json.dumps(valid_task("t-restart")).encode())
    collector.wait_for(lambda ms: "received" in events(ms, "t-restart"), 15, "after restart")
    assert alive(daemon)
    assert daemon.terminate() == 0
    journal = Journal.open(tmp_path / "data" / "journal.sqlite")
    left = journal.db.execute("SELECT count(*) FROM inbound").fetchone()[0]
    journal.close()
    assert left == 0  # every message was handled and pruned


def test_a_message_is_replayed_once_then_quarantined(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, daemons: list[GatewayProcess]
) -> None:
    """Messages journaled by a process that died while handling them: one attempt made is
    replayed at the next start; one whose handling started twice is quarantined."""
    data = tmp_path / "data"
    topics = Topics("fieldlink", "gw1")
    journal = Journal.open(data / "journal.sqlite")
    journal.store_inbound(topics.dispatch, json.dumps(valid_task("t-once")).encode())
    twice = journal.store_inbound(topics.dispatch, json.dumps(valid_task("t-twice")).encode())
    journal.retry_inbound(twice)
    journal.close()

    daemon = start(tmp_path, config_text(data, mosquitto, units=UNIT), daemons)
    wait_online(collector)
    got = collector.wait_for(
        lambda ms: (
            "received" in events(ms, "t-once")
            and any(
                m.topic == f"{BASE}/health" and m.json()["mqtt"]["quarantined"] == 1 for m in ms
            )
        ),
        15,
        "the replay and the quarantine counted in health",
    )
    assert events(got, "t-twice") == []
    assert "quarantined, not replayed" in daemon.log()
    assert daemon.terminate() == 0
    journal = Journal.open(data / "journal.sqlite")
    assert [seq for seq, _, _ in journal.quarantined_rows()] == [twice]
    assert journal.unhandled_inbound() == []
    journal.close()


def test_a_failing_handler_quarantines_its_message(tmp_path: Path) -> None:
    """In process: whatever a handler raises is caught, logged, answered and quarantined."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n{UNIT}', encoding="utf-8"
    )
    gateway = Gateway(load_config(cfg))

    def broken(payload: bytes) -> tuple[str, str | None]:
        raise RuntimeError("a bug")

    gateway.dispatcher.dispatch = broken  # type: ignore[method-assign]
    seq = gateway.journal.store_inbound(gateway.topics.dispatch, b'{"task_id":"x"}')
    gateway.on_inbound(InboundMessage(seq, gateway.topics.dispatch, b'{"task_id":"x"}', None, None))
    assert gateway.inbound_failed == 1
    assert gateway.journal.quarantined == 1
    assert gateway.journal.unhandled_inbound() == []
    assert gateway.health()["mqtt"]["quarantined"] == 1
    gateway.journal.close()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_50_mb_message_does_not_fill_memory(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, daemons: list[GatewayProcess]
) -> None:
    daemon = start(tmp_path, config_text(tmp_path / "data", mosquitto, units=UNIT), daemons)
    wait_online(collector)
    big = b'{"task_id":"t-huge","text":"' + b"x" * (50 * 1024 * 1024) + b'"}'
    publish(collector.client, f"{BASE}/tasks/dispatch", big)
    del big
    publish(collector.client, f"{BASE}/tasks/dispatch", json.dumps(valid_task("t-n")).encode())
    collector.wait_for(lambda ms: "received" in events(ms, "t-n"), 15, "the next task")
    assert alive(daemon)
    assert daemon.proc is not None
    assert peak_rss_mb(daemon.proc.pid) < 120


def test_the_receive_loop_never_waits_on_a_radio(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, daemons: list[GatewayProcess]
) -> None:
    """A radio that never acks on a channel kept busy (3 s of key-up per frame): an urgent
    task published meanwhile is journaled at once, and a poll is answered with an error."""
    tnc = KissTnc()
    try:
        link = aprs_link(tnc.url, retry_intervals_s=[30.0], txdelay_s=3.0)
        units = '\n[[units]]\nid = "zhang-wei"\ndevices = ["vhf:BH4AAA-1"]\n'
        daemon = start(tmp_path, config_text(tmp_path / "data", mosquitto, link, units), daemons)
        collector.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/links/vhf/state" and b'"up"' in m.payload for m in ms
            ),
            20,
            "link up",
        )
        pub = collector.client
        publish(pub, f"{BASE}/request/send_text", b'{"unit":"zhang-wei","text":"hello"}')
        wait_until(lambda: len(tnc.transmitted) > 0, 10, "the text on the air")
        time.sleep(0.3)
        sent_at = time.monotonic()
        publish(pub, f"{BASE}/tasks/dispatch", json.dumps(valid_task("t-urgent")).encode())
        got = collector.wait_for(lambda ms: "received" in events(ms, "t-urgent"), 10, "received")
        received = next(
            m
            for m in got
            if m.topic == f"{BASE}/tasks/t-urgent/events" and b"received" in m.payload
        )
        assert received.at - sent_at < 1.0
        publish(pub, f"{BASE}/request/poll_location", b'{"unit":"zhang-wei"}')
        got = collector.wait_for(
            lambda ms: any(m.topic == f"{BASE}/response/poll_location" for m in ms), 15, "poll"
        )
        answer = next(m.json() for m in got if m.topic == f"{BASE}/response/poll_location")
        assert answer["status"] == "error"
        assert "busy" in answer["error"]
        assert alive(daemon)
    finally:
        tnc.close()


def test_a_thousand_large_requests_leave_a_small_journal(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, daemons: list[GatewayProcess]
) -> None:
    daemon = start(tmp_path, config_text(tmp_path / "data", mosquitto, units=UNIT), daemons)
    wait_online(collector)
    body = json.dumps({"transaction": "t", "padding": "p" * 60_000}).encode()
    for _ in range(1000):
        collector.client.publish(f"{BASE}/request/units", body, qos=1)
    collector.wait_for(
        lambda ms: sum(m.topic == f"{BASE}/response/units" for m in ms) >= 1000, 60, "answers"
    )
    assert daemon.terminate() == 0
    size = sum(
        p.stat().st_size for p in (tmp_path / "data").iterdir() if p.name.startswith("journal")
    )
    assert size < 20 * 1024 * 1024, size


def test_strangers_on_the_air_make_a_bounded_number_of_units(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, daemons: list[GatewayProcess]
) -> None:
    tnc = KissTnc()
    try:
        link = aprs_link(tnc.url)
        extra = "max_implicit_units = 100"
        start(tmp_path, config_text(tmp_path / "data", mosquitto, link, extra=extra), daemons)
        frames = [
            aprs_frame(f"BA{i:04d}", encode_position(31.0 + i / 1e4, 121.0, messaging=False))
            for i in range(2000)
        ]
        tnc.send(frames)

        def counted(ms: list[Received]) -> bool:
            health = [m.json() for m in ms if m.topic == f"{BASE}/health"]
            return bool(health) and health[-1]["links"]["vhf"]["frames"] >= 2000

        got = collector.wait_for(counted, 30, "every frame read")
        health = [m.json() for m in got if m.topic == f"{BASE}/health"][-1]
        assert health["units"]["implicit"] == 100
        assert health["units"]["implicit_refused"] >= 1900
        units = {m.topic.split("/")[3] for m in got if "/units/" in m.topic}
        assert len(units) == 100
    finally:
        tnc.close()


def nmea(kind: str, fields: list[str]) -> bytes:
    return encode_sentence("GP", kind, fields)


def absurd_epoch(now: datetime, date_text: str) -> bytes:
    hhmmss = now.strftime("%H%M%S") + ".00"
    rmc = nmea(
        "RMC",
        [hhmmss, "A", "3113.824", "N", "12128.422", "E", "999999999.0", "720.0", date_text,
         "", "", "A"],
    )  # fmt: skip
    gga = nmea(
        "GGA",
        [hhmmss, "3113.824", "N", "12128.422", "E", "1", "99999", "-5.0", "1000000000.0", "M",
         "0.0", "M", "", ""],
    )  # fmt: skip
    return rmc + gga


def test_absurd_gps_values_are_never_published(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, daemons: list[GatewayProcess]
) -> None:
    pty = GpsPty(tmp_path / "gps0")
    pty.open()
    try:
        link = f"""
[[links]]
name = "gps0"
protocol = "nmea"
url = "{tmp_path / "gps0"}"
unit = "car-1"
reconnect_min_s = 0.1
reconnect_max_s = 0.3
"""
        start(tmp_path, config_text(tmp_path / "data", mosquitto, link), daemons)
        collector.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/links/gps0/state" and b'"up"' in m.payload for m in ms
            ),
            20,
            "link up",
        )
        for offset in range(6):
            now = datetime.now(UTC) + timedelta(seconds=offset)
            # Year 70 (read as 2070), then today's date with absurd speed, course and so on.
            date_text = "010170" if offset % 2 == 0 else now.strftime("%d%m%y")
            pty.write(absurd_epoch(now, date_text))
            time.sleep(0.2)

        def counted(ms: list[Received]) -> bool:
            health = [m.json() for m in ms if m.topic == f"{BASE}/health"]
            seen = health[-1]["links"]["gps0"]["implausible"] if health else {}
            return bool(seen.get("fix_future", 0) >= 2 and seen.get("speed", 0) >= 2)

        got = collector.wait_for(counted, 20, "implausible fixes counted")
        published = [m.json() for m in got if m.topic == f"{BASE}/units/car-1/position"]
        assert published, "the fixes with today's date are kept, without their absurd fields"
        limit = datetime.now(UTC) + timedelta(minutes=10)
        for position in published:
            assert (
                set(position) & {"speed_kmh", "course_deg", "alt_m", "satellites", "hdop"} == set()
            )
            fix = datetime.fromisoformat(position["fix_time"].replace("Z", "+00:00"))
            assert datetime.now(UTC) - timedelta(days=1) < fix < limit
    finally:
        pty.close()


def test_an_exception_inside_the_session_leaves_the_state_offline(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\nreconnect_min_s = 60\nreconnect_max_s = 60\n',
        encoding="utf-8",
    )
    config = load_config(cfg)
    topics = Topics("fieldlink", "gw1")
    watcher = Collector(mosquitto.host, mosquitto.port, [topics.state]).start()

    async def scenario() -> None:
        journal = Journal.open(config.gateway.data_dir / "journal.sqlite")
        bridge = MqttBridge(
            config.mqtt, topics, journal, version="t", started_at=utc_now(),
            on_inbound=lambda message: None,
        )  # fmt: skip
        task = asyncio.create_task(bridge.run())
        try:
            await bridge.wait_connected(10)

            def broken(after_seq: int = 0, limit: int = 100) -> list[object]:
                raise RuntimeError("injected bug in the outbox drain")

            journal.pending = broken  # type: ignore[assignment,method-assign]
            bridge.emit(topics.task_events("x"), b"{}")
            deadline = time.monotonic() + 10
            while bridge.connected or bridge.connects < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 10)
            journal.close()

    run_async(scenario())
    states = watcher.wait_for(
        lambda ms: len(ms) >= 2 and b'"offline"' in ms[-1].payload, 10, "offline"
    )
    watcher.stop()
    said = [json.loads(m.payload)["state"] for m in states]
    # Said explicitly, then again by the will the broker sends on the disconnect.
    assert said[0] == "online"
    assert set(said[1:]) == {"offline"}
    # A late subscriber sees the retained truth.
    late = Collector(mosquitto.host, mosquitto.port, [topics.state]).start()
    retained = late.wait_for(bool, 10, "retained state")
    late.stop()
    assert json.loads(retained[-1].payload)["state"] == "offline"


def test_a_gateway_that_dies_of_a_bug_says_offline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A bug that ends the whole process (here: the dispatcher's clock task raises): the
    session is torn down with the will, so the retained state ends offline."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n',
        encoding="utf-8",
    )
    topics = Topics("fieldlink", "gw1")
    watcher = Collector(mosquitto.host, mosquitto.port, [topics.state]).start()

    async def scenario() -> None:
        gateway = Gateway(load_config(cfg))

        async def dies() -> None:
            await gateway.bridge.wait_connected(10)
            await asyncio.sleep(0.2)
            raise RuntimeError("injected bug")

        gateway.dispatcher.run = dies  # type: ignore[method-assign]
        with pytest.raises(ExceptionGroup):
            await gateway.run()

    run_async(scenario())
    states = watcher.wait_for(
        lambda ms: len(ms) >= 2 and b'"offline"' in ms[-1].payload, 10, "offline"
    )
    watcher.stop()
    assert json.loads(states[-1].payload)["state"] == "offline"


def test_a_bug_behind_a_driver_callback_does_not_reach_the_driver(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In process: what a driver reports (text, answers) is handled under a catch-all, so a
    bug in dispatch never takes the radio link down with it."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n{UNIT}', encoding="utf-8"
    )
    gateway = Gateway(load_config(cfg))

    def broken(*args: object) -> bool:
        raise RuntimeError("a bug in dispatch")

    gateway.dispatcher.on_reply = broken  # type: ignore[method-assign,assignment]
    gateway.dispatcher.on_answer = broken  # type: ignore[method-assign,assignment]
    device = DeviceRef("vhf", "BH4AAA-1")
    gateway.text(TextFromUnit(device, "收到", utc_now()))
    gateway.answer(UnitAnswer(device, "acknowledged", utc_now()))
    assert "could not be handled" in caplog.text
    assert "a bug in dispatch" in caplog.text
    gateway.journal.close()
