"""config.toml: the example loads, every error names its key path, secrets stay secret."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config as config_module
from gateway.config import (
    PASSWORD_ENV,
    Config,
    LinkConfig,
    OptionSpec,
    effective_config,
    implicit_unit_id,
    load_config,
    normalise_address,
    parse_config,
    render_toml,
)
from gateway.drivers import registry
from gateway.drivers.registry import PROTOCOLS, not_built_message
from gateway.drivers.spec import ALL_TRANSPORTS, ProtocolSpec
from gateway.errors import ConfigError
from gateway.model import DeviceRef
from gateway.units import UnitDirectory

ROOT = Path(__file__).resolve().parents[1]
BASE_DIR = Path("/etc/fieldlink")
GATEWAY = '[gateway]\nid = "gw1"\n'
NMEA = '[[links]]\nname = "gps"\nprotocol = "nmea"\nurl = "/dev/ttyUSB0"\n'
APRS = (
    '[[links]]\nname = "vhf"\nprotocol = "aprs"\nurl = "tcp://127.0.0.1:8001"\n'
    'callsign = "BH4ABC-10"\n'
)
# Dial-in links of the built protocols: a TNC that connects to the gateway, a receiver that sends
# its sentences to a UDP port.
APRS_IN = (
    '[[links]]\nname = "vhf-in"\nprotocol = "aprs"\nurl = "listen://0.0.0.0:7611"\n'
    'callsign = "BH4ABC-11"\n'
)
APRS_UDP_IN = APRS_IN.replace('"vhf-in"', '"vhf-udp"').replace("listen://", "udp-listen://")
NMEA_IN = '[[links]]\nname = "gps-in"\nprotocol = "nmea"\nurl = "udp-listen://0.0.0.0:10110"\n'
SECRET = "s3cret-Pa55word"  # noqa: S105 - a test value whose leaks the tests look for


def parse(text: str, *, env: dict[str, str] | None = None, base_dir: Path = BASE_DIR) -> Config:
    return parse_config(tomllib.loads(text), base_dir=base_dir, env=env or {})


def unit(uid: str, *devices: str) -> str:
    return f'[[units]]\nid = "{uid}"\ndevices = {json.dumps(list(devices))}\n'


# --- the example and the defaults -----------------------------------------------------------------


def test_example_config_loads() -> None:
    cfg = load_config(ROOT / "config.toml", env={})

    assert cfg.source == ROOT / "config.toml"
    assert cfg.gateway.id == "shangtang"
    assert cfg.mqtt.url == "mqtt://127.0.0.1:1883"
    assert cfg.mqtt.password == ""
    gps, vhf, dmr, trbo, trk, gt = cfg.links
    assert (gps.protocol, gps.transport, gps.serial.baudrate, gps.unit) == (
        "nmea",
        "serial",
        4800,
        "zhang-wei",
    )
    assert (vhf.protocol, vhf.endpoint, vhf.option("callsign", str)) == (
        "aprs",
        ("127.0.0.1", 8001),
        "BH4ABC-10",
    )
    assert vhf.options["path"] == ("WIDE1-1",)
    assert (dmr.protocol, dmr.transport, dmr.serial.baudrate) == ("hytera", "serial", 115200)
    assert (trbo.protocol, trbo.endpoint) == ("mototrbo", ("192.168.10.2", 4005))
    assert [(link.protocol, link.transport) for link in (trk, gt)] == [
        ("jt808", "listen"),
        ("gt06", "listen"),
    ]
    zhang, li, car = cfg.units
    assert zhang.name == "张伟"
    assert li.name == "李娜"
    assert li.devices == (
        DeviceRef("dmr", "1001"),
        DeviceRef("vhf", "BH4XYZ-9"),
        DeviceRef("trk", "13800138000"),
    )
    assert car.devices == (DeviceRef("gt", "868120145233604"), DeviceRef("trbo", "12045"))
    assert zhang.devices == (DeviceRef("vhf", "BH4XYZ-7"), DeviceRef("gps-car1"))
    assert UnitDirectory(cfg).resolve(DeviceRef("gps-car1")) == "zhang-wei"


def test_example_config_takes_the_password_from_the_environment() -> None:
    cfg = load_config(ROOT / "config.toml", env={PASSWORD_ENV: SECRET})
    assert cfg.mqtt.password == SECRET
    assert cfg.mqtt.password_file is None


def test_minimal_config_fills_every_default() -> None:
    cfg = parse(GATEWAY)

    assert cfg.gateway.data_dir == Path("/var/lib/fieldlink")
    assert cfg.gateway.log_level == "info"
    mqtt = cfg.mqtt
    assert (mqtt.scheme, mqtt.host, mqtt.port, mqtt.url) == (
        "mqtt",
        "127.0.0.1",
        1883,
        "mqtt://127.0.0.1:1883",
    )
    assert mqtt.client_id == "fieldlink-gw1"
    assert (mqtt.protocol, mqtt.keepalive_s, mqtt.session_expiry_s) == ("5", 30, 86400)
    assert (mqtt.tls, mqtt.tls_insecure, mqtt.ca_file) == (False, False, None)
    assert cfg.sla == config_module.SlaConfig()
    assert cfg.links == ()
    assert cfg.units == ()
    assert cfg.source is None


def test_mqtts_defaults_to_port_8883_and_verification() -> None:
    cfg = parse(GATEWAY + '[mqtt]\nurl = "mqtts://broker.example.org"\n')
    assert (cfg.mqtt.port, cfg.mqtt.url, cfg.mqtt.tls, cfg.mqtt.tls_insecure) == (
        8883,
        "mqtts://broker.example.org:8883",
        True,
        False,
    )


def test_ipv6_broker_url_is_normalised() -> None:
    cfg = parse(GATEWAY + '[mqtt]\nurl = "mqtt://[::1]"\n')
    assert (cfg.mqtt.host, cfg.mqtt.url) == ("::1", "mqtt://[::1]:1883")


def test_protocol_options_get_their_defaults() -> None:
    cfg = parse(GATEWAY + NMEA + APRS + APRS_IN + APRS_UDP_IN + NMEA_IN)
    nmea, aprs, aprs_in, aprs_udp_in, nmea_in = cfg.links
    assert dict(nmea.options) == {
        "max_line_bytes": 82,
        "require_checksum": True,
        "offline_after_s": 30.0,
    }
    assert nmea.unit == "gps"  # no unit: the link is its own unit
    assert aprs.unit is None
    assert aprs.options["retry_intervals_s"] == (30.0, 60.0, 120.0, 240.0, 480.0)
    assert aprs.options["offline_after_s"] == 1800.0
    assert aprs.options["kiss_port"] == 0
    dial_in = {"max_connections", "idle_timeout_s", "allow", "register"}
    assert not dial_in & set(aprs.options)  # dial-in keys only on server links
    assert not dial_in & set(nmea.options)
    assert aprs_in.option("max_connections", int) == 1000
    assert aprs_in.options["allow"] == ()
    assert aprs_in.options["register"] == "allow-list"
    assert aprs_in.options["idle_timeout_s"] == 3600.0  # a TNC's channel is often quiet
    # The server caps udp-listen peers too, so the cap is a udp-listen option as well.
    assert aprs_udp_in.transport == "udp-listen"
    assert aprs_udp_in.option("max_connections", int) == 1000
    assert {k: aprs_udp_in.options[k] for k in dial_in} == {k: aprs_in.options[k] for k in dial_in}
    # An nmea link is its one device: who may dial in is not a question it has.
    assert nmea_in.transport == "udp-listen"
    assert nmea_in.option("max_connections", int) == 1000
    assert nmea_in.options["idle_timeout_s"] == 60.0
    assert "allow" not in nmea_in.options
    assert "register" not in nmea_in.options
    assert nmea_in.unit == "gps-in"


def test_serial_keys_live_on_the_link_table() -> None:
    cfg = parse(GATEWAY + NMEA + 'baudrate = 115200\nparity = "e"\nstopbits = 2\nrtscts = true\n')
    serial = cfg.links[0].serial
    assert (serial.baudrate, serial.parity, serial.stopbits, serial.rtscts) == (
        115200,
        "E",
        2.0,
        True,
    )


def test_config_values_are_immutable() -> None:
    cfg = parse(GATEWAY + NMEA)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gateway.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.links[0].options["max_line_bytes"] = 1  # type: ignore[index]


def test_option_accessor_checks_the_type() -> None:
    link = parse(GATEWAY + NMEA).links[0]
    assert link.option("require_checksum", bool) is True
    with pytest.raises(TypeError, match="max_line_bytes"):
        link.option("max_line_bytes", str)


def test_a_new_protocol_is_one_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ProtocolSpec(
        name="newproto",
        title="a protocol for this test",
        options={
            "offline_after_s": OptionSpec("float", 60.0),
            "frobnicate": OptionSpec("bool", False),
        },
        address=lambda address: address,
        address_example="any",
        offline_after_s=60.0,
        transports=ALL_TRANSPORTS,
        driver="gateway.drivers.nmea.driver:NmeaDriver",
    )
    protocols = {**registry.PROTOCOLS, "newproto": spec}
    monkeypatch.setattr("gateway.config.parse.PROTOCOLS", protocols)
    monkeypatch.setattr("gateway.config.addresses.PROTOCOLS", protocols)
    cfg = parse(
        GATEWAY
        + '[[links]]\nname = "n"\nprotocol = "newproto"\nurl = "tcp://h:1"\nfrobnicate = true\n'
        + unit("u", "n:any-address")
    )
    assert dict(cfg.links[0].options) == {"offline_after_s": 60.0, "frobnicate": True}
    assert cfg.units[0].devices == (DeviceRef("n", "any-address"),)


# --- every error names its key path ---------------------------------------------------------------

ERROR_CASES = [
    # top level and [gateway]
    ("top-unknown", '[gatway]\nid = "x"\n', "gatway", "unknown key (did you mean gateway?)"),
    ("gateway-not-table", 'gateway = "gw1"\n', "gateway", "expected a table, got string"),
    ("id-missing", "[gateway]\n", "gateway.id", "required"),
    ("id-alphabet", '[gateway]\nid = "Shang Tang"\n', "gateway.id", "is not an id"),
    ("id-too-long", f'[gateway]\nid = "{"a" * 65}"\n', "gateway.id", "is not an id"),
    ("id-type", "[gateway]\nid = 5\n", "gateway.id", "expected a string, got integer"),
    ("gateway-typo", GATEWAY + 'data-dir = "/x"\n', "gateway.data-dir", "did you mean data_dir?"),
    ("log-level", GATEWAY + 'log_level = "verbose"\n', "gateway.log_level", "one of debug, info"),
    # [mqtt]
    ("password-inline", GATEWAY + '[mqtt]\npassword = "x"\n', "mqtt.password", "password_file"),
    ("url-scheme", GATEWAY + '[mqtt]\nurl = "http://b"\n', "mqtt.url", "mqtt:// or mqtts://"),
    ("url-port", GATEWAY + '[mqtt]\nurl = "mqtt://b:70000"\n', "mqtt.url", "between 1 and 65535"),
    ("url-port-0", GATEWAY + '[mqtt]\nurl = "mqtt://b:0"\n', "mqtt.url", "between 1 and 65535"),
    ("url-creds", GATEWAY + '[mqtt]\nurl = "mqtt://u:p@b"\n', "mqtt.url", "credentials"),
    ("url-path", GATEWAY + '[mqtt]\nurl = "mqtt://b/x"\n', "mqtt.url", "nothing after it"),
    ("url-host", GATEWAY + '[mqtt]\nurl = "mqtt://:1883"\n', "mqtt.url", "no host"),
    (
        "keepalive-range",
        GATEWAY + "[mqtt]\nkeepalive_s = 2\n",
        "mqtt.keepalive_s",
        "between 5 and 3600",
    ),
    (
        "keepalive-bool",
        GATEWAY + "[mqtt]\nkeepalive_s = true\n",
        "mqtt.keepalive_s",
        "expected an integer, got boolean",
    ),
    (
        "keepalive-float",
        GATEWAY + "[mqtt]\nkeepalive_s = 30.0\n",
        "mqtt.keepalive_s",
        "expected an integer, got float",
    ),
    (
        "expiry-high",
        GATEWAY + "[mqtt]\nsession_expiry_s = 4294967296\n",
        "mqtt.session_expiry_s",
        "between 0 and 4294967295",
    ),
    (
        "expiry-negative",
        GATEWAY + "[mqtt]\nsession_expiry_s = -1\n",
        "mqtt.session_expiry_s",
        "between 0",
    ),
    ("protocol-choice", GATEWAY + '[mqtt]\nprotocol = "4"\n', "mqtt.protocol", "one of 5, 3.1.1"),
    (
        "protocol-type",
        GATEWAY + "[mqtt]\nprotocol = 5\n",
        "mqtt.protocol",
        "expected a string, got integer",
    ),
    (
        "topic-wildcard",
        GATEWAY + '[mqtt]\nbase_topic = "a/+/b"\n',
        "mqtt.base_topic",
        "must not contain",
    ),
    ("topic-slash", GATEWAY + '[mqtt]\nbase_topic = "/a"\n', "mqtt.base_topic", "single slashes"),
    (
        "health-zero",
        GATEWAY + "[mqtt]\nhealth_interval_s = 0\n",
        "mqtt.health_interval_s",
        "greater than 0",
    ),
    (
        "mqtt-backoff",
        GATEWAY + "[mqtt]\nreconnect_min_s = 60\n",
        "mqtt.reconnect_min_s",
        "must not exceed reconnect_max_s",
    ),
    (
        "tls-insecure-plain",
        GATEWAY + "[mqtt]\ntls_insecure = true\n",
        "mqtt.tls_insecure",
        "only applies to mqtts://",
    ),
    (
        "ca-plain",
        GATEWAY + '[mqtt]\nca_file = "ca.pem"\n',
        "mqtt.ca_file",
        "only applies to mqtts://",
    ),
    (
        "ca-missing",
        GATEWAY + '[mqtt]\nurl = "mqtts://b"\nca_file = "nope.pem"\n',
        "mqtt.ca_file",
        "no such file: /etc/fieldlink/nope.pem",
    ),
    ("outbox-zero", GATEWAY + "[mqtt]\noutbox_max_rows = 0\n", "mqtt.outbox_max_rows", "between 1"),
    ("mqtt-typo", GATEWAY + '[mqtt]\nuser = "x"\n', "mqtt.user", "did you mean username?"),
    # [sla]
    (
        "sla-negative",
        GATEWAY + "[sla]\nacknowledge_s = -1\n",
        "sla.acknowledge_s",
        "greater than 0",
    ),
    ("sla-typo", GATEWAY + "[sla]\non_scene = 480\n", "sla.on_scene", "did you mean on_scene_s?"),
    (
        "sla-type",
        GATEWAY + '[sla]\nacknowledge_s = "60"\n',
        "sla.acknowledge_s",
        "expected a number, got string",
    ),
    ("sla-nan", GATEWAY + "[sla]\nclose_s = nan\n", "sla.close_s", "finite"),
    (
        "sla-escalate",
        GATEWAY + "[sla]\nescalate_before_s = 60\n",
        "sla.escalate_before_s",
        "less than acknowledge_s",
    ),
    # [[links]]: common keys
    (
        "link-name-typo",
        GATEWAY + '[[links]]\nnmae = "gps"\nprotocol = "nmea"\nurl = "/dev/x"\n',
        "links[0].nmae",
        "unknown key (did you mean name?)",
    ),
    (
        "allow-on-nmea",
        GATEWAY + NMEA + "allow = []\n",
        "links[0].allow",
        "allow only applies to aprs, mototrbo, jt808, gt06 links",
    ),
    (
        "allow-on-nmea-listen",  # an nmea link is its one device, dialling in or not
        GATEWAY + NMEA_IN + "allow = []\n",
        "links[0].allow",
        "allow only applies to aprs, mototrbo, jt808, gt06 links",
    ),
    (
        "register-on-nmea-listen",
        GATEWAY + NMEA_IN + 'register = "open"\n',
        "links[0].register",
        "register only applies to aprs, mototrbo, jt808, gt06 links",
    ),
    ("links-table", GATEWAY + '[links]\nname = "x"\n', "links", "expected an array of tables"),
    (
        "link-name-missing",
        GATEWAY + '[[links]]\nprotocol = "nmea"\nurl = "/dev/x"\n',
        "links[0].name",
        "required",
    ),
    (
        "link-name-alphabet",
        GATEWAY + NMEA.replace('"gps"', '"GPS 1"'),
        "links[0].name",
        "is not an id",
    ),
    (
        "link-name-dup",
        GATEWAY + NMEA + NMEA.replace("USB0", "USB1"),
        "links[1].name",
        "duplicate link name 'gps' (also links[0])",
    ),
    (
        "link-protocol",
        GATEWAY + NMEA.replace('"nmea"', '"nmae"'),
        "links[0].protocol",
        "unknown protocol 'nmae' (did you mean nmea?)",
    ),
    (
        "link-enabled-type",
        GATEWAY + NMEA + 'enabled = "yes"\n',
        "links[0].enabled",
        "expected a boolean",
    ),
    (
        "link-backoff",
        GATEWAY + NMEA + "reconnect_min_s = 5\nreconnect_max_s = 1\n",
        "links[0].reconnect_min_s",
        "must not exceed",
    ),
    (
        "link-same-device",
        GATEWAY + NMEA + NMEA.replace('"gps"', '"gps2"'),
        "links[1].url",
        "already used by links[0]",
    ),
    # link URLs
    (
        "url-no-port",
        GATEWAY + APRS.replace("127.0.0.1:8001", "direwolf"),
        "links[0].url",
        "a port is required",
    ),
    (
        "url-no-host",
        GATEWAY + APRS.replace("tcp://127.0.0.1:8001", "udp://:9000"),
        "links[0].url",
        "no host",
    ),
    (
        "url-bad-port",
        GATEWAY + APRS.replace("8001", "99999"),
        "links[0].url",
        "between 1 and 65535",
    ),
    ("url-zero-port", GATEWAY + APRS.replace("8001", "0"), "links[0].url", "between 1 and 65535"),
    (
        "url-scheme-link",
        GATEWAY + NMEA.replace("/dev/ttyUSB0", "serial:///dev/ttyUSB0"),
        "links[0].url",
        "expected a device path",
    ),
    (
        "url-relative-path",
        GATEWAY + NMEA.replace("/dev/ttyUSB0", "ttyUSB0"),
        "links[0].url",
        "expected a device path",
    ),
    ("url-trailing", GATEWAY + APRS_IN.replace("7611", "7611/x"), "links[0].url", "nothing else"),
    # serial keys, and keys of other protocols
    (
        "serial-typo",
        GATEWAY + NMEA + "baud = 4800\n",
        "links[0].baud",
        "unknown key (did you mean baudrate?)",
    ),
    (
        "baudrate-set",
        GATEWAY + NMEA + "baudrate = 9601\n",
        "links[0].baudrate",
        "must be one of 300, 600",
    ),
    (
        "baudrate-type",
        GATEWAY + NMEA + 'baudrate = "9600"\n',
        "links[0].baudrate",
        "expected an integer, got string",
    ),
    (
        "baudrate-bool",
        GATEWAY + NMEA + "baudrate = true\n",
        "links[0].baudrate",
        "expected an integer, got boolean",
    ),
    (
        "parity",
        GATEWAY + NMEA + 'parity = "X"\n',
        "links[0].parity",
        "must be one of N, E, O, M, S",
    ),
    ("stopbits", GATEWAY + NMEA + "stopbits = 3\n", "links[0].stopbits", "must be one of"),
    ("bytesize", GATEWAY + NMEA + "bytesize = 9\n", "links[0].bytesize", "between 5 and 8"),
    (
        "baudrate-on-tcp",
        GATEWAY + APRS + "baudrate = 9600\n",
        "links[0].baudrate",
        "baudrate only applies to serial links",
    ),
    (
        "unit-on-aprs",
        GATEWAY + APRS + 'unit = "u"\n',
        "links[0].unit",
        "unit only applies to nmea links",
    ),
    (
        "callsign-on-nmea",
        GATEWAY + NMEA + 'callsign = "BH4ABC"\n',
        "links[0].callsign",
        "callsign only applies to aprs links",
    ),
    ("link-unknown", GATEWAY + NMEA + "colour = 1\n", "links[0].colour", "unknown key"),
    # protocol options
    (
        "nmea-line",
        GATEWAY + NMEA + "max_line_bytes = 10\n",
        "links[0].max_line_bytes",
        "between 82 and 4096",
    ),
    ("nmea-unit-id", GATEWAY + NMEA + 'unit = "Zhang Wei"\n', "links[0].unit", "is not an id"),
    (
        "aprs-callsign-missing",
        GATEWAY + APRS.replace('callsign = "BH4ABC-10"\n', ""),
        "links[0].callsign",
        "required",
    ),
    (
        "aprs-callsign-ssid",
        GATEWAY + APRS.replace("BH4ABC-10", "BH4ABC-16"),
        "links[0].callsign",
        "not a callsign",
    ),
    (
        "aprs-callsign-long",
        GATEWAY + APRS.replace("BH4ABC-10", "BH4ABCDE"),
        "links[0].callsign",
        "not a callsign",
    ),
    (
        "aprs-path-long",
        GATEWAY + APRS + f"path = {json.dumps(['WIDE1-1'] * 9)}\n",
        "links[0].path",
        "at most 8",
    ),
    (
        "aprs-path-item",
        GATEWAY + APRS + 'path = ["WIDE1-1", 3]\n',
        "links[0].path[1]",
        "expected a string, got integer",
    ),
    (
        "aprs-path-type",
        GATEWAY + APRS + 'path = "WIDE1-1"\n',
        "links[0].path",
        "expected an array of strings, got string",
    ),
    (
        "aprs-retry",
        GATEWAY + APRS + "retry_intervals_s = [30, -1]\n",
        "links[0].retry_intervals_s[1]",
        "greater than 0",
    ),
    (
        "aprs-kiss-port",
        GATEWAY + APRS + "kiss_port = 16\n",
        "links[0].kiss_port",
        "between 0 and 15",
    ),
    (
        "max-conn-on-tcp",
        GATEWAY + APRS_IN.replace("listen://0.0.0.0", "tcp://10.0.0.1") + "max_connections = 5\n",
        "links[0].max_connections",
        "max_connections only applies to listen:// or udp-listen:// links",
    ),
    (
        "max-conn-on-serial",
        GATEWAY + NMEA + "max_connections = 5\n",
        "links[0].max_connections",
        "max_connections only applies to listen:// or udp-listen:// links",
    ),
    (
        "allow-on-tcp",
        GATEWAY + APRS + 'allow = ["BH4XYZ-7"]\n',
        "links[0].allow",
        "allow only applies to listen:// or udp-listen:// links",
    ),
    (
        "max-conn-range",
        GATEWAY + APRS_IN + "max_connections = 0\n",
        "links[0].max_connections",
        "between 1",
    ),
    (
        "max-conn-range-udp",
        GATEWAY + NMEA_IN + "max_connections = 65536\n",
        "links[0].max_connections",
        "between 1 and 65535",
    ),
    (
        "aprs-allow",
        GATEWAY + APRS_IN + 'allow = ["BH4XYZ-7", "BH4 XYZ"]\n',
        "links[0].allow[1]",
        "not a callsign",
    ),
    (
        "register-choice",
        GATEWAY + APRS_UDP_IN + 'register = "anyone"\n',
        "links[0].register",
        "must be one of allow-list, open",
    ),
    (
        "idle-timeout",
        GATEWAY + APRS_IN + "idle_timeout_s = 0\n",
        "links[0].idle_timeout_s",
        "greater than 0",
    ),
    (
        "idle-timeout-udp",
        GATEWAY + NMEA_IN + "idle_timeout_s = -1\n",
        "links[0].idle_timeout_s",
        "greater than 0",
    ),
    # [[units]]
    ("unit-not-table", "units = [1]\n" + GATEWAY, "units[0]", "expected a table, got integer"),
    ("unit-id-missing", GATEWAY + '[[units]]\nname = "x"\n', "units[0].id", "required"),
    (
        "unit-id-dup",
        GATEWAY + unit("a") + unit("a"),
        "units[1].id",
        "duplicate unit id 'a' (also units[0])",
    ),
    (
        "unit-typo",
        GATEWAY + '[[units]]\nid = "a"\ndevice = []\n',
        "units[0].device",
        "did you mean devices?",
    ),
    (
        "unit-devices-type",
        GATEWAY + '[[units]]\nid = "a"\ndevices = "vhf:X"\n',
        "units[0].devices",
        "expected an array of strings",
    ),
    (
        "device-no-link",
        GATEWAY + APRS + unit("a") + unit("b") + unit("c", "vhx:BH4XYZ-7"),
        "units[2].devices[0]",
        "no link named 'vhx' (did you mean vhf?)",
    ),
    (
        "device-no-address",
        GATEWAY + APRS + unit("a", "vhf"),
        "units[0].devices[0]",
        "need an address",
    ),
    (
        "device-nmea-address",
        GATEWAY + NMEA + unit("a", "gps:1"),
        "units[0].devices[0]",
        "is one device",
    ),
    (
        "device-aprs",
        GATEWAY + APRS + unit("a", "vhf:BH4 XYZ"),
        "units[0].devices[0]",
        "not a callsign",
    ),
    (
        "device-aprs-ssid",
        GATEWAY + APRS_IN + unit("a", "vhf-in:BH4XYZ-16"),
        "units[0].devices[0]",
        "not a callsign",
    ),
    (
        "device-twice",
        GATEWAY + APRS + unit("a", "vhf:BH4XYZ-7", "vhf:BH4XYZ-7"),
        "units[0].devices[1]",
        "already listed twice",
    ),
    (
        "device-two-units-ssid0",  # two spellings of one address are one device
        GATEWAY + APRS_IN + unit("a", "vhf-in:BH4XYZ") + unit("b", "vhf-in:bh4xyz-0"),
        "units[1].devices[0]",
        "already listed for unit 'a' (units[0].devices[0])",
    ),
    (
        "device-two-units-aprs",
        GATEWAY + APRS + unit("a", "vhf:bh4xyz-7") + unit("b", "vhf:BH4XYZ-7"),
        "units[1].devices[0]",
        "device vhf:BH4XYZ-7 is already listed for unit 'a'",
    ),
    (
        "nmea-bound-elsewhere",
        GATEWAY + NMEA + 'unit = "a"\n' + unit("a") + unit("b", "gps"),
        "units[1].devices[0]",
        "belongs to unit 'a' (links[0].unit)",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "reason"), [case[1:] for case in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors_name_the_key_path(text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert reason in caught.value.reason


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[gateway]\nid = "gw1\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == ""
    assert "line 2, column" in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file") as caught:
        load_config(tmp_path / "absent.toml", env={})
    assert caught.value.key == ""


def test_mqtt_311_password_needs_a_username() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(GATEWAY + '[mqtt]\nprotocol = "3.1.1"\n', env={PASSWORD_ENV: SECRET})
    assert caught.value.key == "mqtt.username"


# --- secrets --------------------------------------------------------------------------------------


def write_config(directory: Path, text: str) -> Path:
    path = directory / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"{SECRET}\n", SECRET),
        (f"{SECRET}\r\n", SECRET),
        (SECRET, SECRET),
        (f"{SECRET}\n\n", f"{SECRET}\n"),  # only one trailing newline goes
        (f" {SECRET} \n", f" {SECRET} "),
    ],
)
def test_password_from_file(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt").write_text(content, encoding="utf-8")
    path = write_config(
        tmp_path, GATEWAY + '[mqtt]\nusername = "gw"\npassword_file = "secrets/mqtt"\n'
    )

    cfg = load_config(path, env={})

    assert cfg.mqtt.password == expected
    assert cfg.mqtt.password_file == tmp_path / "secrets" / "mqtt"


def test_password_from_env() -> None:
    assert parse(GATEWAY, env={PASSWORD_ENV: SECRET}).mqtt.password == SECRET


def test_password_file_and_env_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET, encoding="utf-8")
    path = write_config(tmp_path, GATEWAY + '[mqtt]\npassword_file = "pw"\n')
    with pytest.raises(ConfigError, match="use one") as caught:
        load_config(path, env={PASSWORD_ENV: "other"})
    assert caught.value.key == "mqtt.password_file"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [("absent", "no such file"), ("empty", "is empty"), ("directory", "is a directory")],
)
def test_password_file_problems(tmp_path: Path, setup: str, reason: str) -> None:
    if setup == "empty":
        (tmp_path / "pw").write_text("\n", encoding="utf-8")
    elif setup == "directory":
        (tmp_path / "pw").mkdir()
    path = write_config(tmp_path, GATEWAY + '[mqtt]\npassword_file = "pw"\n')
    with pytest.raises(ConfigError, match=reason) as caught:
        load_config(path, env={})
    assert caught.value.key == "mqtt.password_file"


@pytest.mark.parametrize("source", ["file", "env"])
def test_effective_config_masks_the_password(tmp_path: Path, source: str) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n", encoding="utf-8")
    text = GATEWAY + '[mqtt]\nusername = "gw"\n'
    if source == "file":
        text += 'password_file = "pw"\n'
    cfg = load_config(
        write_config(tmp_path, text), env={PASSWORD_ENV: SECRET} if source == "env" else {}
    )
    assert cfg.mqtt.password == SECRET

    effective = effective_config(cfg)

    mqtt = effective["mqtt"]
    assert isinstance(mqtt, dict)
    assert mqtt["password"] == "***"  # noqa: S105 - the mask, not a password
    assert mqtt["password_file"] == (str(tmp_path / "pw") if source == "file" else "")
    assert SECRET not in json.dumps(effective, ensure_ascii=False)
    assert SECRET not in render_toml(effective)
    assert SECRET not in repr(effective)


def test_effective_config_shows_an_unset_password_as_empty() -> None:
    mqtt = effective_config(parse(GATEWAY))["mqtt"]
    assert isinstance(mqtt, dict)
    assert mqtt["password"] == ""


# --- paths ----------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "tls").mkdir(parents=True)
    for name in ("ca.pem", "client.pem", "client.key"):
        (conf_dir / "tls" / name).write_text("-----BEGIN-----\n", encoding="utf-8")
    write_config(
        conf_dir,
        '[gateway]\nid = "gw1"\ndata_dir = "state"\n'
        '[mqtt]\nurl = "mqtts://broker:8884"\nca_file = "tls/ca.pem"\n'
        'cert_file = "tls/client.pem"\nkey_file = "tls/client.key"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    cfg = load_config(Path("../etc/config.toml"), env={})

    assert cfg.gateway.data_dir.resolve() == conf_dir / "state"
    assert cfg.gateway.data_dir.is_absolute()
    assert cfg.mqtt.ca_file is not None
    assert cfg.mqtt.ca_file.resolve() == conf_dir / "tls" / "ca.pem"
    assert cfg.mqtt.cert_file is not None
    assert cfg.mqtt.cert_file.resolve() == conf_dir / "tls" / "client.pem"
    assert cfg.mqtt.key_file is not None
    assert cfg.mqtt.key_file.resolve() == conf_dir / "tls" / "client.key"
    assert cfg.mqtt.port == 8884


def test_absolute_paths_stay_as_written() -> None:
    cfg = parse('[gateway]\nid = "gw1"\ndata_dir = "/srv/fieldlink"\n')
    assert cfg.gateway.data_dir == Path("/srv/fieldlink")


def test_key_file_needs_cert_file(tmp_path: Path) -> None:
    (tmp_path / "client.key").write_text("key\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse(GATEWAY + '[mqtt]\nurl = "mqtts://b"\nkey_file = "client.key"\n', base_dir=tmp_path)
    assert caught.value.key == "mqtt.key_file"


# --- devices and units ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "address", "expected"),
    [
        ("aprs", "bh4xyz-7", "BH4XYZ-7"),
        ("aprs", "BH4XYZ-0", "BH4XYZ"),  # -0 is no SSID
        ("aprs", "BH4XYZ-15", "BH4XYZ-15"),
        ("jt808", "013800138000", "13800138000"),
        ("jt808", "00000000013800138000", "13800138000"),
        ("gt06", "123456789012345", "123456789012345"),
        ("hytera", "001001", "1001"),
        ("mototrbo", "12045", "12045"),
        ("nmea", "", ""),
    ],
)
def test_normalise_address(protocol: str, address: str, expected: str) -> None:
    assert normalise_address(protocol, address) == expected


@pytest.mark.parametrize(
    ("protocol", "address"),
    [
        ("aprs", "BH4XYZ-16"),
        ("jt808", "1380013800a"),
        ("jt808", "1" * 21),
        ("gt06", "12345678901234"),
        ("gt06", "12345"),
        ("hytera", "-5"),
        ("hytera", "0"),
        ("hytera", "16777216"),  # radio ids are 24 bits
        ("mototrbo", "16777216"),
        ("nmea", "x"),
    ],
)
def test_normalise_address_rejects(protocol: str, address: str) -> None:
    with pytest.raises(ValueError, match=r"not a|no address"):
        normalise_address(protocol, address)


def test_unit_devices_are_normalised() -> None:
    cfg = parse(
        GATEWAY + APRS + APRS_IN + NMEA
        + unit("zhang-wei", "vhf:bh4xyz-7", "vhf-in:bg5abc-0")
        + unit("li-na", "gps", "vhf:BH4ABC-15")
    )  # fmt: skip
    assert cfg.units[0].devices == (DeviceRef("vhf", "BH4XYZ-7"), DeviceRef("vhf-in", "BG5ABC"))
    assert cfg.units[1].devices == (DeviceRef("gps"), DeviceRef("vhf", "BH4ABC-15"))
    assert cfg.units[0].name == "zhang-wei"  # the name defaults to the id
    assert UnitDirectory(cfg).resolve(DeviceRef("vhf-in", "BG5ABC")) == "zhang-wei"
    assert UnitDirectory(cfg).resolve(DeviceRef("vhf-in", "BG5XYZ-3")) == "vhf-in-bg5xyz-3"


@pytest.mark.parametrize(
    ("protocol", "address", "expected"),
    [
        ("jt808", "013800138000", "13800138000"),
        ("jt808", "00000000013800138000", "13800138000"),  # 2013 and 2019: one terminal
        ("gt06", "123456789012345", "123456789012345"),
        ("hytera", "0012", "12"),
        ("mototrbo", "0012045", "12045"),
    ],
)
def test_addresses_of_dmr_and_tracker_protocols_are_normalised(
    protocol: str, address: str, expected: str
) -> None:
    """One device, however it is spelt: the config, the allow lists and the drivers all
    normalise with the spec's rule."""
    spec = PROTOCOLS[protocol]
    assert spec.address is not None
    assert spec.address(address) == expected
    assert normalise_address(protocol, address) == expected
    assert spec.address(expected) == expected


