"""Alarms: the book on a temporary journal, the outbox's urgent lane on a real mosquitto, and
the daemon (a child process) hearing Mic-E emergencies from a KISS TCP "TNC".

A device that repeats an alarm is published once per raise; ``clear_alarm`` and the device
itself clear it; the retained ``alarms`` summary follows, and is rebuilt from the journal
after ``kill -9``; alarms overtake task events and positions.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms import AlarmBook, AlarmNotRaised
from gateway.devkit.broker import Mosquitto
from gateway.journal import Journal, OutboxFull
from gateway.model import Alarm, AlarmKind, DeviceRef, Position, utc_now
from gateway.mqtt import InboundMessage, MqttBridge
from gateway.topics import Topics
from protocols import ax25, kiss
from protocols.aprs import encode_mic_e
from tests.support import Collector, GatewayProcess, Received, run_async, wait_until
from tests.test_hardening import KissTnc, config_text
from tests.test_mqtt_bridge import make_config, until

BASE = "fieldlink/gw1"
TOPICS = Topics("fieldlink", "gw1")
ZHANG = "BH4ZW-7"
LI = "BH4LN-7"


# -- the book, on a temporary journal ---------------------------------------------------------


class Book:
    """An AlarmBook whose events land in the journal's outbox and whose summaries are kept."""

    def __init__(self, path: Path, *, max_raised: int = 100, outbox_max_rows: int = 1000) -> None:
        self.journal = Journal.open(path, outbox_max_rows=outbox_max_rows)
        self.summaries: list[dict[str, Any]] = []
        self.book = AlarmBook(
            self.journal,
            TOPICS,
            emit=lambda topic, payload: self.journal.append(topic, payload, urgent=True),
            publish_summary=lambda payload: self.summaries.append(json.loads(payload)),
            max_raised=max_raised,
        )

    def events(self) -> list[tuple[str, dict[str, Any], bool]]:
        return [
            (r.topic, json.loads(r.payload), r.urgent) for r in self.journal.pending(limit=1000)
        ]

    def rows(self) -> list[tuple[Any, ...]]:
        return self.journal.db.conn.execute(
            "SELECT unit, kind, link, device, cleared_by, cleared_at IS NULL, position, detail"
            " FROM alarms ORDER BY id"
        ).fetchall()

    def close(self) -> None:
        self.journal.close()


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Book]:
    b = Book(tmp_path / "journal.sqlite")
    b.book.start()
    yield b
    b.close()


def position(device: DeviceRef, lat: float = 31.2304) -> Position:
    now = utc_now()
    return Position(device, lat, 121.4737, now, now, "aprs", speed_kmh=12.0)


def alarm(
    device: DeviceRef,
    raised: bool = True,
    kind: AlarmKind = AlarmKind.EMERGENCY,
    *,
    with_position: bool = True,
    detail: str | None = None,
) -> Alarm:
    fix = position(device) if with_position else None
    return Alarm(device, kind, raised, utc_now(), position=fix, detail=detail)


def test_a_raise_is_journaled_and_in_the_outbox_once(book: Book) -> None:
    radio = DeviceRef("vhf", ZHANG)
    assert book.summaries == [{"alarms": []}]  # published at start, even when empty
    assert book.book.on_alarm("zhang-wei", alarm(radio)) == "raised"
    assert book.book.on_alarm("zhang-wei", alarm(radio)) == "repeat"
    assert book.book.on_alarm("zhang-wei", alarm(radio)) == "repeat"
    ((topic, event, urgent),) = book.events()
    assert (topic, urgent) == (TOPICS.alarm("zhang-wei"), True)
    assert event["unit"] == "zhang-wei"
    assert (event["kind"], event["state"]) == ("emergency", "raised")
    assert (event["link"], event["device"]) == ("vhf", f"vhf:{ZHANG}")
    assert event["position"]["lat"] == pytest.approx(31.2304)
    assert event["position"]["source"] == "aprs"
    assert event["at"].endswith("Z")
    assert "detail" not in event
    assert book.summaries[-1] == {"alarms": [event]}
    assert (book.book.raised, book.book.repeats) == (1, 2)
    ((unit, kind, link, device, cleared_by, open_, stored_position, detail),) = book.rows()
    assert (unit, kind, link, device, cleared_by, open_) == (
        "zhang-wei", "emergency", "vhf", f"vhf:{ZHANG}", None, 1,
    )  # fmt: skip
    assert json.loads(stored_position) == event["position"]
    assert detail is None


