"""Reading ``config.toml``: the tables in order, then the references between links and units."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import SplitResult, urlsplit

from gateway.config.addresses import (
    address_rule,
)
from gateway.config.model import (
    MQTT_DEFAULT_PORTS,
    PASSWORD_ENV,
    Config,
    DispatchConfig,
    GatewayConfig,
    HttpConfig,
    LinkConfig,
    MqttConfig,
    SerialSettings,
    SlaConfig,
    UnitConfig,
)
from gateway.config.tables import (
    DISPATCH_OPTIONS,
    GATEWAY_OPTIONS,
    HTTP_OPTIONS,
    LINK_OPTIONS,
    MQTT_OPTIONS,
    SERIAL_OPTIONS,
    SLA_OPTIONS,
    TLS_KEYS,
    UNIT_OPTIONS,
)
from gateway.drivers.registry import PROTOCOLS, not_built_message
from gateway.errors import ConfigError
from gateway.model import DeviceRef
from gateway.options import (
    OptionSpec,
    as_float,
    as_int,
    as_table,
    as_words,
    join_key,
    read_options,
    reject_unknown,
    suggestion,
    wrong_type,
)
from gateway.urls import parse_link_url

# --- parsing -------------------------------------------------------------------------------------


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; relative paths inside resolve against its directory."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("", f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError("", f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: TOML syntax error: {exc}") from None
    cfg = parse_config(
        data, base_dir=path.absolute().parent, env=os.environ if env is None else env
    )
    return dataclasses.replace(cfg, source=path.absolute())


def parse_config(data: Mapping[str, object], *, base_dir: Path, env: Mapping[str, str]) -> Config:
    """Validate a parsed TOML document; ``source`` stays ``None`` (:func:`load_config` sets it)."""
    reject_unknown(data, "", ("gateway", "mqtt", "sla", "dispatch", "http", "links", "units"))
    gateway = _parse_gateway(as_table(data.get("gateway", {}), "gateway"), base_dir)
    mqtt = _parse_mqtt(as_table(data.get("mqtt", {}), "mqtt"), base_dir, env, gateway)
    sla = _parse_sla(as_table(data.get("sla", {}), "sla"))
    dispatch = _parse_dispatch(as_table(data.get("dispatch", {}), "dispatch"))
    http = _parse_http(as_table(data.get("http", {}), "http"), base_dir)
    links = [_parse_link(table, f"links[{i}]") for i, table in _array_of_tables(data, "links")]
    _check_unique_links(links)
    bound_links, units = _parse_units(_array_of_tables(data, "units"), links)
    return Config(
        gateway=gateway,
        mqtt=mqtt,
        sla=sla,
        dispatch=dispatch,
        http=http,
        links=bound_links,
        units=units,
    )


def _array_of_tables(
    data: Mapping[str, object], name: str
) -> list[tuple[int, Mapping[str, object]]]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise wrong_type(name, f"an array of tables ([[{name}]])", value)
    return [(i, as_table(item, f"{name}[{i}]")) for i, item in enumerate(value)]


def _resolve(base_dir: Path, value: str) -> Path:
    return base_dir / value


def _parse_gateway(table: Mapping[str, object], base_dir: Path) -> GatewayConfig:
    reject_unknown(table, "gateway", GATEWAY_OPTIONS)
    v = read_options(table, "gateway", GATEWAY_OPTIONS)
    return GatewayConfig(
        id=str(v["id"]),
        data_dir=_resolve(base_dir, str(v["data_dir"])),
        log_level=str(v["log_level"]),
        max_implicit_units=as_int(v["max_implicit_units"]),
        max_fix_age_s=as_float(v["max_fix_age_s"]),
    )


def _parse_mqtt(
    table: Mapping[str, object], base_dir: Path, env: Mapping[str, str], gateway: GatewayConfig
) -> MqttConfig:
    if "password" in table:
        raise ConfigError(
            "mqtt.password",
            f"secrets are never written in the config: use mqtt.password_file or {PASSWORD_ENV}",
        )
    reject_unknown(table, "mqtt", MQTT_OPTIONS)
    v = read_options(table, "mqtt", MQTT_OPTIONS)
    scheme, host, port = _parse_mqtt_url(str(v["url"]))
    if scheme != "mqtts":
        for key in TLS_KEYS:
            if v[key]:
                raise ConfigError(f"mqtt.{key}", f"{key} only applies to mqtts:// URLs")
    tls_files: dict[str, Path | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        tls_files[key] = _existing_file(base_dir, str(v[key]), f"mqtt.{key}") if v[key] else None
    if tls_files["key_file"] is not None and tls_files["cert_file"] is None:
        raise ConfigError("mqtt.key_file", "key_file needs cert_file")
    _check_back_off(v, "mqtt")
    password, password_file = _mqtt_password(str(v["password_file"]), base_dir, env)
    username = str(v["username"])
    if password and not username and v["protocol"] == "3.1.1":
        raise ConfigError("mqtt.username", "MQTT 3.1.1 sends a password only with a username")
    client_id = str(v["client_id"]) or f"fieldlink-{gateway.id}"
    if len(client_id.encode()) > 65535 or "\0" in client_id:
        raise ConfigError("mqtt.client_id", "must be at most 65535 bytes of UTF-8 without NUL")
    url_host = f"[{host}]" if ":" in host else host
    return MqttConfig(
        url=f"{scheme}://{url_host}:{port}",
        scheme=scheme,
        host=host,
        port=port,
        base_topic=str(v["base_topic"]),
        username=username,
        password=password,
        client_id=client_id,
        session_expiry_s=as_int(v["session_expiry_s"]),
        keepalive_s=as_int(v["keepalive_s"]),
        protocol=str(v["protocol"]),
        health_interval_s=as_float(v["health_interval_s"]),
        reconnect_min_s=as_float(v["reconnect_min_s"]),
        reconnect_max_s=as_float(v["reconnect_max_s"]),
        ca_file=tls_files["ca_file"],
        cert_file=tls_files["cert_file"],
        key_file=tls_files["key_file"],
        tls_insecure=bool(v["tls_insecure"]),
        outbox_max_rows=as_int(v["outbox_max_rows"]),
        max_inbound_bytes=as_int(v["max_inbound_bytes"]),
        response_topic_prefixes=tuple(str(p) for p in as_words(v["response_topic_prefixes"])),
        password_file=password_file,
    )


def _parse_mqtt_url(url: str) -> tuple[str, str, int]:
    key = "mqtt.url"
    parts = _split_url(url, key)
    if parts.scheme not in MQTT_DEFAULT_PORTS:
        raise ConfigError(key, f"{url!r}: the scheme must be mqtt:// or mqtts://")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            key,
            "credentials do not belong in the URL: use mqtt.username, and mqtt.password_file or "
            + PASSWORD_ENV,
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(key, f"{url!r}: expected scheme://host[:port] and nothing after it")
    if not parts.hostname:
        raise ConfigError(key, f"{url!r}: no host")
    port = _url_port(parts, key) or MQTT_DEFAULT_PORTS[parts.scheme]
    return parts.scheme, parts.hostname, port


def _split_url(url: str, key: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise ConfigError(key, f"{url!r}: {exc}") from None


def _url_port(parts: SplitResult, key: str) -> int | None:
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(
            key, f"{parts.geturl()!r}: the port must be between 1 and 65535"
        ) from None
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(key, f"{parts.geturl()!r}: the port must be between 1 and 65535")
    return port


def _existing_file(base_dir: Path, value: str, key: str) -> Path:
    path = _resolve(base_dir, value)
    if not path.is_file():
        raise ConfigError(key, f"no such file: {path}")
    return path


def _mqtt_password(
    file_value: str, base_dir: Path, env: Mapping[str, str]
) -> tuple[str, Path | None]:
    from_env = env.get(PASSWORD_ENV, "")
    if not file_value:
        return from_env, None
    key = "mqtt.password_file"
    if from_env:
        raise ConfigError(key, f"both password_file and {PASSWORD_ENV} are set; use one")
    return _read_password_file(base_dir, file_value, key)


def _read_password_file(base_dir: Path, file_value: str, key: str) -> tuple[str, Path]:
    """A secret from a file: one trailing newline is not part of it; empty is an error."""
    path = _resolve(base_dir, file_value)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(key, f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(key, f"is a directory: {path}") from None
    except PermissionError:
        raise ConfigError(key, f"not readable by this user: {path}") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"not UTF-8 text: {path}") from None
    password = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
    if not password:
        raise ConfigError(key, f"is empty: {path}")
    return password, path


def _check_back_off(values: Mapping[str, object], path: str) -> None:
    low, high = as_float(values["reconnect_min_s"]), as_float(values["reconnect_max_s"])
    if low > high:
        raise ConfigError(
            join_key(path, "reconnect_min_s"),
            f"must not exceed reconnect_max_s ({low:g} > {high:g})",
        )


def _parse_http(table: Mapping[str, object], base_dir: Path) -> HttpConfig:
    if "password" in table:
        raise ConfigError(
            "http.password", "secrets are never written in the config: use http.password_file"
        )
    reject_unknown(table, "http", HTTP_OPTIONS)
    v = read_options(table, "http", HTTP_OPTIONS)
    host, port = _parse_listen(str(v["listen"]), "http.listen")
    username = str(v["username"])
    password, password_file = "", None
    if v["password_file"]:
        password, password_file = _read_password_file(
            base_dir, str(v["password_file"]), "http.password_file"
        )
        if not username:
            raise ConfigError("http.username", "basic auth (http.password_file) needs a username")
    elif username:
        raise ConfigError("http.username", "a username without http.password_file does nothing")
    if ":" in username:
        raise ConfigError("http.username", "basic auth usernames cannot contain ':'")
    url_host = f"[{host}]" if ":" in host else host
    return HttpConfig(
        enabled=bool(v["enabled"]),
        listen=f"{url_host}:{port}",
        host=host,
        port=port,
        username=username,
        password=password,
        password_file=password_file,
        language=str(v["language"]),
        max_clients=as_int(v["max_clients"]),
        unit_metrics=bool(v["unit_metrics"]),
    )


def _parse_listen(value: str, key: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> ``(host, port)``."""
    parts = _split_url(f"http://{value}", key)
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(key, f"{value!r}: expected host:port (an IPv6 host as [::1]:9108)")
    if not parts.hostname:
        raise ConfigError(key, f"{value!r}: no host (0.0.0.0 listens on every address)")
    port = _url_port(parts, key)
    if port is None:
        raise ConfigError(key, f"{value!r}: no port")
    return parts.hostname, port


