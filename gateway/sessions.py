"""Dial-in sessions: who is at the other end of each peer a server link serves.

Every server link (``listen://``, ``udp-listen://``) of every protocol has one
:class:`SessionRegistry`. Each TCP connection, or each UDP peer address, that the
:class:`~gateway.transport.Server` accepts becomes a :class:`Session`; its driver serves it
(:meth:`gateway.drivers.base.Driver.serve_session`) and calls :meth:`Session.bind` once it
knows which device is talking. From then on the registry maps the device address to its live
session, so whatever must reach the device (a :class:`~gateway.drivers.base.TextSender`)
finds it with :meth:`SessionRegistry.lookup`.

The rules, in one place for every protocol:

- **One session per device.** A device that binds while an older session holds its address
  (a tracker that redialled before its old TCP connection timed out, a UDP peer behind a NAT
  that changed its port) replaces it: the old session is closed with reason ``replaced``.
- **Who may bind.** ``allowed`` is the set of device addresses that may bind, or ``None`` for
  anyone. A session that binds an address not in the set is closed (reason ``not_allowed``),
  counted and logged at a bounded rate. :func:`allowed_addresses` derives the set from the
  configuration: ``register = "open"`` lets anyone bind; otherwise the link's ``allow`` list,
  or when that is empty, the devices that ``[[units]]`` list on this link.
- **Idle timeout.** A session that received nothing for ``idle_timeout_s`` is closed (reason
  ``idle``) by one sweep per link (:meth:`SessionRegistry.expire_idle`), not a timer per peer.
- **Cap.** The server refuses peers beyond ``max_connections`` and reports each refusal here
  (:meth:`SessionRegistry.refuse_over_cap`); the cap is also what bounds this registry.

Counters, for ``health`` (:meth:`SessionRegistry.snapshot`): sessions open now, devices bound
now, opened in total, closed by reason, and refused by reason. Reasons a session closes:
``peer`` (the peer hung up or the connection broke), ``ended`` (the driver returned),
``error`` (the driver failed), ``idle``, ``replaced``, ``not_allowed``, ``shutdown`` (the
link's server stopped), and those a driver gives (GT06's ``login_timeout``: a tracker that
never said who it is; JT/T 808's ``stalled``: a terminal that stopped reading). ``refused``
counts what the gateway turned away: ``cap`` (a TCP connection, or a UDP datagram from a peer
without a session, over the cap), ``not_allowed`` and ``idle``; the last two are also in
``closed``, as they ended a session that was open.

Presence hooks: :attr:`SessionRegistry.on_bind` is called with the session each time a
device binds (a replacement included: the device is still there); :attr:`SessionRegistry.on_unbind`
with the session and the reason when a device's address is left without a session (its
session closed for any reason but ``replaced``, or it rebound to another address, reason
``rebound``, or the driver unbound it, reason ``unbound``). Both run synchronously on the
event loop; an exception in a hook is logged and does not affect the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Set
from typing import Final

from gateway.config import LinkConfig, UnitConfig, address_rule
from gateway.errors import LinkError
from gateway.logs import RateLimitedLog
from gateway.transport import Connection

log = logging.getLogger(__name__)

NOT_ALLOWED_LOG_INTERVAL_S = 10.0
"""At most one log line per link in this interval for devices refused by the allow list."""
IDLE_SWEEP_MIN_S = 0.05
IDLE_SWEEP_MAX_S = 5.0
"""The idle sweep runs every quarter of the idle timeout, within these bounds: a session is
closed between ``idle_timeout_s`` and ``idle_timeout_s`` plus one sweep interval of silence."""

REFUSAL_REASONS: Final = ("cap", "not_allowed", "idle")
_PEER_CAUSED: Final = frozenset({"peer", "ended", "error"})
REGISTER_OPEN: Final = "open"

SessionHandler = Callable[[Connection, "Session"], Awaitable[None]]


class DeviceNotAllowed(LinkError):
    """Raised by :meth:`Session.bind` for a device the link does not accept; the session is
    already closed, so the driver just lets this end its loop."""


class Session:
    """One peer of a server link: a TCP connection or a UDP peer address.

    ``opened_at`` is a :func:`time.monotonic` time, as is :attr:`last_rx`. ``address`` is the
    device's normalised address once the driver has bound it (``""`` for a protocol whose
    link is its device, such as NMEA), ``None`` before. ``rx_frames`` and ``tx_frames`` are
    protocol frames, counted by the driver (:meth:`write` counts one per call).
    """

    __slots__ = (
        "_registry",
        "_task",
        "address",
        "close_reason",
        "connection",
        "opened_at",
        "rx_frames",
        "tx_frames",
    )

    def __init__(
        self, registry: SessionRegistry, connection: Connection, task: asyncio.Task[object] | None
    ) -> None:
        self._registry = registry
        self._task = task
        self.connection = connection
        self.opened_at = time.monotonic()
        self.address: str | None = None
        self.close_reason: str | None = None
        self.rx_frames = 0
        self.tx_frames = 0

    @property
    def link(self) -> str:
        """The name of the link this session is on."""
        return self._registry.link

    def __repr__(self) -> str:
        state = f"closed: {self.close_reason}" if self.close_reason else "open"
        return f"<Session {self._registry.link} {self.peer} {self.address!r} {state}>"

    @property
    def peer(self) -> str:
        return self.connection.peer

    @property
    def last_rx(self) -> float:
        return self.connection.last_rx

    @property
    def rx_bytes(self) -> int:
        return self.connection.rx_bytes

    @property
    def tx_bytes(self) -> int:
        return self.connection.tx_bytes

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def bind(self, address: str) -> None:
        """This session speaks for ``address``; see :meth:`SessionRegistry.bind`."""
        self._registry.bind(address, self)

    async def write(self, data: bytes) -> None:
        """Write one frame to the peer; :class:`LinkError` when the session is closed."""
        if self.close_reason is not None:
            raise LinkError(self._registry.link, f"session with {self.peer} is closed")
        await self.connection.write(data)
        self.tx_frames += 1

    def close(self, reason: str) -> None:
        """End the session: its serving task is cancelled and its connection closed.

        The first reason given is kept. Called from the session's own task (a driver ending
        its session), it only marks the session: the driver then returns.
        """
        if self.close_reason is None:
            self.close_reason = reason
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def describe(self) -> dict[str, object]:
        """What a request or a log line may say about this session."""
        now = time.monotonic()
        return {
            "peer": self.peer,
            "address": self.address,
            "age_s": round(now - self.opened_at, 1),
            "idle_s": round(now - self.last_rx, 1),
            "rx_bytes": self.rx_bytes,
            "tx_bytes": self.tx_bytes,
            "rx_frames": self.rx_frames,
            "tx_frames": self.tx_frames,
        }


def _as_is(address: str) -> str:
    return address


def _name(address: str) -> str:
    return address or "(the link's one device)"


class SessionRegistry:
    """The live sessions of one server link, and which device each speaks for.

    ``max_sessions`` is the link's cap (the server enforces it; it bounds this registry).
    ``allowed``: the device addresses that may bind, ``None`` for anyone. ``normalise`` maps
    an address to its canonical form (``ValueError`` when it is not one: such an address is
    kept as given, so it never matches an allow list).
    """

    def __init__(
        self,
        link: str,
        *,
        max_sessions: int,
        allowed: Set[str] | None = None,
        normalise: Callable[[str], str] = _as_is,
    ) -> None:
        self.link = link
        self.max_sessions = max_sessions
        self._normalise = normalise
        self.allowed: frozenset[str] | None = (
            None if allowed is None else frozenset(self._key(a) for a in allowed)
        )
        self._live: set[Session] = set()
        self._by_address: dict[str, Session] = {}
        self.opened = 0
        self.closed: dict[str, int] = {}
        self.refused: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        self.on_bind: Callable[[Session], None] | None = None
        self.on_unbind: Callable[[Session, str], None] | None = None
        self._not_allowed_log = RateLimitedLog(log, NOT_ALLOWED_LOG_INTERVAL_S)

    def __len__(self) -> int:
        return len(self._live)

    def sessions(self) -> Iterator[Session]:
        """The live sessions (a copy: closing them while iterating is fine)."""
        return iter(list(self._live))

    def _key(self, address: str) -> str:
        try:
            return self._normalise(address)
        except ValueError:
            return address

    # -- the serving path -------------------------------------------------------------

    async def serve(self, connection: Connection, handler: SessionHandler) -> None:
        """Serve one accepted peer with ``handler`` (a driver's ``serve_session``) as a
        session of this registry; the :class:`~gateway.transport.Server` handler of the link."""
        session = Session(self, connection, asyncio.current_task())
        self._live.add(session)
        self.opened += 1
        log.debug("%s: session with %s opened", self.link, connection.peer)
        reason, detail = "ended", ""
        try:
            await handler(connection, session)
        except DeviceNotAllowed:
            reason = "not_allowed"  # counted and logged by bind
        except LinkError as exc:  # the peer hung up or the connection broke: a normal end
            reason, detail = "peer", exc.reason
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        except Exception:
            reason = "error"  # the server logs the traceback
            raise
        finally:
            self._discard(session, session.close_reason or reason, detail)

    def _discard(self, session: Session, reason: str, detail: str) -> None:
        if session.close_reason is None:
            session.close_reason = reason
        self._live.discard(session)
        self.closed[reason] = self.closed.get(reason, 0) + 1
        why = detail or reason
        address = session.address
        if address is not None and self._by_address.get(address) is session:
            del self._by_address[address]
            log.info("%s: device %s (%s) gone: %s", self.link, _name(address), session.peer, why)
            self._hook_unbind(session, reason)
        else:
            # Ends the peer caused at the level a client link's are logged; ends the gateway
            # caused in bulk (idle, shutdown) or already logged (replaced, not_allowed) lower.
            level = logging.INFO if reason in _PEER_CAUSED else logging.DEBUG
            log.log(level, "%s: peer %s gone: %s", self.link, session.peer, why)

    def refuse_over_cap(self, peer: str) -> None:
        """The server refused ``peer`` over the cap (it logs that itself)."""
        self.refused["cap"] += 1

    # -- devices ------------------------------------------------------------------------

    def bind(self, address: str, session: Session) -> None:
        """``session`` speaks for the device ``address`` from now on.

        Binding the address a session already holds does nothing (drivers may call this on
        every frame). An older session of the same device is closed (``replaced``). A device
        the link does not accept closes ``session`` and raises :class:`DeviceNotAllowed`.
        """
        key = self._key(address)
        if session.address == key and self._by_address.get(key) is session:
            return
        if session.close_reason is not None:
            raise LinkError(self.link, f"session with {session.peer} is closed")
        if self.allowed is not None and key not in self.allowed:
            self.refused["not_allowed"] += 1
            self._not_allowed_log.warning(
                "%s: device %r from %s is not allowed on this link (allow, or the units' "
                'devices; register = "open" admits anyone); closed',
                self.link,
                address,
                session.peer,
            )
            session.close("not_allowed")
            raise DeviceNotAllowed(self.link, f"device {address!r} is not allowed")
        if session.address is not None:
            self._release(session, "rebound")
        old = self._by_address.get(key)
        self._by_address[key] = session
        session.address = key
        if old is not None and old is not session:
            log.info(
                "%s: device %s moved from %s to %s", self.link, _name(key), old.peer, session.peer
            )
            old.close("replaced")
        else:
            log.info("%s: device %s dialled in from %s", self.link, _name(key), session.peer)
        if self.on_bind is not None:
            try:
                self.on_bind(session)
            except Exception:
                log.exception("%s: on_bind hook failed for %s", self.link, key)

    def unbind(self, session: Session) -> None:
        """The device of ``session`` left (a protocol logout); the session stays open."""
        self._release(session, "unbound")
        session.address = None

    def _release(self, session: Session, reason: str) -> None:
        address = session.address
        if address is not None and self._by_address.get(address) is session:
            del self._by_address[address]
            self._hook_unbind(session, reason)

    def _hook_unbind(self, session: Session, reason: str) -> None:
        if self.on_unbind is not None:
            try:
                self.on_unbind(session, reason)
            except Exception:
                log.exception("%s: on_unbind hook failed for %s", self.link, session.address)

    def lookup(self, address: str) -> Session | None:
        """The live session of the device ``address``, or ``None``."""
        return self._by_address.get(self._key(address))

    @property
    def devices(self) -> int:
        return len(self._by_address)

    # -- idle ---------------------------------------------------------------------------

    def close_idle(self, idle_timeout_s: float, now: float | None = None) -> int:
        """Close every session that received nothing for ``idle_timeout_s``; how many."""
        deadline = (time.monotonic() if now is None else now) - idle_timeout_s
        idle = [s for s in self._live if s.close_reason is None and s.last_rx < deadline]
        for session in idle:
            self.refused["idle"] += 1
            log.debug("%s: closing %s: idle for %.1f s", self.link, session.peer, idle_timeout_s)
            session.close("idle")
        return len(idle)

    async def expire_idle(self, idle_timeout_s: float) -> None:
        """Sweep for idle sessions until cancelled."""
        interval = min(max(idle_timeout_s / 4, IDLE_SWEEP_MIN_S), IDLE_SWEEP_MAX_S)
        while True:
            await asyncio.sleep(interval)
            self.close_idle(idle_timeout_s)

    def close_all(self, reason: str) -> None:
        for session in self.sessions():
            session.close(reason)

    # -- health -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Counters for ``health``: small and the same shape whatever the load."""
        return {
            "open": len(self._live),
            "devices": len(self._by_address),
            "max": self.max_sessions,
            "register": REGISTER_OPEN if self.allowed is None else "allow-list",
            "opened": self.opened,
            "closed": dict(self.closed),
            "refused": dict(self.refused),
        }


def allowed_addresses(link: LinkConfig, units: Iterable[UnitConfig]) -> frozenset[str] | None:
    """Who may bind on the dial-in ``link``: a set of normalised device addresses, or ``None``
    for anyone.

    ``None`` for ``register = "open"`` and for a protocol whose link is its one device (NMEA);
    otherwise the link's ``allow`` list, or when it is empty the devices the ``units`` list
    on this link (empty when none does: then no device may bind, and the config says so).
    """
    rule = address_rule(link.protocol)
    if rule is None or link.options.get("register") == REGISTER_OPEN:
        return None
    allow = link.options.get("allow")
    listed = [str(a) for a in allow] if isinstance(allow, tuple | list) else []
    if not listed:
        listed = [d.address for u in units for d in u.devices if d.link == link.name]
    out: set[str] = set()
    for address in listed:
        try:
            out.add(rule(address))
        except ValueError:
            out.add(address)
    return frozenset(out)
