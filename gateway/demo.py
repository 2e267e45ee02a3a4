"""``fieldlink demo``: a broker, firmware stubs and the gateway on one machine, no hardware.

It starts a private broker on a free loopback port (mosquitto when installed, else the
embedded one from the ``demo`` extra), a BeiDou GPS receiver on a pty and a u-blox one
on TCP, and the gateway with a config written for them. It prints what the gateway
publishes, unplugs the pty receiver once on the way to show the link recover, and
exits 0 after ``duration_s`` or on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from firmware_stubs.nmea_gps import GpsPty, NmeaGps, serve_pty, serve_tcp
from gateway.broker import free_port, local_broker
from gateway.config import parse_config
from gateway.daemon import Gateway
from gateway.systemd import Notifier

GATEWAY_ID = "demo"
BASE_TOPIC = "fieldlink"
# A second street loop for the TCP receiver, west of People's Square.
ROUTE_WEST = ((31.2290, 121.4620), (31.2310, 121.4650), (31.2285, 121.4690), (31.2265, 121.4655))


def demo_config(tmp: Path, broker_url: str, pty_path: Path, tcp_port: int) -> dict[str, Any]:
    return {
        "gateway": {"id": GATEWAY_ID, "data_dir": str(tmp / "data")},
        "mqtt": {
            "url": broker_url,
            "base_topic": BASE_TOPIC,
            "health_interval_s": 5.0,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 2.0,
        },
        "links": [
            {
                "name": "gps-bd",
                "protocol": "nmea",
                "url": str(pty_path),
                "baudrate": 9600,
                "unit": "li-na",
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
            },
            {
                "name": "gps-net",
                "protocol": "nmea",
                "url": f"tcp://127.0.0.1:{tcp_port}",
                "unit": "wang-fang",
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
            },
        ],
        "units": [
            {"id": "li-na", "name": "李娜"},
            {"id": "wang-fang", "name": "王芳"},
        ],
    }


class Printer:
    """Prints each message the gateway publishes as one readable line."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.positions = 0

    def line(self, what: str, text: str) -> None:
        print(f"{time.monotonic() - self.t0:6.1f}s  {what:<13} {text}", flush=True)

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
            self.positions += 1
            speed = body.get("speed_kmh")
            self.line(
                f"unit {parts[1]}",
                f"{body['lat']:.6f}, {body['lon']:.6f}"
                + (f"  {speed:5.1f} km/h" if speed is not None else "")
                + (f"  {body['satellites']} sats" if "satellites" in body else "")
                + f"  fix {body['fix_time'][11:23]}  via {body['link']}",
            )
        elif parts[0] == "units" and parts[-1] == "availability":
            self.line(f"unit {parts[1]}", f"{body['state']} via {body['via']}")
        elif parts == ["health"]:
            links = ", ".join(
                f"{name}: {c['positions']} positions, {c['rejected']} rejected"
                for name, c in body["links"].items()
            )
            self.line("health", f"outbox {body['outbox_depth']}; {links}")


async def _watch(host: str, port: int, printer: Printer) -> None:
    async with aiomqtt.Client(
        host, port, identifier="fieldlink-demo-viewer", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(f"{BASE_TOPIC}/{GATEWAY_ID}/#")
        async for message in client.messages:
            if isinstance(message.payload, bytes):
                printer.show(message.topic.value, message.payload)


async def run_demo(duration_s: float = 20.0, broker: str = "auto") -> int:
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
        config = parse_config(
            demo_config(tmp_path, broker_.url, pty.link_path or tmp_path, tcp_port),
            base_dir=tmp_path,
            env={},
        )
        stubs_stop = asyncio.Event()
        gateway = Gateway(config, notifier=Notifier({}))
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(_watch(broker_.host, broker_.port, printer))
            tg.create_task(
                serve_pty(NmeaGps(profile="bd", rate_hz=1, speed_kmh=25), pty=pty, stop=stubs_stop)
            )
            tg.create_task(
                serve_tcp(
                    NmeaGps(profile="ublox", rate_hz=1, speed_kmh=40, route=ROUTE_WEST),
                    "127.0.0.1",
                    tcp_port,
                    stop=stubs_stop,
                )
            )
            await asyncio.sleep(0.3)  # the viewer subscribes before the gateway speaks
            gateway_task = tg.create_task(gateway.run())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s * 0.4)
            if not stop.is_set():
                printer.line("demo", "unplugging the BeiDou receiver's serial line")
                pty.reopen()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration_s * 0.6)
            printer.line("demo", "stopping")
            gateway.stop()
            await gateway_task
            await asyncio.sleep(0.2)  # let the viewer print the offline state
            stubs_stop.set()
            watcher.cancel()
    printer.line("demo", f"done: {printer.positions} positions published")
    sys.stdout.flush()
    return 0