def _parse_sla(table: Mapping[str, object]) -> SlaConfig:
    reject_unknown(table, "sla", SLA_OPTIONS)
    v = {name: as_float(value) for name, value in read_options(table, "sla", SLA_OPTIONS).items()}
    deadlines = {name: value for name, value in v.items() if name.endswith("_s")}
    del deadlines["escalate_before_s"]
    first = min(deadlines, key=deadlines.__getitem__)
    if v["escalate_before_s"] >= deadlines[first]:
        raise ConfigError(
            "sla.escalate_before_s", f"must be less than {first} ({deadlines[first]:g})"
        )
    return SlaConfig(**v)


def _parse_dispatch(table: Mapping[str, object]) -> DispatchConfig:
    reject_unknown(table, "dispatch", DISPATCH_OPTIONS)
    v = read_options(table, "dispatch", DISPATCH_OPTIONS)
    return DispatchConfig(
        accept=as_words(v["accept"]),
        decline=as_words(v["decline"]),
        contacted=as_words(v["contacted"]),
        on_scene=as_words(v["on_scene"]),
        closed=as_words(v["closed"]),
        max_text_chars=as_int(v["max_text_chars"]),
        sends_per_device=as_int(v["sends_per_device"]),
        poll_interval_s=as_float(v["poll_interval_s"]),
        poll_timeout_s=as_float(v["poll_timeout_s"]),
        ref_in_text=bool(v["ref_in_text"]),
    )


