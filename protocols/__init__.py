"""Pure, sans-IO protocol codecs: bytes in, typed messages out, and back.

Nothing in this package performs I/O, imports asyncio or knows about the gateway.
"""


class ProtocolError(ValueError):
    """Root of every codec error: malformed, truncated or oversize input."""
