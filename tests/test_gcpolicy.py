"""The daemon's garbage collection policy: survivors frozen, cycles still reclaimed."""

from __future__ import annotations

import asyncio
import gc
import weakref

from gateway import gcpolicy
from tests.support import run_async


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def make_cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_survivors_are_frozen_and_a_full_collection_reclaims_frozen_cycles() -> None:
    async def scenario() -> None:
        gc.disable()  # no automatic collection may free the cycle before the loop freezes it
        task = asyncio.create_task(gcpolicy.run(freeze_interval_s=0.01, full_interval_s=0.2))
        try:
            cycle = make_cycle()  # garbage at once, but a cycle: only the collector frees it
            await asyncio.sleep(0.05)
            assert gc.get_freeze_count() > 0
            # Frozen, the cycle is out of the collector's sight until the full collection.
            gc.collect()
            assert cycle() is not None
            for _ in range(100):
                if cycle() is None:
                    break
                await asyncio.sleep(0.01)
            assert cycle() is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            gc.enable()
        assert gc.get_freeze_count() == 0  # the collector is left as it was found

    run_async(scenario())


def test_full_collection_counts_what_it_found() -> None:
    make_cycle()
    found, took = gcpolicy.full_collection()
    try:
        assert found >= 2
        assert took >= 0.0
    finally:
        gc.unfreeze()
