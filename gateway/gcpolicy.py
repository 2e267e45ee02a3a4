"""The daemon's garbage collection policy: short pauses, memory still reclaimed.

CPython's cyclic collector walks every tracked object in its oldest generation on a full
collection. A gateway with thousands of dial-in sessions holds a large, long-lived heap (per
session: the connection, its buffers, the driver's state), and a full collection over it
stopped the loop for about 125 ms at 5,000 JT/T 808 terminals: with 1,000 positions/s, that was
the whole p99 (68 ms, against 4 ms without; ``bench/trackers.py``).

So the survivors are moved out of the collector's sight (:func:`gc.freeze`) every
:data:`FREEZE_INTERVAL_S`: the collector then only walks what was made since, and its pauses
stay short whatever the number of sessions. Frozen objects are still freed by reference
counting the moment they are dropped; only garbage *cycles* among them wait, until the full
collection this loop makes itself every :data:`FULL_COLLECTION_INTERVAL_S` (unfreeze, collect,
freeze): one pause of the old length at a time of its choosing, instead of several a minute at
the collector's. What cycles leak in between is bounded by that interval.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Final

log = logging.getLogger(__name__)

FREEZE_INTERVAL_S: Final = 2.0
"""How often the survivors are frozen (:func:`gc.freeze` only splices lists: it costs nothing
however large the heap)."""
FULL_COLLECTION_INTERVAL_S: Final = 600.0
"""How often everything is collected, cycles among long-lived objects included."""
SLOW_COLLECTION_S: Final = 0.1
"""A full collection longer than this is logged (at INFO): the pause is then worth knowing."""


def full_collection() -> tuple[int, float]:
    """Collect everything, frozen objects included, then freeze the survivors; returns the
    objects found unreachable and the seconds it took."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return found, time.perf_counter() - started


async def run(
    freeze_interval_s: float = FREEZE_INTERVAL_S,
    full_interval_s: float = FULL_COLLECTION_INTERVAL_S,
) -> None:
    """Apply the policy until cancelled (the daemon owns this task); the collector is left as
    it was found when it ends."""
    gc.freeze()  # what start-up made (modules, config, codecs) is out of sight at once
    next_full = time.monotonic() + full_interval_s
    try:
        while True:
            await asyncio.sleep(freeze_interval_s)
            if time.monotonic() < next_full:
                gc.freeze()
                continue
            next_full = time.monotonic() + full_interval_s
            found, took = full_collection()
            level = logging.INFO if took > SLOW_COLLECTION_S else logging.DEBUG
            log.log(level, "full garbage collection: %d unreachable, %.0f ms", found, took * 1e3)
    finally:
        gc.unfreeze()
