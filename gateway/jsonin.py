"""JSON and RFC 3339 times from outside (MQTT payloads), parsed with limits.

Every way a payload can be unacceptable becomes one :class:`JsonInputError` whose text is a
short reason fit for a ``rejected`` reply. Plain ``json.loads`` would instead raise
RecursionError on deep nesting, ValueError past Python's 4,300-digit integer limit, accept
NaN, Infinity and duplicate keys, and decode UTF-16 and UTF-32 silently; ``fromisoformat``
followed by ``astimezone`` raises OverflowError at the ends of the calendar.
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate

from gateway.errors import FieldlinkError

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NUMBER_CHARS",
    "JsonInputError",
    "loads",
    "loads_object",
    "parse_rfc3339",
]

MAX_BYTES = 262_144
"""Largest payload accepted by default; bounds memory and the time spent on one message."""
MAX_DEPTH = 32
"""Deepest nesting of arrays and objects; far below the interpreter's recursion limit."""
MAX_NUMBER_CHARS = 40
"""Longest number literal (sign, digits, fraction, exponent) before ``int()`` sees it."""

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""Earliest time :func:`parse_rfc3339` accepts by default."""
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""Latest time :func:`parse_rfc3339` accepts by default."""
CLOCK_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest time the gateway's own clock may have written to the journal: a box whose clock
was never set (no RTC, no NTP yet) starts in 1970, and its journal must still be read."""

_REASON_CHARS = 120
_QUOTE_CHARS = 40

# The depth pre-scan keeps only quotes and brackets, mapping { to [ and } to ].
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_QUOTES_OR_BRACKETS = bytes(b for b in range(256) if b not in b'"[]{}')
_DEPTH_STEP = tuple(1 if b == ord("[") else -1 for b in range(256))
_UTF8_BOM = b"\xef\xbb\xbf"
# A \uD800-\uDFFF escape; json turns a lone one into a str that cannot be encoded again.
_SURROGATE_ESCAPE_RE = re.compile(rb"\\u[dD][89abcdefABCDEF]")

_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)


class JsonInputError(FieldlinkError, ValueError):
    """Why a payload is not acceptable JSON; str() is a short reason fit for a `rejected` reply.

    ``key`` names the field when the error is about one (:func:`parse_rfc3339`).
    """

    def __init__(self, reason: str, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key


def _too_deep(payload: bytes, max_depth: int) -> bool:
    """Whether brackets outside string literals nest deeper than ``max_depth``; no recursion.

    Where the payload stops being valid JSON the count may be off, but json.loads fails there
    before recursing any further, so the count is never below the depth json would reach.
    """
    # Escaped backslashes, then escaped quotes, go first (pairs left to right, as JSON reads
    # them); what is left between two quotes is then inside a string. An unterminated string
    # runs to the end, where json fails anyway.
    unescaped = payload.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = unescaped.translate(_BRACKETS, _NOT_QUOTES_OR_BRACKETS)
    brackets = b"".join(marks.split(b'"')[::2])
    if brackets.count(b"[") <= max_depth:
        return False
    if b"[" * (max_depth + 1) in brackets:
        return True
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > max_depth


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonInputError(f"duplicate key {key[:_QUOTE_CHARS]!r}")
            seen.add(key)
    return obj


class _LimitedDecoder(json.JSONDecoder):
    """A decoder whose hooks refuse long numbers, non-finite floats and duplicate keys."""

    def __init__(self, max_number_chars: int) -> None:
        super().__init__(
            object_pairs_hook=_unique_keys,
            parse_int=self._int,
            parse_float=self._float,
            parse_constant=self._constant,
        )
        self.max_number_chars = max_number_chars

    def _check_length(self, literal: str) -> None:
        if len(literal) > self.max_number_chars:
            raise JsonInputError(f"number longer than {self.max_number_chars} characters")

    def _int(self, literal: str) -> int:
        self._check_length(literal)
        return int(literal)

    def _float(self, literal: str) -> float:
        self._check_length(literal)
        value = float(literal)
        if not math.isfinite(value):
            raise JsonInputError(f"number out of range: {literal}")
        return value

    @staticmethod
    def _constant(literal: str) -> float:
        raise JsonInputError(f"{literal} is not a JSON number")


@functools.lru_cache(maxsize=8)
def _decoder(max_number_chars: int) -> _LimitedDecoder:
    return _LimitedDecoder(max_number_chars)


def _check_encodable(value: object) -> None:
    """Refuse strings holding a lone surrogate (from a ``\\ud800`` escape)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonInputError("string holds an unpaired surrogate escape") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_encodable(key)
            _check_encodable(item)
    elif isinstance(value, list):
        for item in value:
            _check_encodable(item)


