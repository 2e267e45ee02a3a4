"""``since`` for the SLA report (``fieldlink sla --since`` and the MQTT ``sla`` request): a
duration back from now, or an RFC 3339 time read by :func:`gateway.jsonin.parse_rfc3339`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from gateway.errors import FieldlinkError
from gateway.jsonin import JsonInputError, parse_rfc3339
from gateway.model import rfc3339

__all__ = ["SINCE_EARLIEST", "SINCE_LATEST", "SinceError", "parse_since"]

SINCE_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
SINCE_LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""An absolute ``since`` must lie in ``[SINCE_EARLIEST, SINCE_LATEST]``."""

_SINCE_RE: Final = re.compile(r"\A([0-9]{1,9})([smhd])\Z", re.IGNORECASE)
_SINCE_UNITS_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SINCE_FORMS: Final = (
    "use a duration (90s, 30m, 24h, 7d) or an RFC 3339 time with an offset"
    f" (2024-05-01T08:00:00Z) between {rfc3339(SINCE_EARLIEST)} and {rfc3339(SINCE_LATEST)}"
)


class SinceError(FieldlinkError, ValueError):
    """A ``--since`` value that is neither a duration (``24h``) nor an RFC 3339 time."""


def parse_since(text: str, now: datetime) -> datetime:
    """``24h``, ``7d``, ``30m``, ``90s`` before ``now``, or an RFC 3339 time with an offset
    between ``SINCE_EARLIEST`` and ``SINCE_LATEST``, as UTC. Any other text raises
    :class:`SinceError` (a ValueError), and nothing else does."""
    value = text.strip()
    match = _SINCE_RE.match(value)
    if match:
        seconds = int(match.group(1)) * _SINCE_UNITS_S[match.group(2).lower()]
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise SinceError(f"--since {text!r} reaches back too far") from None
    try:
        return parse_rfc3339(value, "the time", earliest=SINCE_EARLIEST, latest=SINCE_LATEST)
    except JsonInputError as exc:
        raise SinceError(f"--since {text!r}: {exc.reason}; {_SINCE_FORMS}") from None
