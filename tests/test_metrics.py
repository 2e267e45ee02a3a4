"""``GET /metrics`` of the daemon (a child process) during a real run: positions and a task
over an APRS link on KISS TCP, an emergency, and the link dropped and back; the exposition
parsed with prometheus_client's own parser and checked against the journal, and against
the names docs/operations.md and docs/grafana-dashboard.json use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.devkit.broker import Mosquitto
from tests.conftest import ROOT
from tests.web_support import LI, ZHANG, Site, mic_e, module_broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]
__all__ = ["module_broker"]  # the fixture, imported to be used here

OPERATIONS = ROOT / "docs" / "operations.md"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
NAME = re.compile(r"\bfieldlink_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


class Scrape:
    """One exposition, parsed: families by name and every sample."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def names(self) -> set[str]:
        """Family names and sample names (``x``, ``x_total``, ``x_bucket``...)."""
        return set(self.families) | {s.name for s in self.samples}

    def value(self, name: str, **labels: str) -> float:
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) == 1, f"{name}{labels}: {found}"
        return float(found[0])

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {s.labels[label]: float(s.value) for s in self.samples if s.name == name}


def scrape(site: Site) -> Scrape:
    return Scrape(site.get("/metrics").decode())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, module_broker: Mosquitto) -> Iterator[Site]:
    """The run the tests scrape: positions from two radios, a task acknowledged, an emergency
    raised, and the link dropped once and back."""
    s = Site(tmp_path_factory.mktemp("metrics"), module_broker, http="unit_metrics = true")
    try:
        s.wait_ready()
        s.tnc.send(mic_e(ZHANG), mic_e(LI), mic_e(ZHANG))
        s.dispatch("m1", "zhang-wei", "m1 人民广场东侧有人摔倒")
        message = s.task_message(ZHANG, "m1")
        s.radio_acks(ZHANG, message)
        s.wait_stage("m1", "delivered")
        s.radio_replies(ZHANG, "收到")
        s.wait_stage("m1", "acknowledged")
        s.tnc.send(mic_e(LI, status="Emergency"))
        s.collector.wait_for(
            lambda ms: any(m.topic.endswith("/units/li-na/alarm") for m in ms), 15, "the alarm"
        )
        mark = len(s.collector.snapshot())
        s.tnc.drop()
        s.wait_link("down", mark)
        s.wait_link("up", mark)
        yield s
    finally:
        s.close()


def test_the_exposition_parses_and_tells_the_run(site: Site) -> None:
    m = scrape(site)

    assert m.value("fieldlink_info", gateway="gw1") == 1
    assert m.value("fieldlink_link_up", link="vhf") == 1
    assert m.value("fieldlink_link_reconnects_total", link="vhf") >= 1
    assert m.value("fieldlink_link_positions_total", link="vhf") >= 4
    assert m.value("fieldlink_link_frames_total", link="vhf") >= 6
    assert m.value("fieldlink_link_rx_bytes_total", link="vhf") > 0
    assert m.value("fieldlink_link_tx_bytes_total", link="vhf") > 0
    assert m.value("fieldlink_mqtt_connected") == 1
    assert m.value("fieldlink_units_configured") == 2
    assert m.value("fieldlink_units_online") == 2
    assert m.by_label("fieldlink_unit_online", "unit") == {"zhang-wei": 1.0, "li-na": 1.0}
    assert set(m.by_label("fieldlink_unit_last_heard_age_seconds", "unit")) == {
        "zhang-wei",
        "li-na",
    }
    # The acknowledgement is one observation, inside the 60 s target's bucket.
    assert m.value("fieldlink_task_stage_latency_seconds_count", stage="acknowledged") == 1
    assert m.value("fieldlink_task_stage_latency_seconds_bucket", stage="acknowledged", le="60.0")
    assert m.value("fieldlink_mqtt_publish_latency_seconds_count") >= 1
    assert m.value("fieldlink_tasks_open") == 1  # acknowledged, not closed
    assert m.value("fieldlink_alarms_active", kind="emergency") == 1
    assert "process_resident_memory_bytes" in m.names()
    assert not any(s.name.endswith("_created") for s in m.samples)


