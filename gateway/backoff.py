"""Capped exponential back-off with jitter, shared by links and the MQTT session."""

from __future__ import annotations

import random
import time


class Backoff:
    """Delays that grow from ``min_s`` to ``max_s``, each drawn with full jitter.

    The attempt counter resets once a connection has stayed up for ``stable_s``
    (see :meth:`connected` and :meth:`next_delay`), so a link that flaps after
    hours of service starts again from the short delays.
    """

    def __init__(
        self,
        min_s: float,
        max_s: float,
        *,
        stable_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self.stable_s = stable_s
        self.attempts = 0
        self._rng = rng or random.Random()
        self._up_since: float | None = None

    def connected(self) -> None:
        self._up_since = time.monotonic()

    def next_delay(self) -> float:
        if self._up_since is not None and time.monotonic() - self._up_since >= self.stable_s:
            self.attempts = 0
        self._up_since = None
        ceiling = min(self.max_s, self.min_s * (2**self.attempts))
        self.attempts = min(self.attempts + 1, 32)
        # Never below min_s, so a flapping peer is not hammered.
        return self._rng.uniform(self.min_s, max(self.min_s, ceiling))
