"""The ``nmea`` protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

An NMEA link is one device, a GPS receiver: it has no address, and its ``unit`` key (or the
unit that lists the link) names the unit its positions belong to.
"""

from __future__ import annotations

from gateway.drivers.spec import (
    ALL_TRANSPORTS,
    Capabilities,
    ProtocolSpec,
    dial_in_options,
    options,
)
from gateway.options import OptionSpec, identifier, int_range, positive

SPEC = ProtocolSpec(
    name="nmea",
    title="GPS receivers speaking NMEA 0183 (serial, TCP, UDP, or dialling in)",
    options=options(
        unit=OptionSpec("str", None, identifier),  # becomes LinkConfig.unit
        max_line_bytes=OptionSpec("int", 82, int_range(82, 4096)),
        require_checksum=OptionSpec("bool", True),
        # A receiver sends a fix every second: 30 s of silence means it is gone.
        offline_after_s=OptionSpec("float", 30.0, positive),
        **dial_in_options(None, idle_timeout_s=60.0),
    ),
    address=None,
    address_example="",
    offline_after_s=30.0,
    transports=ALL_TRANSPORTS,
    capabilities=Capabilities(),
    driver="gateway.drivers.nmea.driver:NmeaDriver",
    docs="protocols/nmea.md",
)
