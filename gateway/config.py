"""config.toml, read once at start into frozen dataclasses (SPEC section 4).

Everything is checked here, before anything opens a port: unknown keys (with a "did you mean"),
types (``bool`` is not an ``int``), ranges, URLs, and references between ``[[units]]``
and ``[[links]]``.
Every error is a :class:`ConfigError` whose key is the full path (``links[1].baudrate``,
``units[2].devices[0]``), so ``fieldlink check-config`` can say exactly what to fix.

Protocol-specific link keys are data (:data:`PROTOCOL_OPTIONS`): a new protocol adds rows, not code.
Secrets never come from the file itself: the MQTT password is read from ``password_file`` or the
``FIELDLINK_MQTT_PASSWORD`` environment variable, and :func:`effective_config` masks it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeGuard, TypeVar
from urllib.parse import SplitResult, urlsplit

from gateway.errors import ConfigError
from gateway.model import DeviceRef

__all__ = [
    "ADDRESS_RULES",
    "BAUDRATES",
    "ID_RE",
    "PASSWORD_ENV",
    "PROTOCOLS",
    "PROTOCOL_OPTIONS",
    "REQUIRED",
    "SERIAL_OPTIONS",
    "Config",
    "GatewayConfig",
    "LinkConfig",
    "MqttConfig",
    "OptionSpec",
    "SerialSettings",
    "SlaConfig",
    "UnitConfig",
    "effective_config",
    "implicit_unit_id",
    "load_config",
    "normalise_address",
    "parse_config",
    "render_toml",
]

ID_RE: Final = re.compile(r"\A[a-z0-9_-]{1,64}\Z")
"""Gateway ids, link names and unit ids: MQTT topic segments, so a small safe alphabet."""

PASSWORD_ENV: Final = "FIELDLINK_MQTT_PASSWORD"  # noqa: S105 - a variable name, not a secret
DEFAULT_DATA_DIR: Final = "/var/lib/fieldlink"
DEFAULT_MQTT_URL: Final = "mqtt://127.0.0.1:1883"
MQTT_DEFAULT_PORTS: Final[Mapping[str, int]] = MappingProxyType({"mqtt": 1883, "mqtts": 8883})
BAUDRATES: Final = (
    300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000,
    576000, 921600,
)  # fmt: skip
LINK_TRANSPORTS: Final = ("tcp", "udp", "listen", "udp-listen")
"""URL schemes of network links; a link URL starting with ``/`` is a serial device ("serial")."""

T = TypeVar("T")


# --- the dataclasses -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    id: str
    data_dir: Path
    log_level: str = "info"
    max_implicit_units: int = 1000
    """Devices heard but not listed become units up to this many; the rest are counted."""
    max_fix_age_s: float = 86400.0
    """A live position whose fix is older than this is not published."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The broker session. ``url`` is normalised to ``scheme://host:port``."""

    url: str
    scheme: str
    host: str
    port: int
    base_topic: str = "fieldlink"
    username: str = ""
    password: str = ""
    client_id: str = ""  # parse_config fills in f"fieldlink-{gateway.id}"
    session_expiry_s: int = 86400
    keepalive_s: int = 30
    protocol: str = "5"
    health_interval_s: float = 30.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    outbox_max_rows: int = 100_000
    max_inbound_bytes: int = 262_144
    response_topic_prefixes: tuple[str, ...] = ()
    """Where MQTT 5 response topics may point besides the gateway's own ``response/`` tree."""
    password_file: Path | None = None  # where the password came from, if from a file

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"


@dataclass(frozen=True, slots=True)
class SlaConfig:
    """Targets in seconds from the task's creation, and how long before a deadline to escalate."""

    acknowledge_s: float = 60
    contact_s: float = 180
    on_scene_s: float = 480
    feedback_s: float = 3600
    close_s: float = 86400
    escalate_before_s: float = 10
    # The centre's goals: the percentage of tasks that should reach each stage within its target.
    goal_acknowledge: float = 95
    goal_contact: float = 90
    goal_on_scene: float = 90
    goal_feedback: float = 90
    goal_close: float = 95

    def target_s(self, stage: str) -> float:
        """The target of a stage of the five clocks, in seconds from the task's creation."""
        return float(getattr(self, SLA_CLOCKS[stage][0]))

    def goal(self, stage: str) -> float:
        """The centre's goal for a stage, in percent of tasks within the target."""
        return float(getattr(self, SLA_CLOCKS[stage][1]))


SLA_CLOCKS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "acknowledged": ("acknowledge_s", "goal_acknowledge"),
        "contacted": ("contact_s", "goal_contact"),
        "on_scene": ("on_scene_s", "goal_on_scene"),
        "feedback": ("feedback_s", "goal_feedback"),
        "closed": ("close_s", "goal_close"),
    }
)
"""The seed's five clocks, in order: stage -> (target key, goal key) of ``[sla]``."""


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """How tasks are delivered and how a person's replies are read.

    The vocabularies are matched against a reply with case, spaces and punctuation
    removed; the longest word that begins the reply wins.
    """

    accept: tuple[str, ...] = ("1", "ok", "yes", "y", "收到", "好", "好的", "明白", "是", "可以")
    decline: tuple[str, ...] = ("0", "no", "n", "拒绝", "不行", "不去", "去不了", "无法")
    contacted: tuple[str, ...] = ("已联系", "联系上", "已联系上", "联系了", "contacted")
    on_scene: tuple[str, ...] = ("到", "到达", "已到", "到了", "arrived", "onscene")
    closed: tuple[str, ...] = ("完成", "办结", "已完成", "处理完毕", "done", "closed")
    max_text_chars: int = 1000
    sends_per_device: int = 2
    poll_interval_s: float = 60.0
    poll_timeout_s: float = 30.0
    """Longest a ``poll_location`` request waits for the device's channel."""
    ref_in_text: bool = True


