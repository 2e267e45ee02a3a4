"""Dispatch benchmark: 1,000 tasks to 200 APRS radio stubs over MQTT, through the daemon.

The radios share one simulated channel behind a KISS TCP port (no airtime: the
channel is not what is measured); each acks at once and its person replies "收到".
Prints JSON lines:

* ``ceiling``: the same broker's bare QoS 1 publish rate (paho-mqtt, messages the size
  of a task, to a subscriber), and its one-hop latency p50;
* ``outbound``: the gateway's own share from a task's receipt to its bytes on the link,
  from the journal (``transmitted`` minus ``received``, both on the gateway's monotonic
  clock), at a steady 20 tasks/s: p50/p99 (targets: 5 ms / 20 ms);
* ``inbound``: from the reply's bytes on the channel to the ``acknowledged`` event at a
  subscriber, minus the broker's one-hop p50 measured above: p50/p99 (same targets);
* ``throughput``: the rest of the 1,000 tasks as one burst: acknowledged tasks/s end to
  end, and its ratio to the ceiling.

Alarms ahead of positions (SPEC section 5: alarms go out ahead of positions), with a KISS
TCP "TNC" of the benchmark's own that the daemon dials, carrying 5,000 APRS positions/s
from 200 stations (uncompressed, compressed and Mic-E, every frame distinct):

* ``alarm_ceiling``: a bare paho-mqtt client doing the same on one connection (5,000 QoS 0
  positions/s, and a QoS 1 alarm at each moment the daemon's run has one), the time from
  its publish call to the alarm at a subscriber: p50/p99;
* ``alarm``: 200 Mic-E emergencies raised and cleared (by each station's next Mic-E that
  is not Emergency) at random moments while the positions flow: the time from the frame's
  write to the TNC socket to the ``raised`` or ``cleared`` event at a subscriber,
  p50/p99/max over the 400 events (target p99: 20 ms), and the position rate a
  subscriber received meanwhile.

Run from the repository: ``.venv/bin/python bench/dispatch.py [--only dispatch|alarms]``.
Needs mosquitto.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchkit import percentile, wait  # noqa: E402

from firmware_stubs.aprs_radio import AprsRadio  # noqa: E402
from gateway.devkit.broker import Mosquitto  # noqa: E402
from gateway.model import rfc3339, utc_now  # noqa: E402
from protocols import ax25, kiss  # noqa: E402
from protocols.aprs import AprsMessage, decode_frame, encode_mic_e, encode_position  # noqa: E402
from tests.radio_harness import RadioField  # noqa: E402

UNITS = 200
TASKS = 1000
STEADY_TASKS = 200
STEADY_RATE_PER_S = 20.0
BASE = "fieldlink/bench"


def callsign(i: int) -> str:
    return f"B{i:03d}X-7"


class Listener:
    """Records every task event (and ceiling message) with its arrival time."""

    def __init__(self, port: int) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.ceiling: list[tuple[float, bytes]] = []
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(f"{BASE}/tasks/+/events", 1), ("bench/ceiling", 1)])
        if not self._ready.wait(10):
            raise RuntimeError("listener did not subscribe")

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic == "bench/ceiling":
            self.ceiling.append((now, bytes(msg.payload)))
        else:
            self.events.append((now, json.loads(msg.payload)))

    def acknowledged(self) -> dict[str, float]:
        return {e["task_id"]: at for at, e in list(self.events) if e["stage"] == "acknowledged"}

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def measure_ceiling(port: int, listener: Listener, size: int) -> tuple[float, float]:
    """Bare QoS 1 publish rate through the broker, and one-hop latency at a low rate."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = b"x" * size
    # Latency: one message at a time.
    hops = []
    for _ in range(200):
        before = len(listener.ceiling)
        sent = time.monotonic()
        client.publish("bench/ceiling", payload, 1)
        wait(partial(lambda n: len(listener.ceiling) > n, before), 5, "a ceiling message")
        hops.append(listener.ceiling[-1][0] - sent)
        time.sleep(0.002)
    listener.ceiling.clear()
    start = time.monotonic()
    for _ in range(TASKS):
        client.publish("bench/ceiling", payload, 1)
    wait(lambda: len(listener.ceiling) >= TASKS, 60, "the ceiling burst")
    rate = TASKS / (listener.ceiling[-1][0] - start)
    client.loop_stop()
    client.disconnect()
    return rate, percentile(hops, 50)


