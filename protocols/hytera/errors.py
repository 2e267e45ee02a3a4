"""The one error type of the Hytera codecs."""

from __future__ import annotations

from protocols import ProtocolError


class HyteraError(ProtocolError):
    """Malformed, truncated, oversize or unknown Hytera input (HRNP, HDAP or a service)."""
