"""config.toml, read once at start into frozen dataclasses (SPEC section 4).

Everything is checked here, before anything opens a port: unknown keys (with a "did you mean"),
types (``bool`` is not an ``int``), ranges, URLs, and references between ``[[units]]``
and ``[[links]]``.
Every error is a :class:`~gateway.errors.ConfigError` whose key is the full path
(``links[1].baudrate``, ``units[2].devices[0]``), so ``fieldlink check-config`` can say exactly
what to fix. Secrets never come from the file itself: the MQTT password is read from
``password_file`` or the ``FIELDLINK_MQTT_PASSWORD`` environment variable, and
:func:`effective_config` masks it.

The package along its seams: :mod:`.model` (the dataclasses the gateway reads), :mod:`.schema`
(the option engine and its validators), :mod:`.addresses` (device addresses per protocol),
:mod:`.tables` (every key of every table), :mod:`.parse` (reading a file), :mod:`.output`
(what ``check-config`` prints) and :mod:`.warnings`.
"""

from gateway.config.addresses import address_rule, implicit_unit_id, normalise_address
from gateway.config.model import (
    BAUDRATES,
    PASSWORD_ENV,
    SLA_CLOCKS,
    Config,
    DispatchConfig,
    GatewayConfig,
    HttpConfig,
    LinkConfig,
    MqttConfig,
    SerialSettings,
    SlaConfig,
    UnitConfig,
)
from gateway.config.output import effective_config, render_toml
from gateway.config.parse import load_config, parse_config
from gateway.config.tables import MQTT_OPTIONS, SERIAL_OPTIONS
from gateway.config.warnings import config_warnings
from gateway.options import ID_RE, REQUIRED, OptionSpec

__all__ = [
    "BAUDRATES",
    "ID_RE",
    "MQTT_OPTIONS",
    "PASSWORD_ENV",
    "REQUIRED",
    "SERIAL_OPTIONS",
    "SLA_CLOCKS",
    "Config",
    "DispatchConfig",
    "GatewayConfig",
    "HttpConfig",
    "LinkConfig",
    "MqttConfig",
    "OptionSpec",
    "SerialSettings",
    "SlaConfig",
    "UnitConfig",
    "address_rule",
    "config_warnings",
    "effective_config",
    "implicit_unit_id",
    "load_config",
    "normalise_address",
    "parse_config",
    "render_toml",
]
