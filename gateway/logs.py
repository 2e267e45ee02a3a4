"""Log lines that outside input can cause, at a bounded rate.

A flood of bad input must not become a flood of log lines: the first line of a burst
is written, the rest are counted and the count goes into the next line written.
"""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """At most one line per ``interval_s`` through ``logger``; the rest are counted."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last = -interval_s
        self.suppressed = 0

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            self.suppressed += 1
            return False
        self._last = now
        return True

    def _log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        if not self._due():
            return
        if self.suppressed:
            msg += f" (and {self.suppressed} more like it since the last report)"
            self.suppressed = 0
        self._logger.log(level, msg, *args, exc_info=exc_info)

    def warning(self, msg: str, *args: object) -> None:
        self._log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self._log(logging.ERROR, msg, *args)

    def exception(self, msg: str, *args: object) -> None:
        """An error with the traceback of the exception being handled."""
        self._log(logging.ERROR, msg, *args, exc_info=True)
