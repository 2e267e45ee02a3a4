"""The status feed against a real gateway (in process, not running its links): what each page
is offered, frame by frame. A page that is new or skipped a frame gets every unit; the others
get only the units that changed; a site where nothing moved sends nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.config import parse_config
from gateway.daemon import Gateway
from gateway.model import DeviceRef, Position, utc_now
from gateway.web.feed import StatusFeed, Subscriber
from tests.support import run_async

UNITS = ["car-1", "car-2", "car-3"]


def gateway(tmp_path: Path) -> Gateway:
    links = [
        {"name": unit, "protocol": "nmea", "url": f"/dev/fake-{unit}", "unit": unit}
        for unit in UNITS
    ]
    config = parse_config(
        {
            "gateway": {"id": "gw1", "data_dir": str(tmp_path / "data")},
            "http": {"language": "en"},
            "links": links,
            "units": [{"id": unit, "name": unit.upper()} for unit in UNITS],
        },
        base_dir=tmp_path,
        env={},
    )
    return Gateway(config)


def fix(gw: Gateway, unit: str, lat: float) -> None:
    now = utc_now()
    gw.position(Position(DeviceRef(unit), lat, 121.47, now, now, "nmea"))


def test_frames_carry_what_changed(tmp_path: Path) -> None:
    async def scenario() -> None:
        gw = gateway(tmp_path)
        try:
            feed = StatusFeed(gw, max_subscribers=2)
            first = feed.subscribe()
            assert first is not None
            fix(gw, "car-1", 31.1)
            fix(gw, "car-2", 31.2)
            await feed._broadcast()  # noqa: SLF001 - one step of its loop, driven by the test

            full = await frame_of(first)
            assert full["full"] is True
            assert [u["id"] for u in full["units"]] == UNITS
            assert full["units"][0]["position"] == {"lat": 31.1, "lon": 121.47}
            assert full["units_total"] == 3
            assert full["language"] == "en"
            assert abs(full["_id"] - utc_now().timestamp() * 1000) < 60_000  # the server's time

            # Nothing moved: nothing is offered.
            await feed._broadcast()  # noqa: SLF001
            assert held(first) == 0

            # One unit moved: only it.
            fix(gw, "car-2", 31.25)
            await feed._broadcast()  # noqa: SLF001
            delta = await frame_of(first)
            assert delta["full"] is False
            assert [(u["id"], u["position"]["lat"]) for u in delta["units"]] == [("car-2", 31.25)]
            assert delta["gone"] == []

            # A new page gets everything; the first page gets the next change only.
            second = feed.subscribe()
            assert second is not None
            assert feed.subscribe() is None  # the cap
            fix(gw, "car-3", 31.3)
            await feed._broadcast()  # noqa: SLF001
            assert (await frame_of(second))["full"] is True
            assert [u["id"] for u in (await frame_of(first))["units"]] == ["car-3"]

            # A page that did not take its frame gets everything next, not a delta on top.
            fix(gw, "car-1", 31.15)
            await feed._broadcast()  # noqa: SLF001
            await frame_of(second)  # the second page keeps up; the first does not
            fix(gw, "car-2", 31.35)
            await feed._broadcast()  # noqa: SLF001
            assert held(first) == 1
            caught_up = await frame_of(first)
            assert caught_up["full"] is True
            positions = {u["id"]: u["position"]["lat"] for u in caught_up["units"]}
            assert positions == {"car-1": 31.15, "car-2": 31.35, "car-3": 31.3}
            assert [u["id"] for u in (await frame_of(second))["units"]] == ["car-2"]
            feed.unsubscribe(first)
            feed.unsubscribe(second)
            assert feed.subscribers == 0
        finally:
            gw.journal.close()

    run_async(scenario(), timeout_s=30)


def held(sub: Subscriber) -> int:
    return sub.pending


async def frame_of(sub: Subscriber) -> dict[str, Any]:
    assert sub.pending == 1
    frame = await sub.next_frame(0)
    assert frame is not None
    head, _, data = frame.partition(b"\ndata: ")
    assert head.startswith(b"event: status\nid: ")
    assert data.endswith(b"\n\n")
    assert b"\n" not in data[:-2]  # one data line: the page's EventSource sees one event
    parsed: dict[str, Any] = json.loads(data)
    parsed["_id"] = int(head.rpartition(b" ")[2])
    return parsed
