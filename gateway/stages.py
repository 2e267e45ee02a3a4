"""Task stages (SPEC section 5), defined once: their order, which ones end a task, which
ones a person answers, and which SLA clock each one stops."""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Final


class Stage(enum.StrEnum):
    """A stage of one unit's part of a task, in the order they happen where they apply."""

    RECEIVED = "received"
    QUEUED = "queued"
    TRANSMITTED = "transmitted"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    DECLINED = "declined"
    CONTACTED = "contacted"
    ON_SCENE = "on_scene"
    FEEDBACK = "feedback"
    CLOSED = "closed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    ESCALATED = "escalated"


PROGRESS: Final = (
    Stage.RECEIVED,
    Stage.QUEUED,
    Stage.TRANSMITTED,
    Stage.DELIVERED,
    Stage.ACKNOWLEDGED,
    Stage.CONTACTED,
    Stage.ON_SCENE,
    Stage.FEEDBACK,
    Stage.CLOSED,
)
"""The stages a task goes through when all goes well, in order."""

RANK: Final = MappingProxyType(
    {**{stage: index for index, stage in enumerate(PROGRESS)}, Stage.DECLINED: 4}
)
"""Position in :data:`PROGRESS`; a decline stands where an acknowledgement would."""

TERMINAL: Final = frozenset(
    {
        Stage.FAILED,
        Stage.EXPIRED,
        Stage.CANCELLED,
        Stage.REJECTED,
        Stage.DECLINED,
        Stage.CLOSED,
    }
)
"""Stages after which nothing more happens to the task for that unit."""

ANSWERS: Final = (
    Stage.ACKNOWLEDGED,
    Stage.DECLINED,
    Stage.CONTACTED,
    Stage.ON_SCENE,
    Stage.FEEDBACK,
    Stage.CLOSED,
)
"""Stages a person reports: by reply, by a protocol's answer, or by voice to the centre."""

DEADLINES: Final = (
    (Stage.ACKNOWLEDGED, "acknowledge_s"),
    (Stage.CONTACTED, "contact_s"),
    (Stage.ON_SCENE, "on_scene_s"),
    (Stage.FEEDBACK, "feedback_s"),
    (Stage.CLOSED, "close_s"),
)
"""The five clocks: each stage and the ``[sla]`` key of its target (seconds from creation)."""


class Source(enum.StrEnum):
    """Who says a stage happened."""

    DEVICE = "device"  # the unit's radio or tracker (a reply, a native answer)
    CENTRE = "centre"  # a dispatcher recorded what a person said by voice or phone
    GATEWAY = "gateway"  # the gateway itself (a send, a position inside the incident radius)
