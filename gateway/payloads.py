"""JSON payloads of the MQTT contract, built from the domain model.

Compact UTF-8 JSON, times as RFC 3339 UTC with milliseconds, optional keys left
out rather than sent as null.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

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
    escaping is needed. ``tests/test_payloads.py`` checks it against ``json.dumps``."""
    parts = [f'{{"lat":{pos.lat:.7f},"lon":{pos.lon:.7f}']
    if pos.alt_m is not None:
        parts.append(f',"alt_m":{pos.alt_m:.1f}')
    if pos.speed_kmh is not None:
        parts.append(f',"speed_kmh":{pos.speed_kmh:.2f}')
    if pos.course_deg is not None:
        course = round(pos.course_deg, 1)
        parts.append(f',"course_deg":{0.0 if course >= 360.0 else course:.1f}')
    if pos.satellites is not None:
        parts.append(f',"satellites":{pos.satellites:d}')
    if pos.hdop is not None:
        parts.append(f',"hdop":{max(pos.hdop, 0.01):.2f}')  # a DOP is never 0
    parts.append(
        f',"fix_time":"{rfc3339(pos.fix_time)}","received_at":"{rfc3339(pos.received_at)}"'
        f',"source":"{pos.source}","link":"{pos.device.link}"}}'
    )
    return "".join(parts).encode()


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
