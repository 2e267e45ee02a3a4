"""The mototrbo protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the decimal radio id (24 bits); its IP address is derived from it.

The driver is not built yet: a link with ``protocol = "mototrbo"`` is refused by
``check-config`` and ``run`` alike; units may already list such devices, whose addresses
:func:`radio_id` checks.
"""

from __future__ import annotations

from typing import Final

from gateway.drivers.spec import (
    Capabilities,
    ProtocolSpec,
    dial_in_options,
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
    name="mototrbo",
    title="MOTOTRBO DMR radios through a control station (ARS, TMS, LRRP over UDP)",
    options=options(
        offline_after_s=OptionSpec("float", 1800.0, positive),
        **dial_in_options(radio_id),
    ),
    address=radio_id,
    address_example="1001",
    offline_after_s=1800.0,
    transports=frozenset({"udp", "udp-listen"}),
    capabilities=Capabilities(
        text=True,
        max_text_chars=280,
        location_poll=True,
        alarms=True,
    ),
    driver=None,
    docs="protocols/mototrbo.md",
)
