"""What a protocol is to the rest of the gateway, stated once, beside its driver.

A :class:`ProtocolSpec` holds everything that is not the driver's code: the link keys the
protocol takes (types, defaults, checks), how a device address is written, how long a device
may stay silent before it counts as offline, which URLs it runs over, and what its devices
can do. Configuration checking, ``check-config``, ``run``, the demo and the option tables in
``docs/protocols/`` are all derived from it, so they cannot disagree.

This module and the spec modules import nothing heavy: ``check-config`` reads every spec
without loading a single driver. The driver class is named by its import path and loaded
only when a link of that protocol runs.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from gateway.errors import ConfigError
from gateway.options import (
    OptionSpec,
    Validator,
    address_list,
    int_range,
    one_of,
    positive,
)

if TYPE_CHECKING:
    from gateway.drivers.base import Driver

CLIENT_TRANSPORTS = frozenset({"serial", "tcp", "udp"})
SERVER_TRANSPORTS = frozenset({"listen", "udp-listen"})
ALL_TRANSPORTS = CLIENT_TRANSPORTS | SERVER_TRANSPORTS


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the protocol's devices can do for dispatch."""

    text: bool = False
    """Carries text to a person (a task, ``send_text``)."""
    max_text_chars: int = 0
    """The longest text one delivery carries (the driver splits or refuses beyond it)."""
    voice: bool = False
    """Can speak a text on the device (text to speech)."""
    location_poll: bool = False
    """Answers an immediate location request; dispatch polls such devices while their unit
    is on its way to an incident, every ``dispatch.poll_interval_s``."""
    native_answers: bool = False
    """Carries task answers natively (status keys, a chosen answer to a question)."""
    alarms: bool = False
    """Reports alarms (an emergency button, SOS, tracker alarm bits)."""


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """One protocol, as configuration, dispatch and the docs see it."""

    name: str
    """The ``protocol`` value of a ``[[links]]`` table."""
    title: str
    """One line for people: what the protocol is and what speaks it."""
    options: Mapping[str, OptionSpec]
    """Link keys beside the common ones (name, protocol, url, enabled, back-off, serial)."""
    address: Callable[[str], str] | None
    """Checks and normalises a device address (raises ValueError); None when the link itself
    is the one device (its ``unit`` key names the unit)."""
    address_example: str
    """A valid address, for error messages and docs (empty when ``address`` is None)."""
    offline_after_s: float
    """Silence after which a device counts as offline, unless the link says otherwise."""
    transports: frozenset[str]
    """URL kinds a link of this protocol may use."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    driver: str | None = None
    """``module:Class`` of the driver; None while the protocol is not built yet."""
    docs: str = ""
    """The operators' page, relative to ``docs/``."""
    serial_defaults: Mapping[str, object] = field(default_factory=dict)
    """Defaults of the serial keys (``baudrate``, ...) that differ for this protocol's devices
    from the gateway's (a Hytera radio's HRNP port runs at 115200 baud)."""

    @property
    def built(self) -> bool:
        return self.driver is not None

    def serial_options(self, common: Mapping[str, OptionSpec]) -> Mapping[str, OptionSpec]:
        """The serial keys of this protocol's links: ``common`` with :attr:`serial_defaults`."""
        if not self.serial_defaults:
            return common
        return {
            key: dataclasses.replace(option, default=self.serial_defaults.get(key, option.default))
            for key, option in common.items()
        }

    def driver_class(self) -> type[Driver]:
        """Load the driver class (only when a link of this protocol runs)."""
        if self.driver is None:
            raise LookupError(f"{self.name} has no driver yet")
        module_name, _, class_name = self.driver.partition(":")
        cls: type[Driver] = getattr(importlib.import_module(module_name), class_name)
        return cls


def rule_validator(rule: Callable[[str], str]) -> Validator:
    """An option validator from an address rule (its ValueError becomes a ConfigError)."""

    def check(value: str, key: str) -> str:
        try:
            return rule(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None

    return check


def options(**table: OptionSpec) -> Mapping[str, OptionSpec]:
    """A protocol's option table, read-only."""
    return MappingProxyType(table)


def dial_in_options(
    address: Callable[[str], str] | None, *, idle_timeout_s: float = 300.0
) -> dict[str, OptionSpec]:
    """The keys every protocol takes on a server link (``listen://``, ``udp-listen://``):
    how many may be connected at once, how long a silent one is kept and, where devices have
    addresses, who may dial in."""
    keys = {
        "max_connections": OptionSpec("int", 1000, int_range(1, 65535), SERVER_TRANSPORTS),
        "idle_timeout_s": OptionSpec("float", idle_timeout_s, positive, SERVER_TRANSPORTS),
    }
    if address is not None:
        # Device addresses that may dial in; empty: the devices [[units]] list on this link.
        keys["allow"] = OptionSpec("str_list", (), address_list(address), SERVER_TRANSPORTS)
        # "open": any device may dial in and becomes an implicit unit (it must be written).
        keys["register"] = OptionSpec(
            "str", "allow-list", one_of("allow-list", "open"), SERVER_TRANSPORTS
        )
    return keys