def test_the_device_that_raised_it_clears_it(book: Book) -> None:
    first, second = DeviceRef("vhf", "BH4WQ-7"), DeviceRef("vhf", "BH4WQ-9")
    book.book.on_alarm("wang-qiang", alarm(first))
    assert book.book.is_raised("wang-qiang", AlarmKind.EMERGENCY)
    assert not book.book.is_raised("wang-qiang", AlarmKind.MAN_DOWN)
    # The unit's other radio beaconing normally says nothing about the first one's emergency.
    assert book.book.on_alarm("wang-qiang", alarm(second, raised=False)) == "ignored"
    # A clear of an alarm never raised is nothing either.
    assert book.book.on_alarm("li-na", alarm(DeviceRef("vhf", LI), raised=False)) == "ignored"
    assert book.book.on_alarm("wang-qiang", alarm(first, raised=False)) == "cleared"
    raised, cleared = (event for _, event, _ in book.events())
    assert cleared["state"] == "cleared"
    assert cleared["cleared_by"] == "device"
    assert cleared["raised_at"] == raised["at"]
    assert cleared["device"] == "vhf:BH4WQ-7"
    assert "position" in cleared
    assert book.summaries[-1] == {"alarms": []}
    assert book.rows()[0][4:6] == ("device", 0)
    # Raised again later: a new raise, a new row.
    assert book.book.on_alarm("wang-qiang", alarm(first)) == "raised"
    assert len(book.rows()) == 2


def test_the_centre_clears_and_a_second_clear_is_an_error(book: Book) -> None:
    radio = DeviceRef("vhf", ZHANG)
    book.book.on_alarm("zhang-wei", alarm(radio, kind=AlarmKind.OTHER, detail="x" * 500))
    book.book.on_alarm("zhang-wei", alarm(radio))
    assert [a["kind"] for a in book.book.active()] == ["other", "emergency"]
    assert book.book.active()[0]["detail"] == "x" * 200  # a protocol's text is capped
    cleared = book.book.clear("zhang-wei", AlarmKind.EMERGENCY)
    assert (cleared["state"], cleared["cleared_by"], cleared["kind"]) == (
        "cleared", "centre", "emergency",
    )  # fmt: skip
    assert book.events()[-1][1] == cleared
    assert [a["kind"] for a in book.summaries[-1]["alarms"]] == ["other"]
    with pytest.raises(AlarmNotRaised, match="no emergency alarm is raised for unit zhang-wei"):
        book.book.clear("zhang-wei", AlarmKind.EMERGENCY)
    assert book.book.has_unit("zhang-wei")
    assert not book.book.has_unit("li-na")
    assert [row[4] for row in book.rows()] == [None, "centre"]


def test_the_raised_set_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    before = Book(path)
    before.book.start()
    before.book.on_alarm("zhang-wei", alarm(DeviceRef("vhf", ZHANG)))
    before.book.on_alarm("li-na", alarm(DeviceRef("vhf", LI), with_position=False))
    before.book.on_alarm("li-na", alarm(DeviceRef("vhf", LI), raised=False))
    before.book.on_alarm("car-1", alarm(DeviceRef("gps0"), kind=AlarmKind.POWER_CUT))
    expected = before.book.active()
    before.close()  # as after kill -9: nothing else was written

    after = Book(path)
    assert after.book.raised == 0
    assert after.book.start() == 2
    assert after.book.active() == expected
    assert after.summaries == [{"alarms": expected}]
    # A repeat from the radio is not a new raise after the restart.
    assert after.book.on_alarm("zhang-wei", alarm(DeviceRef("vhf", ZHANG))) == "repeat"
    after.book.clear("car-1", AlarmKind.POWER_CUT)
    after.close()


