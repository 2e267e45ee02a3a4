"""A local MQTT broker as a child process, for ``fieldlink demo``, tests and benchmarks.

mosquitto is used when installed (loopback only, a private temporary directory,
persistence on, queue limits set deliberately); otherwise the pip-installable
``iotcore`` broker (the ``demo`` extra), which lacks persistence across restarts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from gateway.errors import FieldlinkError

START_TIMEOUT_S = 10.0


class BrokerUnavailable(FieldlinkError):
    """No broker could be started here."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"no broker on {host}:{port} after {timeout_s} s") from exc
            time.sleep(0.02)


class Mosquitto:
    """A private mosquitto on a loopback port; restartable, with its state kept across restarts."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        extra_lines: Sequence[str] = (),
        stay_root: bool = True,
    ) -> None:
        """``extra_lines`` are appended to the configuration (a bridge, an ACL, limits: a
        later line overrides an earlier global one). ``stay_root=False`` lets a broker
        started as root drop to the ``mosquitto`` user, as a packaged broker does."""
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            raise BrokerUnavailable("mosquitto is not installed")
        self.binary = binary
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fieldlink-mosquitto-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {workdir / 'data'}/",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            f"log_dest file {workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "set_tcp_nodelay true",
        ]
        if os.geteuid() == 0 and stay_root:
            lines.append("user root")  # else it drops to 'mosquitto' and cannot write our dir
        lines.extend(extra_lines)
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(  # noqa: S603 - our own binary path and config file
            [self.binary, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.host, self.port, START_TIMEOUT_S)
        except BrokerUnavailable:
            self.kill()
            raise

    def stop(self) -> None:
        """SIGTERM (the broker saves its state) and wait."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


IOTCORE_CONFIG = """\
id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v5.1]
name = "v5-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
"""


class EmbeddedBroker:
    """The ``iotcore`` (rumqttd) broker from PyPI, MQTT 5 on a loopback port."""

    def __init__(self) -> None:
        try:
            import iotcore  # noqa: PLC0415 - optional extra, imported only when used
        except ImportError as exc:
            raise BrokerUnavailable(
                "neither mosquitto nor the 'iotcore' package is installed"
            ) from exc
        self._tmp = tempfile.TemporaryDirectory(prefix="fieldlink-broker-")
        self.host = "127.0.0.1"
        self.port = free_port()
        conf = Path(self._tmp.name) / "rumqttd.toml"
        conf.write_text(IOTCORE_CONFIG.format(port=self.port))
        self._broker = iotcore.Broker(port=free_port(), listen=self.host, config_path=str(conf))

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self._broker.__enter__()
        wait_for_port(self.host, self.port, START_TIMEOUT_S)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._broker.__exit__(exc_type, exc, tb)
        self._tmp.cleanup()


def local_broker(kind: str = "auto") -> Mosquitto | EmbeddedBroker:
    """``auto``: mosquitto when installed, else the embedded one; or the one named."""
    if kind == "embedded":
        return EmbeddedBroker()
    try:
        return Mosquitto()
    except BrokerUnavailable:
        if kind == "mosquitto":
            raise
        return EmbeddedBroker()