def config_text(tmp: Path, broker: Mosquitto, kiss_url: str) -> str:
    units = "".join(
        f'[[units]]\nid = "u{i}"\nname = "u{i}"\ndevices = ["vhf:{callsign(i)}"]\n'
        for i in range(UNITS)
    )
    return f"""
[gateway]
id = "bench"
data_dir = "{tmp / "data"}"
log_level = "warning"

[mqtt]
url = "{broker.url}"

[[links]]
name = "vhf"
protocol = "aprs"
url = "{kiss_url}"
callsign = "BH4GW-10"
retry_intervals_s = [5.0, 5.0, 5.0]
channel_baud = 10000000
txdelay_s = 0.0
txtail_s = 0.0
gap_s = 0.0

{units}"""


def task(n: int) -> bytes:
    body = {
        "task_id": f"b{n:04d}",
        "units": [f"u{n % UNITS}"],
        "text": f"b{n:04d} 人民广场东侧有人摔倒",
        "priority": "urgent" if n % 10 == 0 else "normal",
        "created_at": rfc3339(utc_now()),
    }
    return json.dumps(body, ensure_ascii=False).encode()


def radio_process(ready: Any, done: Any, results: Any) -> None:
    """The 200 radios on their channel, in a process of their own (no GIL shared with
    the MQTT listener of the measuring process)."""
    radios = [
        AprsRadio(callsign(i), reply="收到", reply_delay_s=0.0, ack_delay_s=0.0)
        for i in range(UNITS)
    ]
    field = RadioField(radios).start()
    ready.put(field.url)
    done.wait()
    results.put(list(field.net.log))
    field.stop()


def reply_times(log: list[tuple[float, str, bytes]]) -> dict[str, float]:
    """When each task's reply ("收到 #ref") went on the channel, by task ref."""
    out: dict[str, float] = {}
    for at, sender, frame_bytes in log:
        if sender.startswith("tcp:"):
            continue
        packet = decode_frame(ax25.decode(frame_bytes))
        if isinstance(packet, AprsMessage) and "#" in packet.text:
            ref = packet.text.rsplit("#", 1)[1].strip()
            out.setdefault(ref, at)
    return out


def shares(
    journal: Path, replies: dict[str, float], acked: dict[str, float], hop_s: float
) -> list[dict[str, object]]:
    """The gateway's own share, outbound from the journal and inbound from the air log."""
    with sqlite3.connect(journal) as conn:
        rows = conn.execute(
            "SELECT t.task_id, t.ref, r.offset_s, x.offset_s FROM tasks t"
            " JOIN stages r ON r.task_id = t.task_id AND r.stage = 'received'"
            " JOIN stages x ON x.task_id = t.task_id AND x.stage = 'transmitted'"
        ).fetchall()
    steady = {f"b{n:04d}" for n in range(STEADY_TASKS)}
    outbound = [(x - r) * 1000 for task_id, _ref, r, x in rows if task_id in steady]
    refs = {str(ref): task_id for task_id, ref, _r, _x in rows}
    inbound = []
    for ref, at in replies.items():
        task_id = refs.get(ref)
        if task_id in steady and task_id in acked:
            inbound.append((acked[task_id] - at - hop_s) * 1000)
    return [
        {
            "figure": name,
            "tasks": len(values),
            "p50_ms": round(percentile(values, 50), 3),
            "p99_ms": round(percentile(values, 99), 3),
            "target_p50_ms": 5,
            "target_p99_ms": 20,
        }
        for name, values in (("outbound", outbound), ("inbound", inbound))
    ]


