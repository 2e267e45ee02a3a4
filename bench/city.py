"""City benchmark: N gateways on N edge mosquittos bridged to a central mosquitto (issue 14).

For each N (``--sites 3 10 30``) it starts a city on this machine (``gateway/devkit/city.py``:
per site an edge broker bridged to the centre, a gateway, one APRS radio and one NMEA GPS
receiver at ``--rate-hz`` fixes a second) and prints one JSON object per line:

* ``ceiling_s``: the central broker's bare ceiling in the same run, before the city starts:
  a paho client in a child process publishing position payloads (QoS 0, retained) as fast as
  it can, counted by the same subscriber that counts the city's positions;
* ``positions``: fixes offered per second (N x ``--rate-hz``) and positions per second
  arriving at the centre (``fieldlink/+/units/+/position`` on the central broker) over
  ``--window-s``, and their ratio to the ceiling; ``saturated``: the same once every GPS
  receiver sends ``--burst-hz`` fixes a second (1,000, the most one receiver can send with
  distinct fix times: NMEA times have milliseconds);
* ``latency_ms``: ``--tasks`` tasks one after the other, round robin over the sites, while the
  positions flow: from publishing the task on the central broker to the first byte of the
  APRS message on the site's radio channel (``centre_to_radio``), and from the radio putting
  the person's reply on the channel to the ``acknowledged`` event at the centre
  (``reply_to_centre``), p50/p99/max;
* ``rss_mb``: resident memory of each gateway at the end, mean and max;
* finally ``growth``: each figure at the largest N divided by the same at the smallest.

Run from the repository: ``.venv/bin/python bench/city.py [--sites 3 10 30]``. Needs mosquitto.
Every process of the city shares this machine's cores with the centre's subscriber, so the
figures are those of a whole city squeezed onto one box, not of one site's hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.devkit.city import (  # noqa: E402
    EVENTS_FILTER,
    City,
    CityOptions,
    Heard,
    Site,
    Subscriber,
)
from gateway.model import rfc3339, utc_now  # noqa: E402
from protocols import ax25  # noqa: E402
from protocols.aprs import AprsMessage, decode_frame  # noqa: E402

CEILING_TOPIC = "fieldlink/bench/units/bench/position"
ENDS = ("acknowledged", "failed", "expired")
CEILING_PUBLISHER = """
import json, sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, count = int(sys.argv[1]), int(sys.argv[2])
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="ceiling", protocol=paho.MQTTv5)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", port)
c.loop_start()
body = json.dumps({"lat": 31.2304, "lon": 121.4737, "alt_m": 12.0, "speed_kmh": 30.0,
    "course_deg": 84.4, "satellites": 12, "hdop": 0.9, "fix_time": "2026-01-01T00:00:00.000Z",
    "received_at": "2026-01-01T00:00:00.000Z", "source": "gps", "link": "gps"}).encode()
for i in range(count):
    c.publish(sys.argv[3], body, qos=0, retain=True)
    if i % 1000 == 999:
        while c.want_write():
            time.sleep(0.0005)
time.sleep(1.0)
c.disconnect()
c.loop_stop()
"""


def percentiles(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {}
    ms = sorted(v * 1000 for v in values_s)

    def at(p: float) -> float:
        return round(ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))], 2)

    return {"p50": at(50), "p99": at(99), "max": round(ms[-1], 2), "n": len(ms)}


def rate(messages: list[Heard]) -> float:
    if len(messages) < 2:
        return 0.0
    span = messages[-1].at - messages[0].at
    return (len(messages) - 1) / span if span > 0 else 0.0


def ceiling(port: int, count: int) -> float:
    """Positions per second the bare central broker delivers to the counting subscriber."""
    sub = Subscriber(port, [CEILING_TOPIC]).start()
    try:
        subprocess.run(
            [sys.executable, "-c", CEILING_PUBLISHER, str(port), str(count), CEILING_TOPIC],
            check=True,
            timeout=120,
            cwd=ROOT,
        )
        return rate(sub.snapshot())
    finally:
        sub.stop()


def radio_frames(site: Site, callsign: str) -> list[tuple[float, str, AprsMessage]]:
    """(time, sender, message) of every APRS message frame on the site's channel."""
    out = []
    for at, sender, frame in list(site.net.log):
        packet = decode_frame(ax25.decode(frame))
        if isinstance(packet, AprsMessage) and callsign in (sender, packet.addressee.strip()):
            out.append((at, sender, packet))
    return out