def test_a_raise_the_outbox_cannot_take_records_nothing(tmp_path: Path) -> None:
    b = Book(tmp_path / "journal.sqlite", outbox_max_rows=0)
    b.book.start()
    for _ in range(10_000):
        b.journal.append("t", b"0", urgent=True)
    b.close()
    b = Book(tmp_path / "journal.sqlite", outbox_max_rows=0)  # 10,000 urgent rows: headroom full
    b.book.start()
    with pytest.raises(OutboxFull):
        b.book.on_alarm("zhang-wei", alarm(DeviceRef("vhf", ZHANG)))
    assert b.rows() == []
    assert b.book.raised == 0
    assert b.journal.urgent_depth == 10_000
    b.close()


def test_the_raised_set_is_bounded_and_nothing_is_dropped(tmp_path: Path) -> None:
    b = Book(tmp_path / "journal.sqlite", max_raised=2)
    b.book.start()
    for n in range(3):
        assert b.book.on_alarm(f"u{n}", alarm(DeviceRef("vhf", f"BG5X{n}-7"))) == "raised"
    assert b.book.raised == 2
    assert b.book.overflow == 1
    assert [e["unit"] for _, e, _ in b.events()] == ["u0", "u1", "u2"]  # all published
    assert len(b.rows()) == 3  # and journaled
    assert [a["unit"] for a in b.summaries[-1]["alarms"]] == ["u0", "u1"]
    b.close()


# -- the urgent lane of the outbox, on a real broker --------------------------------------------


def ignore(message: InboundMessage) -> None:
    del message


def urgent_first(tmp_path: Path, mosquitto: Mosquitto, *, connected_first: bool) -> list[Received]:
    """100 task events, then one alarm; returns what a subscriber got, in order."""
    config = make_config(tmp_path, mosquitto)
    events_topic = TOPICS.task_events("t1")
    alarm_topic = TOPICS.alarm("u1")
    collector = Collector(mosquitto.host, mosquitto.port, [events_topic, alarm_topic]).start()

    async def scenario() -> None:
        journal = Journal.open(config.gateway.data_dir / "journal.sqlite")
        bridge = MqttBridge(
            config.mqtt, TOPICS, journal, version="t", started_at=utc_now(), on_inbound=ignore
        )

        def append_all() -> None:
            for n in range(100):
                bridge.emit(events_topic, json.dumps({"n": n}).encode())
            bridge.emit(alarm_topic, b'{"state":"raised"}', urgent=True)

        if not connected_first:
            append_all()  # waiting in the journal, as after a restart
        task = asyncio.create_task(bridge.run())
        try:
            await bridge.wait_connected(10)
            if connected_first:
                append_all()  # in one step of the loop: the drain sees them all at once
            await until(lambda: journal.outbox_depth == 0, 10, "the outbox drained")
            assert journal.urgent_depth == 0
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 10)
            journal.close()

    run_async(scenario())
    got = collector.wait_for(lambda ms: len(ms) >= 101, 10, "all 101 messages")
    collector.stop()
    return got


@pytest.mark.broker
@pytest.mark.parametrize("connected_first", [False, True], ids=["from-journal", "while-connected"])
def test_an_urgent_row_overtakes_100_task_events(
    tmp_path: Path, mosquitto: Mosquitto, connected_first: bool
) -> None:
    got = urgent_first(tmp_path, mosquitto, connected_first=connected_first)
    assert got[0].topic == TOPICS.alarm("u1")
    numbers = [m.json()["n"] for m in got if m.topic == TOPICS.task_events("t1")]
    assert numbers == list(range(100))  # the rest still in order, each once