def loads(
    payload: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_number_chars: int = MAX_NUMBER_CHARS,
) -> object:
    """Parse JSON from outside. UTF-8 only (a BOM or any other encoding is an error),
    size, depth and number length limited, NaN/Infinity/-Infinity refused, floats finite
    (1e999 refused), duplicate object keys refused. Raises JsonInputError, never anything else.
    """
    if len(payload) > max_bytes:
        raise JsonInputError(f"payload is {len(payload)} bytes, over {max_bytes}")
    if not payload:
        raise JsonInputError("payload is empty")
    if payload.startswith(_UTF8_BOM):
        raise JsonInputError("payload starts with a byte order mark; send UTF-8 without one")
    try:
        text = payload.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise JsonInputError("payload is not UTF-8") from None
    if "\x00" in text:  # never valid JSON; the usual sign of UTF-16 or UTF-32 without a BOM
        raise JsonInputError("payload is not UTF-8 (it holds NUL bytes)")
    if _too_deep(payload, max_depth):
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels")
    try:
        value: object = _decoder(max_number_chars).decode(text)
    except JsonInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"malformed JSON: {exc}"[:_REASON_CHARS]) from None
    except (RecursionError, ValueError, OverflowError, TypeError) as exc:  # last line of defence
        raise JsonInputError(f"malformed JSON: {type(exc).__name__}") from None
    if _SURROGATE_ESCAPE_RE.search(payload):
        _check_encodable(value)
    return value


def loads_object(
    payload: bytes,
    *,
    what: str = "a request",
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_number_chars: int = MAX_NUMBER_CHARS,
) -> dict[str, object]:
    """:func:`loads` that must give a JSON object; otherwise ``"<what> is a JSON object"``."""
    value = loads(
        payload, max_bytes=max_bytes, max_depth=max_depth, max_number_chars=max_number_chars
    )
    if not isinstance(value, dict):
        raise JsonInputError(f"{what} is a JSON object")
    return value


def _day(moment: datetime) -> str:
    if moment.time() == datetime.min.time():
        return moment.date().isoformat()
    return moment.isoformat()


def parse_rfc3339(
    text: object, key: str, *, earliest: datetime = EARLIEST, latest: datetime = LATEST
) -> datetime:
    """An RFC 3339 date-time with a time zone (Z, z or +hh:mm), returned as aware UTC.

    Raises JsonInputError naming `key` for: not a string, wrong shape, no zone, impossible
    values, and times outside [earliest, latest] (so later arithmetic cannot overflow).
    Fractions of any length are truncated to microseconds; leap second 60 is refused.
    """
    if not isinstance(text, str):
        raise JsonInputError(f"{key} must be an RFC 3339 time string", key)
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        raise JsonInputError(f"{key} is not an RFC 3339 time: {text[:_QUOTE_CHARS]!r}", key)
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu is None and sign is None:
        raise JsonInputError(f"{key} needs a time zone (Z or +08:00)", key)
    if sign is not None and (int(off_h) > 23 or int(off_m) > 59):
        raise JsonInputError(f"{key} has an impossible offset: {text[:_QUOTE_CHARS]!r}", key)
    outside = f"{key} is outside {_day(earliest)}..{_day(latest)}"
    if year == "0000":  # valid RFC 3339, beyond what datetime holds
        raise JsonInputError(outside, key)
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
    zone = timezone(-offset if sign == "-" else offset)
    try:
        local = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, zone
        )
    except ValueError as exc:
        raise JsonInputError(
            f"{key} is not a valid time: {text[:_QUOTE_CHARS]!r} ({exc})", key
        ) from None
    try:
        moment = local.astimezone(UTC)
    except OverflowError:
        raise JsonInputError(outside, key) from None
    if not earliest <= moment <= latest:
        raise JsonInputError(outside, key)
    return moment
