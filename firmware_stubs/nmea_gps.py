"""Simulated NMEA GPS receiver, built from our own ``encode_sentence``.

``NmeaGps`` is pure: each ``epoch()`` moves the receiver along its route by ``speed_kmh / rate_hz``
and returns that epoch's sentences as bytes, for a receiver profile:

``ublox``    GNRMC, GNVTG, GNGGA, one GNGSA per system (4.10 system ID), GP/GL/GA/GBGSV with signal
             ID, GNGLL, GNZDA (u-blox M8/M9 style)
``bd``       GNRMC, GNGGA, BDGSA, BDGSV, GPGSV, GPTXT (Chinese BeiDou module, BD talker)
``gps``      GPRMC, GPGGA, GPGSA, GPGSV
``minimal``  GPRMC, GPGGA (for benchmarks)

The I/O helpers below serve it over a pty (``serve_pty``, with a stable symlink and an "unplug" that
moves to a new pts) or TCP (``serve_tcp``); ``main`` is the command line
(``fieldlink simulate nmea-gps ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import tty
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from protocols.nmea.framing import encode_sentence

__all__ = ["DEFAULT_ROUTE", "PROFILES", "GpsPty", "NmeaGps", "main", "serve_pty", "serve_tcp"]

#: A loop around People's Square, Shanghai (31.2304 N, 121.4737 E), roughly along the streets.
DEFAULT_ROUTE: Final[tuple[tuple[float, float], ...]] = (
    (31.2304, 121.4737),
    (31.2330, 121.4712),
    (31.2357, 121.4745),
    (31.2341, 121.4793),
    (31.2299, 121.4801),
    (31.2281, 121.4760),
)
PROFILES: Final = ("ublox", "bd", "gps", "minimal")

_EARTH_RADIUS_M: Final = 6_371_008.8
_KNOTS_PER_KMH: Final = 1 / 1.852
#: Bytes queued for one TCP client beyond which its epochs are dropped (a slow reader).
TCP_CLIENT_BACKLOG_BYTES: Final = 64 * 1024
#: Largest batch of overdue epochs written at once when the loop falls behind a high rate.
MAX_EPOCHS_PER_WRITE: Final = 256

# Static sky per constellation: (talker, system id, signal id, [(prn, elevation, azimuth, snr)]).
_SKY: Final = (
    ("GP", 1, 1, [(2, 45, 120, 41), (5, 62, 45, 44), (12, 30, 210, 38), (15, 18, 300, 33),
                  (18, 71, 350, 46), (25, 25, 80, 35)]),
    ("GL", 2, 1, [(66, 40, 60, 39), (67, 55, 150, 42), (76, 20, 260, 31)]),
    ("GA", 3, 7, [(3, 44, 149, 40), (5, 42, 71, 39), (15, 56, 322, 41)]),
    ("GB", 4, 1, [(6, 58, 10, 43), (9, 35, 230, 37)]),
)  # fmt: skip


def _nmea_lat(lat: float) -> tuple[str, str]:
    # Integer arithmetic on 1e-5 minutes: no "60.00000" minutes from rounding.
    units = round(abs(lat) * 6_000_000)
    deg, rem = divmod(units, 6_000_000)
    return f"{deg:02d}{rem // 100_000:02d}.{rem % 100_000:05d}", "N" if lat >= 0 else "S"


def _nmea_lon(lon: float) -> tuple[str, str]:
    units = round(abs(lon) * 6_000_000)
    deg, rem = divmod(units, 6_000_000)
    return f"{deg:03d}{rem // 100_000:02d}.{rem % 100_000:05d}", "E" if lon >= 0 else "W"


def _gsv(talker: str, sats: Sequence[tuple[int, int, int, int]], signal_id: int | None,
         fixed: bool) -> bytes:  # fmt: skip
    """All GSV sentences of one constellation (four satellites per sentence)."""
    groups = [sats[i : i + 4] for i in range(0, len(sats), 4)] or [[]]
    out = []
    for n, group in enumerate(groups, 1):
        fields = [str(len(groups)), str(n), f"{len(sats):02d}"]
        for prn, elev, azim, snr in group:
            fields += [f"{prn:02d}", f"{elev:02d}", f"{azim:03d}", f"{snr:02d}" if fixed else ""]
        if signal_id is not None:
            fields.append(f"{signal_id:X}")
        out.append(encode_sentence(talker, "GSV", fields))
    return b"".join(out)


def _gsa(talker: str, prns: Sequence[int], system_id: int | None, fixed: bool) -> bytes:
    ids = [f"{p:02d}" for p in prns[:12]] if fixed else []
    fields = ["A", "3" if fixed else "1", *ids, *[""] * (12 - len(ids))]
    fields += ["1.8", "0.9", "1.5"] if fixed else ["99.99", "99.99", "99.99"]
    if system_id is not None:
        fields.append(str(system_id))
    return encode_sentence(talker, "GSA", fields)


class NmeaGps:
    """A GPS receiver going round ``route`` at ``speed_kmh``, ``rate_hz`` epochs a second."""

    def __init__(
        self,
        *,
        profile: str = "ublox",
        rate_hz: float = 1.0,
        route: Sequence[tuple[float, float]] = DEFAULT_ROUTE,
        speed_kmh: float = 30.0,
        cold_start_epochs: int = 0,
        start: datetime | None = None,
        altitude_m: float = 12.0,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}, expected one of {', '.join(PROFILES)}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        if len(route) < 1:
            raise ValueError("route needs at least one waypoint")
        if speed_kmh < 0 or cold_start_epochs < 0:
            raise ValueError("speed_kmh and cold_start_epochs must not be negative")
        self.profile = profile
        self.rate_hz = float(rate_hz)
        self.speed_kmh = float(speed_kmh)
        self.altitude_m = altitude_m
        self.cold_start_epochs = cold_start_epochs
        self.route = tuple(route)
        start = datetime.now(UTC) if start is None else start
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self.start = start.astimezone(UTC)
        # Enough decimals in the time of day that consecutive epochs never share one.
        self._decimals = min(6, max(2, math.ceil(math.log10(self.rate_hz) + 1e-9)))
        self._step_us = round(1_000_000 / self.rate_hz)
        # Route geometry in a local flat frame (metres), good enough for a few kilometres.
        self._m_per_deg_lat = math.pi * _EARTH_RADIUS_M / 180
        self._segments: list[tuple[float, float, float, float]] = []  # (lat, lon, length_m, course)
        pts = self.route
        for i, (lat0, lon0) in enumerate(pts):
            lat1, lon1 = pts[(i + 1) % len(pts)]
            north = (lat1 - lat0) * self._m_per_deg_lat
            east = (lon1 - lon0) * self._m_per_deg_lat * math.cos(math.radians(lat0))
            course = math.degrees(math.atan2(east, north)) % 360
            self._segments.append((lat0, lon0, math.hypot(north, east), course))
        self._loop_m = sum(s[2] for s in self._segments)
        self.epochs = 0  # epochs emitted so far
        self.distance_m = 0.0
        self.position: tuple[float, float] = self.route[0]  # (lat, lon) of the last epoch
        self.course_deg = self._segments[0][3]
        self.time = self.start  # receiver time of the last epoch
        # Sky sentences do not move with the receiver: build them once per fix state.
        self._sky = {fixed: self._sky_bytes(fixed) for fixed in (True, False)}

    @property
    def has_fix(self) -> bool:
        """Whether the last epoch reported a fix (False during the cold start epochs)."""
        return self.epochs > self.cold_start_epochs

    def _locate(self, distance_m: float) -> tuple[float, float, float]:
        if self._loop_m <= 0:
            lat, lon = self.route[0]
            return lat, lon, 0.0
        d = distance_m % self._loop_m
        for lat0, lon0, length, course in self._segments:
            if d <= length and length > 0:
                north = math.cos(math.radians(course)) * d / self._m_per_deg_lat
                east = (
                    math.sin(math.radians(course))
                    * d
                    / (self._m_per_deg_lat * math.cos(math.radians(lat0)))
                )
                return lat0 + north, lon0 + east, course
            d -= length
        lat, lon = self.route[0]
        return lat, lon, self._segments[0][3]

    def epoch(self) -> bytes:
        """Advance one epoch (position by speed/rate, time by 1/rate) and return its sentences."""
        if self.epochs:
            self.distance_m += self.speed_kmh / 3.6 / self.rate_hz
        lat, lon, course = self._locate(self.distance_m)
        self.position = (lat, lon)
        self.course_deg = course
        self.time = self.start + timedelta(microseconds=self._step_us * self.epochs)
        self.epochs += 1
        return self._sentences(self.has_fix)

    # --- sentence sets ----------------------------------------------------------------------------

    def _sky_bytes(self, fixed: bool) -> bytes:
        p = self.profile
        if p == "minimal":
            return b""
        if p == "gps":
            sats = _SKY[0][3]
            return _gsa("GP", [s[0] for s in sats], None, fixed) + _gsv("GP", sats, None, fixed)
        if p == "bd":
            gps, bds = _SKY[0][3], _SKY[3][3]
            return (
                _gsa("BD", [s[0] for s in bds], None, fixed)
                + _gsv("BD", bds, None, fixed)
                + _gsv("GP", gps, None, fixed)
                + encode_sentence("GP", "TXT", ["01", "01", "01", "ANTENNA OK"])
            )
        gsa = b"".join(_gsa("GN", [s[0] for s in sats], sid, fixed) for _, sid, _, sats in _SKY)
        gsv = b"".join(_gsv(talker, sats, sig, fixed) for talker, _, sig, sats in _SKY)
        return gsa + gsv

    def _sentences(self, fixed: bool) -> bytes:
        t = self.time
        frac = f"{t.microsecond:06d}"[: self._decimals]
        hms = f"{t.hour:02d}{t.minute:02d}{t.second:02d}.{frac}"
        ddmmyy = f"{t.day:02d}{t.month:02d}{t.year % 100:02d}"
        p = self.profile
        tk = "GN" if p in ("ublox", "bd") else "GP"
        nsats = str(sum(len(s[3]) for s in _SKY) if p == "ublox" else 8)
        if fixed:
            lat, ns = _nmea_lat(self.position[0])
            lon, ew = _nmea_lon(self.position[1])
            knots = f"{self.speed_kmh * _KNOTS_PER_KMH:.3f}"
            course = f"{self.course_deg:.2f}" if self.speed_kmh > 0 else ""
            rmc = [hms, "A", lat, ns, lon, ew, knots, course, ddmmyy, "", "", "A"]
            gga = [hms, lat, ns, lon, ew, "1", nsats.zfill(2), "0.9", f"{self.altitude_m:.1f}",
                   "M", "8.3", "M", "", ""]  # fmt: skip
        else:
            lat = ns = lon = ew = knots = course = ""
            rmc = [hms, "V", "", "", "", "", "", "", ddmmyy, "", "", "N"]
            gga = [hms, "", "", "", "", "0", "00", "99.99", "", "M", "", "M", "", ""]
        if p == "ublox":
            rmc.append("V")  # 4.10 nav status
        out = [encode_sentence(tk, "RMC", rmc)]
        if p == "ublox":
            kmh = f"{self.speed_kmh:.3f}" if fixed else ""
            mode = "A" if fixed else "N"
            out.append(
                encode_sentence(tk, "VTG", [course, "T", "", "M", knots, "N", kmh, "K", mode])
            )
        out.append(encode_sentence(tk, "GGA", gga))
        out.append(self._sky[fixed])
        if p == "ublox":
            status = "A" if fixed else "V"
            mode = "A" if fixed else "N"
            out.append(encode_sentence(tk, "GLL", [lat, ns, lon, ew, hms, status, mode]))
            out.append(
                encode_sentence(
                    tk, "ZDA", [hms, f"{t.day:02d}", f"{t.month:02d}", f"{t.year:04d}", "00", "00"]
                )
            )
        return b"".join(out)


# --- I/O: pacing, pty, TCP ------------------------------------------------------------------------


async def _pace(
    gps: NmeaGps,
    sink: Callable[[bytes], None],
    *,
    epochs: int | None,
    stop: asyncio.Event | None,
) -> None:
    """Call ``sink`` with each epoch on schedule (loop's monotonic clock: no drift; late: batch)."""
    loop = asyncio.get_running_loop()
    period = 1.0 / gps.rate_hz
    t0 = loop.time()
    sent = 0
    while (epochs is None or sent < epochs) and not (stop is not None and stop.is_set()):
        due = int((loop.time() - t0) / period) + 1  # epochs whose time has come
        batch = min(due - sent, MAX_EPOCHS_PER_WRITE)
        if epochs is not None:
            batch = min(batch, epochs - sent)
        if batch > 0:
            sink(b"".join(gps.epoch() for _ in range(batch)))
            sent += batch
            if epochs is not None and sent >= epochs:
                break
        delay = t0 + sent * period - loop.time()
        if stop is None:
            await asyncio.sleep(max(0.0, delay))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, delay))


