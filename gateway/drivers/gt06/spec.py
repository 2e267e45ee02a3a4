"""The gt06 protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the 15-digit IMEI.

The driver is not built yet: a link with ``protocol = "gt06"`` is refused by
``check-config`` and ``run`` alike; units may already list such devices, whose addresses
:func:`imei` checks.
"""

from __future__ import annotations

from gateway.drivers.spec import (
    SERVER_TRANSPORTS,
    Capabilities,
    ProtocolSpec,
    dial_in_options,
    options,
)
from gateway.options import OptionSpec, positive


def imei(address: str) -> str:
    """A 15-digit IMEI, as the tracker sends it in its login."""
    if not address.isascii() or not address.isdigit() or len(address) != 15:
        raise ValueError(f"{address!r} is not an IMEI (15 digits)")
    return address


SPEC = ProtocolSpec(
    name="gt06",
    title="GT06 GPS trackers (Concox and compatible)",
    options=options(
        offline_after_s=OptionSpec("float", 600.0, positive),
        **dial_in_options(imei),
    ),
    address=imei,
    address_example="123456789012345",
    offline_after_s=600.0,
    transports=SERVER_TRANSPORTS,
    capabilities=Capabilities(
        text=True,
        max_text_chars=140,
        alarms=True,
    ),
    driver=None,
    docs="protocols/gt06.md",
)