@pytest.mark.broker
def test_positions_wait_while_an_alarm_is_handed_over(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """5,000 positions queued, then an alarm: the alarm reaches the subscriber first."""
    config = make_config(tmp_path, mosquitto)
    alarm_topic = TOPICS.alarm("u1")
    collector = Collector(
        mosquitto.host, mosquitto.port, [alarm_topic, f"{TOPICS.root}/units/+/position"]
    ).start()

    async def scenario() -> None:
        journal = Journal.open(config.gateway.data_dir / "journal.sqlite")
        bridge = MqttBridge(
            config.mqtt, TOPICS, journal, version="t", started_at=utc_now(), on_inbound=ignore
        )
        task = asyncio.create_task(bridge.run())
        try:
            await bridge.wait_connected(10)
            await asyncio.sleep(0.2)  # the session's retained values are out
            for n in range(5000):
                bridge.set_retained(TOPICS.position(f"p{n % 50}"), b'{"n":%d}' % n, qos=0)
            bridge.emit(alarm_topic, b'{"state":"raised"}', urgent=True)
            await until(lambda: journal.outbox_depth == 0, 10, "the alarm acknowledged")
            await until(lambda: bridge.published >= 5001, 10, "every position handed over")
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 10)
            journal.close()

    run_async(scenario())
    got = collector.wait_for(lambda ms: len(ms) >= 5001, 15, "the positions and the alarm")
    collector.stop()
    live = [m for m in got if not m.retain]
    assert live[0].topic == alarm_topic, [m.topic for m in live[:5]]
    assert sum(m.topic != alarm_topic for m in live) == 5000  # QoS 0 on loopback: all of them


def test_journals_from_before_the_urgent_lane_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
            " created_at TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO outbox (topic, payload, qos, retain, created_at)"
                     " VALUES ('old', x'01', 1, 0, '')")  # fmt: skip
    conn.close()
    journal = Journal.open(path)
    assert journal.outbox_depth == 1
    assert journal.urgent_depth == 0
    seq = journal.append("new", b"2", urgent=True)
    assert [r.topic for r in journal.pending(urgent=False)] == ["old"]
    assert [(r.seq, r.urgent) for r in journal.pending(urgent=True)] == [(seq, True)]
    assert [r.topic for r in journal.pending()] == ["old", "new"]
    journal.acknowledge([seq])
    assert journal.urgent_depth == 0
    journal.close()


# -- the daemon: Mic-E emergencies over KISS TCP ------------------------------------------------

UNITS = f"""
[[units]]
id = "zhang-wei"
name = "张伟"
devices = ["vhf:{ZHANG}"]

[[units]]
id = "li-na"
name = "李娜"
devices = ["vhf:{LI}"]
"""

_lat_steps = itertools.count()


def mic_e(source: str, status: str = "Emergency") -> bytes:
    """A Mic-E position from ``source``, each at a new spot (so no copy is a duplicate)."""
    lat = 31.2304 + next(_lat_steps) * 0.0001
    dest, info = encode_mic_e(lat, 121.4737, speed_kmh=5, course_deg=90, status=status)
    frame = ax25.Ax25Frame(ax25.parse_address(dest), ax25.parse_address(source), info=info)
    return kiss.encode_frame(ax25.encode(frame))


