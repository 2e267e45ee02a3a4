"""A city on one machine: one central mosquitto, one edge mosquitto per site bridged to it,
one gateway (``fieldlink run``, a child process) per site on its edge broker with its own
radio stubs, and dispatch servers on the central broker sharing the event stream through an
MQTT 5 shared subscription (``$share/centre/...``). Used by ``tests/test_city.py`` and
``bench/city.py``; ``docs/scale.md`` explains the shape.

What is real: every broker is a mosquitto, every bridge a mosquitto bridge (``cleansession
false``, persistent store, a deliberate ``max_queued_messages``), every gateway the daemon,
every radio an :class:`~firmware_stubs.aprs_radio.AprsRadio` on its site's simulated channel
(a :class:`~firmware_stubs.radio_net.RadioNet` served as a KISS TCP port), every GPS receiver
an :class:`~firmware_stubs.nmea_gps.NmeaGps` served over TCP. Each site's bridge dials the
centre through an :class:`Uplink`, a TCP relay standing for the site's WAN line, which can be
cut and restored.

``python -m gateway.devkit.city centre --port P --client-id ID --out FILE`` is one dispatch
server instance (what :class:`DispatchServer` starts): it writes every event it receives as a
JSON line to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_stubs.aprs_radio import AprsRadio
from firmware_stubs.gt06_tracker import Gt06Tracker, keep_dialling
from firmware_stubs.nmea_gps import NmeaGps, serve_tcp
from firmware_stubs.radio_net import RadioNet
from gateway.devkit.broker import Mosquitto, free_port

__all__ = [
    "BASE",
    "EVENTS_FILTER",
    "SHARE_GROUP",
    "City",
    "DispatchServer",
    "GatewayChild",
    "Site",
    "Subscriber",
    "Uplink",
    "bridge_lines",
]

T = TypeVar("T")

BASE: Final = "fieldlink"
SHARE_GROUP: Final = "centre"
EVENTS_FILTER: Final = f"{BASE}/+/tasks/+/events"
ROOT: Final = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S: Final = 15.0
READY_TIMEOUT_S: Final = 30.0

#: What a site's bridge carries down (tasks, cancels, requests for its gateway) ...
BRIDGE_IN: Final = ("tasks/dispatch", "tasks/cancel", "request/#")
#: ... and up (everything its gateway publishes; nothing under another gateway's id).
BRIDGE_OUT: Final = (
    "state", "info", "health", "alarms", "links/#", "units/#", "tasks/+/events",
    "tasks/rejected", "response/#",
)  # fmt: skip


def bridge_lines(
    gateway_id: str,
    central: tuple[str, int],
    *,
    max_queued_messages: int,
    username: str | None = None,
    password: str | None = None,
) -> list[str]:
    """The edge broker's bridge to the centre, for one gateway's topics only.

    ``cleansession false`` keeps the bridge's session (and the tasks queued for it) on the
    central broker across a cut; the edge's own persistent store keeps what its gateway
    published meanwhile. ``max_queued_messages`` bounds both queues: size it for the
    longest outage (mosquitto drops beyond it without a word to anyone but its log).
    """
    lines = [
        f"max_queued_messages {max_queued_messages}",
        "autosave_interval 5",
        f"connection {gateway_id}-to-centre",
        f"address {central[0]}:{central[1]}",
        "bridge_protocol_version mqttv311",
        "try_private true",
        "cleansession false",
        f"remote_clientid bridge-{gateway_id}",
        f"local_clientid bridge-{gateway_id}-local",
        "restart_timeout 1 3",
        "keepalive_interval 10",
        "notifications false",
    ]
    if username is not None:
        lines.append(f"remote_username {username}")
    if password is not None:
        lines.append(f"remote_password {password}")
    lines += [f"topic {BASE}/{gateway_id}/{t} in 1" for t in BRIDGE_IN]
    lines += [f"topic {BASE}/{gateway_id}/{t} out 1" for t in BRIDGE_OUT]
    return lines


class StubLoop:
    """An event loop on a thread of its own for the radios, GPS receivers and uplinks, so
    that callers stay synchronous and the stubs outlive gateway and broker restarts."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._tasks: list[asyncio.Task[None]] = []
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call_soon(self, fn: Callable[[], T]) -> T:
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(10)

    def run(self, coro: Coroutine[Any, Any, None]) -> Future[None]:
        """Start ``coro`` on the loop; its future (it is also cancelled by :meth:`stop`)."""
        task: Future[asyncio.Task[None]] = Future()

        async def start() -> None:
            created = asyncio.get_running_loop().create_task(coro)
            self._tasks.append(created)
            task.set_result(created)

        self.call(start())
        return asyncio.run_coroutine_threadsafe(_await(task.result(10)), self.loop)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def start() -> None:
            self._tasks.append(asyncio.get_running_loop().create_task(coro))

        self.call(start())

    def stop(self) -> None:
        async def shutdown() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.sleep(0.05)  # transports of the cancelled tasks finish closing

        try:
            self.call(shutdown(), 20.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


class Uplink:
    """A site's line to the centre: a TCP relay its bridge dials. :meth:`cut` refuses new
    connections and drops the open ones (a WAN outage); :meth:`restore` listens again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        """Chosen by the system when it first listens, kept across cuts."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        if self._pumps:
            await asyncio.wait(list(self._pumps), timeout=5.0)

    async def restore(self) -> None:
        if self._server is None:
            await self.open()

    async def run(self) -> None:
        """Open (unless open), then relay until cancelled."""
        await self.restore()
        try:
            await asyncio.Future()
        finally:
            await self.cut()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.transport.abort()
                up_writer.transport.abort()

        pumps = [
            asyncio.create_task(pump(reader, up_writer)),
            asyncio.create_task(pump(up_reader, writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._pumps.difference_update(pumps)
            self._writers.difference_update((writer, up_writer))


class GatewayChild:
    """``fieldlink run -c CONFIG`` as a child process, its output in a log file."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "gateway.cli", "run", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                cwd=ROOT,
            )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        return self.proc.returncode

    def rss_kb(self) -> int:
        """Resident memory now, from /proc (0 when not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True, slots=True)
class Heard:
    topic: str
    payload: bytes
    at: float
    """time.monotonic() on arrival (comparable across processes on Linux)."""

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho MQTT 5 client on its own thread that records what it receives and can publish.

    ``persistent``: a fixed client id with a session that outlives disconnects and broker
    restarts (the centre's archive); paho reconnects by itself and resubscribes."""

    def __init__(
        self,
        port: int,
        topics: Iterable[str],
        *,
        client_id: str = "",
        persistent: bool = False,
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.topics = list(topics)
        self.persistent = persistent
        self.messages: list[Heard] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.topics and not reason.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        heard = Heard(msg.topic, bytes(msg.payload), time.monotonic())
        with self._lock:
            self.messages.append(heard)

    def start(self) -> Subscriber:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 86400 if self.persistent else 0
        self.client.connect(self.host, self.port, clean_start=not self.persistent, properties=props)
        self.client.loop_start()
        if self.topics and not self._subscribed.wait(10):
            self.stop()
            raise TimeoutError(f"no SUBACK from the broker on port {self.port} in 10 s")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout_s)

    def snapshot(self, prefix: str = "") -> list[Heard]:
        with self._lock:
            return [m for m in self.messages if m.topic.startswith(prefix)]

    def wait_for(
        self, predicate: Callable[[list[Heard]], bool], timeout_s: float, what: str
    ) -> list[Heard]:
        deadline = time.monotonic() + timeout_s
        while not predicate(found := self.snapshot()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.05)
        return found


class DispatchServer:
    """One dispatch-server instance: a child process in the ``$share/centre`` group, with a
    clean session (a killed instance's share goes to the others at once), writing each event
    it receives to a JSON-lines file."""

    def __init__(self, central_port: int, client_id: str, out: Path) -> None:
        self.central_port = central_port
        self.client_id = client_id
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DispatchServer:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.out.write_bytes(b"")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "gateway.devkit.city", "centre",
             "--port", str(self.central_port), "--client-id", self.client_id,
             "--out", str(self.out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._lines(lambda obj: "subscribed" in obj):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise TimeoutError(f"dispatch server {self.client_id} did not subscribe")
            time.sleep(0.05)
        return self

    def _lines(self, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        out = []
        for line in self.out.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                obj = json.loads(line)
                if keep(obj):
                    out.append(obj)
        return out

    def subscriptions(self) -> int:
        """How many times it has subscribed (one more after each reconnect)."""
        return len(self._lines(lambda obj: "subscribed" in obj))

    def events(self) -> list[dict[str, Any]]:
        """``{"topic", "event", "at"}`` of each event received, in order."""
        return self._lines(lambda obj: "event" in obj)

    def kill(self) -> None:
        """SIGKILL: no DISCONNECT, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Site:
    """One street office: its edge broker, its uplink to the centre, its gateway, its radio
    channel and GPS receiver, its units (unit id -> radio callsign)."""

    index: int
    gateway_id: str
    workdir: Path
    edge: Mosquitto
    uplink: Uplink
    gateway: GatewayChild
    net: RadioNet = field(default_factory=RadioNet)
    net_port: int = 0
    gps_port: int = 0
    units: dict[str, str] = field(default_factory=dict)
    radios: dict[str, AprsRadio] = field(default_factory=dict)
    gps: tuple[asyncio.Event, Future[None]] | None = None
    tracker_port: int = 0
    trackers: dict[str, str] = field(default_factory=dict)
    """Units with a GT06 tracker dialling in (unit id -> IMEI)."""

    @property
    def topic(self) -> str:
        return f"{BASE}/{self.gateway_id}"


@dataclass(frozen=True, slots=True)
class CityOptions:
    """The shape and timing of a city; the defaults suit a test."""

    radios_per_site: int = 2
    #: One radio heard by sites 1 and 2 (overlapping coverage) and listed, unheard, at site 3.
    overlap: bool = True
    beacon_interval_s: float | None = 2.0
    ack_delay_s: float = 0.3
    reply_delay_s: float = 1.0
    retry_intervals_s: tuple[float, ...] = (0.5, 0.5, 0.5)
    gps_rate_hz: float | None = None
    #: A patrol car per site with a GT06 tracker dialling into its gateway (``listen://``).
    trackers: bool = False
    tracker_interval_s: float = 2.0
    max_queued_messages: int = 20_000
    acknowledge_s: float = 60.0
    #: Started as root, the central broker drops to the ``mosquitto`` user as a packaged one
    #: does (its store must then be writable by that user: docs/scale.md).
    central_drops_root: bool = False


OVERLAP_UNIT: Final = "overlap-1"
OVERLAP_CALL: Final = "BOVL1-7"


class City:
    """The whole city; ``with City(workdir, sites) as city:`` starts and stops everything."""

    def __init__(self, workdir: Path, sites: int, options: CityOptions | None = None) -> None:
        if sites < 1 or sites > 99:
            raise ValueError("a city on one machine has 1 to 99 sites")
        self.workdir = workdir
        self.options = options or CityOptions()
        workdir.mkdir(parents=True, exist_ok=True)
        self.central = Mosquitto(
            workdir / "central",
            extra_lines=[
                f"max_queued_messages {self.options.max_queued_messages}",
                "autosave_interval 5",
            ],
            stay_root=not self.options.central_drops_root,
        )
        if self.options.central_drops_root:
            # The mosquitto user must reach its files and write its log; its store stays
            # as it is (root's, unless the caller hands it over).
            workdir.chmod(0o755)
            self.central.workdir.chmod(0o777)
        self.stubs: StubLoop | None = None
        self.size = sites
        self.sites: list[Site] = []
        """Filled by :meth:`start`: each site's ports are taken just before they are used."""
        self.dispatch_servers: list[DispatchServer] = []

    def site(self, index: int) -> Site:
        return self.sites[index - 1]

    def _build_site(self, index: int) -> Site:
        assert self.stubs is not None
        gateway_id = f"site-{index}"
        site_dir = self.workdir / gateway_id
        uplink = Uplink((self.central.host, self.central.port))
        self.stubs.call(uplink.open())
        edge = Mosquitto(
            site_dir / "edge",
            extra_lines=bridge_lines(
                gateway_id,
                ("127.0.0.1", uplink.port),
                max_queued_messages=self.options.max_queued_messages,
            ),
        )
        site = Site(
            index, gateway_id, site_dir, edge, uplink,
            GatewayChild(site_dir / "config.toml", site_dir / "gateway.log"),
        )  # fmt: skip
        for j in range(self.options.radios_per_site):
            site.units[f"s{index}-u{j + 1}"] = f"B{index:02d}U{j + 1:02d}-7"
        if self.options.overlap and index in (1, 2, 3):
            site.units[OVERLAP_UNIT] = OVERLAP_CALL
        if self.options.trackers:
            site.trackers[f"s{index}-car"] = f"8612345678{index:05d}"
        self.sites.append(site)
        return site

    def _radio(self, callsign: str) -> AprsRadio:
        o = self.options
        return AprsRadio(
            callsign,
            beacon_interval_s=o.beacon_interval_s,
            ack_delay_s=o.ack_delay_s,
            reply_delay_s=o.reply_delay_s,
        )

    def _config(self, site: Site) -> str:
        o = self.options
        gps = ""
        if o.gps_rate_hz is not None:
            gps = f"""
[[links]]
name = "gps"
protocol = "nmea"
url = "tcp://127.0.0.1:{site.gps_port}"
unit = "{site.gateway_id}-car"
reconnect_min_s = 0.1
reconnect_max_s = 0.5
"""
        if site.trackers:
            gps += f"""
[[links]]
name = "trk"
protocol = "gt06"
url = "listen://127.0.0.1:{site.tracker_port}"
"""
        units = "".join(
            f'\n[[units]]\nid = "{unit}"\ndevices = ["vhf:{call}"]\n'
            for unit, call in site.units.items()
        ) + "".join(
            f'\n[[units]]\nid = "{unit}"\ndevices = ["trk:{imei}"]\n'
            for unit, imei in site.trackers.items()
        )
        return f"""
[gateway]
id = "{site.gateway_id}"
data_dir = "{site.workdir / "data"}"

[mqtt]
url = "{site.edge.url}"
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[http]
enabled = false

[sla]
acknowledge_s = {o.acknowledge_s}

[dispatch]
sends_per_device = 1

[[links]]
name = "vhf"
protocol = "aprs"
url = "tcp://127.0.0.1:{site.net_port}"
callsign = "BS{site.index:02d}GW-10"
retry_intervals_s = {list(o.retry_intervals_s)}
channel_baud = 9600
txdelay_s = 0.05
gap_s = 0.02
reconnect_min_s = 0.1
reconnect_max_s = 0.5
{gps}{units}"""

    def start(self) -> None:
        self.central.start()
        self.stubs = StubLoop()
        shared_radio: AprsRadio | None = None
        if self.options.overlap and self.size >= 2:
            shared_radio = self._radio(OVERLAP_CALL)
        for index in range(1, self.size + 1):
            site = self._build_site(index)
            self.stubs.spawn(site.uplink.run())
            ready: Future[int] = Future()
            self.stubs.spawn(site.net.serve(on_ready=partial(_port_ready, ready)))
            site.net_port = ready.result(10)
            for unit, call in site.units.items():
                if call == OVERLAP_CALL:
                    if shared_radio is None or site.index > 2:
                        continue  # listed at site 3, but its radio is not heard there
                    radio = shared_radio
                else:
                    radio = self._radio(call)
                site.radios[unit] = radio
                port = self.stubs.call_soon(partial(site.net.attach, radio.callsign))
                self.stubs.spawn(radio.run(port))
            if self.options.gps_rate_hz is not None:
                self._serve_gps(site, self.options.gps_rate_hz)
            site.edge.start()
            if site.trackers:
                site.tracker_port = free_port()
            (site.workdir / "data").mkdir(parents=True, exist_ok=True)
            site.gateway.config.write_text(self._config(site), encoding="utf-8")
            site.gateway.start()
            for imei in site.trackers.values():
                make = partial(
                    Gt06Tracker, imei, "127.0.0.1", site.tracker_port,
                    report_interval_s=self.options.tracker_interval_s,
                )  # fmt: skip
                # Never set: the tracker runs until the stub loop stops (and cancels it).
                self.stubs.spawn(keep_dialling(asyncio.Event(), make))

    def wait_online(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until every gateway's ``online`` has come through its bridge to the centre (then
        the bridge also carries tasks down)."""
        states = Subscriber(self.central.port, [f"{BASE}/+/state"]).start()
        want = {site.topic + "/state" for site in self.sites}
        try:
            states.wait_for(
                lambda ms: want <= {m.topic for m in ms if m.json().get("state") == "online"},
                timeout_s,
                "every gateway online at the centre",
            )
        finally:
            states.stop()

    def _serve_gps(self, site: Site, rate_hz: float) -> None:
        assert self.stubs is not None
        ready: Future[str] = Future()
        stop = asyncio.Event()  # bound to the stub loop on first use, there
        gps = NmeaGps(profile="minimal", rate_hz=rate_hz)
        site.gps = (stop, self.stubs.run(
            serve_tcp(gps, "127.0.0.1", site.gps_port, stop=stop, on_ready=ready.set_result)
        ))  # fmt: skip
        site.gps_port = int(ready.result(10).rsplit(":", 1)[1])

    def set_gps_rate(self, rate_hz: float) -> None:
        """Every site's GPS receiver now sends ``rate_hz`` fixes a second (on the same port:
        the gateways reconnect)."""
        assert self.stubs is not None
        for site in self.sites:
            if site.gps is not None:
                stop, running = site.gps
                self.stubs.loop.call_soon_threadsafe(stop.set)
                running.result(10)
                self._serve_gps(site, rate_hz)

    def start_dispatch_servers(self, count: int) -> list[DispatchServer]:
        for n in range(count):
            name = f"centre-{chr(ord('a') + n)}"
            server = DispatchServer(self.central.port, name, self.workdir / f"{name}.jsonl")
            self.dispatch_servers.append(server)
            server.start()
        return self.dispatch_servers

    def cut(self, site: Site) -> None:
        assert self.stubs is not None
        self.stubs.call(site.uplink.cut())

    def restore(self, site: Site) -> None:
        assert self.stubs is not None
        self.stubs.call(site.uplink.restore())

    def stop(self) -> dict[str, int | None]:
        """Stop everything started, in the reverse order; the gateways' exit codes."""
        codes: dict[str, int | None] = {}
        try:
            for server in self.dispatch_servers:
                server.stop()
            for site in self.sites:
                codes[site.gateway_id] = site.gateway.stop()
        finally:
            for site in self.sites:
                site.edge.stop()
            if self.stubs is not None:
                self.stubs.stop()
                self.stubs = None
            self.central.stop()
        return codes

    def __enter__(self) -> City:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _await(task: asyncio.Task[None]) -> None:
    await asyncio.shield(task)


def _port_ready(future: Future[int], _host: str, port: int) -> None:
    future.set_result(port)


# -- one dispatch-server instance (the child process) ------------------------------------------


def _centre(port: int, client_id: str, out: Path) -> int:
    sink = out.open("a", encoding="utf-8")
    lock = threading.Lock()

    def write(obj: dict[str, Any]) -> None:
        with lock:
            sink.write(json.dumps(obj, ensure_ascii=False) + "\n")
            sink.flush()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.reconnect_delay_set(1, 2)

    def on_connect(
        c: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        if not reason.is_failure:
            c.subscribe(f"$share/{SHARE_GROUP}/{EVENTS_FILTER}", qos=1)

    def on_subscribe(*args: object) -> None:
        write({"subscribed": client_id, "at": time.monotonic()})

    def on_message(c: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        # Written (and flushed) before paho acknowledges the message on return.
        try:
            event = json.loads(msg.payload)
        except ValueError:
            event = {"undecodable": msg.payload.hex()}
        write({"topic": msg.topic, "event": event, "at": time.monotonic()})

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.connect_async("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_forever(retry_first_connection=True)
    sink.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.devkit.city")
    commands = parser.add_subparsers(dest="command", required=True)
    centre = commands.add_parser("centre", help="one dispatch-server instance")
    centre.add_argument("--port", type=int, required=True)
    centre.add_argument("--client-id", required=True)
    centre.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return _centre(args.port, args.client_id, args.out)


if __name__ == "__main__":
    sys.exit(main())
