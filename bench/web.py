"""Status pages benchmark: does the daemon's real work suffer while pages watch it?

The daemon runs with an NMEA receiver on a pty (as ``bench/positions.py``) and ``UNITS``
configured units, so each status snapshot is tens of KB. Prints one JSON object per line:

* ``latency`` with ``pages: 0``: at a steady 1,000 fixes/s, the time from writing a fix to the
  pty until a subscriber on mosquitto has the position, p50/p99/p99.9 in ms, no page open;
* ``latency`` with ``pages: 200``: the same while 200 status pages (another process, reading
  everything the daemon streams) and one page that never reads are open (target p99 < 5 ms);
* ``pages``: what the pages got (frames per page per second, bytes: a frame carries only the
  units that changed), whether the page that stopped reading was closed (only once its socket
  buffers filled, which small frames may never do: what it can pin is bounded either way),
  the daemon's open feeds and its peak RSS before and after.

Run from the repository: ``.venv/bin/python bench/web.py [--quick]``. Needs mosquitto. On a
shared 2-core machine the readers, mosquitto and the daemon compete for the cores: compare the
two latency lines of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tty
import urllib.request
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # the latency measurement of positions.py, shared

from positions import measure_latency, peak_rss_mb  # noqa: E402

from gateway.devkit.broker import Mosquitto, free_port  # noqa: E402 - after the path set-up

PAGES = 200
UNITS = 300
TARGET_P99_MS = 5.0


def start_daemon(
    tmp: Path, broker: Mosquitto, device: str, http_port: int
) -> subprocess.Popen[bytes]:
    units = "".join(f'\n[[units]]\nid = "unit-{i:04d}"\nname = "单位 {i}"\n' for i in range(UNITS))
    config = tmp / "config.toml"
    config.write_text(
        f"""
[gateway]
id = "bench"
data_dir = "{tmp / "data"}"
log_level = "warning"

[mqtt]
url = "{broker.url}"

[http]
listen = "127.0.0.1:{http_port}"
max_clients = {PAGES + 10}

[[links]]
name = "gps0"
protocol = "nmea"
url = "{device}"
baudrate = 115200
unit = "bench"
{units}
""",
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "daemon.log").open("wb"),
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            metric(http_port, "fieldlink_http_clients")
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.0)  # the link open
    return proc


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    if found is None:
        raise LookupError(name)
    return float(found.group(1))


def readers(port: int, pages: int, seconds: float, ready: Any, results: Queue[Any]) -> None:
    """``pages`` status pages that read all they are sent, and one that never reads."""

    async def page(counts: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
        try:
            while chunk := await reader.read(65536):
                counts[0] += len(chunk)
                counts[1] += chunk.count(b"event: status")
        finally:
            writer.close()

    async def main() -> dict[str, Any]:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")  # and never a recv
        counts = [[0, 0] for _ in range(pages)]
        tasks = [asyncio.create_task(page(c)) for c in counts]
        await asyncio.sleep(1.0)
        ready.set()
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stuck.close()
        return {
            "bytes": sum(c[0] for c in counts),
            "snapshots": sum(c[1] for c in counts),
            "pages_fed": sum(1 for c in counts if c[1]),
        }

    results.put(asyncio.run(main()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    args = parser.parse_args()
    latency_s = 5.0 if args.quick else 20.0
    # The stuck page is closed once its socket has not drained for 10 s (WRITE_TIMEOUT_S).
    pages_s = latency_s + 15.0

    with (
        tempfile.TemporaryDirectory(prefix="fieldlink-bench-web-") as tmp_name,
        Mosquitto() as broker,
    ):
        tmp = Path(tmp_name)
        master, slave = os.openpty()
        tty.setraw(slave)
        link = tmp / "gps0"
        link.symlink_to(os.ttyname(slave))
        http_port = free_port()
        daemon = start_daemon(tmp, broker, str(link), http_port)
        try:
            quiet = measure_latency(broker, master, latency_s)
            print(json.dumps({"figure": "latency", "pages": 0, "rate_per_s": 1000, **quiet,
                              "target_p99_ms": TARGET_P99_MS}))  # fmt: skip
            rss_before = peak_rss_mb(daemon.pid)

            ctx = mp.get_context("spawn")
            ready = ctx.Event()
            results: Queue[Any] = ctx.Queue()
            proc = ctx.Process(target=readers, args=(http_port, PAGES, pages_s, ready, results))
            proc.start()
            if not ready.wait(30):
                raise RuntimeError("the pages did not open")
            open_feeds = metric(http_port, "fieldlink_http_clients")
            started = time.monotonic()
            watched = measure_latency(broker, master, latency_s)
            print(json.dumps({"figure": "latency", "pages": PAGES, "stuck_pages": 1,
                              "rate_per_s": 1000, **watched,
                              "target_p99_ms": TARGET_P99_MS}))  # fmt: skip
            remaining = pages_s - (time.monotonic() - started)
            time.sleep(max(0.0, remaining - 1.0))
            closed_slow = metric(http_port, "fieldlink_http_clients_closed_slow_total")
            got = results.get(timeout=pages_s + 60)
            proc.join(30)
            print(
                json.dumps(
                    {
                        "figure": "pages",
                        "pages": PAGES,
                        "open_feeds_seen": open_feeds,
                        "pages_fed": got["pages_fed"],
                        "frames_per_page_per_s": round(got["snapshots"] / PAGES / pages_s, 2),
                        "mb_sent": round(got["bytes"] / 1e6, 1),
                        "stuck_page_closed": closed_slow >= 1,
                        "feeds_after_pages_closed": metric(http_port, "fieldlink_http_clients"),
                        "peak_rss_mb_before_pages": round(rss_before, 1),
                        "peak_rss_mb_after_pages": round(peak_rss_mb(daemon.pid), 1),
                    }
                )
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
            os.close(master)
            os.close(slave)
    return 0


if __name__ == "__main__":
    sys.exit(main())
