"""`fieldlink demo` from the user's side: it runs, shows positions, and exits 0."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import IN_CI, ROOT

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=80,
        check=False,
    )


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_runs_and_exits_0(broker: str) -> None:
    if broker == "mosquitto" and shutil.which("mosquitto") is None and not IN_CI:
        pytest.skip("mosquitto is not installed")
    result = run_demo("--duration", "24", "--broker", broker)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "gateway         online" in out
    assert "unit car-1" in out  # the BeiDou receiver on a pty
    assert "unit car-2" in out  # the u-blox receiver on TCP
    assert "link gps-bd     down" in out  # the unplug ...
    assert out.count("link gps-bd     up") >= 2  # ... and the recovery
    assert "link vhf        up" in out
    for line in ("zhang-wei   acknowledged", "li-na       declined", "wang-qiang  escalated"):
        assert line in out, line
    # The DMR radios (Hytera on a pty, MOTOTRBO on loopback UDP) and the GT06 tracker.
    for line in (
        "link dmr        up",
        "link trbo       up",
        "link trk        up",
        "unit zhao-lei   online via dmr",
        "unit chen-jie   online via trbo",
        "unit car-3      online via trk",
        "zhao-lei    delivered",
        "zhao-lei    acknowledged",
        "chen-jie    delivered",
        "chen-jie    acknowledged",
        # The JT/T 808 PoC walkie-talkie speaks its task and she accepts it on the question.
        "link poc        up",
        "unit liu-yang   online via poc",
        "her walkie-talkie speaks",
        "liu-yang    delivered",
        "liu-yang    acknowledged",
    ):
        assert line in out, line
    assert "via trk (gt06)" in out
    assert "gateway         offline" in out
    assert "SLA report" in out
    assert "acknowledged" in out.split("SLA report from the journal")[1]
    assert "Traceback" not in result.stderr


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "done:" in out
