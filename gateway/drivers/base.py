"""What every driver shares: the sink it reports to and the bad-input log."""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.config import LinkConfig
from gateway.drivers.registry import PROTOCOLS
from gateway.drivers.spec import Capabilities
from gateway.model import (
    Alarm,
    AlarmKind,
    Delivery,
    DeliveryReport,
    DeviceRef,
    LinkCounters,
    Position,
    TextFromUnit,
    TextOrder,
    UnitAnswer,
)
from gateway.sessions import Session, SessionRegistry
from gateway.transport import Connection, Server

if TYPE_CHECKING:
    from gateway.journal import Journal

log = logging.getLogger(__name__)

REJECT_LOG_INTERVAL_S = 10.0
"""At most one log line per link in this interval for bad input; the rest are counted."""
HEX_DUMP_BYTES = 32


class EventSink(Protocol):
    """Where drivers report what they heard. Implemented by the gateway core."""

    def heard(self, device: DeviceRef) -> None:
        """The device just said something (marks it online)."""

    def offline(self, device: DeviceRef) -> None:
        """The device said it is leaving (a radio switched off deregisters): its unit is
        offline at once, unless another of its devices is still heard."""

    def position(self, position: Position) -> None: ...

    def text(self, text: TextFromUnit) -> None:
        """Free text from a person (a reply to a task, or anything else)."""

    def answer(self, answer: UnitAnswer) -> None:
        """A task answer the protocol carries natively (status key, chosen answer)."""

    def alarm(self, alarm: Alarm) -> None:
        """A device raised or cleared an alarm (repeats are fine: the sink publishes once)."""


OnTransmitted = Callable[[], None]


@runtime_checkable
class TextSender(Protocol):
    """What a driver offers when its devices can carry text (or speech) to a person.

    Dispatch depends on this interface only, never on a protocol.
    """

    @property
    def capabilities(self) -> Capabilities:
        """What the protocol's devices can do (its spec's capabilities): dispatch polls for
        positions only where ``location_poll`` is set."""
        ...

    def can_reach(self, address: str) -> bool:
        """The link is up and ``address`` is a valid device address for it."""

    async def send_text(self, order: TextOrder, on_transmitted: OnTransmitted) -> DeliveryReport:
        """Deliver ``order``: queue it on the link's channel by priority, transmit, retry
        per the protocol until the device confirms or the attempts run out.

        ``on_transmitted`` is called once, when the first frame has been written to the
        link. Never raises for link trouble: a link that is down, a full queue or no
        confirmation all end as ``Delivery.FAILED`` with a reason.
        """
        ...

    async def poll_location(self, address: str) -> bool:
        """Ask the device for an immediate position; False where the protocol cannot."""
        ...


@runtime_checkable
class AlarmConfirmer(Protocol):
    """What a driver offers when its devices keep an alarm until the platform confirms it
    (a JT/T 808 terminal's emergency bit stays set until it gets 0x8203)."""

    async def confirm_alarm(self, address: str, kind: AlarmKind) -> bool:
        """Tell the device ``address`` that the centre handled its ``kind`` alarm; True
        when the confirmation was sent. Never raises for link trouble."""
        ...


class Transmissions:
    """Counts the frames written for one order; calls ``on_transmitted`` after the first
    (what :meth:`TextSender.send_text` promises)."""

    __slots__ = ("_on_transmitted", "count")

    def __init__(self, on_transmitted: OnTransmitted) -> None:
        self._on_transmitted = on_transmitted
        self.count = 0

    def written(self) -> None:
        self.count += 1
        if self.count == 1:
            self._on_transmitted()


SendPart = Callable[[str, Transmissions], Awaitable[str | None]]
"""Sends one part of a text until the device settles it; the failure, or None."""


