"""Walkie-talkies for end-to-end tests: APRS radio stubs on a simulated channel, served
as a KISS TCP port the daemon (a child process) connects to, run on a thread of their own
so that the test body can stay synchronous and the radios outlive daemon restarts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from firmware_stubs.aprs_radio import AprsRadio
from firmware_stubs.radio_net import RadioNet
from protocols import ax25
from protocols.aprs import AprsMessage, decode_frame

T = TypeVar("T")


class RadioField:
    """A RadioNet and its radios on a background event loop."""

    def __init__(self, radios: list[AprsRadio], **net_options: Any) -> None:
        self.radios = {radio.callsign: radio for radio in radios}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._net_options = net_options
        self.net: RadioNet
        self.port = 0
        self._tasks: list[asyncio.Task[None]] = []

    def _call(self, fn: Callable[[], T]) -> T:
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(10)

    def start(self) -> RadioField:
        self._thread.start()
        ready: Future[int] = Future()

        def setup() -> None:
            self.net = RadioNet(**self._net_options)
            self._tasks.append(
                self._loop.create_task(self.net.serve(on_ready=lambda h, p: ready.set_result(p)))
            )
            for radio in self.radios.values():
                port = self.net.attach(radio.callsign)
                self._tasks.append(self._loop.create_task(radio.run(port)))

        self._call(setup)
        self.port = ready.result(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.sleep(0.05)  # transports of the cancelled tasks finish closing

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def messages_to(self, callsign: str) -> list[str]:
        """Texts of every APRS message frame sent on air to ``callsign`` (retries included)."""

        def collect() -> list[str]:
            out = []
            for _at, _sender, frame_bytes in list(self.net.log):
                frame = ax25.decode(frame_bytes)
                packet = decode_frame(frame)
                if isinstance(packet, AprsMessage) and packet.addressee.strip() == callsign:
                    out.append(packet.text)
            return out

        return self._call(collect)


class BackgroundLoop:
    """Coroutines (radios connecting to a TNC) on an event loop of their own thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def start() -> None:
            self._tasks.append(asyncio.get_running_loop().create_task(coro))

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)

    def stop(self) -> None:
        async def shutdown() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # Let transports closed by the cancelled tasks finish closing.
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
