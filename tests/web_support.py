"""One daemon with real parts for the web and metrics tests: mosquitto, an APRS TNC on a real
KISS TCP socket that the test speaks for (positions, acks, replies, an emergency, a dropped
connection), and the daemon as a child process with its ``[http]`` server on a free port."""

from __future__ import annotations

import itertools
import json
import socket
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devkit.broker import BrokerUnavailable, Mosquitto, free_port
from gateway.model import rfc3339, utc_now
from protocols import ax25, kiss
from protocols.aprs import AprsMessage, decode_frame, encode_mic_e
from protocols.aprs.messages import encode_ack, encode_message
from tests.conftest import IN_CI
from tests.support import Collector, GatewayProcess, Received, wait_until

BASE = "fieldlink/gw1"
GATEWAY_CALL = "BH4GW-10"
ZHANG = "BH4ZW-7"
LI = "BH4LN-7"
UNITS = {"zhang-wei": ("张伟", ZHANG), "li-na": ("李娜", LI)}
HOME = (31.2304, 121.4737)


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A real mosquitto for the whole module (as ``mosquitto``: fails in CI when missing)."""
    try:
        broker = Mosquitto(tmp_path_factory.mktemp("broker"))
    except BrokerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"{exc}: CI must install it (scripts/install-peers)")
        pytest.skip(str(exc))
    with broker:
        yield broker


def aprs_frame(source: str, info: bytes, dest: str = "APZTST") -> bytes:
    frame = ax25.Ax25Frame(ax25.parse_address(dest), ax25.parse_address(source), (), info=info)
    return kiss.encode_frame(ax25.encode(frame))


_steps = itertools.count()


def mic_e(source: str, status: str = "En Route") -> bytes:
    """A Mic-E position from ``source``, each a little further north-east (never a duplicate)."""
    step = next(_steps)
    lat, lon = HOME[0] + step * 0.0004, HOME[1] + step * 0.0003
    dest, info = encode_mic_e(lat, lon, speed_kmh=20, course_deg=45, status=status)
    return aprs_frame(source, info, dest)


class Tnc:
    """A KISS TCP "TNC" the daemon dials; the test puts frames on the air and reads what the
    gateway transmits. :meth:`drop` closes the connection (the link goes down and back up)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._conn: socket.socket | None = None
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
            with self._lock:
                self._conn = conn
                self.connections += 1
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                with self._lock:
                    self.transmitted += data
            with self._lock:
                if self._conn is conn:
                    self._conn = None
            conn.close()

    def connected(self) -> bool:
        with self._lock:
            return self._conn is not None

    def send(self, *frames: bytes) -> None:
        wait_until(self.connected, 15, "the gateway connected to the TNC")
        with self._lock:
            assert self._conn is not None
            self._conn.sendall(b"".join(frames))

    def drop(self) -> None:
        with self._lock:
            conn = self._conn
        if conn is not None:
            conn.shutdown(socket.SHUT_RDWR)

    def messages_to(self, callsign: str) -> list[AprsMessage]:
        with self._lock:
            data = bytes(self.transmitted)
        out = []
        for item in kiss.KissDecoder().feed(data):
            if isinstance(item, kiss.KissFrame):
                packet = decode_frame(ax25.decode(item.payload))
                if isinstance(packet, AprsMessage) and packet.addressee.strip() == callsign:
                    out.append(packet)
        return out

    def close(self) -> None:
        self._server.close()
        self.drop()


def config_text(data_dir: Path, broker: Mosquitto, tnc: Tnc, http_port: int, http: str) -> str:
    units = "".join(
        f'\n[[units]]\nid = "{uid}"\nname = "{name}"\ndevices = ["vhf:{call}"]\n'
        for uid, (name, call) in UNITS.items()
    )
    return f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[mqtt]
url = "{broker.url}"
health_interval_s = 0.5
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[http]
listen = "127.0.0.1:{http_port}"
{http}