@pytest.mark.parametrize("kind", ["serial", "listen"])
def test_a_unit_cannot_list_a_device_of_a_protocol_not_built_yet(
    unbuilt_protocol: ProtocolSpec, kind: str
) -> None:
    spec = unbuilt_protocol
    protocol = spec.name
    url = "/dev/ttyUSB1" if kind == "serial" else f"{kind}://0.0.0.0:7700"
    text = (
        GATEWAY
        + APRS
        + f'[[links]]\nname = "trk"\nprotocol = "{protocol}"\nurl = "{url}"\n'
        + unit("zhang-wei", f"trk:{spec.address_example}")
    )
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.key == "links[1].protocol"
    assert caught.value.reason == not_built_message(protocol)


def test_allow_list_is_normalised() -> None:
    cfg = parse(GATEWAY + APRS_IN + 'allow = ["bh4xyz-7", "BG5ABC-0"]\n')
    assert cfg.links[0].options["allow"] == ("BH4XYZ-7", "BG5ABC")
    cfg = parse(GATEWAY + APRS_UDP_IN + 'allow = ["bh4xyz-7"]\nregister = "open"\n')
    assert cfg.links[0].options["allow"] == ("BH4XYZ-7",)
    assert cfg.links[0].options["register"] == "open"


def test_allow_list_of_a_tracker_link_is_normalised_by_its_spec() -> None:
    allow = PROTOCOLS["jt808"].options["allow"]
    assert allow.validate is not None
    assert allow.validate(("013800138000",), "links[0].allow") == ("13800138000",)
    with pytest.raises(ConfigError) as caught:
        allow.validate(("13800138000", "12ab"), "links[0].allow")
    assert caught.value.key == "links[0].allow[1]"
    assert "not a terminal phone number" in caught.value.reason


