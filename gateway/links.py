"""Link supervision: open, serve, and on failure reopen with back-off; report state."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
from collections.abc import Callable, Set
from typing import Final

from gateway.backoff import Backoff
from gateway.config import LinkConfig, normalise_address
from gateway.drivers.base import Driver
from gateway.errors import LinkError
from gateway.model import LinkCounters, LinkState, LinkStatus, utc_now
from gateway.sessions import SessionRegistry
from gateway.transport import Connection, Server, open_connection, parse_url

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 1000
"""Peers one server link serves at once when its options do not say (``max_connections``)."""
DEFAULT_IDLE_TIMEOUT_S = 300.0
"""Silence after which a dial-in session is closed when its options do not say
(``idle_timeout_s``)."""
StatusCallback = Callable[[LinkStatus], None]


class _FromLink(enum.Enum):
    ALLOW_OPTION = "allow option"


FROM_LINK_OPTIONS: Final = _FromLink.ALLOW_OPTION
"""``allowed`` default of :class:`LinkSupervisor`: the link's ``allow`` list when it has one,
anyone when it is empty. The daemon passes :func:`gateway.sessions.allowed_addresses`
instead, which adds the units' devices and ``register = "open"``."""


class LinkSupervisor:
    """Keeps one link open for as long as the gateway runs; other links are unaffected.

    A client link (serial, tcp, udp) is up while its connection is open; a server
    link (listen, udp-listen) is up while it listens, and serves each peer that
    dials in as a session of :attr:`sessions` (:mod:`gateway.sessions`): at most
    ``max_connections`` at once, each closed after ``idle_timeout_s`` of silence, and only
    the devices in ``allowed`` may bind (``None``: anyone).

    ``sessions`` is the link's :class:`~gateway.sessions.SessionRegistry` (``None`` for a
    client link); the driver gets the same one as ``driver.sessions``.
    """

    def __init__(
        self,
        cfg: LinkConfig,
        driver: Driver,
        counters: LinkCounters,
        on_status: StatusCallback,
        *,
        allowed: Set[str] | _FromLink | None = FROM_LINK_OPTIONS,
    ) -> None:
        self.cfg = cfg
        self.driver = driver
        self.counters = counters
        self._on_status = on_status
        self._endpoint = parse_url(cfg.url)
        self._backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
        self._opened_once = False
        self.status = LinkStatus(cfg.name, LinkState.DOWN, utc_now(), 0, "not opened yet")
        self.connection: Connection | None = None
        self.sessions: SessionRegistry | None = None
        self.idle_timeout_s = _number_option(cfg, "idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S)
        if self._endpoint.is_server:
            if isinstance(allowed, _FromLink):
                allow = cfg.options.get("allow")
                allowed = frozenset(map(str, allow)) if isinstance(allow, tuple) and allow else None
            self.sessions = SessionRegistry(
                cfg.name,
                max_sessions=int(_number_option(cfg, "max_connections", DEFAULT_MAX_CONNECTIONS)),
                allowed=allowed,
                normalise=functools.partial(normalise_address, cfg.protocol),
            )
            driver.sessions = self.sessions

    def _set(self, state: LinkState, error: str | None = None) -> None:
        self.status = LinkStatus(self.cfg.name, state, utc_now(), self.counters.reconnects, error)
        self._on_status(self.status)

    async def run(self) -> None:
        self._on_status(self.status)
        while True:
            try:
                if self._endpoint.is_server:
                    await self._serve()
                else:
                    await self._connect_and_run()
            except LinkError as exc:
                error = exc.reason
            except Exception as exc:  # a driver bug must not take the gateway down
                log.exception("%s: driver failed", self.cfg.name)
                error = f"driver error: {exc}"
            else:
                error = "session ended"
            self.connection = None
            if self.status.state is LinkState.UP:
                log.info("%s: link down: %s", self.cfg.name, error)
                self._set(LinkState.DOWN, error)
            elif self.status.error != error:
                log.warning("%s: cannot open %s: %s", self.cfg.name, self.cfg.url, error)
                self._set(LinkState.DOWN, error)
            delay = self._backoff.next_delay()
            log.debug("%s: reopening in %.2f s", self.cfg.name, delay)
            await asyncio.sleep(delay)

    def _mark_up(self) -> None:
        if self._opened_once:
            self.counters.reconnects += 1
        self._opened_once = True
        self._backoff.connected()
        log.info("%s: link up (%s)", self.cfg.name, self.cfg.url)
        self._set(LinkState.UP)

    async def _connect_and_run(self) -> None:
        conn = await open_connection(self.cfg.name, self._endpoint, self.cfg.serial)
        self.connection = conn
        try:
            self._mark_up()
            await self.driver.run(conn)
        finally:
            await conn.close()

    async def _serve(self) -> None:
        sessions = self.sessions
        assert sessions is not None  # set for every server endpoint
        server = Server(
            self.cfg.name,
            functools.partial(sessions.serve, handler=self.driver.serve_session),
            max_connections=sessions.max_sessions,
            on_refused=sessions.refuse_over_cap,
        )
        try:
            await server.start(self._endpoint)
        except OSError as exc:
            raise LinkError(self.cfg.name, f"cannot listen: {exc}") from exc
        try:
            async with asyncio.TaskGroup() as tasks:
                sweeper = tasks.create_task(
                    sessions.expire_idle(self.idle_timeout_s), name=f"{self.cfg.name}:idle"
                )
                listener = tasks.create_task(
                    self.driver.serve_listener(server), name=f"{self.cfg.name}:listener"
                )
                self._mark_up()
                await server.closed
                sweeper.cancel()
                listener.cancel()
        except ExceptionGroup as group:
            # The driver's listener took the link down: say why, as a client link would.
            link_errors = [e for e in group.exceptions if isinstance(e, LinkError)]
            if link_errors and len(link_errors) == len(group.exceptions):
                raise link_errors[0] from None
            raise
        finally:
            with contextlib.suppress(Exception):
                await server.close()


def _number_option(cfg: LinkConfig, key: str, default: float) -> float:
    value = cfg.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return default
    return value
