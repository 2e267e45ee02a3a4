"""``fieldlink demo``: a broker, firmware stubs and the gateway on one machine, no hardware.

It starts a private broker on a free loopback port (mosquitto when installed, else the
embedded one from the ``demo`` extra); two GPS receivers (a BeiDou module on a pty, a
u-blox on TCP) in two patrol cars; four APRS walkie-talkies on a simulated 1200 baud
channel behind a KISS TCP port; a Hytera DMR radio on the gateway's serial cable (a pty)
through which 赵磊's radio is heard; a MOTOTRBO control station on loopback UDP with 陈杰's
radio behind it; a third patrol car's GT06 tracker and 刘洋's PoC walkie-talkie dialling in
over TCP; and the gateway
with a config written for them. A scripted dispatcher then sends tasks of each priority:
张伟 accepts and walks to the scene, 李娜 declines, 王强's first radio never answers (his
second one gets the task, nobody replies, and the acknowledge deadline is escalated);
赵磊 and 陈杰 get theirs as DMR text messages, acked by their radios and answered; 刘洋's
PoC walkie-talkie (a JT/T 808 terminal) speaks hers and she accepts it on its screen. Later
李娜 presses her radio's emergency button: the gateway raises an ``emergency`` alarm from its Mic-E
beacon, the scripted centre calls her back and clears it with the ``clear_alarm``
request, and she resets her radio. The demo prints what the gateway publishes as it
happens, unplugs the BeiDou receiver once on the way, prints the SLA table (alarms
included) at the end, and exits 0 after ``duration_s`` or on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiomqtt

from firmware_stubs.aprs_radio import AprsRadio
from firmware_stubs.gt06_tracker import Gt06Tracker, keep_dialling
from firmware_stubs.hytera_radio import AirRadio, HyteraRadio
from firmware_stubs.jt808_terminal import Jt808Terminal
from firmware_stubs.mototrbo_radio import ControlStation, SubscriberRadio, route_around
from firmware_stubs.nmea_gps import GpsPty, NmeaGps, serve_pty, serve_tcp
from firmware_stubs.radio_net import RadioNet
from gateway import sla
from gateway.channel import afsk1200_airtime_s
from gateway.config import Config, parse_config
from gateway.daemon import Gateway
from gateway.devkit.broker import free_port, local_broker
from gateway.model import rfc3339, utc_now
from gateway.systemd import Notifier

GATEWAY_ID = "demo"
BASE_TOPIC = "fieldlink"
INCIDENT = (31.2318, 121.4752)
"""People's Square, east side: where the urgent task sends 张伟."""
# A second street loop for the TCP receiver, west of People's Square.
ROUTE_WEST = ((31.2290, 121.4620), (31.2310, 121.4650), (31.2285, 121.4690), (31.2265, 121.4655))
# 张伟 walks from a side street to the incident and back.
ROUTE_ZHANG = ((31.2335, 121.4770), INCIDENT)
# 赵磊 (Hytera DMR) patrols Nanjing Road East; 陈杰 (MOTOTRBO) circles the Bund.
ROUTE_ZHAO = ((31.2355, 121.4800), (31.2360, 121.4830), (31.2365, 121.4860), (31.2360, 121.4830))
ROUTE_CHEN = tuple(route_around(31.2400, 121.4900, radius_m=150, points=6))
# A patrol car's GT06 tracker on People's Square's ring road.
ROUTE_CAR3 = ((31.2290, 121.4700), (31.2300, 121.4730), (31.2320, 121.4740), (31.2330, 121.4710))
GT06_IMEI = "868120145233604"
POC_PHONE = "013912345678"
"""刘洋's PoC walkie-talkie (a JT/T 808 terminal on the public network)."""
# 刘洋 walks along Fuzhou Road.
ROUTE_LIU = ((31.2345, 121.4790), (31.2348, 121.4805), (31.2351, 121.4820), (31.2348, 121.4805))
MOTOTRBO_CAI = 127
"""With CAI 127 each MOTOTRBO radio of the demo lives at its own loopback address."""
EMERGENCY_AT_S = 6.0
"""When 李娜 presses her radio's emergency button, in seconds after the demo starts."""
CENTRE_CLEARS_AFTER_S = 2.0
"""How long the centre takes to call back and clear an alarm."""
RADIO_RESET_AFTER_S = 5.0
"""How long after the emergency 李娜 resets her radio."""


