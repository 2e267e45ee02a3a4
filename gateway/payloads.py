"""JSON payloads of the MQTT contract, built from the domain model.

Compact UTF-8 JSON, times as RFC 3339 UTC with milliseconds, optional keys left
out rather than sent as null.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from gateway.model import LinkStatus, Position, Presence, rfc3339


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def gateway_state(state: str, *, version: str, started_at: datetime) -> bytes:
    return dumps({"state": state, "version": version, "started_at": rfc3339(started_at)})


def link_state(status: LinkStatus) -> bytes:
    body: dict[str, Any] = {
        "state": status.state.value,
        "since": rfc3339(status.since),
        "reconnects": status.reconnects,
    }
    if status.error:
        body["error"] = status.error
    return dumps(body)


def availability(presence: Presence, via: str) -> bytes:
    return dumps({"state": presence.state.value, "since": rfc3339(presence.since), "via": via})


def position(pos: Position) -> bytes:
    """The position payload, built by hand: it is on the hot path, and every value in it is
    a number or a string from a fixed alphabet (times, protocol and link names), so no
    escaping is needed. ``tests/test_payloads.py`` checks it against ``json.dumps``.

    One ``%`` format when every optional field is there (the common case), no list."""
    alt, speed, course, satellites, hdop = (
        pos.alt_m, pos.speed_kmh, pos.course_deg, pos.satellites, pos.hdop
    )  # fmt: skip
    if course is not None:
        course = round(course, 1)
        if course >= 360.0:
            course = 0.0
    fix_time = _fix_time_text(pos.fix_time)
    received_at = _received_at_text(pos.received_at)
    if alt is None or speed is None or course is None or satellites is None or hdop is None:
        return (
            _POSITION_HEAD % (pos.lat, pos.lon)
            + ("" if alt is None else f',"alt_m":{alt:.1f}')
            + ("" if speed is None else f',"speed_kmh":{speed:.2f}')
            + ("" if course is None else f',"course_deg":{course:.1f}')
            + ("" if satellites is None else f',"satellites":{satellites:d}')
            + ("" if hdop is None else f',"hdop":{max(hdop, 0.01):.2f}')
            + _POSITION_TAIL % (fix_time, received_at, pos.source, pos.device.link)
        ).encode()
    return (
        _POSITION_FULL
        % (
            pos.lat, pos.lon, alt, speed, course, satellites, max(hdop, 0.01),  # a DOP is never 0
            fix_time, received_at, pos.source, pos.device.link,
        )
    ).encode()  # fmt: skip


_POSITION_HEAD: Final = '{"lat":%.7f,"lon":%.7f'
_POSITION_TAIL: Final = ',"fix_time":"%s","received_at":"%s","source":"%s","link":"%s"}'
_POSITION_FULL: Final = (
    _POSITION_HEAD
    + ',"alt_m":%.1f,"speed_kmh":%.2f,"course_deg":%.1f,"satellites":%d,"hdop":%.2f'
    + _POSITION_TAIL
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECONDS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))


def _utc_text() -> Callable[[datetime], str]:
    """``rfc3339`` for one stream of moments, remembering the last second's text.

    ``isoformat`` costs about 1 us, a third of the whole payload; a stream of fix times (or
    of receive times) stays within one second for several positions, so the
    ``YYYY-MM-DDTHH:MM:SS`` part is made once per second, and only the milliseconds after it.
    Moments not in ``datetime.UTC`` go to ``rfc3339`` as they are.
    """
    # (seconds since the epoch, text of that second): one tuple, replaced whole, so a
    # reader on another thread never pairs one second with another's text.
    last: tuple[int | None, str] = (None, "")

    def text(moment: datetime) -> str:
        nonlocal last
        if moment.tzinfo is not UTC:
            return rfc3339(moment)
        since = moment - _EPOCH  # aware minus aware: never overflows
        second = since.days * 86400 + since.seconds
        last_second, last_text = last
        if second != last_second:
            last_text = moment.isoformat(timespec="seconds")[:19]
            last = (second, last_text)
        return last_text + _MILLISECONDS[moment.microsecond // 1000]

    return text


_fix_time_text = _utc_text()
_received_at_text = _utc_text()


def alarm(
    *,
    unit: str,
    kind: str,
    state: str,
    at: str,
    link: str,
    device: str,
    position: str | None = None,
    detail: str | None = None,
    **extra: str,
) -> dict[str, Any]:
    """An alarm event (SPEC section 5) as a JSON object: ``position`` is the position
    payload's JSON text (as the journal keeps it), ``extra`` adds keys (``raised_at``,
    ``cleared_by`` on a clear)."""
    body: dict[str, Any] = {
        "unit": unit,
        "kind": kind,
        "state": state,
        "at": at,
        "link": link,
        "device": device,
    }
    if position is not None:
        body["position"] = json.loads(position)
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    return body


def alarms_summary(raised: list[dict[str, Any]]) -> bytes:
    """The retained ``alarms`` topic: every alarm now raised, oldest first."""
    return dumps({"alarms": raised})
