"""The command line as a user meets it: exit codes and messages that name the key."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import LinkConfig, parse_config
from gateway.daemon import Gateway
from gateway.devkit.broker import Mosquitto
from gateway.drivers.registry import not_built_message
from gateway.drivers.spec import ProtocolSpec
from gateway.errors import ConfigError
from tests.conftest import ROOT
from tests.support import GatewayProcess, wait_until


def fieldlink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_check_config_prints_the_example_with_secrets_masked(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2\n")
    config = tmp_path / "config.toml"
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    config.write_text(
        text.replace('username = ""', f'username = "gw"\npassword_file = "{secret}"'),
        encoding="utf-8",
    )
    result = fieldlink("check-config", "-c", str(config), "--format", "json")
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["mqtt"]["password"] == "***"  # noqa: S105 - the mask, not a secret
    assert "hunter2" not in result.stdout
    assert effective["links"][0]["baudrate"] == 4800


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[gateway]\nid = "gw"\n[mqtt]\nurl = "mqtt://h:99999"\n', "mqtt.url"),
        ('[gateway]\nid = "GW 1"\n', "gateway.id"),
        (
            '[gateway]\nid = "gw"\n[[links]]\nname = "a"\nprotocol = "nmea"\n'
            'url = "/dev/x"\nbaud = 1\n',
            "links[0].baud",
        ),
        ('[gateway]\nid = "gw"\n[mqtt]\npassword = "x"\n', "mqtt.password"),
        ("[gateway\n", "TOML syntax error"),
    ],
)
def test_malformed_config_exits_2_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    for command in ("check-config", "run"):
        result = fieldlink(command, "-c", str(config))
        assert result.returncode == 2, (command, result.stderr)
        assert key in result.stderr
        assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    assert main(["check-config", "-c", str(tmp_path / "absent.toml")]) == 2


@pytest.mark.parametrize("kind", ["serial", "tcp", "udp", "listen", "udp-listen"])
def test_a_protocol_not_built_yet_is_refused_alike_by_check_config_and_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    unbuilt_protocol: ProtocolSpec,
    kind: str,
) -> None:
    protocol = unbuilt_protocol.name
    url = "/dev/ttyUSB9" if kind == "serial" else f"{kind}://127.0.0.1:9"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gateway]\nid = "gw"\ndata_dir = "{tmp_path}"\n'
        f'[[links]]\nname = "t"\nprotocol = "{protocol}"\nurl = "{url}"\n'
    )
    said = []
    for command in ("check-config", "run"):
        assert main([command, "-c", str(config)]) == 2, command
        said.append(capsys.readouterr().err.strip())
    assert said[0] == said[1]
    assert said[0].endswith(f"links[0].protocol: {not_built_message(protocol)}")
    # The daemon refuses it the same way, should a config be built in code.
    link = LinkConfig(name="t", protocol=protocol, url=url)
    built = parse_config(
        {"gateway": {"id": "gw", "data_dir": str(tmp_path)}}, base_dir=tmp_path, env={}
    )
    with pytest.raises(ConfigError) as exc:
        Gateway(dataclasses.replace(built, links=(link,)))
    assert exc.value.reason == not_built_message(protocol)


def test_usage_errors_exit_2() -> None:
    result = fieldlink("no-such-command")
    assert result.returncode == 2
    with pytest.raises(SystemExit) as exc:
        main(["run", "--no-such-flag"])
    assert exc.value.code == 2


def test_simulate_nmea_gps_serves_a_pty_a_reader_can_open(tmp_path: Path) -> None:
    link = tmp_path / "gps0"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gateway.cli", "simulate", "nmea-gps", "--pty", str(link)),
            *("--rate", "20", "--epochs", "40", "--profile", "bd"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == str(link)
    with link.open("rb", buffering=0) as device:
        data = device.read(2000)
    assert b"$GNRMC" in data or b"$BDGSV" in data
    assert proc.wait(30) == 0
    proc.stdout.close()


def test_simulate_aprs_radio_usage_errors_exit_2() -> None:
    result = fieldlink("simulate", "aprs-radio", "--no-such-option")
    assert result.returncode == 2


@pytest.mark.broker
@pytest.mark.timeout(60)
def test_dispatch_command_follows_a_task_to_its_end(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`fieldlink dispatch` against a running daemon whose unit has no radio: the task is
    received, then fails; the command prints both and exits 1."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n'
        '[[units]]\nid = "zhang-wei"\nname = "张伟"\n',
        encoding="utf-8",
    )
    daemon = GatewayProcess(config, tmp_path / "gateway.log").start()
    try:
        wait_until(lambda: "mqtt connected" in daemon.log(), 15, "the daemon connected")
        result = fieldlink(
            "dispatch", "-c", str(config), "--unit", "zhang-wei", "--priority", "urgent",
            "--at", "31.2304,121.4737", "--timeout", "20", "到人民广场",
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "received" in result.stdout
        assert "failed" in result.stdout
        bad = fieldlink("dispatch", "-c", str(config), "--unit", "x", "--at", "north", "hi")
        assert bad.returncode == 2
    finally:
        daemon.ensure_stopped()