[[links]]
name = "vhf"
protocol = "aprs"
url = "{tnc.url}"
callsign = "{GATEWAY_CALL}"
retry_intervals_s = [30.0]
reconnect_min_s = 0.1
reconnect_max_s = 0.3
{units}
"""


class Site:
    """The daemon, its TNC and a subscriber to everything it publishes."""

    def __init__(self, root: Path, broker: Mosquitto, *, http: str = "") -> None:
        self.root = root
        self.broker = broker
        self.tnc = Tnc()
        self.collector = Collector(broker.host, broker.port, [f"{BASE}/#"]).start()
        self.http_port = free_port()
        self.data_dir = root / "data"
        config = root / "config.toml"
        config.write_text(
            config_text(self.data_dir, broker, self.tnc, self.http_port, http), encoding="utf-8"
        )
        self.daemon = GatewayProcess(config, root / "gateway.log").start()
        self._transactions = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_ready(self) -> None:
        self.wait_link("up")
        wait_until(lambda: self.status_code("/status.json") == 200, 15, "the web server")

    def wait_link(self, state: str, after: int = 0) -> None:
        topic = f"{BASE}/links/vhf/state"

        def seen(ms: list[Received]) -> bool:
            return any(m.topic == topic and m.json()["state"] == state for m in ms[after:])

        self.collector.wait_for(seen, 20, f"link vhf {state}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, headers=headers or {})  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            body: bytes = response.read()
            return body

    def status_code(self, path: str, headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(self.url + path, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def status(self) -> Any:
        return json.loads(self.get("/status.json"))

    def dispatch(self, task_id: str, unit: str, text: str) -> None:
        body = {
            "task_id": task_id,
            "units": [unit],
            "text": text,
            "priority": "urgent",
            "created_at": rfc3339(utc_now()),
        }
        info = self.collector.client.publish(
            f"{BASE}/tasks/dispatch", json.dumps(body, ensure_ascii=False).encode(), qos=1
        )
        info.wait_for_publish(5)

    def events_of(self, task_id: str) -> list[Received]:
        return self.collector.snapshot(f"{BASE}/tasks/{task_id}/events")

    def wait_stage(self, task_id: str, stage: str) -> Received:
        def reached(ms: list[Received]) -> bool:
            return any(m.json()["stage"] == stage for m in ms)

        wait_until(lambda: reached(self.events_of(task_id)), 20, f"{task_id} {stage}")
        return next(m for m in self.events_of(task_id) if m.json()["stage"] == stage)

    def task_message(self, callsign: str, task_id: str) -> AprsMessage:
        """The APRS message that carried the task to ``callsign`` (its first copy)."""

        def sent() -> list[AprsMessage]:
            return [m for m in self.tnc.messages_to(callsign) if task_id in m.text]

        wait_until(lambda: bool(sent()), 15, f"{task_id} on the air to {callsign}")
        return sent()[0]

    def radio_acks(self, callsign: str, message: AprsMessage) -> None:
        assert message.msgno is not None
        self.tnc.send(aprs_frame(callsign, encode_ack(GATEWAY_CALL, message.msgno)))

    def radio_replies(self, callsign: str, text: str) -> None:
        msgno = f"R{next(self._transactions)}"
        self.tnc.send(aprs_frame(callsign, encode_message(GATEWAY_CALL, text, msgno)))

    def request(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        transaction = f"t{next(self._transactions)}"
        payload = json.dumps({"transaction": transaction, **body}).encode()
        self.collector.client.publish(f"{BASE}/request/{command}", payload, qos=1).wait_for_publish(
            5
        )
        topic = f"{BASE}/response/{command}"

        def mine(m: Received) -> bool:
            return m.topic == topic and m.json().get("transaction") == transaction

        got = self.collector.wait_for(lambda ms: any(mine(m) for m in ms), 10, command)
        response: dict[str, Any] = next(m.json() for m in got if mine(m))
        return response

    def journal_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the running daemon's journal (WAL: a reader does not disturb the writer)."""
        uri = f"file:{self.data_dir / 'journal.sqlite'}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            return list(conn.execute(sql).fetchall())
        finally:
            conn.close()

    def close(self) -> None:
        self.daemon.ensure_stopped()
        self.collector.stop()
        self.tnc.close()
