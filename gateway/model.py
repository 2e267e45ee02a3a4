"""The domain model every protocol driver speaks and the MQTT layer publishes.

Drivers turn protocol messages into these values; nothing here knows a protocol
or a topic. Times are timezone-aware UTC ``datetime`` values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as every payload carries times: ``...T12:00:00.000Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is C code; its first 23 characters are the date and time to the millisecond.
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device as a link sees it: the link name and the protocol address on it.

    ``address`` is empty for links bound to one device (an NMEA receiver).
    """

    link: str
    address: str = ""

    def __str__(self) -> str:
        return f"{self.link}:{self.address}" if self.address else self.link


@dataclass(frozen=True, slots=True)
class Position:
    """A valid fix from a device. Invalid fixes never become a Position."""

    device: DeviceRef
    lat: float
    lon: float
    fix_time: datetime
    received_at: datetime
    source: str
    alt_m: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    satellites: int | None = None
    hdop: float | None = None


class LinkState(enum.StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class LinkStatus:
    link: str
    state: LinkState
    since: datetime
    reconnects: int
    error: str | None = None


class Availability(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Presence:
    """A device was heard (online) or has been silent too long (offline)."""

    device: DeviceRef
    state: Availability
    since: datetime


@dataclass(frozen=True, slots=True)
class TextFromUnit:
    """Text a person sent from a device.

    ``reply_to`` is set when the protocol itself says which of the gateway's messages this
    answers (an APRS reply-ack, a JT/T 808 answer serial, a DMR reply id): the
    :attr:`TextOrder.key` of that message. ``message_id`` is the protocol's number for
    this message where it has one: a radio that repeats the message (its ack was lost)
    repeats the number, and the gateway applies it once.
    """

    device: DeviceRef
    text: str
    at: datetime
    reply_to: str | None = None
    message_id: str | None = None


@dataclass(slots=True)
class LinkCounters:
    """Per-link counters published in ``health``."""

    rx_bytes: int = 0
    tx_bytes: int = 0
    frames: int = 0
    rejected: int = 0
    positions: int = 0
    reconnects: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    implausible: dict[str, int] = field(default_factory=dict)
    """Positions or fields dropped by the plausibility check, by reason."""

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class UnitAnswer:
    """An answer a protocol carries natively (a status key, a chosen answer to a question).

    ``stage`` is a task stage (``acknowledged``, ``declined``, ``on_scene``, ``feedback``,
    ``closed``); ``ref`` names the task when the protocol says which one it answers.
    """

    device: DeviceRef
    stage: str
    at: datetime
    ref: str | None = None
    reply_to: str | None = None
    message_id: str | None = None


class AlarmKind(enum.StrEnum):
    """What a device alarms about, as far as its protocol says (SPEC section 5)."""

    EMERGENCY = "emergency"
    MAN_DOWN = "man_down"
    LONE_WORKER = "lone_worker"
    OVERSPEED = "overspeed"
    POWER_CUT = "power_cut"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"
    GEOFENCE = "geofence"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Alarm:
    """A device raised (``raised=True``) or cleared an alarm.

    Drivers report what the protocol says each time it says it; the gateway publishes one
    ``raised`` per raise however often a device repeats it. ``detail`` carries the
    protocol's own code for ``other``. ``position`` is the fix the alarm came with.
    """

    device: DeviceRef
    kind: AlarmKind
    raised: bool
    at: datetime
    position: Position | None = None
    detail: str | None = None


class Delivery(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class TextOrder:
    """Text for one device on a link: a task (or free text) on its way to a person."""

    address: str
    text: str
    priority: int  # gateway.channel.URGENT / NORMAL / ROUTINE
    voice: bool = False
    key: str = ""  # what the order belongs to (task id and unit), for logs


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """How a :class:`TextOrder` ended: confirmed by the device at protocol level, or not."""

    outcome: Delivery
    reason: str | None = None
    transmissions: int = 0