class GpsPty:
    """A pty pair standing in for a serial GPS; ``path`` is the slave (what a reader opens).

    With ``link_path`` a symlink there always points at the current slave (replaced atomically).
    ``reopen()`` simulates unplugging and plugging back: a new pair, the symlink repointed, the old
    pair closed (its reader sees EOF/EIO). Writes that the pty cannot take are dropped, as a UART
    with nobody reading would.
    """

    def __init__(self, link_path: Path | None = None) -> None:
        self.link_path = link_path
        self.master_fd = -1
        self.slave_fd = -1
        self.path = ""
        self.dropped_bytes = 0
        self._reader_loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master_fd, self.slave_fd, self.path = master, slave, os.ttyname(slave)
        if self.link_path is not None:
            tmp = self.link_path.with_name(f".{self.link_path.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.path)
            tmp.replace(self.link_path)
        with contextlib.suppress(RuntimeError):
            self._watch(asyncio.get_running_loop())
        return self.path

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        # Drain whatever the reader writes to the "receiver" so its writes never block.
        loop.add_reader(self.master_fd, self._drain)
        self._reader_loop = loop

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.master_fd, 4096)

    def write(self, data: bytes) -> None:
        if self.master_fd < 0:
            return
        try:
            written = os.write(self.master_fd, data)
        except (BlockingIOError, OSError):
            written = 0
        self.dropped_bytes += len(data) - written

    def _close_pair(self) -> None:
        if self._reader_loop is not None and self.master_fd >= 0:
            self._reader_loop.remove_reader(self.master_fd)
            self._reader_loop = None
        for fd in (self.master_fd, self.slave_fd):
            if fd >= 0:
                os.close(fd)
        self.master_fd = self.slave_fd = -1

    def reopen(self) -> str:
        old_master, old_slave, old_loop = self.master_fd, self.slave_fd, self._reader_loop
        self._reader_loop = None
        path = self.open()
        if old_loop is not None:
            old_loop.remove_reader(old_master)
        os.close(old_master)
        os.close(old_slave)
        return path

    def close(self) -> None:
        self._close_pair()
        if self.link_path is not None and self.link_path.is_symlink():
            with contextlib.suppress(OSError):
                if os.readlink(self.link_path) == self.path:
                    self.link_path.unlink()


