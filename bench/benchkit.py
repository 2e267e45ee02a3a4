"""What the benchmarks share: percentiles, best-of-N rates, waiting, and a subscriber process
that timestamps every position it receives."""

from __future__ import annotations

import gc
import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

Received = list[tuple[float, bytes]]
"""(``time.monotonic()`` at arrival, payload) per message."""


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``values`` (NaN when there are none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def best_rate(fn: Callable[[bytes, int], int], stream: bytes, chunk: int, repeat: int) -> float:
    """Frames per second of the fastest of ``repeat`` runs of ``fn(stream, chunk)`` (which
    returns how many frames it handled)."""
    best = float("inf")
    frames = 0
    for _ in range(repeat):
        start = time.perf_counter()
        frames = fn(stream, chunk)
        best = min(best, time.perf_counter() - start)
    return frames / best


def wait(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def rate(received: Received) -> float:
    """Messages per second between the first and the last."""
    if len(received) < 2:
        return 0.0
    return (len(received) - 1) / (received[-1][0] - received[0][0])


def _subscribe(  # noqa: PLR0917 - a child process's target takes positional arguments
    port: int, topic: str, ready: Any, results: Queue[Any], quiet_s: float, limit_s: float
) -> None:
    """Timestamp every live message on ``topic``; report once ``quiet_s`` pass without one."""
    gc.disable()  # a collection here (~100 ms over a long received list) is not the daemon's
    received: Received = []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        if not msg.retain:  # values retained before this subscriber came are not this run's
            received.append((time.monotonic(), bytes(msg.payload)))

    client.on_message = on_message
    client.on_subscribe = lambda *_a: ready.set()
    client.connect("127.0.0.1", port)
    client.subscribe(topic, 0)
    client.loop_start()
    start = last_change = time.monotonic()
    count = -1
    while time.monotonic() - start < limit_s:
        time.sleep(0.2)
        if len(received) != count:
            count, last_change = len(received), time.monotonic()
        elif received and time.monotonic() - last_change > quiet_s:
            break
    client.loop_stop()
    client.disconnect()
    results.put(received)


class PositionSubscriber:
    """A subscriber in its own process (it must not share a core's GIL with the publisher):
    subscribed when constructed; :meth:`collect` waits for the stream to go quiet and returns
    the position payloads with their arrival times."""

    def __init__(self, port: int, topic: str, *, quiet_s: float, limit_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.ready = ctx.Event()
        self.results: Queue[Any] = ctx.Queue()
        self._limit_s = limit_s
        self.proc = ctx.Process(
            target=_subscribe, args=(port, topic, self.ready, self.results, quiet_s, limit_s)
        )
        self.proc.start()
        if not self.ready.wait(10):
            raise RuntimeError("subscriber did not subscribe")

    def collect(self) -> Received:
        received: Received = self.results.get(timeout=self._limit_s + 60)
        self.proc.join(10)
        return [r for r in received if r[1].startswith(b'{"lat"')]
