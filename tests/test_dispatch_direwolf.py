"""The whole path with real peers: a task published on MQTT goes gateway -> KISS TCP ->
direwolf A -> simulated audio -> direwolf B -> KISS -> the radio stub; its ack and the
person's reply come back the same way, and the task's events appear on MQTT in order.

Fails when direwolf is missing and ``CI`` is set, skipped otherwise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from firmware_stubs.aprs_radio import AprsRadio
from gateway.devkit.broker import Mosquitto
from gateway.model import rfc3339, utc_now
from tests.conftest import IN_CI
from tests.direwolf_peer import DirewolfPair
from tests.radio_harness import BackgroundLoop
from tests.support import Collector, GatewayProcess, Received

pytestmark = [pytest.mark.direwolf, pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(120)]

GATEWAY = "BH4GW-10"
RADIO = "BH4ZW-7"
BASE = "fieldlink/gw1"


def test_task_through_two_direwolf_and_back(tmp_path: Path, mosquitto: Mosquitto) -> None:
    if shutil.which("direwolf") is None:
        reason = "direwolf missing (apt-get install direwolf)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    pair = DirewolfPair(tmp_path / "dw", calls=(GATEWAY, RADIO), speed=2.0, fast=True).start()
    radios = BackgroundLoop()
    radio = AprsRadio(RADIO, reply="收到", reply_delay_s=0.5, reply_retry_intervals_s=(8.0, 8.0))
    radios.spawn(radio.run(("127.0.0.1", pair.kiss2)))
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
[gateway]
id = "gw1"
data_dir = "{tmp_path / "data"}"
[mqtt]
url = "{mosquitto.url}"
[[links]]
name = "vhf"
protocol = "aprs"
url = "tcp://127.0.0.1:{pair.kiss1}"
callsign = "{GATEWAY}"
retry_intervals_s = [6.0, 6.0, 6.0]
[[units]]
id = "zhang-wei"
name = "张伟"
devices = ["vhf:{RADIO}"]
""",
        encoding="utf-8",
    )
    centre = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
    daemon = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    try:
        centre.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/links/vhf/state" and b'"up"' in m.payload for m in ms
            ),
            20,
            "the KISS link to direwolf A",
        )
        task = {
            "task_id": "dw-1",
            "units": ["zhang-wei"],
            "text": "人民广场东侧有人摔倒",
            "priority": "urgent",
            "created_at": rfc3339(utc_now()),
        }
        centre.client.publish(
            f"{BASE}/tasks/dispatch", json.dumps(task, ensure_ascii=False).encode(), 1
        )

        def stages(ms: list[Received]) -> list[str]:
            return [m.json()["stage"] for m in ms if m.topic == f"{BASE}/tasks/dw-1/events"]

        messages = centre.wait_for(lambda ms: "acknowledged" in stages(ms), 60, "acknowledged")
        seen = list(dict.fromkeys(stages(messages)))
        assert seen == ["received", "queued", "transmitted", "delivered", "acknowledged"]
        assert radio.received == [(GATEWAY, "#1 人民广场东侧有人摔倒")]
        assert daemon.terminate() == 0
    finally:
        daemon.ensure_stopped()
        centre.stop()
        radios.stop()
        leftover = pair.stop()
        assert not leftover, f"relays survived direwolf: {leftover}"