# --- links ---------------------------------------------------------------------------------------


def _link_transport(url: str, key: str) -> str:
    try:
        return parse_link_url(url).kind
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def _parse_link(table: Mapping[str, object], path: str) -> LinkConfig:
    # Keys no link has first (a typo of a required key is reported as the typo), then keys this
    # link's protocol and transport do not take.
    any_link = {*LINK_OPTIONS, *SERIAL_OPTIONS}.union(*(p.options for p in PROTOCOLS.values()))
    reject_unknown(table, path, any_link)
    common = read_options(table, path, LINK_OPTIONS)
    protocol = str(common["protocol"])
    spec = PROTOCOLS.get(protocol)
    if spec is None:
        raise ConfigError(
            f"{path}.protocol",
            f"unknown protocol {protocol!r}{suggestion(protocol, PROTOCOLS)}; "
            f"one of {', '.join(PROTOCOLS)}",
        )
    if not spec.built:
        raise ConfigError(f"{path}.protocol", not_built_message(protocol))
    url = str(common["url"])
    transport = _link_transport(url, f"{path}.url")
    if transport not in spec.transports:
        kinds = ", ".join(sorted(spec.transports))
        raise ConfigError(f"{path}.url", f"{protocol} links run over {kinds}, not {transport}")
    specs = spec.options
    allowed = set(LINK_OPTIONS) | set(specs)
    if transport == "serial":
        allowed |= set(SERIAL_OPTIONS)

    def explain(key: str) -> str | None:
        if key in SERIAL_OPTIONS:
            return f"{key} only applies to serial links (url starting with /)"
        owners = [name for name, p in PROTOCOLS.items() if key in p.options]
        return f"{key} only applies to {', '.join(owners)} links" if owners else None

    reject_unknown(table, path, allowed, explain)
    for name, option in specs.items():
        if name in table and option.transports is not None and transport not in option.transports:
            kinds = " or ".join(f"{t}://" for t in sorted(option.transports))
            raise ConfigError(f"{path}.{name}", f"{name} only applies to {kinds} links")
    _check_back_off(common, path)
    applicable = {
        n: s for n, s in specs.items() if s.transports is None or transport in s.transports
    }
    options = read_options(table, path, applicable)
    unit = options.pop("unit", None)
    serial = (
        _parse_serial(table, path, spec.serial_options(SERIAL_OPTIONS))
        if transport == "serial"
        else SerialSettings()
    )
    return LinkConfig(
        name=str(common["name"]),
        protocol=protocol,
        url=url,
        serial=serial,
        unit=None if unit is None else str(unit),
        reconnect_min_s=as_float(common["reconnect_min_s"]),
        reconnect_max_s=as_float(common["reconnect_max_s"]),
        enabled=bool(common["enabled"]),
        options=MappingProxyType(options),
    )