def demo_config(
    tmp: Path,
    broker_url: str,
    pty_path: Path,
    tcp_port: int,
    kiss_port: int,
    *,
    ports: DemoPorts,
) -> dict[str, Any]:
    fast = {"reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
    return {
        "gateway": {"id": GATEWAY_ID, "data_dir": str(tmp / "data")},
        # The status page and /metrics on a free port: a gateway already running here keeps
        # the default one.
        "http": {"listen": f"127.0.0.1:{ports.http}"},
        "mqtt": {
            "url": broker_url,
            "base_topic": BASE_TOPIC,
            "health_interval_s": 10.0,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 2.0,
        },
        # Short deadlines so that a demo of half a minute shows an escalation.
        "sla": {"acknowledge_s": 12, "on_scene_s": 40, "escalate_before_s": 4},
        "links": [
            {"name": "gps-bd", "protocol": "nmea", "url": str(pty_path), "unit": "car-1", **fast},
            {
                "name": "gps-net",
                "protocol": "nmea",
                "url": f"tcp://127.0.0.1:{tcp_port}",
                "unit": "car-2",
                **fast,
            },
            {
                "name": "vhf",
                "protocol": "aprs",
                "url": f"tcp://127.0.0.1:{kiss_port}",
                "callsign": "BH4GW-10",
                "retry_intervals_s": [3.0, 3.0, 3.0],
                **fast,
            },
            {
                "name": "dmr",
                "protocol": "hytera",
                "url": ports.hytera_path,
                "location_interval_s": 4,
                "retry_intervals_s": [3.0, 3.0],
                "status_stages": ["1=acknowledged", "2=contacted", "3=on_scene", "4=closed"],
                **fast,
            },
            {
                "name": "trbo",
                "protocol": "mototrbo",
                "url": f"udp-listen://127.0.0.1:{ports.mototrbo[0]}",
                "tms_port": ports.mototrbo[1],
                "lrrp_port": ports.mototrbo[2],
                "cai": MOTOTRBO_CAI,
                "location_interval_s": 4,
                "retry_intervals_s": [3.0, 3.0],
                "channel_hold_s": 0.2,
                **fast,
            },
            {
                "name": "trk",
                "protocol": "gt06",
                "url": f"listen://127.0.0.1:{ports.gt06}",
                **fast,
            },
            {
                "name": "poc",
                "protocol": "jt808",
                "url": f"listen://127.0.0.1:{ports.jt808}",
                "ask_to_accept": True,
                "retry_intervals_s": [3.0, 3.0],
                **fast,
            },
        ],
        "units": [
            {"id": "car-1", "name": "巡逻车一"},
            {"id": "car-2", "name": "巡逻车二"},
            {"id": "zhang-wei", "name": "张伟", "devices": ["vhf:BH4ZW-7"]},
            {"id": "li-na", "name": "李娜", "devices": ["vhf:BH4LN-7"]},
            {"id": "wang-qiang", "name": "王强", "devices": ["vhf:BH4WQ-7", "vhf:BH4WQ-9"]},
            {"id": "zhao-lei", "name": "赵磊", "devices": ["dmr:2001"]},
            {"id": "chen-jie", "name": "陈杰", "devices": ["trbo:1001"]},
            {"id": "car-3", "name": "巡逻车三", "devices": [f"trk:{GT06_IMEI}"]},
            {"id": "liu-yang", "name": "刘洋", "devices": [f"poc:{POC_PHONE}"]},
        ],
    }


def walkie_talkies() -> list[AprsRadio]:
    return [
        AprsRadio(
            "BH4ZW-7",
            route=ROUTE_ZHANG,
            speed_kmh=25,
            beacon_interval_s=4,
            reply="收到，马上到",
            reply_delay_s=3,
        ),
        AprsRadio("BH4LN-7", reply="不行，在处理别的警情", reply_delay_s=4),
        AprsRadio("BH4WQ-7", ack="never", reply=None),
        AprsRadio("BH4WQ-9", reply=None),
    ]


def scripted_tasks() -> list[tuple[float, dict[str, Any]]]:
    """(seconds after start, task) as a dispatch server would send them."""
    incident = {"lat": INCIDENT[0], "lon": INCIDENT[1], "radius_m": 60, "address": "人民广场东侧"}
    return [
        (2.0, {"task_id": "demo-1", "units": ["zhang-wei"], "priority": "urgent",
               "text": "人民广场东侧有人摔倒，请速到", "incident": incident}),
        (3.0, {"task_id": "demo-2", "units": ["li-na"], "priority": "normal",
               "text": "南京东路口噪音投诉，请核实"}),
        (4.0, {"task_id": "demo-3", "units": ["wang-qiang"], "priority": "routine",
               "text": "明早巡查福州路占道经营"}),
        (5.0, {"task_id": "demo-4", "units": ["zhao-lei"], "priority": "urgent",
               "text": "南京东路步行街有人晕倒，请速到"}),
        (5.5, {"task_id": "demo-5", "units": ["chen-jie"], "priority": "normal",
               "text": "外滩观景台游客走失，请协助寻找"}),
        (6.0, {"task_id": "demo-6", "units": ["liu-yang"], "priority": "urgent", "voice": True,
               "text": "福州路口两车剐蹭，请速到现场疏导交通"}),
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class DemoPorts:
    """Where the DMR radios and trackers of the demo meet the gateway."""

    hytera_path: str
    """The pty of the Hytera radio on the gateway's cable."""
    mototrbo: tuple[int, int, int]
    """ARS, TMS and LRRP ports (the gateway on 127.0.0.1, each radio on its own address)."""
    gt06: int
    """The trackers' TCP port."""
    jt808: int
    """The PoC terminals' TCP port."""
    http: int
    """The status page's port."""


def _car_3_tracker(port: int) -> Gt06Tracker:
    """The third patrol car's GT06 tracker: reports every 3 s, a heartbeat every 10 s."""
    return Gt06Tracker(
        GT06_IMEI, "127.0.0.1", port, route=ROUTE_CAR3, report_interval_s=3, heartbeat_interval_s=10
    )


def dmr_radios() -> tuple[HyteraRadio, ControlStation]:
    """赵磊's Hytera radio (heard through the radio on the gateway's cable, which also acks
    and reports along his route; he answers 收到 then presses status key 3 on arrival) and
    陈杰's MOTOTRBO radio behind a control station."""
    hytera = HyteraRadio(
        [AirRadio(2001, route=ROUTE_ZHAO, report_interval_s=4, reply="收到", reply_delay_s=3)],
        mode="pty",
    )
    station_ports = free_udp_ports(3)
    station = ControlStation(
        [SubscriberRadio(1001, route=ROUTE_CHEN, reply="收到，马上过去", reply_delay_s=4)],
        ars_port=station_ports[0],
        tms_port=station_ports[1],
        lrrp_port=station_ports[2],
        cai=MOTOTRBO_CAI,
    )
    return hytera, station


def free_udp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """UDP ports free on ``host`` now (the MOTOTRBO radios bind the same numbers on theirs)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


async def _poc_terminal(port: int, stop: asyncio.Event, printer: Printer) -> None:
    """刘洋's PoC walkie-talkie: dials in (again, whenever the connection ends), registers,
    authenticates, reports every 4 s; it speaks the task it gets (TTS) and she accepts it on
    the question that follows."""
    spoken = 0
    step = 0
    while not stop.is_set():
        terminal = Jt808Terminal(("127.0.0.1", port), phone=POC_PHONE, answer=1, answer_delay_s=3)
        try:
            await terminal.start()
            while not stop.is_set() and not terminal.closed.is_set():
                if step % 8 == 0:  # a report every 4 s
                    await terminal.report(*ROUTE_LIU[step // 8 % len(ROUTE_LIU)])
                step += 1
                for text in terminal.record.texts[spoken:]:
                    how = "speaks" if text.tts else "shows"
                    printer.line("unit liu-yang", f"her walkie-talkie {how} {text.text!r}")
                spoken = len(terminal.record.texts)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        except (OSError, TimeoutError, ConnectionError):
            pass  # the gateway is not listening yet, or went away
        finally:
            await terminal.stop()
        if not stop.is_set():
            await asyncio.sleep(1.0)


class Printer:
    """Prints each message the gateway publishes as one readable line."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.positions = 0
        self.stages = 0
        self.alarms = 0

    def line(self, what: str, text: str) -> None:
        print(f"{time.monotonic() - self.t0:6.1f}s  {what:<15} {text}", flush=True)

    def show(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")[2:]
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if parts == ["state"]:
            self.line("gateway", f"{body['state']} (version {body['version']})")
        elif parts[0] == "links" and parts[-1] == "state":
            extra = f": {body['error']}" if body.get("error") else ""
            self.line(f"link {parts[1]}", f"{body['state']}{extra}")
        elif parts[0] == "units" and parts[-1] == "position":
            self._position(parts[1], body)
        elif parts[0] == "units" and parts[-1] == "availability":
            self.line(f"unit {parts[1]}", f"{body['state']} via {body['via']}")
        elif parts[0] == "units" and parts[-1] == "message":
            self.line(f"unit {parts[1]}", f"says {body['text']!r}")
        elif parts[0] == "units" and parts[-1] == "alarm":
            self._alarm(parts[1], body)
        elif parts == ["alarms"]:
            raised = [f"{a['unit']} {a['kind']}" for a in body.get("alarms", [])]
            self.line("alarms", f"raised now: {', '.join(raised)}" if raised else "none raised")
        elif parts[0] == "tasks" and parts[-1] == "events":
            self._stage(body)
        elif parts == ["health"]:
            links = ", ".join(
                f"{name}: {c['frames']} frames, {c['rejected']} rejected"
                for name, c in body["links"].items()
            )
            self.line("health", f"outbox {body['outbox_depth']}; {links}")

    def _position(self, unit: str, body: dict[str, Any]) -> None:
        self.positions += 1
        speed = body.get("speed_kmh")
        self.line(
            f"unit {unit}",
            f"{body['lat']:.6f}, {body['lon']:.6f}"
            + (f"  {speed:5.1f} km/h" if speed is not None else "")
            + (f"  {body['satellites']} sats" if "satellites" in body else "")
            + f"  via {body['link']} ({body['source']})",
        )

    def _alarm(self, unit: str, body: dict[str, Any]) -> None:
        self.alarms += 1
        if body["state"] == "raised":
            where = body.get("position")
            at = f" at {where['lat']:.6f}, {where['lon']:.6f}" if where else ""
            self.line(f"unit {unit}", f"ALARM {body['kind']} raised{at} by {body['device']}")
            return
        self.line(
            f"unit {unit}",
            f"alarm {body['kind']} cleared by the {body.get('cleared_by', 'device')}",
        )

    def _stage(self, body: dict[str, Any]) -> None:
        self.stages += 1
        stage = body["stage"] + (f" {body['target']}" if "target" in body else "")
        since = body.get("since_created_s")
        took = f"+{since:6.1f}s" if isinstance(since, int | float) else " " * 8
        detail = f"  {body['detail']}" if body.get("detail") else ""
        who = body["unit"] or "-"
        self.line(f"task {body['task_id']}", f"{who:<11} {stage:<24} {took}{detail}")


async def _watch(host: str, port: int, printer: Printer) -> None:
    async with aiomqtt.Client(
        host, port, identifier="fieldlink-demo-viewer", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(f"{BASE_TOPIC}/{GATEWAY_ID}/#")
        async for message in client.messages:
            if isinstance(message.payload, bytes):
                printer.show(message.topic.value, message.payload)


async def _dispatcher(host: str, port: int, printer: Printer) -> None:
    """The command centre: sends the scripted tasks over MQTT, as a dispatch server would,
    and handles each alarm raised: calls the unit back, then clears it (``clear_alarm``)."""
    root = f"{BASE_TOPIC}/{GATEWAY_ID}"
    async with aiomqtt.Client(
        host, port, identifier="fieldlink-demo-centre", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(f"{root}/units/+/alarm", qos=1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_send_tasks(client, printer))
            async for message in client.messages:
                alarm = json.loads(message.payload)
                if alarm.get("state") != "raised":
                    continue
                await asyncio.sleep(CENTRE_CLEARS_AFTER_S)
                printer.line(
                    "centre", f"called {alarm['unit']} back; clears the {alarm['kind']} alarm"
                )
                request = {"unit": alarm["unit"], "kind": alarm["kind"]}
                await client.publish(f"{root}/request/clear_alarm", json.dumps(request), qos=1)


async def _send_tasks(client: aiomqtt.Client, printer: Printer) -> None:
    start = time.monotonic()
    for at, task in scripted_tasks():
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        task["created_at"] = rfc3339(utc_now())
        printer.line(
            "centre", f"dispatches {task['task_id']} ({task['priority']}) to {task['units'][0]}"
        )
        payload = json.dumps(task, ensure_ascii=False).encode()
        await client.publish(f"{BASE_TOPIC}/{GATEWAY_ID}/tasks/dispatch", payload, qos=1)


async def _emergency(radio: AprsRadio, name: str, printer: Printer) -> None:
    """A person presses the radio's emergency button, and resets it once called back."""
    await asyncio.sleep(EMERGENCY_AT_S)
    printer.line("demo", f"{name} presses her radio's emergency button")
    await radio.emergency()
    await asyncio.sleep(RADIO_RESET_AFTER_S)
    printer.line("demo", f"{name} resets her radio's emergency")
    await radio.emergency(on=False)


def _sla_table(config: Config) -> str:
    path = config.gateway.data_dir / "journal.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        report = sla.build_report(conn, config.sla, since=None, now=utc_now())
    return sla.render_table(report)


def _gps_receivers(tg: asyncio.TaskGroup, pty: GpsPty, tcp_port: int, stop: asyncio.Event) -> None:
    """The BeiDou receiver on a pty (car-1) and the u-blox on TCP (car-2)."""
    tg.create_task(serve_pty(NmeaGps(profile="bd", rate_hz=1, speed_kmh=25), pty=pty, stop=stop))
    tg.create_task(
        serve_tcp(
            NmeaGps(profile="ublox", rate_hz=1, speed_kmh=40, route=ROUTE_WEST),
            "127.0.0.1",
            tcp_port,
            stop=stop,
        )
    )


async def run_demo(duration_s: float = 30.0, broker: str = "auto") -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    printer = Printer()
    tmp_dir = tempfile.TemporaryDirectory(prefix="fieldlink-demo-")
    with local_broker(broker) as broker_, tmp_dir as tmp:
        tmp_path = Path(tmp)
        printer.line("broker", f"{type(broker_).__name__.lower()} on {broker_.url}")
        pty = GpsPty(tmp_path / "gps-bd")
        tcp_port = free_port()
        net = RadioNet(airtime_s=lambda frame: afsk1200_airtime_s(len(frame), txdelay_s=0.1))
        kiss_ready: asyncio.Future[int] = loop.create_future()
        stubs_stop = asyncio.Event()
        hytera, station = dmr_radios()
        async with contextlib.AsyncExitStack() as radios_on, asyncio.TaskGroup() as tg:
            await radios_on.enter_async_context(hytera)
            await radios_on.enter_async_context(station)
            ports = DemoPorts(
                hytera.device_path,
                (station.ports["ars"], station.ports["tms"], station.ports["lrrp"]),
                free_port(),
                free_port(),
                free_port(),
            )
            background = [
                tg.create_task(_watch(broker_.host, broker_.port, printer)),
                tg.create_task(net.serve(on_ready=lambda h, p: kiss_ready.set_result(p))),
            ]
            radios = walkie_talkies()
            for radio in radios:
                background.append(tg.create_task(radio.run(net.attach(radio.callsign))))
            kiss_port = await asyncio.wait_for(kiss_ready, 5)
            config = parse_config(
                demo_config(
                    tmp_path,
                    broker_.url,
                    pty.link_path or tmp_path,
                    tcp_port,
                    kiss_port,
                    ports=ports,
                ),
                base_dir=tmp_path,
                env={},
            )
            gateway = Gateway(config, notifier=Notifier({}))
            _gps_receivers(tg, pty, tcp_port, stubs_stop)
            printer.line("demo", f"status page and metrics: http://127.0.0.1:{ports.http}/")
            await asyncio.sleep(0.3)  # the viewer subscribes before the gateway speaks
            gateway_task = tg.create_task(gateway.run())
            background.append(tg.create_task(_dispatcher(broker_.host, broker_.port, printer)))
            tg.create_task(keep_dialling(stubs_stop, partial(_car_3_tracker, ports.gt06)))
            tg.create_task(_poc_terminal(ports.jt808, stubs_stop, printer))
            li_na = next(r for r in radios if r.callsign == "BH4LN-7")
            background.append(tg.create_task(_emergency(li_na, "李娜", printer)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s * 0.3)
            if not stop.is_set():
                printer.line("demo", "unplugging the BeiDou receiver's serial line")
                pty.reopen()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration_s * 0.7)
            printer.line("demo", "stopping")
            gateway.stop()
            await gateway_task
            await asyncio.sleep(0.2)  # let the viewer print the offline state
            stubs_stop.set()
            for task in background:
                task.cancel()
        printer.line(
            "demo",
            f"done: {printer.positions} positions, {printer.stages} task stages,"
            f" {printer.alarms} alarm events",
        )
        print("\nSLA report from the journal (fieldlink sla):\n", flush=True)
        print(_sla_table(config), flush=True)
    sys.stdout.flush()
    return 0
