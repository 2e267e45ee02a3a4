"""MOTOTRBO data services through a control station's network interface (sans-IO codecs).

- :mod:`protocols.mototrbo.ars`: registration and presence (UDP 4005)
- :mod:`protocols.mototrbo.tms`: text messages and their acks (UDP 4007)
- :mod:`protocols.mototrbo.lrrp`: location requests and reports (UDP 4001)

Each decoder takes one UDP payload and raises :class:`MototrboError` (and nothing else) for bad
input. Facts, sources and conflicts: ``../shared/notes/mototrbo.md``.
"""

from protocols.mototrbo import ars, lrrp, tms
from protocols.mototrbo.common import (
    DEFAULT_CAI,
    MAX_RADIO_ID,
    MototrboError,
    radio_id_of,
    radio_ip,
)

__all__ = [
    "DEFAULT_CAI",
    "MAX_RADIO_ID",
    "MototrboError",
    "ars",
    "lrrp",
    "radio_id_of",
    "radio_ip",
    "tms",
]
