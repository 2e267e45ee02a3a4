"""The operator's web server inside the daemon: ``/metrics``, the status page, its live feed.

aiohttp, on the gateway's own event loop (docs/operations.md says why). Read-only: every
route is ``GET`` (and ``HEAD``); nothing it serves changes the gateway's state.

Routes: ``/`` the page, ``/static/<file>`` its script and style (package data, read once,
no CDN, nothing from the internet), ``/status.json`` one snapshot, ``/events`` the live
feed as server-sent events, ``/metrics`` the Prometheus text format.

What a client can cost the gateway, bounded:

* open feeds: at most ``http.max_clients``; one more is answered 503 at once;
* per feed: one pending snapshot (:class:`~gateway.web.feed.Subscriber`), plus what sits in
  its socket: aiohttp waits for the transport's buffer to drain below 64 KiB before the next
  write returns, the kernel's send buffer is fixed at :data:`FEED_SNDBUF_BYTES`, and a write
  that has not drained within :data:`WRITE_TIMEOUT_S` closes the feed. A page that stops
  reading holds one snapshot and one socket's buffers, then is gone; the loop never waits
  for it (each feed writes from its own handler task);
* requests: headers capped by aiohttp (8 KiB a line), bodies refused (``GET`` only,
  ``client_max_size`` 1 KiB), idle keep-alive connections closed after
  :data:`KEEPALIVE_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from importlib import resources
from typing import TYPE_CHECKING, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.config import HttpConfig
from gateway.web.feed import StatusFeed

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S: Final = 10.0
"""A feed whose socket has not taken a snapshot within this long is closed."""
HEARTBEAT_S: Final = 15.0
"""A comment line on an idle feed, so proxies and the browser keep it open."""
KEEPALIVE_TIMEOUT_S: Final = 15.0
FEED_SNDBUF_BYTES: Final = 64 * 1024
"""The kernel's send buffer of a feed's socket, fixed (no autotuning to megabytes): with
aiohttp's own 64 KiB, what a page that stops reading can pin before its writes time out."""
BIND_RETRY_S: Final = 30.0
"""How often to try the address again when it is taken; the gateway runs on meanwhile."""
SHUTDOWN_TIMEOUT_S: Final = 2.0
STATIC: Final = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "index.html": "text/html",
}
SECURITY_HEADERS: Final = {
    # Every byte the page uses comes from here: no inline script, no other origin.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _load_static() -> dict[str, bytes]:
    folder = resources.files("gateway.web") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC}


class StatusServer:
    """Serves the page and the metrics of one gateway; :meth:`run` until cancelled."""

    def __init__(self, gateway: Gateway, cfg: HttpConfig) -> None:
        self._gw = gateway
        self.cfg = cfg
        self.feed = StatusFeed(gateway, max_subscribers=cfg.max_clients)
        self._static = _load_static()
        self.refused = 0
        """Feeds refused at the cap."""
        self.closed_slow = 0
        """Feeds closed because their socket did not drain in time."""
        self._expected_auth: bytes | None = None
        if cfg.auth:
            token = base64.b64encode(f"{cfg.username}:{cfg.password}".encode()).decode()
            self._expected_auth = f"Basic {token}".encode()
        gateway.metrics.registry.register(_ServerCollector(self))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._asset)
        app.router.add_get("/status.json", self._status)
        app.router.add_get("/events", self._events)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def run(self) -> None:
        """Serve until cancelled. A failure of the server is logged, and the gateway runs on
        without its page: dispatch matters more than the view of it."""
        try:
            await self._serve()
        except Exception:
            log.exception("http: the status page and /metrics failed; the gateway runs on")
            await asyncio.Event().wait()  # until the gateway stops and cancels us

    async def _serve(self) -> None:
        runner = web.AppRunner(
            self.app(),
            handle_signals=False,
            access_log=None,
            keepalive_timeout=KEEPALIVE_TIMEOUT_S,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            # A page that goes away ends its handler at once (its feed slot is free again),
            # not at the next write.
            handler_cancellation=True,
        )
        await runner.setup()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.feed.run(), name="http:feed")
                await self._listen(runner)
                await asyncio.Event().wait()  # until the gateway cancels us
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S + 1):
                    await runner.cleanup()

    async def _listen(self, runner: web.AppRunner) -> None:
        cfg = self.cfg
        while True:
            site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                log.error(  # noqa: TRY400 - the cause is stated, no trace needed
                    "http: cannot listen on %s (%s); the status page and /metrics are off,"
                    " trying again every %g s",
                    cfg.listen,
                    exc.strerror or exc,
                    BIND_RETRY_S,
                )
                await asyncio.sleep(BIND_RETRY_S)
                continue
            log.info("http: status page and /metrics on http://%s/", cfg.listen)
            return

    # -- middleware --------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._expected_auth is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._expected_auth):
                if given:
                    log.warning("http: wrong credentials from %s", request.remote)
                raise web.HTTPUnauthorized(
                    headers={"WWW-Authenticate": 'Basic realm="fieldlink", charset="UTF-8"'}
                )
        response = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    # -- routes ------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC or name == "index.html":
            raise web.HTTPNotFound
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        return web.Response(
            body=self._static[name],
            content_type=STATIC[name],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.feed.current(),
            content_type="application/json",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._gw.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        sub = self.feed.subscribe()
        if sub is None:
            self.refused += 1
            raise web.HTTPServiceUnavailable(
                text=f"{self.cfg.max_clients} status pages are open; try again later\n",
                headers={"Retry-After": "10"},
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
                **SECURITY_HEADERS,
            }
        )
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, FEED_SNDBUF_BYTES)
        try:
            await response.prepare(request)
            await self._write(response, b"retry: 2000\n\n")
            while True:
                frame = await sub.next_frame(HEARTBEAT_S)
                await self._write(response, frame if frame is not None else b": idle\n\n")
        except TimeoutError:
            self.closed_slow += 1
            log.info("http: a status page at %s stopped reading; closed", request.remote)
            if request.transport is not None:
                request.transport.abort()  # what sits in its buffers is freed now
        except ConnectionError:
            pass  # the page was closed
        finally:
            self.feed.unsubscribe(sub)
        return response

    @staticmethod
    async def _write(response: web.StreamResponse, data: bytes) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await response.write(data)


def basic_auth_header(username: str, password: str) -> str:
    """The ``Authorization`` value for basic auth (tests and the bench use it)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class _ServerCollector(Collector):
    """The server's own counters, read at scrape time."""

    def __init__(self, server: StatusServer) -> None:
        self._server = server

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        server = self._server
        clients = GaugeMetricFamily("fieldlink_http_clients", "Status pages open (live feeds).")
        clients.add_metric([], server.feed.subscribers)
        refused = CounterMetricFamily(
            "fieldlink_http_clients_refused", "Status pages refused: http.max_clients were open."
        )
        refused.add_metric([], server.refused)
        slow = CounterMetricFamily(
            "fieldlink_http_clients_closed_slow",
            "Status pages closed because they stopped reading.",
        )
        slow.add_metric([], server.closed_slow)
        yield from (clients, refused, slow)
