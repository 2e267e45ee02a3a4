"""The hytera protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the decimal radio id (24 bits).

The driver is not built yet: a link with ``protocol = "hytera"`` is refused by
``check-config`` and ``run`` alike; units may already list such devices, whose addresses
:func:`radio_id` checks.
"""

from __future__ import annotations

from typing import Final

from gateway.drivers.spec import (
    CLIENT_TRANSPORTS,
    Capabilities,
    ProtocolSpec,
    options,
)
from gateway.options import OptionSpec, positive

_MAX_RADIO_ID: Final = 0xFFFFFF  # DMR radio ids are 24 bits


def radio_id(address: str) -> str:
    """A decimal radio id 1..16777215, without leading zeros."""
    if not address.isascii() or not address.isdigit() or not 1 <= int(address) <= _MAX_RADIO_ID:
        raise ValueError(f"{address!r} is not a decimal radio id (1 to {_MAX_RADIO_ID})")
    return str(int(address))


SPEC = ProtocolSpec(
    name="hytera",
    title="Hytera DMR radios (HRNP/HDAP over serial or the radio's USB network)",
    options=options(
        offline_after_s=OptionSpec("float", 1800.0, positive),
    ),
    address=radio_id,
    address_example="1001",
    offline_after_s=1800.0,
    transports=CLIENT_TRANSPORTS,
    capabilities=Capabilities(
        text=True, max_text_chars=256, location_poll=True, native_answers=False, alarms=True
    ),
    driver=None,
    docs="protocols/hytera.md",
)
