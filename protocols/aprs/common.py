"""Pieces shared by the APRS codecs: text rules, base-91, timestamps, unit conversions.

Sources: APRS101 (https://op-co.de/tmp/APRS101/APRS.html) ch.6 "Time and Position Formats"
(timestamps ``DDHHMMz``, ``DDHHMM/``, ``HHMMSSh``), ch.9 (base-91: value = sum of (char - 33) *
91^k), ch.14 (forbidden characters ``|``, ``~`` and ``{`` in message text) and ch.16 (``|`` and
``~`` in status text); ``docs/protocols/aprs.md`` section 3 (UTF-8 per the APRS 1.2 note
http://www.aprs.org/aprs12/utf-8.txt passes unchanged; the stricter character set).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from protocols.aprs.model import AprsError

KMH_PER_KNOT = 1.852
M_PER_FOOT = 0.3048

# One replacement per forbidden character: ``{`` would start a message number, ``|`` and ``~``
# are reserved (APRS101 ch.14); control characters could break a TNC's line mode or a display.
# Unicode line/paragraph separators and bidi controls count as control characters here.
_REPLACEMENTS: dict[int, str] = {ord("|"): "/", ord("~"): "-", ord("{"): "("}
for _cp in (*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F)):
    _REPLACEMENTS[_cp] = " "
_REPLACEMENTS.update({cp: " " for cp in range(0x2066, 0x206A)})


def sanitize_text(text: str) -> str:
    """Replace what APRS text must not carry: ``|`` -> ``/``, ``~`` -> ``-``, ``{`` -> ``(``.

    Control characters (C0, DEL, C1: all of Unicode category Cc), line/paragraph separators and bidi
    embeddings/overrides/isolates become spaces, so nothing can inject a message number, a TNC
    command or a misleading display. Other Unicode (Chinese included) passes unchanged.
    """
    return text.translate(_REPLACEMENTS)


def check_text(text: str, what: str, max_bytes: int | None) -> bytes:
    """UTF-8 bytes of ``text``; :class:`AprsError` on a forbidden character or too many bytes."""
    if text.translate(_REPLACEMENTS) != text:
        bad = sorted({ch for ch in text if ord(ch) in _REPLACEMENTS})
        raise AprsError(f"{what} contains forbidden characters {bad!r}; use sanitize_text()")
    data = text.encode("utf-8")
    if max_bytes is not None and len(data) > max_bytes:
        raise AprsError(f"{what} is {len(data)} bytes of UTF-8, at most {max_bytes} allowed")
    return data


def decode_text(data: bytes) -> str:
    """UTF-8 when valid, else Latin-1 (older European stations); never raises."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def base91_decode(data: bytes) -> int:
    """Base-91 digits ``!``..``{`` (33..123), most significant first (APRS101 ch.9)."""
    value = 0
    for b in data:
        if not 33 <= b <= 123:
            raise AprsError(f"invalid base-91 digit {b:#04x} in {data!r}")
        value = value * 91 + (b - 33)
    return value


def base91_encode(value: int, width: int) -> bytes:
    if not 0 <= value < 91**width:
        raise AprsError(f"{value} does not fit in {width} base-91 digits")
    out = bytearray(width)
    for i in range(width - 1, -1, -1):
        value, digit = divmod(value, 91)
        out[i] = digit + 33
    return bytes(out)


# How far in the future a timestamp may lie (sender clock ahead); sender-local time may be up to
# UTC+14 ahead of our UTC reference.
_SKEW_UTC = timedelta(hours=1)
_SKEW_LOCAL = timedelta(hours=14, minutes=30)


def _latest(candidates: list[datetime], limit: datetime, ts: bytes) -> datetime:
    past = [c for c in candidates if c <= limit]
    if not past:
        raise AprsError(f"timestamp {ts!r} fits no date before {limit:%Y-%m-%d %H:%M}")
    return max(past)


def decode_timestamp(ts: bytes, now: datetime | None) -> datetime:
    """A 7-byte APRS timestamp relative to ``now`` (aware UTC; the current time when ``None``).

    ``DDHHMMz`` and ``HHMMSSh`` give aware UTC datetimes; ``DDHHMM/`` (sender-local, zone unknown) a
    naive one. A timestamp reports the past, so the missing month (or day) is the latest that does
    not put it more than a clock skew (1 h; 14.5 h for local time) after ``now``.
    """
    if len(ts) != 7 or not ts[:6].isdigit():
        raise AprsError(f"invalid timestamp {ts!r}")
    a, b, c = int(ts[0:2]), int(ts[2:4]), int(ts[4:6])
    kind = ts[6:7]
    ref = now if now is not None else datetime.now(UTC)
    if kind == b"h":
        if a > 23 or b > 59 or c > 59:
            raise AprsError(f"invalid HMS timestamp {ts!r}")
        ref = ref.astimezone(UTC)
        base = ref.replace(hour=a, minute=b, second=c, microsecond=0)
        return _latest([base + timedelta(days=d) for d in (-1, 0, 1)], ref + _SKEW_UTC, ts)
    if kind not in (b"z", b"/"):
        raise AprsError(f"invalid timestamp indicator in {ts!r}")
    if not 1 <= a <= 31 or b > 23 or c > 59:
        raise AprsError(f"invalid DHM timestamp {ts!r}")
    if kind == b"z":
        ref, skew = ref.astimezone(UTC), _SKEW_UTC
    else:
        ref, skew = ref.astimezone(UTC).replace(tzinfo=None), _SKEW_LOCAL
    candidates = []
    for month_shift in (-2, -1, 0, 1):
        month0 = ref.year * 12 + ref.month - 1 + month_shift
        try:
            candidates.append(ref.replace(month0 // 12, month0 % 12 + 1, a, b, c, 0, 0))
        except ValueError:  # day not in that month
            continue
    return _latest(candidates, ref + skew, ts)


def _as_utc(timestamp: datetime) -> datetime:
    if timestamp.tzinfo is None:
        raise AprsError("timestamps to encode must be timezone-aware")
    return timestamp.astimezone(UTC)


def encode_timestamp_dhm(timestamp: datetime) -> bytes:
    """``DDHHMMz`` in UTC (the form APRS101 ch.6 recommends)."""
    t = _as_utc(timestamp)
    return f"{t.day:02d}{t.hour:02d}{t.minute:02d}z".encode("ascii")


def encode_timestamp_hms(timestamp: datetime) -> bytes:
    """``HHMMSSh`` in UTC (APRS101 ch.6; not valid in status reports)."""
    t = _as_utc(timestamp)
    return f"{t.hour:02d}{t.minute:02d}{t.second:02d}h".encode("ascii")