@dataclass(frozen=True, slots=True)
class SerialSettings:
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One link. ``options`` holds the protocol's keys from :data:`PROTOCOL_OPTIONS`, defaults
    filled in, lists as tuples; ``unit`` is set for nmea links only (the receiver's unit)."""

    name: str
    protocol: str
    url: str
    serial: SerialSettings = field(default_factory=SerialSettings)
    unit: str | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    enabled: bool = True
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def transport(self) -> str:
        """``serial``, ``tcp``, ``udp``, ``listen`` or ``udp-listen``."""
        return "serial" if self.url.startswith("/") else self.url.partition("://")[0]

    @property
    def endpoint(self) -> tuple[str, int] | None:
        """``(host, port)`` of a network link, ``None`` for a serial one."""
        if self.transport == "serial":
            return None
        parts = urlsplit(self.url)
        assert parts.hostname is not None  # checked by parse_config
        assert parts.port is not None
        return parts.hostname, parts.port

    def option(self, key: str, kind: type[T]) -> T:
        """A protocol option, type-checked for mypy: ``link.option("kiss_port", int)``."""
        value = self.options[key]
        if not isinstance(value, kind):
            raise TypeError(f"link {self.name}: option {key} is {type(value).__name__}, not {kind}")
        return value


@dataclass(frozen=True, slots=True)
class UnitConfig:
    id: str
    name: str
    devices: tuple[DeviceRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewayConfig
    mqtt: MqttConfig
    sla: SlaConfig = field(default_factory=SlaConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    links: tuple[LinkConfig, ...] = ()
    units: tuple[UnitConfig, ...] = ()
    source: Path | None = None

    def link(self, name: str) -> LinkConfig | None:
        return next((link for link in self.links if link.name == name), None)

    def unit_of(self, device: DeviceRef) -> str:
        """The unit a device belongs to: a configured unit, an nmea link's unit, or the implicit
        ``<link>-<address>`` unit (SPEC section 4) for a device nobody listed."""
        for unit in self.units:
            if device in unit.devices:
                return unit.id
        link = self.link(device.link)
        if link is not None and link.unit is not None and not device.address:
            return link.unit
        return implicit_unit_id(device)


# --- option tables -----------------------------------------------------------------------------


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""An :class:`OptionSpec` default meaning the key must be given."""

OptionKind = Literal["int", "float", "bool", "str", "str_list", "float_list"]
Validator = Callable[[Any, str], object]
"""``(value already of the spec's kind, key path) -> normalised value``; raises ConfigError."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One key of a config table: its TOML type, its default, and what else it must satisfy.

    ``transports`` limits a link option to some transports (``{"listen"}``); ``None`` means any.
    """

    kind: OptionKind
    default: object = REQUIRED
    validate: Validator | None = None
    transports: frozenset[str] | None = None


_KIND_NAMES: Final[Mapping[str, str]] = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (true or false)",
    "str": "a string",
    "str_list": "an array of strings",
    "float_list": "an array of numbers",
}


_TOML_TYPE_NAMES: Final = (
    (bool, "boolean"),  # before int: bool is an int subclass
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (Mapping, "table"),
    (datetime | date | time, "datetime"),
)


def _type_name(value: object) -> str:
    return next(
        (name for t, name in _TOML_TYPE_NAMES if isinstance(value, t)), type(value).__name__
    )


def _wrong_type(key: str, expected: str, value: object) -> ConfigError:
    return ConfigError(key, f"expected {expected}, got {_type_name(value)}")


def _scalar(kind: str, value: object, key: str) -> object:
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(key, "must be a finite number")
            return float(value)
    elif kind == "str" and isinstance(value, str):
        return value
    raise _wrong_type(key, _KIND_NAMES[kind], value)


def _coerce(kind: OptionKind, value: object, key: str) -> object:
    if kind in ("str_list", "float_list"):
        if not isinstance(value, list):
            raise _wrong_type(key, _KIND_NAMES[kind], value)
        item_kind = "str" if kind == "str_list" else "float"
        return tuple(_scalar(item_kind, item, f"{key}[{i}]") for i, item in enumerate(value))
    return _scalar(kind, value, key)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _suggestion(key: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _reject_unknown(
    table: Mapping[str, object],
    path: str,
    allowed: Collection[str],
    explain: Callable[[str], str | None] = lambda _key: None,
) -> None:
    for key in table:
        if key not in allowed:
            reason = explain(key) or "unknown key" + _suggestion(key, allowed)
            raise ConfigError(_join(path, key), reason)


def _read(
    table: Mapping[str, object], path: str, specs: Mapping[str, OptionSpec]
) -> dict[str, object]:
    """Every key of ``specs`` from ``table``: type-checked, validated, or its default."""
    values: dict[str, object] = {}
    for name, spec in specs.items():
        key = _join(path, name)
        if name in table:
            value = _coerce(spec.kind, table[name], key)
            values[name] = spec.validate(value, key) if spec.validate else value
        elif spec.default is REQUIRED:
            raise ConfigError(key, "required")
        else:
            values[name] = spec.default
    return values


def _table(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _wrong_type(key, "a table", value)
    return value


# --- validators --------------------------------------------------------------------------------


def _identifier(value: str, key: str) -> str:
    if not ID_RE.match(value):
        raise ConfigError(key, f"{value!r} is not an id: use 1 to 64 of a-z 0-9 _ -")
    return value


def _non_empty(value: str, key: str) -> str:
    if not value:
        raise ConfigError(key, "must not be empty")
    return value


def _int_range(low: int, high: int) -> Validator:
    def check(value: int, key: str) -> int:
        if not low <= value <= high:
            raise ConfigError(key, f"must be between {low} and {high}, got {value}")
        return value

    return check


def _float_range(low: float, high: float) -> Validator:
    def check(value: float, key: str) -> float:
        if not low <= value <= high:
            raise ConfigError(key, f"must be within {low:g}..{high:g}, got {value:g}")
        return value

    return check


def _positive(value: float, key: str) -> float:
    if value <= 0:
        raise ConfigError(key, f"must be greater than 0, got {value:g}")
    return value


def _one_of(*choices: object, fold: Callable[[Any], Any] = lambda v: v) -> Validator:
    def check(value: object, key: str) -> object:
        folded = fold(value)
        if folded not in choices:
            listed = ", ".join(str(c) for c in choices)
            raise ConfigError(key, f"must be one of {listed}, got {value!r}")
        return folded

    return check


def _each(check: Validator, *, max_items: int | None = None) -> Validator:
    def check_all(values: tuple[object, ...], key: str) -> tuple[object, ...]:
        if max_items is not None and len(values) > max_items:
            raise ConfigError(key, f"at most {max_items} entries, got {len(values)}")
        return tuple(check(value, f"{key}[{i}]") for i, value in enumerate(values))

    return check_all


def _mqtt_topic_prefix(value: str, key: str) -> str:
    if not value or value.startswith("/") or value.endswith("/") or "//" in value:
        raise ConfigError(key, "must be topic levels separated by single slashes, like fieldlink")
    if any(ch in value for ch in "+#\0") or value.startswith("$"):
        raise ConfigError(key, "must not contain + # or NUL, nor start with $")
    return value


# --- device addresses ----------------------------------------------------------------------------

_CALLSIGN_RE: Final = re.compile(r"\A([A-Z0-9]{1,6})(?:-([0-9]|1[0-5]))?\Z", re.IGNORECASE)
_DIGITS_RE: Final = re.compile(r"\A[0-9]+\Z")
_MAX_RADIO_ID: Final = 0xFFFFFF  # DMR radio ids are 24 bits


def _aprs_address(address: str) -> str:
    match = _CALLSIGN_RE.match(address)
    if not match:
        raise ValueError(f"{address!r} is not a callsign with optional SSID 0-15, like BH4ABC-9")
    call, ssid = match.group(1).upper(), match.group(2)
    return f"{call}-{ssid}" if ssid and ssid != "0" else call  # -0 is no SSID


def _jt808_address(address: str) -> str:
    if not _DIGITS_RE.match(address) or len(address) > 20:
        raise ValueError(f"{address!r} is not a terminal phone number (up to 20 digits)")
    return address.lstrip("0") or "0"  # 12 digits (2013) and 20 digits (2019) are one device


def _gt06_address(address: str) -> str:
    if not _DIGITS_RE.match(address) or len(address) != 15:
        raise ValueError(f"{address!r} is not an IMEI (15 digits)")
    return address


def _radio_id(address: str) -> str:
    if not _DIGITS_RE.match(address) or not 1 <= int(address) <= _MAX_RADIO_ID:
        raise ValueError(f"{address!r} is not a decimal radio id (1 to {_MAX_RADIO_ID})")
    return str(int(address))


ADDRESS_RULES: Final[dict[str, Callable[[str], str] | None]] = {
    "nmea": None,  # the link itself is the device
    "aprs": _aprs_address,
    "hytera": _radio_id,
    "jt808": _jt808_address,
    "gt06": _gt06_address,
    "mototrbo": _radio_id,
}
"""Per protocol, how a device address is checked and normalised; ``None``: the link is the device.
A protocol missing here takes any non-empty address as it is."""


def normalise_address(protocol: str, address: str) -> str:
    """The canonical form of a device address (SPEC section 4); ValueError when it is not one."""
    rule = ADDRESS_RULES.get(protocol, _non_empty_address)
    if rule is None:
        if address:
            raise ValueError(f"{protocol} links carry one device and take no address")
        return ""
    return rule(address)


def _non_empty_address(address: str) -> str:
    if not address:
        raise ValueError("empty address")
    return address


_NOT_ID_CHARS: Final = re.compile(r"[^a-z0-9_-]+")


def implicit_unit_id(device: DeviceRef) -> str:
    """The unit a device nobody listed becomes: ``<link>-<address>`` in the id alphabet."""
    text = f"{device.link}-{device.address}" if device.address else device.link
    return _NOT_ID_CHARS.sub("-", text.lower()).strip("-")[:64] or "unit"


def _address_list(protocol: str) -> Validator:
    def check(value: str, key: str) -> str:
        try:
            return normalise_address(protocol, value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None

    return _each(check)


# --- the tables ----------------------------------------------------------------------------------

GATEWAY_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "id": OptionSpec("str", REQUIRED, _identifier),
    "data_dir": OptionSpec("str", DEFAULT_DATA_DIR, _non_empty),
    "log_level": OptionSpec(
        "str", "info", _one_of("debug", "info", "warning", "error", fold=str.lower)
    ),
    "max_implicit_units": OptionSpec("int", 1000, _int_range(0, 1_000_000)),
    "max_fix_age_s": OptionSpec("float", 86400.0, _positive),
}

MQTT_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "url": OptionSpec("str", DEFAULT_MQTT_URL),
    "base_topic": OptionSpec("str", "fieldlink", _mqtt_topic_prefix),
    "username": OptionSpec("str", ""),
    "password_file": OptionSpec("str", ""),
    "client_id": OptionSpec("str", ""),
    "session_expiry_s": OptionSpec("int", 86400, _int_range(0, 0xFFFFFFFF)),
    "keepalive_s": OptionSpec("int", 30, _int_range(5, 3600)),
    "protocol": OptionSpec("str", "5", _one_of("5", "3.1.1")),
    "health_interval_s": OptionSpec("float", 30.0, _positive),
    "reconnect_min_s": OptionSpec("float", 0.5, _positive),
    "reconnect_max_s": OptionSpec("float", 30.0, _positive),
    "ca_file": OptionSpec("str", ""),
    "cert_file": OptionSpec("str", ""),
    "key_file": OptionSpec("str", ""),
    "tls_insecure": OptionSpec("bool", False),
    "outbox_max_rows": OptionSpec("int", 100_000, _int_range(1, 2**31 - 1)),
    "max_inbound_bytes": OptionSpec(
        "int", 262_144, _int_range(1024, 268_435_455)
    ),  # MQTT's packet limit
    "response_topic_prefixes": OptionSpec("str_list", (), _each(_mqtt_topic_prefix)),
}
_TLS_KEYS: Final = ("ca_file", "cert_file", "key_file", "tls_insecure")

SLA_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    f.name: OptionSpec(
        "float",
        float(getattr(SlaConfig(), f.name)),
        _float_range(0.0, 100.0) if f.name.startswith("goal_") else _positive,
    )
    for f in dataclasses.fields(SlaConfig)
}

SERIAL_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "baudrate": OptionSpec("int", 9600, _one_of(*BAUDRATES)),
    "bytesize": OptionSpec("int", 8, _int_range(5, 8)),
    "parity": OptionSpec("str", "N", _one_of("N", "E", "O", "M", "S", fold=str.upper)),
    "stopbits": OptionSpec("float", 1.0, _one_of(1.0, 1.5, 2.0)),
    "rtscts": OptionSpec("bool", False),
    "xonxoff": OptionSpec("bool", False),
}
"""Keys of a serial link, written directly on the ``[[links]]`` table."""

LINK_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "name": OptionSpec("str", REQUIRED, _identifier),
    "protocol": OptionSpec("str", REQUIRED),  # checked against PROTOCOL_OPTIONS
    "url": OptionSpec("str", REQUIRED),
    "enabled": OptionSpec("bool", True),
    "reconnect_min_s": OptionSpec("float", 0.5, _positive),
    "reconnect_max_s": OptionSpec("float", 30.0, _positive),
}


def _dial_in_options(protocol: str) -> dict[str, OptionSpec]:
    """Radios and trackers that may reach the gateway on a shared port."""
    return {
        "offline_after_s": OptionSpec("float", 600.0, _positive),
        "idle_timeout_s": OptionSpec("float", 300.0, _positive),
        "max_connections": OptionSpec("int", 1000, _int_range(1, 65535), frozenset({"listen"})),
        "allow": OptionSpec(
            "str_list", (), _address_list(protocol)
        ),  # device addresses; empty: anyone
    }


def _callsign(value: str, key: str) -> str:
    try:
        return _aprs_address(value)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


PROTOCOL_OPTIONS: Final[dict[str, dict[str, OptionSpec]]] = {
    "nmea": {
        "unit": OptionSpec("str", None, _identifier),  # moved to LinkConfig.unit
        "max_line_bytes": OptionSpec("int", 82, _int_range(82, 4096)),
        "require_checksum": OptionSpec("bool", True),
    },
    "aprs": {
        "callsign": OptionSpec("str", REQUIRED, _callsign),
        "path": OptionSpec("str_list", ("WIDE1-1",), _each(_callsign, max_items=8)),
        "retry_intervals_s": OptionSpec(
            "float_list", (30.0, 60.0, 120.0, 240.0, 480.0), _each(_positive, max_items=32)
        ),
        "offline_after_s": OptionSpec("float", 1800.0, _positive),
        "kiss_port": OptionSpec("int", 0, _int_range(0, 15)),
        # The radio channel, for the gateway's own airtime accounting (one frame at a time).
        "channel_baud": OptionSpec("int", 1200, _int_range(300, 10_000_000)),
        "txdelay_s": OptionSpec("float", 0.3, _float_range(0.0, 5.0)),
        "txtail_s": OptionSpec("float", 0.05, _float_range(0.0, 5.0)),
        "gap_s": OptionSpec("float", 0.1, _float_range(0.0, 10.0)),
    },
    "hytera": _dial_in_options("hytera"),
    "jt808": _dial_in_options("jt808"),
    "gt06": _dial_in_options("gt06"),
    "mototrbo": _dial_in_options("mototrbo"),
}
"""Per protocol, the link keys beside the common ones. Add a protocol by adding a row."""

PROTOCOLS: Final = tuple(PROTOCOL_OPTIONS)

UNIT_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "id": OptionSpec("str", REQUIRED, _identifier),
    "name": OptionSpec("str", ""),  # defaults to the id
    "devices": OptionSpec("str_list", ()),
}


# --- parsing -------------------------------------------------------------------------------------


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; relative paths inside resolve against its directory."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("", f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError("", f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: TOML syntax error: {exc}") from None
    cfg = parse_config(
        data, base_dir=path.absolute().parent, env=os.environ if env is None else env
    )
    return dataclasses.replace(cfg, source=path.absolute())


def parse_config(data: Mapping[str, object], *, base_dir: Path, env: Mapping[str, str]) -> Config:
    """Validate a parsed TOML document; ``source`` stays ``None`` (:func:`load_config` sets it)."""
    _reject_unknown(data, "", ("gateway", "mqtt", "sla", "dispatch", "links", "units"))
    gateway = _parse_gateway(_table(data.get("gateway", {}), "gateway"), base_dir)
    mqtt = _parse_mqtt(_table(data.get("mqtt", {}), "mqtt"), base_dir, env, gateway)
    sla = _parse_sla(_table(data.get("sla", {}), "sla"))
    dispatch = _parse_dispatch(_table(data.get("dispatch", {}), "dispatch"))
    links = [_parse_link(table, f"links[{i}]") for i, table in _array_of_tables(data, "links")]
    _check_unique_links(links)
    bound_links, units = _parse_units(_array_of_tables(data, "units"), links)
    return Config(
        gateway=gateway, mqtt=mqtt, sla=sla, dispatch=dispatch, links=bound_links, units=units
    )


def _array_of_tables(
    data: Mapping[str, object], name: str
) -> list[tuple[int, Mapping[str, object]]]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise _wrong_type(name, f"an array of tables ([[{name}]])", value)
    return [(i, _table(item, f"{name}[{i}]")) for i, item in enumerate(value)]


def _resolve(base_dir: Path, value: str) -> Path:
    return base_dir / value


def _parse_gateway(table: Mapping[str, object], base_dir: Path) -> GatewayConfig:
    _reject_unknown(table, "gateway", GATEWAY_OPTIONS)
    v = _read(table, "gateway", GATEWAY_OPTIONS)
    return GatewayConfig(
        id=str(v["id"]),
        data_dir=_resolve(base_dir, str(v["data_dir"])),
        log_level=str(v["log_level"]),
        max_implicit_units=_int(v["max_implicit_units"]),
        max_fix_age_s=_float(v["max_fix_age_s"]),
    )


def _parse_mqtt(
    table: Mapping[str, object], base_dir: Path, env: Mapping[str, str], gateway: GatewayConfig
) -> MqttConfig:
    if "password" in table:
        raise ConfigError(
            "mqtt.password",
            f"secrets are never written in the config: use mqtt.password_file or {PASSWORD_ENV}",
        )
    _reject_unknown(table, "mqtt", MQTT_OPTIONS)
    v = _read(table, "mqtt", MQTT_OPTIONS)
    scheme, host, port = _parse_mqtt_url(str(v["url"]))
    if scheme != "mqtts":
        for key in _TLS_KEYS:
            if v[key]:
                raise ConfigError(f"mqtt.{key}", f"{key} only applies to mqtts:// URLs")
    tls_files: dict[str, Path | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        tls_files[key] = _existing_file(base_dir, str(v[key]), f"mqtt.{key}") if v[key] else None
    if tls_files["key_file"] is not None and tls_files["cert_file"] is None:
        raise ConfigError("mqtt.key_file", "key_file needs cert_file")
    _check_back_off(v, "mqtt")
    password, password_file = _mqtt_password(str(v["password_file"]), base_dir, env)
    username = str(v["username"])
    if password and not username and v["protocol"] == "3.1.1":
        raise ConfigError("mqtt.username", "MQTT 3.1.1 sends a password only with a username")
    client_id = str(v["client_id"]) or f"fieldlink-{gateway.id}"
    if len(client_id.encode()) > 65535 or "\0" in client_id:
        raise ConfigError("mqtt.client_id", "must be at most 65535 bytes of UTF-8 without NUL")
    url_host = f"[{host}]" if ":" in host else host
    return MqttConfig(
        url=f"{scheme}://{url_host}:{port}",
        scheme=scheme,
        host=host,
        port=port,
        base_topic=str(v["base_topic"]),
        username=username,
        password=password,
        client_id=client_id,
        session_expiry_s=_int(v["session_expiry_s"]),
        keepalive_s=_int(v["keepalive_s"]),
        protocol=str(v["protocol"]),
        health_interval_s=_float(v["health_interval_s"]),
        reconnect_min_s=_float(v["reconnect_min_s"]),
        reconnect_max_s=_float(v["reconnect_max_s"]),
        ca_file=tls_files["ca_file"],
        cert_file=tls_files["cert_file"],
        key_file=tls_files["key_file"],
        tls_insecure=bool(v["tls_insecure"]),
        outbox_max_rows=_int(v["outbox_max_rows"]),
        max_inbound_bytes=_int(v["max_inbound_bytes"]),
        response_topic_prefixes=tuple(str(p) for p in _words(v["response_topic_prefixes"])),
        password_file=password_file,
    )


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _float(value: object) -> float:
    assert isinstance(value, float | int)
    return float(value)


def _parse_mqtt_url(url: str) -> tuple[str, str, int]:
    key = "mqtt.url"
    parts = _split_url(url, key)
    if parts.scheme not in MQTT_DEFAULT_PORTS:
        raise ConfigError(key, f"{url!r}: the scheme must be mqtt:// or mqtts://")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            key,
            "credentials do not belong in the URL: use mqtt.username, and mqtt.password_file or "
            + PASSWORD_ENV,
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(key, f"{url!r}: expected scheme://host[:port] and nothing after it")
    if not parts.hostname:
        raise ConfigError(key, f"{url!r}: no host")
    port = _url_port(parts, key) or MQTT_DEFAULT_PORTS[parts.scheme]
    return parts.scheme, parts.hostname, port


def _split_url(url: str, key: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise ConfigError(key, f"{url!r}: {exc}") from None


def _url_port(parts: SplitResult, key: str) -> int | None:
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(
            key, f"{parts.geturl()!r}: the port must be between 1 and 65535"
        ) from None
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(key, f"{parts.geturl()!r}: the port must be between 1 and 65535")
    return port


def _existing_file(base_dir: Path, value: str, key: str) -> Path:
    path = _resolve(base_dir, value)
    if not path.is_file():
        raise ConfigError(key, f"no such file: {path}")
    return path


def _mqtt_password(
    file_value: str, base_dir: Path, env: Mapping[str, str]
) -> tuple[str, Path | None]:
    from_env = env.get(PASSWORD_ENV, "")
    if not file_value:
        return from_env, None
    key = "mqtt.password_file"
    if from_env:
        raise ConfigError(key, f"both password_file and {PASSWORD_ENV} are set; use one")
    path = _resolve(base_dir, file_value)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(key, f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(key, f"is a directory: {path}") from None
    except PermissionError:
        raise ConfigError(key, f"not readable by this user: {path}") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"not UTF-8 text: {path}") from None
    password = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
    if not password:
        raise ConfigError(key, f"is empty: {path}")
    return password, path


def config_warnings(cfg: Config) -> list[str]:
    """What is allowed but unsafe: ``check-config`` prints these, ``run`` logs them."""
    warnings = []
    if cfg.mqtt.tls_insecure:
        warnings.append(
            "mqtt.tls_insecure: the broker's certificate is not verified; anyone on the path"
            " can read and forge tasks (set ca_file instead)"
        )
    path = cfg.mqtt.password_file
    if path is not None:
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & 0o007:
            warnings.append(
                f"mqtt.password_file: {path} is readable by every user (mode {mode & 0o777:o});"
                " chmod 600 (or 640 with the service's group)"
            )
    return warnings


def _check_back_off(values: Mapping[str, object], path: str) -> None:
    low, high = _float(values["reconnect_min_s"]), _float(values["reconnect_max_s"])
    if low > high:
        raise ConfigError(
            _join(path, "reconnect_min_s"), f"must not exceed reconnect_max_s ({low:g} > {high:g})"
        )


def _parse_sla(table: Mapping[str, object]) -> SlaConfig:
    _reject_unknown(table, "sla", SLA_OPTIONS)
    v = {name: _float(value) for name, value in _read(table, "sla", SLA_OPTIONS).items()}
    deadlines = {name: value for name, value in v.items() if name.endswith("_s")}
    del deadlines["escalate_before_s"]
    first = min(deadlines, key=deadlines.__getitem__)
    if v["escalate_before_s"] >= deadlines[first]:
        raise ConfigError(
            "sla.escalate_before_s", f"must be less than {first} ({deadlines[first]:g})"
        )
    return SlaConfig(**v)


def _vocabulary(value: tuple[str, ...] | list[str], key: str) -> tuple[str, ...]:
    words = tuple(value)
    if not words or not all(w.strip() for w in words):
        raise ConfigError(key, "needs at least one word, and no empty ones")
    return words


DISPATCH_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "accept": OptionSpec("str_list", DispatchConfig().accept, _vocabulary),
    "decline": OptionSpec("str_list", DispatchConfig().decline, _vocabulary),
    "contacted": OptionSpec("str_list", DispatchConfig().contacted, _vocabulary),
    "on_scene": OptionSpec("str_list", DispatchConfig().on_scene, _vocabulary),
    "closed": OptionSpec("str_list", DispatchConfig().closed, _vocabulary),
    "max_text_chars": OptionSpec("int", 1000, _int_range(1, 10_000)),
    "sends_per_device": OptionSpec("int", 2, _int_range(1, 10)),
    "poll_interval_s": OptionSpec("float", 60.0, _positive),
    "poll_timeout_s": OptionSpec("float", 30.0, _positive),
    "ref_in_text": OptionSpec("bool", True),
}


def _words(value: object) -> tuple[str, ...]:
    assert isinstance(value, tuple | list)
    return tuple(str(word) for word in value)


def _parse_dispatch(table: Mapping[str, object]) -> DispatchConfig:
    _reject_unknown(table, "dispatch", DISPATCH_OPTIONS)
    v = _read(table, "dispatch", DISPATCH_OPTIONS)
    return DispatchConfig(
        accept=_words(v["accept"]),
        decline=_words(v["decline"]),
        contacted=_words(v["contacted"]),
        on_scene=_words(v["on_scene"]),
        closed=_words(v["closed"]),
        max_text_chars=_int(v["max_text_chars"]),
        sends_per_device=_int(v["sends_per_device"]),
        poll_interval_s=_float(v["poll_interval_s"]),
        poll_timeout_s=_float(v["poll_timeout_s"]),
        ref_in_text=bool(v["ref_in_text"]),
    )


# --- links ---------------------------------------------------------------------------------------


def _link_transport(url: str, key: str) -> str:
    if url.startswith("/"):
        if "\0" in url or url.endswith("/"):
            raise ConfigError(key, f"{url!r} is not a device path")
        return "serial"
    forms = (
        "a device path (/dev/ttyUSB0), tcp://host:port, udp://host:port, listen://host:port "
        "or udp-listen://host:port"
    )
    parts = _split_url(url, key)
    if parts.scheme not in LINK_TRANSPORTS or not url.startswith(f"{parts.scheme}://"):
        raise ConfigError(key, f"{url!r}: expected {forms}")
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        raise ConfigError(key, f"{url!r}: expected {parts.scheme}://host:port and nothing else")
    if not parts.hostname:
        raise ConfigError(key, f"{url!r}: no host")
    if _url_port(parts, key) is None:
        raise ConfigError(key, f"{url!r}: a port is required ({parts.scheme}://host:port)")
    return parts.scheme


def _parse_link(table: Mapping[str, object], path: str) -> LinkConfig:
    # Keys no link has first (a typo of a required key is reported as the typo), then keys this
    # link's protocol and transport do not take.
    any_link = {*LINK_OPTIONS, *SERIAL_OPTIONS}.union(*PROTOCOL_OPTIONS.values())
    _reject_unknown(table, path, any_link)
    common = _read(table, path, LINK_OPTIONS)
    protocol = str(common["protocol"])
    if protocol not in PROTOCOL_OPTIONS:
        raise ConfigError(
            f"{path}.protocol",
            f"unknown protocol {protocol!r}{_suggestion(protocol, PROTOCOL_OPTIONS)}; "
            f"one of {', '.join(PROTOCOL_OPTIONS)}",
        )
    url = str(common["url"])
    transport = _link_transport(url, f"{path}.url")
    specs = PROTOCOL_OPTIONS[protocol]
    allowed = set(LINK_OPTIONS) | set(specs)
    if transport == "serial":
        allowed |= set(SERIAL_OPTIONS)

    def explain(key: str) -> str | None:
        if key in SERIAL_OPTIONS:
            return f"{key} only applies to serial links (url starting with /)"
        owners = [name for name, options in PROTOCOL_OPTIONS.items() if key in options]
        return f"{key} only applies to {', '.join(owners)} links" if owners else None

    _reject_unknown(table, path, allowed, explain)
    for name, spec in specs.items():
        if name in table and spec.transports is not None and transport not in spec.transports:
            kinds = " or ".join(f"{t}://" for t in sorted(spec.transports))
            raise ConfigError(f"{path}.{name}", f"{name} only applies to {kinds} links")
    _check_back_off(common, path)
    applicable = {
        n: s for n, s in specs.items() if s.transports is None or transport in s.transports
    }
    options = _read(table, path, applicable)
    unit = options.pop("unit", None)
    serial = _parse_serial(table, path) if transport == "serial" else SerialSettings()
    return LinkConfig(
        name=str(common["name"]),
        protocol=protocol,
        url=url,
        serial=serial,
        unit=None if unit is None else str(unit),
        reconnect_min_s=_float(common["reconnect_min_s"]),
        reconnect_max_s=_float(common["reconnect_max_s"]),
        enabled=bool(common["enabled"]),
        options=MappingProxyType(options),
    )


def _parse_serial(table: Mapping[str, object], path: str) -> SerialSettings:
    v = _read(table, path, SERIAL_OPTIONS)
    return SerialSettings(
        baudrate=_int(v["baudrate"]),
        bytesize=_int(v["bytesize"]),
        parity=str(v["parity"]),
        stopbits=_float(v["stopbits"]),
        rtscts=bool(v["rtscts"]),
        xonxoff=bool(v["xonxoff"]),
    )


def _check_unique_links(links: list[LinkConfig]) -> None:
    names: dict[str, int] = {}
    bound: dict[str, int] = {}  # a device path or a listening address can be opened once
    for i, link in enumerate(links):
        if link.name in names:
            raise ConfigError(
                f"links[{i}].name",
                f"duplicate link name {link.name!r} (also links[{names[link.name]}])",
            )
        names[link.name] = i
        if link.enabled and link.transport in ("serial", "listen", "udp-listen"):
            if link.url in bound:
                raise ConfigError(
                    f"links[{i}].url", f"{link.url} is already used by links[{bound[link.url]}]"
                )
            bound[link.url] = i


# --- units ---------------------------------------------------------------------------------------


def _parse_units(
    tables: list[tuple[int, Mapping[str, object]]], links: list[LinkConfig]
) -> tuple[tuple[LinkConfig, ...], tuple[UnitConfig, ...]]:
    """The units, and the links with every nmea link bound to its unit."""
    links = list(links)
    by_name = {link.name: link for link in links}
    ids: dict[str, int] = {}
    units: list[tuple[str, str, list[DeviceRef]]] = []
    owner: dict[DeviceRef, tuple[str, str]] = {}  # device -> (unit id, key path of the entry)
    for i, table in tables:
        path = f"units[{i}]"
        _reject_unknown(table, path, UNIT_OPTIONS)
        v = _read(table, path, UNIT_OPTIONS)
        unit_id = str(v["id"])
        if unit_id in ids:
            raise ConfigError(
                f"{path}.id", f"duplicate unit id {unit_id!r} (also units[{ids[unit_id]}])"
            )
        ids[unit_id] = i
        name = str(v["name"]) or unit_id
        devices: list[DeviceRef] = []
        assert isinstance(v["devices"], tuple)
        for j, entry in enumerate(v["devices"]):
            key = f"{path}.devices[{j}]"
            device = _parse_device(str(entry), key, by_name)
            if device in owner:
                other_unit, other_key = owner[device]
                where = "twice" if other_unit == unit_id else f"for unit {other_unit!r}"
                raise ConfigError(key, f"device {device} is already listed {where} ({other_key})")
            owner[device] = (unit_id, key)
            devices.append(device)
        units.append((unit_id, name, devices))

    # An nmea link is one device: bind it to its unit both ways (link.unit, unit.devices).
    devices_of = {unit_id: devices for unit_id, _name, devices in units}
    for i, link in enumerate(links):
        if ADDRESS_RULES.get(link.protocol, _non_empty_address) is not None:
            continue
        device = DeviceRef(link.name)
        listed = owner.get(device)
        unit_id = link.unit or (listed[0] if listed else link.name)
        if listed and listed[0] != unit_id:
            raise ConfigError(
                listed[1], f"link {link.name} belongs to unit {unit_id!r} (links[{i}].unit)"
            )
        if not listed and unit_id in devices_of:
            devices_of[unit_id].append(device)
        links[i] = dataclasses.replace(link, unit=unit_id)
    return tuple(links), tuple(UnitConfig(id=u, name=n, devices=tuple(d)) for u, n, d in units)


def _parse_device(entry: str, key: str, links: Mapping[str, LinkConfig]) -> DeviceRef:
    link_name, colon, address = entry.partition(":")
    link = links.get(link_name)
    if link is None:
        raise ConfigError(
            key,
            f"{entry!r}: no link named {link_name!r}{_suggestion(link_name, links)}; "
            "write link:address",
        )
    rule = ADDRESS_RULES.get(link.protocol, _non_empty_address)
    if rule is None:
        if colon:
            raise ConfigError(
                key,
                f"{entry!r}: {link.protocol} link {link_name} is one device; write {link_name!r}",
            )
        return DeviceRef(link_name)
    if not address:
        raise ConfigError(
            key, f"{entry!r}: {link.protocol} devices need an address: {link_name}:<address>"
        )
    try:
        return DeviceRef(link_name, rule(address))
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


# --- output --------------------------------------------------------------------------------------


def _plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
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
        mqtt[f.name] = _plain(getattr(cfg.mqtt, f.name))
        if f.name == "password":
            mqtt["password"] = "***" if cfg.mqtt.password else ""
            mqtt["password_file"] = _plain(cfg.mqtt.password_file)
    return {
        "gateway": {
            f.name: _plain(getattr(cfg.gateway, f.name)) for f in dataclasses.fields(GatewayConfig)
        },
        "mqtt": mqtt,
        "sla": {f.name: getattr(cfg.sla, f.name) for f in dataclasses.fields(SlaConfig)},
        "dispatch": {
            f.name: _plain(getattr(cfg.dispatch, f.name))
            for f in dataclasses.fields(DispatchConfig)
        },
        "links": [_effective_link(link) for link in cfg.links],
        "units": [
            {"id": unit.id, "name": unit.name, "devices": [str(d) for d in unit.devices]}
            for unit in cfg.units
        ],
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
    out.update({key: _plain(value) for key, value in link.options.items()})
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
            lines.append(f"{_toml_key(key)} = {_toml_value(value, _join(where, key))}")
    for key, sub in tables:
        header = ".".join(_toml_key(k) for k in [*path, key])
        lines.extend(["", f"[{header}]"])
        _render_table(sub, [*path, key], lines)
    for key, items in arrays:
        header = ".".join(_toml_key(k) for k in [*path, key])
        for item in items:
            lines.extend(["", f"[[{header}]]"])
            _render_table(item, [*path, key], lines)