def test_nmea_link_listed_by_a_unit_belongs_to_it() -> None:
    cfg = parse(GATEWAY + NMEA + unit("zhang-wei", "gps"))
    assert cfg.links[0].unit == "zhang-wei"
    assert cfg.units[0].devices == (DeviceRef("gps"),)


def test_nmea_link_unit_adds_the_device_to_a_configured_unit() -> None:
    cfg = parse(GATEWAY + NMEA + 'unit = "zhang-wei"\n' + unit("zhang-wei"))
    assert cfg.links[0].unit == "zhang-wei"
    assert cfg.units[0].devices == (DeviceRef("gps"),)


def test_nmea_link_unit_may_name_an_unconfigured_unit() -> None:
    cfg = parse(GATEWAY + NMEA + 'unit = "car-7"\n' + unit("zhang-wei"))
    assert cfg.links[0].unit == "car-7"
    assert cfg.units[0].devices == ()
    assert UnitDirectory(cfg).resolve(DeviceRef("gps")) == "car-7"


def test_disabled_links_may_share_a_device_path() -> None:
    cfg = parse(GATEWAY + NMEA + NMEA.replace('"gps"', '"gps-spare"') + "enabled = false\n")
    assert [link.enabled for link in cfg.links] == [True, False]


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (DeviceRef("vhf", "BH4XYZ-7"), "vhf-bh4xyz-7"),
        (DeviceRef("trk", "13800138000"), "trk-13800138000"),
        (DeviceRef("gps"), "gps"),
        (DeviceRef("vhf", "A.B C"), "vhf-a-b-c"),
    ],
)
def test_implicit_unit_id(device: DeviceRef, expected: str) -> None:
    assert implicit_unit_id(device) == expected
    assert config_module.ID_RE.match(implicit_unit_id(device))


