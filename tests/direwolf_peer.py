"""Two direwolf 1.6 instances joined by simulated audio, for end-to-end tests (stdlib only).

How the pieces fit (facts from ``../shared/notes/direwolf-peer.md`` section 3)::

    client --KISS/TCP--> dw1 --AFSK--> ALSA "file" PCM "|relay" --UDP--> dw2 --KISS/TCP--> client
    and back the same way (dw2 -> relay -> UDP -> dw1).

* direwolf takes audio input from UDP (``ADEVICE UDP:<port> <out>``) but writes output only to
  ALSA, so each instance transmits into an ALSA ``file`` PCM whose file is a pipe to this module's
  relay (``python direwolf_peer.py relay ...``); ALSA reads ``$HOME/.asoundrc``, so each pair gets
  its own HOME in a temporary directory.
* The relay sends 10 ms datagrams at a steady pace, filled with silence when direwolf is not
  transmitting: without that the receiver's carrier detect never drops and it never transmits.
* KISS ports must be in 1024..49151 (direwolf silently replaces others), so ports are picked there.
* direwolf binds every interface (no bind option in 1.6): run where that is acceptable.

The relays are children of direwolf (alsa-lib starts them); they exit on EOF when direwolf closes
the PCM. :meth:`DirewolfPair.stop` checks that none survives (and ends any that does, by PID).
"""

from __future__ import annotations

import array
import contextlib
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

RATE = 44100
PORT_RANGE = (20000, 49151)
READY_TIMEOUT_S = 10.0
FAST_TIMING = ("TXDELAY 15", "TXTAIL 5", "PERSIST 255", "SLOTTIME 5")
DIGIPEAT_WIDE = "DIGIPEAT 0 0 ^WIDE[3-7]-[1-7]$|^TEST$ ^WIDE[12]-[12]$ TRACE"


def free_ports(count: int) -> list[int]:
    """Ports in 20000..49151 free for both TCP and UDP right now."""
    found: list[int] = []
    while len(found) < count:
        port = random.randint(*PORT_RANGE)
        if port in found:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind(("0.0.0.0", port))  # noqa: S104 - direwolf binds all interfaces
        except OSError:
            continue
        found.append(port)
    return found


class DirewolfError(RuntimeError):
    """A direwolf instance did not start; the message names its log."""


