"""The ``aprs`` protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the station's callsign with its SSID (``BH4ABC-9``); case does not matter and
``-0`` is no SSID. The link's own keys set the gateway's callsign and path, how often an
unacked message is sent again, and the radio channel's timing for airtime accounting.
"""

from __future__ import annotations

import re
from typing import Final

from gateway.drivers.spec import (
    ALL_TRANSPORTS,
    Capabilities,
    ProtocolSpec,
    dial_in_options,
    options,
    rule_validator,
)
from gateway.options import (
    REQUIRED,
    OptionSpec,
    each,
    float_range,
    int_range,
    positive,
)

_CALLSIGN_RE: Final = re.compile(r"\A([A-Z0-9]{1,6})(?:-([0-9]|1[0-5]))?\Z", re.IGNORECASE)


def callsign(address: str) -> str:
    """A callsign with optional SSID 0-15, upper case, ``-0`` dropped."""
    match = _CALLSIGN_RE.match(address)
    if not match:
        raise ValueError(f"{address!r} is not a callsign with optional SSID 0-15, like BH4ABC-9")
    call, ssid = match.group(1).upper(), match.group(2)
    return f"{call}-{ssid}" if ssid and ssid != "0" else call


_CALLSIGN_OPTION: Final = rule_validator(callsign)

SPEC = ProtocolSpec(
    name="aprs",
    title="Analog radios with a data TNC: APRS over KISS (serial, or TCP to direwolf)",
    options=options(
        callsign=OptionSpec("str", REQUIRED, _CALLSIGN_OPTION),
        path=OptionSpec("str_list", ("WIDE1-1",), each(_CALLSIGN_OPTION, max_items=8)),
        retry_intervals_s=OptionSpec(
            "float_list", (30.0, 60.0, 120.0, 240.0, 480.0), each(positive, max_items=32)
        ),
        offline_after_s=OptionSpec("float", 1800.0, positive),
        kiss_port=OptionSpec("int", 0, int_range(0, 15)),
        # The radio channel, for the gateway's own airtime accounting (one frame at a time).
        channel_baud=OptionSpec("int", 1200, int_range(300, 10_000_000)),
        txdelay_s=OptionSpec("float", 0.3, float_range(0.0, 5.0)),
        txtail_s=OptionSpec("float", 0.05, float_range(0.0, 5.0)),
        gap_s=OptionSpec("float", 0.1, float_range(0.0, 10.0)),
        # A TNC that dials in: a quiet channel is normal, so the idle timeout is long.
        **dial_in_options(callsign, idle_timeout_s=3600.0),
    ),
    address=callsign,
    address_example="BH4ABC-9",
    offline_after_s=1800.0,
    transports=ALL_TRANSPORTS,
    capabilities=Capabilities(
        text=True,
        # Split into numbered messages of 67 bytes (about 20 Chinese characters each).
        max_text_chars=1000,
        # Stations may answer the ?APRSP query, but most beacon on their own: a poll is
        # sent on request only, never by dispatch on its own.
        location_poll=False,
        alarms=True,
    ),
    driver="gateway.drivers.aprs.driver:AprsDriver",
    docs="protocols/aprs.md",
)
