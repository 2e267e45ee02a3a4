"""Is the system clock synchronised? The kernel's NTP state, via adjtimex(2)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

TIME_ERROR = 5
"""adjtimex's return value while the clock is not synchronised (include/uapi/linux/timex.h)."""

_STATES = {0: "ok", 1: "insert-leap", 2: "delete-leap", 3: "leap-in-progress", 4: "leap-done"}


def clock_sync() -> dict[str, object]:
    """``{"synchronized": bool | None, "state": str}``; None where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return {"synchronized": None, "state": "unknown"}
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return {"synchronized": None, "state": "unknown"}
    libc = ctypes.CDLL(libc_name, use_errno=True)
    # struct timex is 208 bytes on 64-bit Linux; its first field, modes = 0, reads only.
    buffer = ctypes.create_string_buffer(512)
    result = libc.adjtimex(buffer)
    if result < 0:
        return {"synchronized": None, "state": "unknown"}
    if result == TIME_ERROR:
        return {"synchronized": False, "state": "unsynchronized"}
    return {"synchronized": True, "state": _STATES.get(result, str(result))}