def dispatch_figures() -> None:  # noqa: PLR0915 - a benchmark reads best top to bottom
    # The radios, the MQTT listener and this thread share one interpreter: a short GIL
    # switch interval keeps them from adding milliseconds of their own to the figures.
    sys.setswitchinterval(0.0002)
    ctx = mp.get_context("spawn")
    ready: Any = ctx.Queue()
    results: Any = ctx.Queue()
    done = ctx.Event()
    radios = ctx.Process(target=radio_process, args=(ready, done, results))
    radios.start()
    with tempfile.TemporaryDirectory(prefix="fieldlink-bench-") as tmp_name, Mosquitto() as broker:
        tmp = Path(tmp_name)
        kiss_url = ready.get(timeout=60)
        listener = Listener(broker.port)
        rate, hop = measure_ceiling(broker.port, listener, len(task(0)))
        print(
            json.dumps(
                {
                    "figure": "ceiling",
                    "qos1_msgs_per_s": round(rate),
                    "hop_p50_ms": round(hop * 1000, 3),
                }
            )
        )

        cfg = tmp / "config.toml"
        cfg.write_text(config_text(tmp, broker, kiss_url), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "daemon.log").open("wb"),
        )
        publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        publisher.max_inflight_messages_set(100)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        try:
            time.sleep(2.0)  # the daemon connects, subscribes, opens its link
            # Steady phase: latency.
            for n in range(STEADY_TASKS):
                publisher.publish(f"{BASE}/tasks/dispatch", task(n), 1)
                time.sleep(1 / STEADY_RATE_PER_S)
            wait(
                lambda: len(listener.acknowledged()) >= STEADY_TASKS,
                60,
                "steady tasks acknowledged",
            )
            # Burst phase: throughput.
            burst_start = time.monotonic()
            for n in range(STEADY_TASKS, TASKS):
                publisher.publish(f"{BASE}/tasks/dispatch", task(n), 1)
            try:
                wait(lambda: len(listener.acknowledged()) >= TASKS, 180, "every task acknowledged")
            except RuntimeError:
                stages: dict[str, int] = {}
                for _at, event in list(listener.events):
                    stages[event["stage"]] = stages.get(event["stage"], 0) + 1
                print(json.dumps({"figure": "error", "stages_seen": stages}))
                print((tmp / "daemon.log").read_text()[-3000:], file=sys.stderr)
                (Path(tempfile.gettempdir()) / "fieldlink-bench-daemon.log").write_bytes(
                    (tmp / "daemon.log").read_bytes()
                )
                raise
            acked = listener.acknowledged()
            burst_end = max(at for task_id, at in acked.items() if int(task_id[1:]) >= STEADY_TASKS)
            throughput = (TASKS - STEADY_TASKS) / (burst_end - burst_start)
        finally:
            publisher.loop_stop()
            publisher.disconnect()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)

        done.set()
        air_log = results.get(timeout=60)
        radios.join(30)
        for figure in shares(tmp / "data" / "journal.sqlite", reply_times(air_log), acked, hop):
            print(json.dumps(figure))
        print(
            json.dumps(
                {
                    "figure": "throughput",
                    "tasks": TASKS - STEADY_TASKS,
                    "acknowledged_per_s": round(throughput, 1),
                    "ratio_to_ceiling": round(throughput / rate, 4),
                }
            )
        )
        listener.stop()


# -- alarms ahead of positions ---------------------------------------------------------------

