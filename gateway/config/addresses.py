"""Device addresses per protocol (SPEC section 4): how each is checked and normalised, and the
implicit unit a device nobody listed becomes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from gateway.drivers.registry import PROTOCOLS
from gateway.model import DeviceRef


def address_rule(protocol: str) -> Callable[[str], str] | None:
    """How ``protocol`` checks and normalises a device address; None when the link itself is
    the one device. An unknown protocol takes any non-empty address as it is."""
    spec = PROTOCOLS.get(protocol)
    return spec.address if spec is not None else non_empty_address


def normalise_address(protocol: str, address: str) -> str:
    """The canonical form of a device address (SPEC section 4); ValueError when it is not one."""
    rule = address_rule(protocol)
    if rule is None:
        if address:
            raise ValueError(f"{protocol} links carry one device and take no address")
        return ""
    return rule(address)


def non_empty_address(address: str) -> str:
    if not address:
        raise ValueError("empty address")
    return address


_NOT_ID_CHARS: Final = re.compile(r"[^a-z0-9_-]+")


def implicit_unit_id(device: DeviceRef) -> str:
    """The unit a device nobody listed becomes: ``<link>-<address>`` in the id alphabet."""
    text = f"{device.link}-{device.address}" if device.address else device.link
    return _NOT_ID_CHARS.sub("-", text.lower()).strip("-")[:64] or "unit"