async def serve_pty(
    gps: NmeaGps,
    *,
    link_path: Path | None = None,
    epochs: int | None = None,
    stop: asyncio.Event | None = None,
    pty: GpsPty | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Write epochs into a pty at ``gps.rate_hz`` until ``epochs`` are done or ``stop`` is set.

    Pass your own ``GpsPty`` (not yet opened) to call ``reopen()`` on it while serving. ``on_ready``
    gets the path to open (the symlink if any, else the slave) once the pty exists.
    """
    device = pty if pty is not None else GpsPty(link_path)
    device.open()
    try:
        if on_ready is not None:
            on_ready(str(device.link_path) if device.link_path is not None else device.path)
        await _pace(gps, device.write, epochs=epochs, stop=stop)
    finally:
        device.close()


async def serve_tcp(
    gps: NmeaGps,
    host: str,
    port: int,
    *,
    epochs: int | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Stream the same epochs to every connected client (``tcp://host:port`` for the gateway).

    ``port=0`` picks a free port; ``on_ready`` gets ``"host:port"`` once listening. A client that
    does not keep up loses epochs rather than making memory grow.
    """
    clients: set[asyncio.StreamWriter] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.add(writer)
        try:
            while await reader.read(4096):  # discard input; returns b"" when the client leaves
                pass
        except OSError:
            pass
        finally:
            clients.discard(writer)
            writer.close()

    def broadcast(data: bytes) -> None:
        for writer in list(clients):
            if writer.is_closing():
                clients.discard(writer)
            elif writer.transport.get_write_buffer_size() < TCP_CLIENT_BACKLOG_BYTES:
                writer.write(data)

    server = await asyncio.start_server(accept, host, port)
    try:
        if on_ready is not None:
            sock_host, sock_port = server.sockets[0].getsockname()[:2]
            on_ready(f"{sock_host}:{sock_port}")
        await _pace(gps, broadcast, epochs=epochs, stop=stop)
        for writer in list(clients):
            with contextlib.suppress(OSError):
                await writer.drain()
    finally:
        server.close()
        for writer in list(clients):
            writer.close()
        await server.wait_closed()


# --- command line ---------------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fieldlink simulate nmea-gps",
        description="Simulated NMEA GPS receiver on a pty or a TCP port.",
    )
    ap.add_argument("--profile", choices=PROFILES, default="ublox")
    ap.add_argument("--rate", type=float, default=1.0, help="epochs per second (default 1)")
    ap.add_argument("--speed-kmh", type=float, default=30.0)
    ap.add_argument("--altitude-m", type=float, default=12.0)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--pty", type=Path, metavar="PATH", help="symlink to keep at the pts")
    where.add_argument("--tcp", type=_host_port, metavar="HOST:PORT", help="serve over TCP")
    ap.add_argument("--epochs", type=int, default=None, help="stop after N epochs")
    ap.add_argument("--cold-start", type=int, default=0, metavar="N", help="N epochs without fix")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; prints where it serves (one line). 0 when done or stopped, 2 on usage."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        gps = NmeaGps(
            profile=args.profile,
            rate_hz=args.rate,
            speed_kmh=args.speed_kmh,
            cold_start_epochs=args.cold_start,
            altitude_m=args.altitude_m,
        )
    except ValueError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.epochs is not None and args.epochs < 0:
        print(f"{parser.prog}: error: --epochs must not be negative", file=sys.stderr)
        return 2

    def ready(where: str) -> None:
        print(where, flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            if args.tcp is not None:
                host, port = args.tcp
                await serve_tcp(gps, host, port, epochs=args.epochs, stop=stop, on_ready=ready)
            else:
                await serve_pty(
                    gps, link_path=args.pty, epochs=args.epochs, stop=stop, on_ready=ready
                )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