def test_link_endpoint_and_transport() -> None:
    link = LinkConfig(name="t", protocol="jt808", url="listen://[::]:7611")
    assert (link.transport, link.endpoint) == ("listen", ("::", 7611))
    serial = LinkConfig(name="s", protocol="nmea", url="/dev/ttyS0")
    assert (serial.transport, serial.endpoint) == ("serial", None)


# --- effective config and render_toml -------------------------------------------------------------


def test_effective_config_round_trips_through_render_toml() -> None:
    cfg = load_config(ROOT / "config.toml", env={PASSWORD_ENV: SECRET})
    effective = effective_config(cfg)

    text = render_toml(effective)

    assert tomllib.loads(text) == effective
    assert json.loads(json.dumps(effective)) == effective
    links = effective["links"]
    assert isinstance(links, list)
    assert links[0]["baudrate"] == 4800  # serial settings of the serial link, defaults filled in
    assert links[0]["parity"] == "N"
    assert "baudrate" not in links[1]
    assert links[1]["retry_intervals_s"] == [30.0, 60.0, 120.0, 240.0, 480.0]


def test_effective_config_of_the_effective_config_is_stable() -> None:
    """Every key effective_config prints (but the masked password) is a key config.toml accepts."""
    effective = effective_config(load_config(ROOT / "config.toml", env={}))
    mqtt = effective["mqtt"]
    assert isinstance(mqtt, dict)
    del mqtt["password"]

    again = effective_config(parse(render_toml(effective)))

    del again["mqtt"]["password"]  # type: ignore[attr-defined]
    assert again == effective


