"""The configuration as the rest of the gateway sees it: frozen dataclasses, read once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeVar

from gateway.model import DeviceRef
from gateway.urls import parse_link_url

T = TypeVar("T")


PASSWORD_ENV: Final = "FIELDLINK_MQTT_PASSWORD"  # noqa: S105 - a variable name, not a secret
DEFAULT_HTTP_LISTEN: Final = "127.0.0.1:9108"
HTTP_LANGUAGES: Final = ("zh-en", "zh", "en")
"""Labels of the status page: both languages (Chinese first), or one."""
DEFAULT_DATA_DIR: Final = "/var/lib/fieldlink"
DEFAULT_MQTT_URL: Final = "mqtt://127.0.0.1:1883"
MQTT_DEFAULT_PORTS: Final[Mapping[str, int]] = MappingProxyType({"mqtt": 1883, "mqtts": 8883})
BAUDRATES: Final = (
    300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000,
    576000, 921600,
)  # fmt: skip
"""URL schemes of network links; a link URL starting with ``/`` is a serial device ("serial")."""


# --- the dataclasses -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    id: str
    data_dir: Path
    log_level: str = "info"
    max_implicit_units: int = 1000
    """Devices heard but not listed become units up to this many; the rest are counted."""
    max_fix_age_s: float = 86400.0
    """A live position whose fix is older than this is not published."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The broker session. ``url`` is normalised to ``scheme://host:port``."""

    url: str
    scheme: str
    host: str
    port: int
    base_topic: str = "fieldlink"
    username: str = ""
    password: str = ""
    client_id: str = ""  # parse_config fills in f"fieldlink-{gateway.id}"
    session_expiry_s: int = 86400
    keepalive_s: int = 30
    protocol: str = "5"
    health_interval_s: float = 30.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    outbox_max_rows: int = 100_000
    max_inbound_bytes: int = 262_144
    response_topic_prefixes: tuple[str, ...] = ()
    """Where MQTT 5 response topics may point besides the gateway's own ``response/`` tree."""
    password_file: Path | None = None  # where the password came from, if from a file

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The operator's web server: ``/metrics`` for Prometheus and the status page at ``/``.

    ``listen`` is normalised to ``host:port`` (``[v6]:port``); basic auth is on when
    ``password`` is set (read from ``password_file``, never from the config itself).
    """

    enabled: bool = True
    listen: str = DEFAULT_HTTP_LISTEN
    host: str = "127.0.0.1"
    port: int = 9108
    username: str = ""
    password: str = ""
    password_file: Path | None = None
    language: str = "zh-en"
    max_clients: int = 256
    """Open status pages (live streams) served at once; one more is answered 503."""
    unit_metrics: bool = False
    """Per-unit series (``unit`` label) for the configured units; implicit units never get one."""

    @property
    def auth(self) -> bool:
        return bool(self.password)


@dataclass(frozen=True, slots=True)
class SlaConfig:
    """Targets in seconds from the task's creation, and how long before a deadline to escalate."""

    acknowledge_s: float = 60
    contact_s: float = 180
    on_scene_s: float = 480
    feedback_s: float = 3600
    close_s: float = 86400
    escalate_before_s: float = 10
    # The centre's goals: the percentage of tasks that should reach each stage within its target.
    goal_acknowledge: float = 95
    goal_contact: float = 90
    goal_on_scene: float = 90
    goal_feedback: float = 90
    goal_close: float = 95

    def target_s(self, stage: str) -> float:
        """The target of a stage of the five clocks, in seconds from the task's creation."""
        return float(getattr(self, SLA_CLOCKS[stage][0]))

    def goal(self, stage: str) -> float:
        """The centre's goal for a stage, in percent of tasks within the target."""
        return float(getattr(self, SLA_CLOCKS[stage][1]))


SLA_CLOCKS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "acknowledged": ("acknowledge_s", "goal_acknowledge"),
        "contacted": ("contact_s", "goal_contact"),
        "on_scene": ("on_scene_s", "goal_on_scene"),
        "feedback": ("feedback_s", "goal_feedback"),
        "closed": ("close_s", "goal_close"),
    }
)
"""The seed's five clocks, in order: stage -> (target key, goal key) of ``[sla]``."""


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """How tasks are delivered and how a person's replies are read.

    The vocabularies are matched against a reply with case, spaces and punctuation
    removed; the longest word that begins the reply wins.
    """

    accept: tuple[str, ...] = ("1", "ok", "yes", "y", "收到", "好", "好的", "明白", "是", "可以")
    decline: tuple[str, ...] = ("0", "no", "n", "拒绝", "不行", "不去", "去不了", "无法")
    contacted: tuple[str, ...] = ("已联系", "联系上", "已联系上", "联系了", "contacted")
    on_scene: tuple[str, ...] = ("到", "到达", "已到", "到了", "arrived", "onscene")
    closed: tuple[str, ...] = ("完成", "办结", "已完成", "处理完毕", "done", "closed")
    max_text_chars: int = 1000
    sends_per_device: int = 2
    poll_interval_s: float = 60.0
    poll_timeout_s: float = 30.0
    """Longest a ``poll_location`` request waits for the device's channel."""
    ref_in_text: bool = True


@dataclass(frozen=True, slots=True)
class SerialSettings:
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One link. ``options`` holds the keys of its protocol's spec
    (``gateway/drivers/<p>/spec.py``), defaults filled in, lists as tuples; ``unit`` is set for
    nmea links only (the receiver's unit)."""

    name: str
    protocol: str
    url: str
    serial: SerialSettings = field(default_factory=SerialSettings)
    unit: str | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    enabled: bool = True
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def transport(self) -> str:
        """``serial``, ``tcp``, ``udp``, ``listen`` or ``udp-listen``."""
        return "serial" if self.url.startswith("/") else self.url.partition("://")[0]

    @property
    def endpoint(self) -> tuple[str, int] | None:
        """``(host, port)`` of a network link, ``None`` for a serial one."""
        endpoint = parse_link_url(self.url)
        return None if endpoint.kind == "serial" else (endpoint.host, endpoint.port)

    def option(self, key: str, kind: type[T]) -> T:
        """A protocol option, type-checked for mypy: ``link.option("kiss_port", int)``."""
        value = self.options[key]
        if not isinstance(value, kind):
            raise TypeError(f"link {self.name}: option {key} is {type(value).__name__}, not {kind}")
        return value


@dataclass(frozen=True, slots=True)
class UnitConfig:
    id: str
    name: str
    devices: tuple[DeviceRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewayConfig
    mqtt: MqttConfig
    sla: SlaConfig = field(default_factory=SlaConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    links: tuple[LinkConfig, ...] = ()
    units: tuple[UnitConfig, ...] = ()
    source: Path | None = None

    def link(self, name: str) -> LinkConfig | None:
        return next((link for link in self.links if link.name == name), None)
