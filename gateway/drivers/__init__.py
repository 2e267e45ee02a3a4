"""Drivers: protocol messages in, domain events out (and commands back to the radio).

Each protocol has one driver class registered in :data:`DRIVERS`. A driver never
touches MQTT: it reports to an :class:`~gateway.drivers.base.EventSink`.
"""

from __future__ import annotations

from gateway.drivers.aprs import AprsDriver
from gateway.drivers.base import Driver, EventSink
from gateway.drivers.nmea import NmeaDriver

DRIVERS: dict[str, type[Driver]] = {
    "nmea": NmeaDriver,
    "aprs": AprsDriver,
}

__all__ = ["DRIVERS", "Driver", "EventSink"]