def test_the_buckets_sit_on_the_sla_targets(site: Site) -> None:
    m = scrape(site)
    bounds = {
        float(s.labels["le"])
        for s in m.samples
        if s.name == "fieldlink_task_stage_latency_seconds_bucket"
    }
    assert {60.0, 180.0, 480.0, 600.0, 3600.0, 86400.0} <= bounds
    assert len({b for b in bounds if b < 60}) >= 5  # finer below a minute


def test_counters_match_the_journal(site: Site) -> None:
    m = scrape(site)
    stages = m.by_label("fieldlink_task_stages_total", "stage")
    recorded = dict(
        site.journal_rows("SELECT stage, count(*) FROM stages WHERE unit != '' GROUP BY stage")
    )
    assert recorded  # the run recorded stages
    for stage, count in recorded.items():
        assert stages[stage] == count, stage
    assert sum(stages.values()) == sum(recorded.values())
    raised = dict(site.journal_rows("SELECT kind, count(*) FROM alarms GROUP BY kind"))
    active = dict(
        site.journal_rows(
            "SELECT kind, count(*) FROM alarms WHERE cleared_at IS NULL GROUP BY kind"
        )
    )
    assert raised == {"emergency": 1}
    assert {k: v for k, v in m.by_label("fieldlink_alarms_raised_total", "kind").items() if v} == (
        raised
    )
    assert {k: v for k, v in m.by_label("fieldlink_alarms_active", "kind").items() if v} == active
    # Each recorded clock stage is one latency observation.
    for stage in ("transmitted", "delivered", "acknowledged"):
        observed = m.value("fieldlink_task_stage_latency_seconds_count", stage=stage)
        assert observed == recorded[stage], stage
    assert (
        m.value("fieldlink_mqtt_outbox_rows")
        == site.journal_rows("SELECT count(*) FROM outbox")[0][0]
    )


def documented_metrics() -> set[str]:
    """The names in the metrics table of docs/operations.md (rows starting with a name)."""
    text = OPERATIONS.read_text(encoding="utf-8")
    return set(re.findall(r"^\| `(fieldlink_[a-z0-9_]+)`", text, flags=re.MULTILINE))


def base_name(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_documented_metric_exists_and_every_metric_is_documented(site: Site) -> None:
    exposed = scrape(site)
    documented = documented_metrics()

    assert len(documented) >= 30
    names = exposed.names()  # a family with no sample yet shows by its base name only
    missing = {name for name in documented if name not in names and base_name(name) not in names}
    assert not missing, f"documented, not exposed: {sorted(missing)}"
    ours = {base_name(s.name) for s in exposed.samples if s.name.startswith("fieldlink_")} | {
        f for f in exposed.families if f.startswith("fieldlink_")
    }
    undocumented = {n for n in ours if n not in {base_name(d) for d in documented}}
    assert not undocumented, f"exposed, not documented: {sorted(undocumented)}"


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def test_the_dashboard_and_the_alert_rules_use_only_real_metrics(site: Site) -> None:
    exposed = scrape(site).names()
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = list(expressions(dashboard))
    assert dashboard["title"]
    assert len(dashboard["panels"]) >= 6
    assert len(exprs) >= 8
    rules = OPERATIONS.read_text(encoding="utf-8").split("groups:", 1)[1].split("```", 1)[0]
    for alert in ("AcknowledgedWithin60sBelowGoal", "LinkDown", "OutboxGrowing", "AlarmActive"):
        assert f"alert: {alert}" in rules
    used = {name for expr in [*exprs, rules] for name in NAME.findall(expr)}
    assert used
    unknown = {name for name in used if name not in exposed and base_name(name) not in exposed}
    assert not unknown, f"unknown metric names: {sorted(unknown)}"
