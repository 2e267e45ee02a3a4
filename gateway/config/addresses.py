"""Device addresses per protocol (SPEC section 4): how each is checked and normalised, and the
implicit unit a device nobody listed becomes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from gateway.config.schema import Validator, each
from gateway.errors import ConfigError
from gateway.model import DeviceRef

# --- device addresses ----------------------------------------------------------------------------

_CALLSIGN_RE: Final = re.compile(r"\A([A-Z0-9]{1,6})(?:-([0-9]|1[0-5]))?\Z", re.IGNORECASE)
_DIGITS_RE: Final = re.compile(r"\A[0-9]+\Z")
_MAX_RADIO_ID: Final = 0xFFFFFF  # DMR radio ids are 24 bits


def aprs_address(address: str) -> str:
    match = _CALLSIGN_RE.match(address)
    if not match:
        raise ValueError(f"{address!r} is not a callsign with optional SSID 0-15, like BH4ABC-9")
    call, ssid = match.group(1).upper(), match.group(2)
    return f"{call}-{ssid}" if ssid and ssid != "0" else call  # -0 is no SSID


def jt808_address(address: str) -> str:
    if not _DIGITS_RE.match(address) or len(address) > 20:
        raise ValueError(f"{address!r} is not a terminal phone number (up to 20 digits)")
    return address.lstrip("0") or "0"  # 12 digits (2013) and 20 digits (2019) are one device


def gt06_address(address: str) -> str:
    if not _DIGITS_RE.match(address) or len(address) != 15:
        raise ValueError(f"{address!r} is not an IMEI (15 digits)")
    return address


def radio_id(address: str) -> str:
    if not _DIGITS_RE.match(address) or not 1 <= int(address) <= _MAX_RADIO_ID:
        raise ValueError(f"{address!r} is not a decimal radio id (1 to {_MAX_RADIO_ID})")
    return str(int(address))


ADDRESS_RULES: Final[dict[str, Callable[[str], str] | None]] = {
    "nmea": None,  # the link itself is the device
    "aprs": aprs_address,
    "hytera": radio_id,
    "jt808": jt808_address,
    "gt06": gt06_address,
    "mototrbo": radio_id,
}
"""Per protocol, how a device address is checked and normalised; ``None``: the link is the device.
A protocol missing here takes any non-empty address as it is."""


def normalise_address(protocol: str, address: str) -> str:
    """The canonical form of a device address (SPEC section 4); ValueError when it is not one."""
    rule = ADDRESS_RULES.get(protocol, non_empty_address)
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


def address_list(protocol: str) -> Validator:
    def check(value: str, key: str) -> str:
        try:
            return normalise_address(protocol, value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None

    return each(check)