def task(task_id: str, unit: str) -> bytes:
    return json.dumps(
        {"task_id": task_id, "units": [unit], "text": f"{task_id} 到人民广场东侧",
         "priority": "urgent", "created_at": rfc3339(utc_now())},
        ensure_ascii=False,
    ).encode()  # fmt: skip


def latency(city: City, centre: Subscriber, tasks: int) -> dict[str, Any]:
    to_radio: list[float] = []
    to_centre: list[float] = []
    failed = 0
    for n in range(tasks):
        site = city.sites[n % len(city.sites)]
        unit, call = next(iter(site.units.items()))
        task_id = f"lat-{n}"
        topic = f"{site.topic}/tasks/{task_id}/events"
        sent = time.monotonic()
        centre.publish(f"{site.topic}/tasks/dispatch", task(task_id, unit))

        def answered(ms: list[Heard], topic: str = topic) -> bool:
            return any(m.topic == topic and m.json()["stage"] in ENDS for m in ms)

        try:
            found = centre.wait_for(answered, 60, f"{task_id} acknowledged or failed")
        except TimeoutError:
            print(site.gateway.log()[-3000:], file=sys.stderr)
            print(site.edge.log_path.read_text()[-2000:], file=sys.stderr)
            raise
        ends = [m for m in found if m.topic == topic and m.json()["stage"] in ENDS]
        if ends[0].json()["stage"] != "acknowledged":
            failed += 1
            continue
        acked = ends[0].at
        frames = radio_frames(site, call)
        order = next(at for at, sender, msg in frames if sender != call and task_id in msg.text)
        reply = next(at for at, sender, msg in frames if sender == call and at > order)
        to_radio.append(order - sent)
        to_centre.append(acked - reply)
    return {
        "centre_to_radio": percentiles(to_radio),
        "reply_to_centre": percentiles(to_centre),
        "failed_tasks": failed,
    }


def count_positions(positions: Subscriber, offered_s: float, window_s: float) -> dict[str, Any]:
    mark = len(positions.snapshot())
    time.sleep(window_s)
    delivered = len(positions.snapshot()) - mark
    return {"offered_s": round(offered_s), "at_centre_s": round(delivered / window_s)}


