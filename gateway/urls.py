"""Link URLs, parsed in one place: configuration checks them with it, transports open them.

=====================  =========================================================
URL                    what it names
=====================  =========================================================
``/dev/ttyUSB0``       a serial device (a pty works too)
``tcp://host:port``    a TCP client (a TNC's KISS port, a GPS on a network)
``udp://host:port``    a UDP "connection" to one peer (DMR over IP)
``listen://host:port`` a TCP server for devices that dial in (trackers)
``udp-listen://h:p``   a UDP server; each peer address is its own connection
=====================  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

LINK_SCHEMES: Final = ("tcp", "udp", "listen", "udp-listen")
SERVER_KINDS: Final = frozenset({"listen", "udp-listen"})
_FORMS: Final = (
    "a device path (/dev/ttyUSB0), tcp://host:port, udp://host:port, listen://host:port "
    "or udp-listen://host:port"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a link URL names: its kind (``serial``, ``tcp``, ``udp``, ``listen`` or
    ``udp-listen``) and its address (``path`` for serial, ``host`` and ``port`` otherwise)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_server(self) -> bool:
        return self.kind in SERVER_KINDS


def parse_link_url(url: str) -> Endpoint:
    """Parse a link URL; ValueError with a reason a person can act on when it is not one."""
    if url.startswith("/"):
        if "\0" in url or url.endswith("/"):
            raise ValueError(f"{url!r} is not a device path")
        return Endpoint("serial", path=url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    if parts.scheme not in LINK_SCHEMES or not url.startswith(f"{parts.scheme}://"):
        raise ValueError(f"{url!r}: expected {_FORMS}")
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: expected {parts.scheme}://host:port and nothing else")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None:
        raise ValueError(f"{url!r}: a port is required ({parts.scheme}://host:port)")
    if not 1 <= port <= 65535:
        raise ValueError(f"{url!r}: the port must be between 1 and 65535")
    return Endpoint(parts.scheme, host=parts.hostname, port=port)