class DirewolfPair:
    """Start with :meth:`start` (or ``with``); ``kiss1``/``kiss2`` are the KISS TCP ports."""

    def __init__(
        self,
        workdir: Path,
        *,
        calls: tuple[str, str] = ("BH4ABC-9", "BG5XYZ-7"),
        speed: float = 2.0,
        fast: bool = True,
        digipeat_second: bool = False,
    ) -> None:
        self.workdir = workdir
        self.calls = calls
        self.speed = speed
        self.fast = fast
        self.digipeat_second = digipeat_second
        self.udp1, self.udp2, self.kiss1, self.kiss2 = free_ports(4)
        self._procs: list[subprocess.Popen[bytes]] = []

    def _relay_command(self, udp_port: int) -> str:
        # The workdir rides along as a marker, so leftover relays of this pair can be found.
        script = Path(__file__).resolve()
        return f"{sys.executable} {script} relay {udp_port} {self.speed} {self.workdir}"

    def _conf(self, name: str, udp_in: int, pcm_out: str, call: str, kiss: int) -> Path:
        lines = [
            f"ADEVICE UDP:{udp_in} {pcm_out}",
            f"ARATE {RATE}",
            "ACHANNELS 1",
            "CHANNEL 0",
            f"MYCALL {call}",
            "MODEM 1200",
            *(FAST_TIMING if self.fast else ()),
            "AGWPORT 0",
            f"KISSPORT {kiss}",
        ]
        if name == "dw2" and self.digipeat_second:
            lines.append(DIGIPEAT_WIDE)
        path = self.workdir / f"{name}.conf"
        path.write_text("\n".join(lines) + "\n", encoding="ascii")
        return path

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> DirewolfPair:
        if shutil.which("direwolf") is None:
            raise DirewolfError("direwolf is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / ".asoundrc").write_text(
            "".join(
                f'pcm.{name} {{ type file slave.pcm "null" file "|{self._relay_command(udp)}" '
                f'format "raw" }}\n'
                for name, udp in (("dw1tx", self.udp2), ("dw2tx", self.udp1))
            ),
            encoding="ascii",
        )
        env = {**os.environ, "HOME": str(self.workdir), "PYTHONDONTWRITEBYTECODE": "1"}
        stations = (
            ("dw1", self.udp1, "dw1tx", self.calls[0], self.kiss1),
            ("dw2", self.udp2, "dw2tx", self.calls[1], self.kiss2),
        )
        try:
            for name, udp, pcm, call, kiss in stations:
                conf = self._conf(name, udp, pcm, call, kiss)
                with (self.workdir / f"{name}.log").open("wb") as log_file:
                    self._procs.append(
                        subprocess.Popen(
                            ["direwolf", "-c", str(conf), "-t", "0", "-q", "hd"],
                            stdin=subprocess.DEVNULL,
                            stdout=log_file,
                            stderr=subprocess.STDOUT,
                            env=env,
                            cwd=self.workdir,
                        )
                    )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = {"dw1": self.kiss1, "dw2": self.kiss2}
        while pending:
            for name, port in list(pending.items()):
                text = self.log(name)
                if "Bind failed" in text:
                    raise DirewolfError(f"{name}: a port is taken; log {self.workdir}/{name}.log")
                if f"KISS TCP client application 0 on port {port} " in text:
                    del pending[name]
            for proc in self._procs:
                if proc.poll() is not None:
                    raise DirewolfError(
                        f"direwolf exited with {proc.returncode}; logs in {self.workdir}"
                    )
            if time.monotonic() > deadline:
                raise DirewolfError(
                    f"direwolf not ready after {READY_TIMEOUT_S} s: {sorted(pending)}"
                )
            time.sleep(0.05)

    def relays(self) -> list[int]:
        """PIDs of this pair's relay processes still running."""
        marker = str(self.workdir).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"relay" in cmdline and marker in cmdline and b"direwolf_peer" in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> list[int]:
        """Stop both instances by PID; returns relay PIDs that had to be killed (should be none)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._procs.clear()
        deadline = time.monotonic() + 3.0
        leftover = self.relays()
        while leftover and time.monotonic() < deadline:
            time.sleep(0.05)
            leftover = self.relays()
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leftover

    def __enter__(self) -> DirewolfPair:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- the relay (runs as its own process, started by alsa-lib) ----------------------------------


def relay(udp_port: int, speed: float, gain: float = 0.5) -> None:
    """stdin (raw S16_LE mono PCM at 44.1 kHz) -> 10 ms UDP datagrams at ``speed`` x real time,
    silence whenever no audio is waiting; returns at EOF (direwolf closed the PCM)."""
    chunk_bytes = RATE // 100 * 2
    period_s = 0.01 / speed
    silence = bytes(chunk_bytes)
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)
    pending = bytearray()
    due = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        while True:
            readable, _, _ = select.select([fd], [], [], max(0.0, due - time.monotonic()))
            if readable:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    return
                pending += data
                continue
            if pending:
                take = min(len(pending), chunk_bytes) & ~1
                samples = array.array("h", bytes(pending[:take]))
                del pending[:take]
                scaled = array.array("h", (int(s * gain) for s in samples))
                datagram = scaled.tobytes().ljust(chunk_bytes, b"\0")
            else:
                datagram = silence
            out.sendto(datagram, ("127.0.0.1", udp_port))
            due += period_s
            if time.monotonic() - due > 0.2:  # far behind (suspended): resume, do not burst
                due = time.monotonic()


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "relay":
        relay(int(argv[1]), float(argv[2]))
        return 0
    print("usage: direwolf_peer.py relay UDP_PORT SPEED [MARKER]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