def test_render_toml_escapes_and_structures() -> None:
    data: dict[str, object] = {
        "top": 'quote " backslash \\ tab \t newline \n bell \x07 del \x7f 中文',
        "weird key": 1,
        "": "empty key",
        "floats": [0.5, -0.0, 1e-07, 1e300, math.inf, -math.inf],
        "empty": [],
        "nested": [[1, 2], ["a"]],
        "table": {"a": True, "sub": {"b": [False]}, "rows": [{"x": 1}, {"y": {"z": "deep"}}]},
        "rows": [{"name": "a", "items": [{"k": 1}]}, {}],
        "empty_table": {},
    }
    assert tomllib.loads(render_toml(data)) == data


def test_render_toml_rejects_what_it_cannot_write() -> None:
    with pytest.raises(TypeError, match=r"links\.when"):
        render_toml({"links": {"when": None}})


_scalars = (
    st.text()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.booleans()
)
_arrays = st.lists(_scalars, max_size=4) | st.lists(st.lists(_scalars, max_size=3), max_size=3)
_tables = st.recursive(
    st.dictionaries(st.text(max_size=8), _scalars | _arrays, max_size=4),
    lambda children: st.dictionaries(
        st.text(max_size=8),
        _scalars | _arrays | children | st.lists(children, min_size=1, max_size=3),
        max_size=4,
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_tables)
def test_render_toml_round_trips_anything_it_accepts(data: dict[str, object]) -> None:
    assert tomllib.loads(render_toml(data)) == data


def test_a_protocol_sets_its_own_serial_defaults() -> None:
    """A Hytera radio's data port runs at 115200 baud: that is the default of a hytera serial
    link, while other protocols keep the gateway's 9600; an explicit baudrate wins."""
    hytera = '[[links]]\nname = "dmr"\nprotocol = "hytera"\nurl = "/dev/ttyUSB3"\n'
    cfg = parse(GATEWAY + hytera + NMEA)
    assert cfg.links[0].serial.baudrate == 115200
    assert cfg.links[1].serial.baudrate == 9600
    cfg = parse(GATEWAY + hytera + "baudrate = 57600\n")
    assert cfg.links[0].serial.baudrate == 57600
