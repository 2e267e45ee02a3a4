"""Every protocol the gateway knows, one line each: the one place a new protocol registers.

Importing this module loads the specs only (no driver, no codec), so configuration checking
stays light. A protocol whose spec has no driver yet is known (its address rule checks
``[[units]]`` entries, its page is in the docs) but refused for links, by ``check-config``
and ``run`` alike, with :func:`not_built_message`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from gateway import __version__
from gateway.drivers.aprs.spec import SPEC as APRS
from gateway.drivers.gt06.spec import SPEC as GT06
from gateway.drivers.hytera.spec import SPEC as HYTERA
from gateway.drivers.jt808.spec import SPEC as JT808
from gateway.drivers.mototrbo.spec import SPEC as MOTOTRBO
from gateway.drivers.nmea.spec import SPEC as NMEA
from gateway.drivers.spec import ProtocolSpec

_SPECS: Final[dict[str, ProtocolSpec]] = {
    spec.name: spec for spec in (NMEA, APRS, HYTERA, MOTOTRBO, JT808, GT06)
}
PROTOCOLS: Final[Mapping[str, ProtocolSpec]] = MappingProxyType(_SPECS)
"""Protocol name -> spec, in the order the docs list them."""


def built() -> list[str]:
    """Names of the protocols a link can use in this version."""
    return [name for name, spec in PROTOCOLS.items() if spec.built]


def not_built_message(name: str) -> str:
    """What ``check-config`` and ``run`` both say about a protocol without a driver."""
    return (
        f"{name} links are not supported by fieldlink {__version__} yet"
        f" (supported: {', '.join(built())})"
    )