async def send_in_parts(
    parts: Sequence[str], send_part: SendPart, on_transmitted: OnTransmitted, what: str
) -> DeliveryReport:
    """Send ``parts`` in order, each once the one before is confirmed; the first failure ends
    the text (``part 2/3: ...`` when it had several) and is logged under ``what``."""
    sent = Transmissions(on_transmitted)
    for index, part in enumerate(parts, 1):
        failure = await send_part(part, sent)
        if failure is not None:
            if len(parts) > 1:
                failure = f"part {index}/{len(parts)}: {failure}"
            log.info("%s failed: %s", what, failure)
            return DeliveryReport(Delivery.FAILED, failure, sent.count)
    return DeliveryReport(Delivery.DELIVERED, transmissions=sent.count)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of a task group's failure, so a link's supervisor sees a plain
    :class:`~gateway.errors.LinkError`."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def hex_dump(data: bytes, limit: int = HEX_DUMP_BYTES) -> str:
    dump = data[:limit].hex(" ")
    return dump + (f" ... ({len(data)} bytes)" if len(data) > limit else "")


class RejectLog:
    """Counts bad input and logs it once per burst, with the link name and a hex dump."""

    def __init__(self, link: str, counters: LinkCounters) -> None:
        self._link = link
        self._counters = counters
        self._last_log = -REJECT_LOG_INTERVAL_S
        self._suppressed = 0

    def reject(self, reason: str, data: bytes, detail: str = "") -> None:
        """Count under ``reason`` (a short fixed word); ``detail`` only goes to the log."""
        self._counters.reject(reason)
        now = time.monotonic()
        if now - self._last_log < REJECT_LOG_INTERVAL_S:
            self._suppressed += 1
            return
        more = f" (+{self._suppressed} more since the last report)" if self._suppressed else ""
        log.warning(
            "%s: rejected input (%s%s): %s%s",
            self._link,
            reason,
            f": {detail}" if detail else "",
            hex_dump(data),
            more,
        )
        self._last_log = now
        self._suppressed = 0


class Driver(abc.ABC):
    """One per link; :meth:`run` serves one connection until it ends."""

    def __init__(self, link: LinkConfig, sink: EventSink, counters: LinkCounters) -> None:
        self.link = link
        self.sink = sink
        self.counters = counters
        self.rejects = RejectLog(link.name, counters)
        spec = PROTOCOLS.get(link.protocol)
        self._capabilities = spec.capabilities if spec is not None else Capabilities()

    @property
    def capabilities(self) -> Capabilities:
        """What this link's devices can do, from the protocol's spec."""
        return self._capabilities

    @abc.abstractmethod
    async def run(self, conn: Connection) -> None:
        """Serve ``conn``; return or raise :class:`~gateway.errors.LinkError` when it ends."""

    journal: Journal | None = None
    """The gateway's journal, set before the link runs (``None`` where a driver runs alone, in
    tests and benchmarks): for what a protocol must keep across restarts, in tables of its own
    on ``journal.db.conn`` (JT/T 808 authentication codes)."""

    sessions: SessionRegistry | None = None
    """The dial-in sessions of a server link (``listen://``, ``udp-listen://``), set by its
    :class:`~gateway.links.LinkSupervisor`; ``None`` on a client link."""

    async def serve_session(self, conn: Connection, session: Session) -> None:
        """Serve one peer of a server link; ``conn`` is ``session.connection``.

        A driver that learns which device is talking calls ``session.bind(address)`` (it
        raises :class:`~gateway.sessions.DeviceNotAllowed`, ending the session, for a device
        the link does not accept) and reaches that device later through :meth:`session_for`.
        The default serves the peer like a client link's connection: :meth:`run`.
        """
        await self.run(conn)

    async def serve_listener(self, server: Server) -> None:
        """Runs beside a server link's sessions for as long as the link listens (cancelled
        when it stops); raising :class:`~gateway.errors.LinkError` takes the link down, to be
        opened again after the back-off. For what belongs to the link rather than to one peer:
        MOTOTRBO's TMS and LRRP sockets, and its ARS query to the radios it knows after a
        restart. The default does nothing."""
        del server

    def session_for(self, address: str) -> Session | None:
        """The live dial-in session of the device ``address`` on this link, or ``None``."""
        return None if self.sessions is None else self.sessions.lookup(address)