POSITION_STATIONS = 200
ALARM_STATIONS = 20
POSITION_RATE_PER_S = 5000
ALARMS = 200
ALARM_SPAN_S = 20.0
"""The 200 raises (and their clears) fall at random moments within this span."""
LEAD_IN_S = 2.0
"""Positions flow this long before the first alarm (and after the last one)."""
TICK_S = 0.002
ALARM_TOPIC = f"{BASE}/units/+/alarm"
CEILING_ALARM_TOPIC = "bench/ceiling/alarm"
CEILING_POSITION_TOPIC = "bench/ceiling/position"


def position_station(i: int) -> str:
    return f"P{i:03d}X-7"


def alarm_station(i: int) -> str:
    return f"E{i:03d}X-7"


def ui_frame(source: str, info: bytes, dest: str = "APZTST") -> bytes:
    frame = ax25.Ax25Frame(ax25.parse_address(dest), ax25.parse_address(source), info=info)
    return kiss.encode_frame(ax25.encode(frame))


def position_frames(count: int) -> list[bytes]:
    """``count`` KISS frames, stations in turn, formats in turn; no two alike (the driver
    drops a frame repeating one heard within 30 s)."""
    frames = []
    for k in range(count):
        station, j = k % POSITION_STATIONS, k // POSITION_STATIONS
        lat, lon = 30.5 + j * 0.0002, 121.0 + station * 0.001
        source = position_station(station)
        fmt = (j + station) % 3
        if fmt == 2:
            dest, info = encode_mic_e(lat, lon, speed_kmh=30, course_deg=90, status="En Route")
            frames.append(ui_frame(source, info, dest))
        else:
            info = encode_position(lat, lon, course_deg=90, speed_kmh=30, compressed=fmt == 1)
            frames.append(ui_frame(source, info))
    return frames


def alarm_schedule(rng: random.Random) -> list[tuple[float, str, str, bytes]]:
    """``(seconds after the start, unit, state, KISS frame)``: each alarm station raises
    (Mic-E Emergency) at a random moment and clears (Mic-E In Service) 50-500 ms later,
    never raising again before its clear."""
    events = []
    free_at = [0.0] * ALARM_STATIONS
    moments = sorted(rng.uniform(0, ALARM_SPAN_S) for _ in range(ALARMS))
    for n, moment in enumerate(moments):
        station = min(range(ALARM_STATIONS), key=lambda s: free_at[s])
        raise_at = LEAD_IN_S + max(moment, free_at[station])
        clear_at = raise_at + rng.uniform(0.05, 0.5)
        free_at[station] = clear_at - LEAD_IN_S + 0.01
        unit = f"e{station}"
        lat, lon = 31.0 + n * 0.001, 120.0 + station * 0.001
        for at, state, status, dlat in (
            (raise_at, "raised", "Emergency", 0.0),
            (clear_at, "cleared", "In Service", 0.0005),
        ):
            dest, info = encode_mic_e(lat + dlat, lon, speed_kmh=5, course_deg=0, status=status)
            events.append((at, unit, state, ui_frame(alarm_station(station), info, dest)))
    events.sort(key=lambda e: e[0])
    return events


def paced(
    send_positions: Callable[[Sequence[Any]], None],
    positions: Sequence[Any],
    send_alarm: Callable[[int], None],
    alarm_times: Sequence[float],
) -> tuple[list[float], float, float]:
    """Send ``positions`` at POSITION_RATE_PER_S in ticks of TICK_S and alarm ``i`` at
    ``alarm_times[i]`` (seconds after the start); returns when each alarm went (monotonic),
    and the start and end of the run."""
    per_tick = round(POSITION_RATE_PER_S * TICK_S)
    sent: list[float] = []
    start = time.monotonic()
    tick = 0
    next_alarm = 0
    while tick * per_tick < len(positions):
        due = start + tick * TICK_S
        while next_alarm < len(alarm_times) and start + alarm_times[next_alarm] <= due:
            sent.append(time.monotonic())
            send_alarm(next_alarm)
            next_alarm += 1
        while (now := time.monotonic()) < due:
            if due - now > 0.0003:
                time.sleep(due - now - 0.0002)
        send_positions(positions[tick * per_tick : (tick + 1) * per_tick])
        tick += 1
    return sent, start, time.monotonic()


