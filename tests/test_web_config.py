"""The ``[http]`` table: defaults, the listen address, basic auth from a password file (never
inline), what ``check-config`` warns about and shows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.config import config_warnings, effective_config, parse_config, render_toml
from gateway.errors import ConfigError

GATEWAY = {"gateway": {"id": "gw1", "data_dir": "data"}}


def test_defaults_serve_loopback_without_auth() -> None:
    cfg = parse_config(GATEWAY, base_dir=Path("/x"), env={})
    http = cfg.http
    assert (http.enabled, http.listen, http.host, http.port) == (
        True,
        "127.0.0.1:9108",
        "127.0.0.1",
        9108,
    )
    assert (http.auth, http.language, http.max_clients, http.unit_metrics) == (
        False,
        "zh-en",
        256,
        False,
    )
    assert config_warnings(cfg) == []


@pytest.mark.parametrize(
    ("listen", "host", "port", "normalised"),
    [
        ("0.0.0.0:9108", "0.0.0.0", 9108, "0.0.0.0:9108"),  # noqa: S104 - the value under test
        ("[::1]:80", "::1", 80, "[::1]:80"),
        ("localhost:9000", "localhost", 9000, "localhost:9000"),
    ],
)
def test_listen_is_host_and_port(listen: str, host: str, port: int, normalised: str) -> None:
    http = parse_config({**GATEWAY, "http": {"listen": listen}}, base_dir=Path("/x"), env={}).http
    assert (http.host, http.port, http.listen) == (host, port, normalised)


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ({"listen": "127.0.0.1"}, "http.listen: '127.0.0.1': no port"),
        ({"listen": ":9108"}, "http.listen: ':9108': no host"),
        ({"listen": "127.0.0.1:70000"}, "the port must be between 1 and 65535"),
        ({"listen": "127.0.0.1:9108/x"}, "expected host:port"),
        ({"password": "x"}, "http.password: secrets are never written in the config"),
        ({"username": "ops"}, "http.username: a username without http.password_file"),
        ({"language": "fr"}, "http.language: must be one of zh-en, zh, en"),
        ({"max_clients": 0}, "http.max_clients"),
        ({"listn": "x"}, "http.listn"),
    ],
)
def test_mistakes_name_the_key(http: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({**GATEWAY, "http": http}, base_dir=Path("/x"), env={})


def test_basic_auth_reads_the_password_file_and_warns_like_mqtt(tmp_path: Path) -> None:
    secret = tmp_path / "http-password"
    secret.write_text("s3cret\n", encoding="utf-8")
    secret.chmod(0o644)
    cfg = parse_config(
        {**GATEWAY, "http": {"username": "ops", "password_file": "http-password"}},
        base_dir=tmp_path,
        env={},
    )
    assert (cfg.http.username, cfg.http.password, cfg.http.auth) == ("ops", "s3cret", True)
    assert config_warnings(cfg) == [
        f"http.password_file: {secret} is readable by every user (mode 644);"
        " chmod 600 (or 640 with the service's group)"
    ]
    secret.chmod(0o600)
    assert config_warnings(cfg) == []
    effective = effective_config(cfg)["http"]
    assert isinstance(effective, dict)
    assert "s3cret" not in repr(effective)
    assert effective["password_file"] == str(secret)
    assert tomllib.loads(render_toml({"http": effective}))["http"] == effective


def test_basic_auth_needs_a_username_and_a_readable_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"http\.username: basic auth"):
        parse_config({**GATEWAY, "http": {"password_file": "pw"}}, base_dir=tmp_path, env={})
    with pytest.raises(ConfigError, match=r"http\.password_file: no such file"):
        parse_config(
            {**GATEWAY, "http": {"username": "a", "password_file": "nope"}},
            base_dir=tmp_path,
            env={},
        )


def test_serving_the_network_without_a_password_is_warned_about() -> None:
    cfg = parse_config({**GATEWAY, "http": {"listen": "[::]:9108"}}, base_dir=Path("/x"), env={})
    (warning,) = config_warnings(cfg)
    assert warning.startswith("http.listen: [::]:9108 serves the status page and metrics")
    off = parse_config(
        {**GATEWAY, "http": {"listen": "[::]:9108", "enabled": False}}, base_dir=Path("/x"), env={}
    )
    assert config_warnings(off) == []