def _parse_serial(
    table: Mapping[str, object], path: str, specs: Mapping[str, OptionSpec]
) -> SerialSettings:
    v = read_options(table, path, specs)
    return SerialSettings(
        baudrate=as_int(v["baudrate"]),
        bytesize=as_int(v["bytesize"]),
        parity=str(v["parity"]),
        stopbits=as_float(v["stopbits"]),
        rtscts=bool(v["rtscts"]),
        xonxoff=bool(v["xonxoff"]),
    )


def _check_unique_links(links: list[LinkConfig]) -> None:
    names: dict[str, int] = {}
    bound: dict[str, int] = {}  # a device path or a listening address can be opened once
    for i, link in enumerate(links):
        if link.name in names:
            raise ConfigError(
                f"links[{i}].name",
                f"duplicate link name {link.name!r} (also links[{names[link.name]}])",
            )
        names[link.name] = i
        if link.enabled and link.transport in ("serial", "listen", "udp-listen"):
            if link.url in bound:
                raise ConfigError(
                    f"links[{i}].url", f"{link.url} is already used by links[{bound[link.url]}]"
                )
            bound[link.url] = i


# --- units ---------------------------------------------------------------------------------------


def _parse_units(
    tables: list[tuple[int, Mapping[str, object]]], links: list[LinkConfig]
) -> tuple[tuple[LinkConfig, ...], tuple[UnitConfig, ...]]:
    """The units, and the links with every nmea link bound to its unit."""
    links = list(links)
    by_name = {link.name: link for link in links}
    ids: dict[str, int] = {}
    units: list[tuple[str, str, list[DeviceRef]]] = []
    owner: dict[DeviceRef, tuple[str, str]] = {}  # device -> (unit id, key path of the entry)
    for i, table in tables:
        path = f"units[{i}]"
        reject_unknown(table, path, UNIT_OPTIONS)
        v = read_options(table, path, UNIT_OPTIONS)
        unit_id = str(v["id"])
        if unit_id in ids:
            raise ConfigError(
                f"{path}.id", f"duplicate unit id {unit_id!r} (also units[{ids[unit_id]}])"
            )
        ids[unit_id] = i
        name = str(v["name"]) or unit_id
        devices: list[DeviceRef] = []
        assert isinstance(v["devices"], tuple)
        for j, entry in enumerate(v["devices"]):
            key = f"{path}.devices[{j}]"
            device = _parse_device(str(entry), key, by_name)
            if device in owner:
                other_unit, other_key = owner[device]
                where = "twice" if other_unit == unit_id else f"for unit {other_unit!r}"
                raise ConfigError(key, f"device {device} is already listed {where} ({other_key})")
            owner[device] = (unit_id, key)
            devices.append(device)
        units.append((unit_id, name, devices))

    # An nmea link is one device: bind it to its unit both ways (link.unit, unit.devices).
    devices_of = {unit_id: devices for unit_id, _name, devices in units}
    for i, link in enumerate(links):
        if address_rule(link.protocol) is not None:
            continue
        device = DeviceRef(link.name)
        listed = owner.get(device)
        unit_id = link.unit or (listed[0] if listed else link.name)
        if listed and listed[0] != unit_id:
            raise ConfigError(
                listed[1], f"link {link.name} belongs to unit {unit_id!r} (links[{i}].unit)"
            )
        if not listed and unit_id in devices_of:
            devices_of[unit_id].append(device)
        links[i] = dataclasses.replace(link, unit=unit_id)
    return tuple(links), tuple(UnitConfig(id=u, name=n, devices=tuple(d)) for u, n, d in units)


def _parse_device(entry: str, key: str, links: Mapping[str, LinkConfig]) -> DeviceRef:
    link_name, colon, address = entry.partition(":")
    link = links.get(link_name)
    if link is None:
        raise ConfigError(
            key,
            f"{entry!r}: no link named {link_name!r}{suggestion(link_name, links)}; "
            "write link:address",
        )
    rule = address_rule(link.protocol)
    if rule is None:
        if colon:
            raise ConfigError(
                key,
                f"{entry!r}: {link.protocol} link {link_name} is one device; write {link_name!r}",
            )
        return DeviceRef(link_name)
    if not address:
        raise ConfigError(
            key, f"{entry!r}: {link.protocol} devices need an address: {link_name}:<address>"
        )
    try:
        return DeviceRef(link_name, rule(address))
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