class Tnc:
    """The KISS TCP port the daemon dials: one connection, written by the pacing loop."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.conn: socket.socket | None = None
        self._accepted = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        self._accepted.set()
        while conn.recv(65536):  # whatever the gateway transmits goes nowhere
            pass

    def send(self, data: bytes) -> None:
        if not self._accepted.wait(20):
            raise RuntimeError("the daemon never connected to the TNC")
        assert self.conn is not None
        self.conn.sendall(data)

    def close(self) -> None:
        self._server.close()
        if self.conn is not None:
            self.conn.close()


class AlarmListener:
    """Records each alarm event (and ceiling alarm) with its arrival time."""

    def __init__(self, port: int) -> None:
        self.events: list[tuple[float, str, str]] = []  # (at, unit or ceiling id, state)
        ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(ALARM_TOPIC, 1), (CEILING_ALARM_TOPIC, 1)])
        if not ready.wait(10):
            raise RuntimeError("alarm listener did not subscribe")

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        body = json.loads(msg.payload)
        self.events.append((now, str(body["unit"]), str(body["state"])))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def count_positions(port: int, topic: str, ready: Any, results: Any, quiet_s: float) -> None:
    """In a process of its own: arrival times of every position, reported after ``quiet_s``
    without one (the first ones may be the broker's retained values: those are skipped)."""
    arrivals: list[float] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        if not msg.retain:
            arrivals.append(time.monotonic())

    client.on_message = on_message
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.subscribe(topic, 0)
    client.loop_start()
    seen, last_change = -1, time.monotonic()
    while True:
        time.sleep(0.2)
        if len(arrivals) != seen:
            seen, last_change = len(arrivals), time.monotonic()
        elif arrivals and time.monotonic() - last_change > quiet_s:
            break
    client.loop_stop()
    client.disconnect()
    results.put(arrivals)


class PositionCounter:
    def __init__(self, port: int, topic: str) -> None:
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        self.results: Any = ctx.Queue()
        self.proc = ctx.Process(
            target=count_positions, args=(port, topic, ready, self.results, 2.0)
        )
        self.proc.start()
        if not ready.wait(10):
            raise RuntimeError("position counter did not subscribe")

    def rate(self, start: float, end: float) -> float:
        arrivals: list[float] = self.results.get(timeout=180)
        self.proc.join(10)
        within = [t for t in arrivals if start <= t <= end + 0.05]
        return len(within) / (end - start)


def latency_figure(
    name: str, sent: list[float], arrived: list[float | None], **extra: object
) -> dict[str, object]:
    latencies = [(a - s) * 1000 for s, a in zip(sent, arrived, strict=True) if a is not None]
    return {
        "figure": name,
        "events": len(sent),
        "received": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "max_ms": round(max(latencies), 3) if latencies else float("nan"),
        **extra,
    }


def alarm_ceiling(
    broker: Mosquitto, listener: AlarmListener, times: list[float]
) -> dict[str, object]:
    """A bare paho client on one connection: positions at the rate, alarms at ``times``."""
    payload = json.dumps(
        {"lat": 31.2304123, "lon": 121.4737456, "speed_kmh": 30.0, "course_deg": 90.0,
         "fix_time": "2026-11-28T12:00:00.000Z", "received_at": "2026-11-28T12:00:00.001Z",
         "source": "aprs", "link": "vhf"},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    count = round((times[-1] + LEAD_IN_S) * POSITION_RATE_PER_S)
    counter = PositionCounter(broker.port, CEILING_POSITION_TOPIC)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(20)
    client.connect("127.0.0.1", broker.port)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the gateway does
    client.loop_start()

    def positions(chunk: Sequence[Any]) -> None:
        for _ in chunk:
            client.publish(CEILING_POSITION_TOPIC, payload, 0, True)

    def alarm(i: int) -> None:
        body = {"unit": f"c{i}", "state": "raised"}
        client.publish(CEILING_ALARM_TOPIC, json.dumps(body), 1)

    listener.events.clear()
    sent, start, end = paced(positions, range(count), alarm, times)
    wait(lambda: len(listener.events) >= len(times), 30, "the ceiling's alarms")
    arrived: dict[str, float] = {unit: at for at, unit, _ in listener.events}
    client.loop_stop()
    client.disconnect()
    rate = counter.rate(start, end)
    return latency_figure(
        "alarm_ceiling",
        sent,
        [arrived.get(f"c{i}") for i in range(len(times))],
        publisher="paho-mqtt",
        positions_per_s=round(rate),
    )


def alarm_config(tmp: Path, broker: Mosquitto, tnc_port: int) -> str:
    units = "".join(
        f'[[units]]\nid = "p{i}"\nname = "p{i}"\ndevices = ["vhf:{position_station(i)}"]\n'
        for i in range(POSITION_STATIONS)
    ) + "".join(
        f'[[units]]\nid = "e{i}"\nname = "e{i}"\ndevices = ["vhf:{alarm_station(i)}"]\n'
        for i in range(ALARM_STATIONS)
    )
    return f"""
[gateway]
id = "bench"
data_dir = "{tmp / "alarm-data"}"
log_level = "error"

[mqtt]
url = "{broker.url}"

[[links]]
name = "vhf"
protocol = "aprs"
url = "tcp://127.0.0.1:{tnc_port}"
callsign = "BH4GW-10"

{units}"""


def alarm_figures() -> None:
    sys.setswitchinterval(0.0002)
    rng = random.Random(20261204)
    schedule = alarm_schedule(rng)
    times = [at for at, _, _, _ in schedule]
    frames = position_frames(round((times[-1] + LEAD_IN_S) * POSITION_RATE_PER_S))
    with tempfile.TemporaryDirectory(prefix="fieldlink-bench-") as tmp_name, Mosquitto() as broker:
        tmp = Path(tmp_name)
        listener = AlarmListener(broker.port)
        print(json.dumps(alarm_ceiling(broker, listener, times)))

        tnc = Tnc()
        cfg = tmp / "alarms.toml"
        cfg.write_text(alarm_config(tmp, broker, tnc.port), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        log = tmp / "alarms-daemon.log"
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        try:
            time.sleep(2.0)  # the daemon connects, subscribes, dials the TNC
            counter = PositionCounter(broker.port, f"{BASE}/units/+/position")
            listener.events.clear()
            sent, start, end = paced(
                lambda chunk: tnc.send(b"".join(chunk)),
                frames,
                lambda i: tnc.send(schedule[i][3]),
                times,
            )
            wait(lambda: len(listener.events) >= len(schedule), 30, "every alarm event")
        except RuntimeError:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
            tnc.close()
        rate = counter.rate(start, end)
        arrivals: dict[tuple[str, str], list[float]] = {}
        for at, unit, state in listener.events:
            arrivals.setdefault((unit, state), []).append(at)
        arrived: list[float | None] = []
        seen: dict[tuple[str, str], int] = {}
        for _, unit, state, _ in schedule:
            n = seen.get((unit, state), 0)
            seen[(unit, state)] = n + 1
            got = arrivals.get((unit, state), [])
            arrived.append(got[n] if n < len(got) else None)
        print(
            json.dumps(
                latency_figure(
                    "alarm",
                    sent,
                    arrived,
                    alarms=ALARMS,
                    positions_per_s=round(rate),
                    target_positions_per_s=POSITION_RATE_PER_S,
                    target_p99_ms=20,
                )
            )
        )
        listener.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=("dispatch", "alarms"), help="one part of the figures")
    args = parser.parse_args()
    if args.only != "alarms":
        dispatch_figures()
    if args.only != "dispatch":
        alarm_figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
