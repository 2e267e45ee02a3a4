"""The configuration in force, as ``check-config`` prints it: defaults filled in, secrets masked,
as TOML or JSON."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, TypeGuard

from gateway.config.model import (
    Config,
    DispatchConfig,
    GatewayConfig,
    HttpConfig,
    LinkConfig,
    MqttConfig,
    SlaConfig,
)
from gateway.options import join_key

# --- output --------------------------------------------------------------------------------------


def plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    return "" if value is None else value


def effective_config(cfg: Config) -> dict[str, object]:
    """The configuration in force, every default filled in, secrets masked, JSON-serialisable.

    Its shape follows config.toml (so an operator can copy keys from it), except that the password
    shows as ``"***"`` when set and ``""`` when not.
    """
    mqtt: dict[str, object] = {"url": cfg.mqtt.url}
    for f in dataclasses.fields(MqttConfig):
        if f.name in ("url", "scheme", "host", "port", "password_file"):
            continue  # the URL says them all; password_file goes beside the password
        mqtt[f.name] = plain(getattr(cfg.mqtt, f.name))
        if f.name == "password":
            mqtt["password"] = "***" if cfg.mqtt.password else ""
            mqtt["password_file"] = plain(cfg.mqtt.password_file)
    return {
        "gateway": {
            f.name: plain(getattr(cfg.gateway, f.name)) for f in dataclasses.fields(GatewayConfig)
        },
        "mqtt": mqtt,
        "sla": {f.name: getattr(cfg.sla, f.name) for f in dataclasses.fields(SlaConfig)},
        "dispatch": {
            f.name: plain(getattr(cfg.dispatch, f.name)) for f in dataclasses.fields(DispatchConfig)
        },
        "http": _effective_http(cfg.http),
        "links": [_effective_link(link) for link in cfg.links],
        "units": [
            {"id": unit.id, "name": unit.name, "devices": [str(d) for d in unit.devices]}
            for unit in cfg.units
        ],
    }


def _effective_http(http: HttpConfig) -> dict[str, object]:
    """As config.toml has it: the password file named, the password itself never shown."""
    skip = ("host", "port", "password")
    return {
        f.name: plain(getattr(http, f.name))
        for f in dataclasses.fields(HttpConfig)
        if f.name not in skip
    }


def _effective_link(link: LinkConfig) -> dict[str, object]:
    out: dict[str, object] = {
        "name": link.name,
        "protocol": link.protocol,
        "url": link.url,
        "enabled": link.enabled,
        "reconnect_min_s": link.reconnect_min_s,
        "reconnect_max_s": link.reconnect_max_s,
    }
    if link.transport == "serial":
        out.update(dataclasses.asdict(link.serial))
    if link.unit is not None:
        out["unit"] = link.unit
    out.update({key: plain(value) for key, value in link.options.items()})
    return out


_BARE_KEY: Final = re.compile(r"\A[A-Za-z0-9_-]+\Z")
_ESCAPES: Final[Mapping[str, str]] = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r",
}  # fmt: skip


def _toml_string(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_value(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value) if math.isfinite(value) else str(value)
        )  # nan, inf, -inf as TOML has them
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item, where) for item in value) + "]"
    raise TypeError(f"{where}: cannot write {type(value).__name__} as TOML")


def _is_array_of_tables(value: object) -> TypeGuard[Sequence[Mapping[str, object]]]:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def render_toml(cfg_dict: Mapping[str, object]) -> str:
    """TOML text for a dict of tables, arrays of tables, strings, numbers, bools and arrays of those
    (what :func:`effective_config` returns); ``tomllib.loads`` gives the same dict back."""
    lines: list[str] = []
    _render_table(cfg_dict, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _render_table(table: Mapping[str, object], path: list[str], lines: list[str]) -> None:
    where = ".".join(path) or "<root>"
    tables: list[tuple[str, Mapping[str, object]]] = []
    arrays: list[tuple[str, Sequence[Mapping[str, object]]]] = []
    for key, value in table.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: keys must be strings, got {key!r}")
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif _is_array_of_tables(value):
            arrays.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, join_key(where, key))}")
    for key, sub in tables:
        header = ".".join(_toml_key(k) for k in [*path, key])
        lines.extend(["", f"[{header}]"])
        _render_table(sub, [*path, key], lines)
    for key, items in arrays:
        header = ".".join(_toml_key(k) for k in [*path, key])
        for item in items:
            lines.extend(["", f"[[{header}]]"])
            _render_table(item, [*path, key], lines)