def run_city(sites: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    options = CityOptions(
        radios_per_site=1,
        overlap=False,
        beacon_interval_s=None,
        ack_delay_s=0.0,
        reply_delay_s=0.2,
        retry_intervals_s=(3.0, 3.0, 3.0),  # a loaded machine must not turn into failures
        gps_rate_hz=args.rate_hz,
        max_queued_messages=100_000,
    )
    city = City(workdir, sites, options)
    result: dict[str, Any] = {"sites": sites, "load_before": os.getloadavg()[0]}
    centre: Subscriber | None = None
    try:
        city.central.start()
        result["ceiling_s"] = round(ceiling(city.central.port, args.ceiling_count))
        started = time.monotonic()
        city.start()
        centre = Subscriber(city.central.port, ["fieldlink/+/state", "fieldlink/+/tasks/#"])
        centre.start()
        positions = Subscriber(city.central.port, ["fieldlink/+/units/+/position"]).start()
        try:
            positions.wait_for(
                lambda ms: len({m.topic for m in ms}) >= sites, 60 + 3 * sites,
                "a position from every site",
            )  # fmt: skip
            result["startup_s"] = round(time.monotonic() - started, 1)
            time.sleep(2.0)  # past the start-up burst
            result["positions"] = count_positions(positions, sites * args.rate_hz, args.window_s)
            result["latency_ms"] = latency(city, centre, args.tasks)
            city.set_gps_rate(args.burst_hz)
            time.sleep(3.0)  # the gateways reconnect to their receivers
            result["saturated"] = count_positions(positions, sites * args.burst_hz, args.window_s)
        finally:
            positions.stop()
        for key in ("positions", "saturated"):
            result[key]["ratio_to_ceiling"] = round(
                result[key]["at_centre_s"] / result["ceiling_s"], 3
            )
        rss = [site.gateway.rss_kb() / 1024 for site in city.sites]
        result["rss_mb"] = {"mean": round(statistics.mean(rss), 1), "max": round(max(rss), 1)}
        result["load_after"] = os.getloadavg()[0]
    finally:
        if centre is not None:
            centre.stop()
        city.stop()
    return result


def persistence_round(workdir: Path, writable: bool, tasks_per_site: int) -> dict[str, Any]:
    """Three bridged sites; the centre's archive (a persistent session) away while its sites'
    units (as many per site) answer a task each; the central broker, started as root and
    dropping to the ``mosquitto`` user, restarted; what the archive gets back."""
    options = CityOptions(
        radios_per_site=tasks_per_site,
        overlap=False,
        beacon_interval_s=None,
        ack_delay_s=0.0,
        reply_delay_s=0.2,
        central_drops_root=True,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    city = City(workdir, 3, options)
    store = city.central.workdir / "data"
    if writable:
        user = pwd.getpwnam("mosquitto")
        os.chown(store, user.pw_uid, user.pw_gid)
    produced: set[tuple[str, str, str]] = set()
    after: set[tuple[str, str, str]] = set()
    try:
        city.start()
        city.wait_online()
        archive = Subscriber(city.central.port, [EVENTS_FILTER], client_id="archive",
                             persistent=True).start()  # fmt: skip
        archive.stop()  # away: the central broker queues its events
        live = Subscriber(city.central.port, [EVENTS_FILTER]).start()
        try:
            for site in city.sites:
                for n, unit in enumerate(site.units):
                    live.publish(f"{site.topic}/tasks/dispatch", task(f"p-{n}", unit))
            ids = {f"p-{n}" for n in range(tasks_per_site)}

            def all_acknowledged(ms: list[Heard]) -> bool:
                done = {(m.topic.split("/")[1], m.json()["task_id"]) for m in ms
                        if m.json()["stage"] in ("acknowledged", "failed")}  # fmt: skip
                return done >= {(s.gateway_id, i) for s in city.sites for i in ids}

            heard = live.wait_for(all_acknowledged, 120, "every task answered or failed")
            time.sleep(1.0)  # the last events after the acknowledgements
            heard = live.snapshot()
            produced = {(m.topic.split("/")[1], m.json()["task_id"], m.json()["stage"])
                        for m in heard}  # fmt: skip
        finally:
            live.stop()
        city.central.stop()
        city.central.start()
        archive = Subscriber(city.central.port, [EVENTS_FILTER], client_id="archive",
                             persistent=True).start()  # fmt: skip
        time.sleep(5.0)
        archive.stop()
        after = {(m.topic.split("/")[1], m.json()["task_id"], m.json()["stage"])
                 for m in archive.snapshot()}  # fmt: skip
    finally:
        city.stop()
    log = (city.central.workdir / "mosquitto.log").read_text(errors="replace").splitlines()
    return {
        "store_writable": writable,
        "events_produced_while_away": len(produced),
        "delivered_after_restart": len(produced & after),
        "lost": len(produced - after),
        "broker_log": [line for line in log if "rror" in line or "denied" in line][:5],
    }


def growth(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    def ratio(a: float, b: float) -> float:
        return round(b / a, 2) if a else float("nan")

    return {
        "from_sites": first["sites"],
        "to_sites": last["sites"],
        "positions_at_centre": ratio(
            first["positions"]["at_centre_s"], last["positions"]["at_centre_s"]
        ),
        "saturated_at_centre": ratio(
            first["saturated"]["at_centre_s"], last["saturated"]["at_centre_s"]
        ),
        **{
            f"{leg}_{p}": ratio(first["latency_ms"][leg][p], last["latency_ms"][leg][p])
            for leg in ("centre_to_radio", "reply_to_centre")
            for p in ("p50", "p99")
        },
        "rss_mean": ratio(first["rss_mb"]["mean"], last["rss_mb"]["mean"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--rate-hz", type=float, default=20.0, help="fixes/s per site's GPS")
    parser.add_argument(
        "--burst-hz", type=float, default=1000.0, help="fixes/s per site when saturating"
    )
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--ceiling-count", type=int, default=100_000)
    parser.add_argument(
        "--persistence",
        action="store_true",
        help="instead: the central store unwritable, then writable, across a restart",
    )
    args = parser.parse_args()
    if args.persistence:
        for writable in (False, True):
            with tempfile.TemporaryDirectory(prefix="fieldlink-city-") as tmp:
                print(json.dumps(persistence_round(Path(tmp), writable, 10)), flush=True)
        return 0
    results = []
    for sites in args.sites:
        with tempfile.TemporaryDirectory(prefix="fieldlink-city-") as tmp:
            result = run_city(sites, args, Path(tmp))
        print(json.dumps(result), flush=True)
        results.append(result)
    if len(results) > 1:
        print(json.dumps({"growth": growth(results[0], results[-1])}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
