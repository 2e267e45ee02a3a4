"""Link supervision: open, serve, and on failure reopen with back-off; report state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from gateway.backoff import Backoff
from gateway.config import LinkConfig
from gateway.drivers.base import Driver
from gateway.errors import LinkError
from gateway.model import LinkCounters, LinkState, LinkStatus, utc_now
from gateway.transport import Connection, Server, open_connection, parse_url

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 1000
StatusCallback = Callable[[LinkStatus], None]


class LinkSupervisor:
    """Keeps one link open for as long as the gateway runs; other links are unaffected.

    A client link (serial, tcp, udp) is up while its connection is open; a server
    link (listen, udp-listen) is up while it listens, and serves each peer that
    dials in with the same driver.
    """

    def __init__(
        self,
        cfg: LinkConfig,
        driver: Driver,
        counters: LinkCounters,
        on_status: StatusCallback,
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
        limit = self.cfg.options.get("max_connections", DEFAULT_MAX_CONNECTIONS)
        max_connections = limit if isinstance(limit, int) else DEFAULT_MAX_CONNECTIONS
        server = Server(self.cfg.name, self.driver.run, max_connections=max_connections)
        try:
            await server.start(self._endpoint)
        except OSError as exc:
            raise LinkError(self.cfg.name, f"cannot listen: {exc}") from exc
        try:
            self._mark_up()
            await server.closed
        finally:
            with contextlib.suppress(Exception):
                await server.close()
