"""The option tables of ``config.toml``: every key, its type, default and check."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from gateway.config.model import (
    BAUDRATES,
    DEFAULT_DATA_DIR,
    DEFAULT_HTTP_LISTEN,
    DEFAULT_MQTT_URL,
    HTTP_LANGUAGES,
    DispatchConfig,
    SlaConfig,
)
from gateway.errors import ConfigError
from gateway.options import (
    REQUIRED,
    OptionSpec,
    each,
    float_range,
    identifier,
    int_range,
    mqtt_topic_prefix,
    non_empty,
    one_of,
    positive,
)

# --- the tables ----------------------------------------------------------------------------------

GATEWAY_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "id": OptionSpec("str", REQUIRED, identifier),
    "data_dir": OptionSpec("str", DEFAULT_DATA_DIR, non_empty),
    "log_level": OptionSpec(
        "str", "info", one_of("debug", "info", "warning", "error", fold=str.lower)
    ),
    "max_implicit_units": OptionSpec("int", 1000, int_range(0, 1_000_000)),
    "max_fix_age_s": OptionSpec("float", 86400.0, positive),
}

MQTT_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "url": OptionSpec("str", DEFAULT_MQTT_URL),
    "base_topic": OptionSpec("str", "fieldlink", mqtt_topic_prefix),
    "username": OptionSpec("str", ""),
    "password_file": OptionSpec("str", ""),
    "client_id": OptionSpec("str", ""),
    "session_expiry_s": OptionSpec("int", 86400, int_range(0, 0xFFFFFFFF)),
    "keepalive_s": OptionSpec("int", 30, int_range(5, 3600)),
    "protocol": OptionSpec("str", "5", one_of("5", "3.1.1")),
    "health_interval_s": OptionSpec("float", 30.0, positive),
    "reconnect_min_s": OptionSpec("float", 0.5, positive),
    "reconnect_max_s": OptionSpec("float", 30.0, positive),
    "ca_file": OptionSpec("str", ""),
    "cert_file": OptionSpec("str", ""),
    "key_file": OptionSpec("str", ""),
    "tls_insecure": OptionSpec("bool", False),
    "outbox_max_rows": OptionSpec("int", 100_000, int_range(1, 2**31 - 1)),
    "max_inbound_bytes": OptionSpec(
        "int", 262_144, int_range(1024, 268_435_455)
    ),  # MQTT's packet limit
    "response_topic_prefixes": OptionSpec("str_list", (), each(mqtt_topic_prefix)),
}
TLS_KEYS: Final = ("ca_file", "cert_file", "key_file", "tls_insecure")

HTTP_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "enabled": OptionSpec("bool", True),
    "listen": OptionSpec("str", DEFAULT_HTTP_LISTEN, non_empty),  # host:port, checked in parse
    "username": OptionSpec("str", ""),
    "password_file": OptionSpec("str", ""),
    "language": OptionSpec("str", "zh-en", one_of(*HTTP_LANGUAGES, fold=str.lower)),
    "max_clients": OptionSpec("int", 256, int_range(1, 10_000)),
    "unit_metrics": OptionSpec("bool", False),
}

SLA_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    f.name: OptionSpec(
        "float",
        float(getattr(SlaConfig(), f.name)),
        float_range(0.0, 100.0) if f.name.startswith("goal_") else positive,
    )
    for f in dataclasses.fields(SlaConfig)
}

SERIAL_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "baudrate": OptionSpec("int", 9600, one_of(*BAUDRATES)),
    "bytesize": OptionSpec("int", 8, int_range(5, 8)),
    "parity": OptionSpec("str", "N", one_of("N", "E", "O", "M", "S", fold=str.upper)),
    "stopbits": OptionSpec("float", 1.0, one_of(1.0, 1.5, 2.0)),
    "rtscts": OptionSpec("bool", False),
    "xonxoff": OptionSpec("bool", False),
}
"""Keys of a serial link, written directly on the ``[[links]]`` table."""

LINK_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "name": OptionSpec("str", REQUIRED, identifier),
    "protocol": OptionSpec("str", REQUIRED),  # checked against gateway.drivers.registry
    "url": OptionSpec("str", REQUIRED),
    "enabled": OptionSpec("bool", True),
    "reconnect_min_s": OptionSpec("float", 0.5, positive),
    "reconnect_max_s": OptionSpec("float", 30.0, positive),
}


UNIT_OPTIONS: Final[Mapping[str, OptionSpec]] = {
    "id": OptionSpec("str", REQUIRED, identifier),
    "name": OptionSpec("str", ""),  # defaults to the id
    "devices": OptionSpec("str_list", ()),
}


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
    "max_text_chars": OptionSpec("int", 1000, int_range(1, 10_000)),
    "sends_per_device": OptionSpec("int", 2, int_range(1, 10)),
    "poll_interval_s": OptionSpec("float", 60.0, positive),
    "poll_timeout_s": OptionSpec("float", 30.0, positive),
    "ref_in_text": OptionSpec("bool", True),
}
