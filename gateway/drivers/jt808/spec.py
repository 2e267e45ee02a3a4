"""The jt808 protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the terminal's phone number; leading zeros are not significant.

The driver is not built yet: a link with ``protocol = "jt808"`` is refused by
``check-config`` and ``run`` alike; units may already list such devices, whose addresses
:func:`phone_number` checks.
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


def phone_number(address: str) -> str:
    """A terminal phone number of up to 20 digits; a 2013 terminal's 12 digits and the same
    number padded to 20 digits in 2019 are one device, so leading zeros are dropped."""
    if not address.isascii() or not address.isdigit() or len(address) > 20:
        raise ValueError(f"{address!r} is not a terminal phone number (up to 20 digits)")
    return address.lstrip("0") or "0"


SPEC = ProtocolSpec(
    name="jt808",
    title="JT/T 808 vehicle terminals, trackers and PoC radios (2013 and 2019)",
    options=options(
        offline_after_s=OptionSpec("float", 600.0, positive),
        **dial_in_options(phone_number),
    ),
    address=phone_number,
    address_example="013800138000",
    offline_after_s=600.0,
    transports=SERVER_TRANSPORTS,
    capabilities=Capabilities(
        text=True,
        max_text_chars=1024,
        voice=True,
        location_poll=True,
        native_answers=True,
        alarms=True,
    ),
    driver=None,
    docs="protocols/jt808.md",
)