class Site:
    """The TNC, a subscriber to everything of the gateway, and the daemon's process."""

    def __init__(self, tmp_path: Path, mosquitto: Mosquitto) -> None:
        self.tmp_path = tmp_path
        self.mosquitto = mosquitto
        self.tnc = KissTnc()
        self.collector = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
        self.config = tmp_path / "config.toml"
        self.daemon: GatewayProcess | None = None
        self._requests = itertools.count(1)

    def start(self) -> GatewayProcess:
        """The daemon, with a TNC of its own (the test TNC takes one connection)."""
        self.tnc.close()
        self.tnc = KissTnc()
        link = f"""
[[links]]
name = "vhf"
protocol = "aprs"
url = "{self.tnc.url}"
callsign = "BH4GW-10"
reconnect_min_s = 0.1
reconnect_max_s = 0.3
"""
        text = config_text(self.tmp_path / "data", self.mosquitto, links=link, units=UNITS)
        self.config.write_text(text, encoding="utf-8")
        mark = len(self.collector.snapshot())
        self.daemon = GatewayProcess(self.config, self.tmp_path / "gateway.log").start()

        def up(ms: list[Received]) -> bool:
            new = ms[mark:]
            return any(m.topic == f"{BASE}/links/vhf/state" and b'"up"' in m.payload for m in new)

        self.collector.wait_for(up, 20, "the gateway online and its TNC link up")
        return self.daemon

    def alarms_of(self, unit: str) -> list[dict[str, Any]]:
        return [m.json() for m in self.collector.snapshot(f"{BASE}/units/{unit}/alarm")]

    def wait_alarms(self, unit: str, count: int) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.alarms_of(unit)) >= count, 15, f"{count} alarms of {unit}")
        return self.alarms_of(unit)

    def summary(self) -> Any:
        return self.collector.last_json(f"{BASE}/alarms")

    def request(self, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a request; return its response (matched by transaction)."""
        transaction = f"t{next(self._requests)}"
        payload = json.dumps({"transaction": transaction, **body}).encode()
        message = self.collector.client.publish(f"{BASE}/request/{command}", payload, qos=1)
        message.wait_for_publish(5)
        topic = f"{BASE}/response/{command}"

        def answered(ms: list[Received]) -> bool:
            return any(m.topic == topic and m.json().get("transaction") == transaction for m in ms)

        got = self.collector.wait_for(answered, 10, f"the response to {command}")
        (response,) = [
            m.json() for m in got if m.topic == topic and m.json().get("transaction") == transaction
        ]
        return dict(response)

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.ensure_stopped()
        self.collector.stop()
        self.tnc.close()


@pytest.fixture
def site(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Site]:
    s = Site(tmp_path, mosquitto)
    yield s
    s.close()


def fresh_summary(mosquitto: Mosquitto) -> Any:
    """The retained summary as a subscriber that connects now sees it."""
    fresh = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/alarms"]).start()
    try:
        (retained,) = fresh.wait_for(lambda ms: len(ms) >= 1, 10, "the retained summary")
        assert retained.retain
        return retained.json()
    finally:
        fresh.stop()


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_emergency_sent_three_times_is_one_alarm_until_the_centre_clears_it(
    site: Site, mosquitto: Mosquitto
) -> None:
    daemon = site.start()
    site.tnc.send([mic_e(ZHANG) for _ in range(3)])
    (raised,) = site.wait_alarms("zhang-wei", 1)
    assert (raised["unit"], raised["kind"], raised["state"]) == ("zhang-wei", "emergency", "raised")
    assert (raised["link"], raised["device"]) == ("vhf", f"vhf:{ZHANG}")
    assert raised["position"]["lat"] == pytest.approx(31.23, abs=0.01)
    site.collector.wait_for(
        lambda ms: any(m.topic == f"{BASE}/health" and m.json()["alarms"]["repeats"] == 2
                       for m in ms),
        10, "the two repeats counted",
    )  # fmt: skip
    assert len(site.alarms_of("zhang-wei")) == 1
    wait_until(lambda: site.summary() == {"alarms": [raised]}, 10, "the summary listing it")
    assert fresh_summary(mosquitto) == {"alarms": [raised]}
    assert site.request("alarms", {}) == {
        "transaction": "t1", "status": "ok", "data": {"alarms": [raised]},
    }  # fmt: skip

    response = site.request("clear_alarm", {"unit": "zhang-wei", "kind": "emergency"})
    assert response["status"] == "ok", response
    cleared = response["data"]
    assert (cleared["state"], cleared["cleared_by"]) == ("cleared", "centre")
    assert cleared["raised_at"] == raised["at"]
    assert site.wait_alarms("zhang-wei", 2)[1] == cleared
    wait_until(lambda: site.summary() == {"alarms": []}, 10, "the summary empty")
    assert fresh_summary(mosquitto) == {"alarms": []}

    # Bad requests: each answered with an error, nothing cleared.
    bad: dict[str, dict[str, Any]] = {
        "unknown unit": {"unit": "nobody", "kind": "emergency"},
        "no unit": {"kind": "emergency"},
        "unknown kind": {"unit": "zhang-wei", "kind": "fire"},
        "kind not a string": {"unit": "zhang-wei", "kind": ["emergency"]},
        "not raised": {"unit": "zhang-wei", "kind": "emergency"},
        "other kind not raised": {"unit": "li-na", "kind": "man_down"},
    }
    errors = {name: site.request("clear_alarm", body) for name, body in bad.items()}
    assert all(r["status"] == "error" for r in errors.values()), errors
    assert "unit must name" in errors["unknown unit"]["error"]
    assert "kind must be one of emergency, man_down" in errors["unknown kind"]["error"]
    assert errors["not raised"]["error"] == "no emergency alarm is raised for unit zhang-wei"
    assert len(site.alarms_of("zhang-wei")) == 2

    assert daemon.terminate() == 0
    with sqlite3.connect(site.tmp_path / "data" / "journal.sqlite") as conn:
        rows = conn.execute("SELECT unit, kind, device, cleared_by FROM alarms").fetchall()
    conn.close()
    assert rows == [("zhang-wei", "emergency", f"vhf:{ZHANG}", "centre")]


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_the_radio_clears_its_own_emergency(site: Site) -> None:
    site.start()
    site.tnc.send([mic_e(LI), mic_e(LI)])
    site.wait_alarms("li-na", 1)
    site.tnc.send([mic_e(LI, "In Service")])
    raised, cleared = site.wait_alarms("li-na", 2)
    assert (cleared["state"], cleared["cleared_by"]) == ("cleared", "device")
    assert cleared["position"]["lat"] > raised["position"]["lat"]
    wait_until(lambda: site.summary() == {"alarms": []}, 10, "the summary empty")
    # More normal beacons say nothing; a new emergency is a new raise.
    site.tnc.send([mic_e(LI, "In Service"), mic_e(LI)])
    assert site.wait_alarms("li-na", 3)[2]["state"] == "raised"
    assert len(site.alarms_of("li-na")) == 3


@pytest.mark.broker
@pytest.mark.timeout(120)
def test_alarms_survive_kill_9(site: Site, mosquitto: Mosquitto) -> None:
    daemon = site.start()
    site.tnc.send([mic_e(ZHANG)])
    (raised,) = site.wait_alarms("zhang-wei", 1)
    daemon.kill9()  # the raise is committed: its event went out after the commit
    # Wipe the broker's retained summary: what a fresh subscriber sees next is rebuilt.
    site.collector.client.publish(f"{BASE}/alarms", b"", qos=1, retain=True).wait_for_publish(5)
    wait_until(lambda: site.collector.snapshot(f"{BASE}/alarms")[-1].payload == b"", 10, "wiped")

    site.start()
    assert fresh_summary(mosquitto) == {"alarms": [raised]}
    # The radio still in emergency: a repeat, not a new raise.
    site.tnc.send([mic_e(ZHANG)])
    site.collector.wait_for(
        lambda ms: any(m.topic == f"{BASE}/health" and m.json()["alarms"]["repeats"] == 1
                       for m in ms),
        10, "the repeat counted",
    )  # fmt: skip
    assert len(site.alarms_of("zhang-wei")) == 1
    response = site.request("clear_alarm", {"unit": "zhang-wei", "kind": "emergency"})
    assert response["data"]["raised_at"] == raised["at"]
    wait_until(lambda: fresh_summary(mosquitto) == {"alarms": []}, 10, "the summary empty")


def test_alarm_times_are_utc_with_milliseconds(book: Book) -> None:
    book.book.on_alarm("zhang-wei", alarm(DeviceRef("vhf", ZHANG)))
    at = book.book.active()[0]["at"]
    parsed = datetime.fromisoformat(at.replace("Z", "+00:00"))
    assert parsed.tzinfo == UTC
    assert len(at) == len("2024-05-01T08:00:00.000Z")
