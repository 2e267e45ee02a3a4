"""The hytera protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the decimal radio id (24 bits).

A link is one radio connected to the gateway, through which the gateway reaches the others
over the air: ``url = "/dev/ttyUSB0"`` (HRNP on the radio's serial port, at 115200 baud unless
``baudrate`` says otherwise),
``tcp://host:port`` (the same HRNP stream through a serial server), or ``udp://radio:3005``
(the radio's USB network interface: HRNP radio control on the URL's port, the RRS, LP and TMP
services on their own UDP ports, set below). The driver is
:mod:`gateway.drivers.hytera.driver`; the operators' page is ``docs/protocols/hytera.md``.
"""

from __future__ import annotations

from typing import Final

from gateway.drivers.spec import (
    CLIENT_TRANSPORTS,
    Capabilities,
    ProtocolSpec,
    options,
)
from gateway.errors import ConfigError
from gateway.options import OptionSpec, each, float_range, int_range, positive

_MAX_RADIO_ID: Final = 0xFFFFFF  # DMR radio ids are 24 bits
STATUS_STAGES: Final = ("acknowledged", "declined", "contacted", "on_scene", "feedback", "closed")
"""Stages a status key may report (SPEC section 5's answers)."""
_UDP: Final = frozenset({"udp"})
SERIAL_BAUDRATE: Final = 115200
"""The radios' HRNP data port (ok-dmrlib's serial client; notes section 1): the default of a
serial link's ``baudrate``."""


def radio_id(address: str) -> str:
    """A decimal radio id 1..16777215, without leading zeros."""
    if not address.isascii() or not address.isdigit() or not 1 <= int(address) <= _MAX_RADIO_ID:
        raise ValueError(f"{address!r} is not a decimal radio id (1 to {_MAX_RADIO_ID})")
    return str(int(address))


def parse_status_stage(entry: str) -> tuple[str, str]:
    """``"1=acknowledged"`` -> ``("1", "acknowledged")``; ValueError when malformed."""
    key, sep, stage = entry.partition("=")
    key, stage = key.strip(), stage.strip().lower()
    if not sep or not key:
        raise ValueError(f"{entry!r} is not KEY=stage, like 1=acknowledged")
    if stage not in STATUS_STAGES:
        raise ValueError(f"{entry!r}: stage must be one of {', '.join(STATUS_STAGES)}")
    return key, stage


def _status_stage(value: str, key: str) -> str:
    try:
        status, stage = parse_status_stage(value)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return f"{status}={stage}"


def _port(doc: str, default: int, low: int = 1) -> OptionSpec:
    return OptionSpec("int", default, int_range(low, 65535), _UDP, doc=doc)


SPEC = ProtocolSpec(
    name="hytera",
    title="Hytera DMR radios (HRNP/HDAP over serial or the radio's USB network)",
    options=options(
        offline_after_s=OptionSpec("float", 1800.0, positive),
        subnet=OptionSpec(
            "int",
            10,
            int_range(1, 255),
            doc="First byte of every radio IP (the codeplug's CAI network, 10 by default): "
            "radio 1001 is 10.0.3.233.",
        ),
        text_limit=OptionSpec(
            "int",
            256,
            int_range(16, 600),
            doc="Longest text one TMP message carries, in UTF-16 units (a Chinese character "
            "is one). Longer text goes as numbered parts `(1/3) ...`, split between "
            "characters, at most `max_parts` of them; beyond that it fails with the reason.",
        ),
        max_parts=OptionSpec(
            "int",
            4,
            int_range(1, 16),
            doc="Most TMP messages one text is split into.",
        ),
        retry_intervals_s=OptionSpec(
            "float_list",
            (10.0, 20.0, 40.0),
            each(positive, max_items=16),
            doc="How long to wait for the radio's TMP ack after each transmission; the "
            "message goes again (same request id) after each interval but the last.",
        ),
        busy_backoff_s=OptionSpec(
            "float",
            3.0,
            float_range(0.0, 600.0),
            doc="Back-off before resending a message the radio answered with *channel busy* "
            "(doubled on each busy answer); the resends count against `retry_intervals_s`.",
        ),
        status_stages=OptionSpec(
            "str_list",
            (),
            each(_status_stage, max_items=64),
            doc='Status keys or preset texts a radio sends, as `"KEY=stage"` '
            '(`["1=acknowledged", "2=contacted", "3=on_scene", "4=closed"]`): a text that is '
            "exactly KEY reports that stage for the unit's task.",
        ),
        location_interval_s=OptionSpec(
            "float",
            60.0,
            float_range(0.0, 86400.0),
            doc="Each radio that registers is asked to report its position this often "
            "(LP periodic report); 0: not asked.",
        ),
        location_distance_m=OptionSpec(
            "int",
            0,
            int_range(0, 100_000),
            doc="When above 0, radios report on moving this far or after "
            "`location_interval_s`, whichever comes first (LP condition report), instead of "
            "periodically.",
        ),
        emergency_cancel_type=OptionSpec(
            "int",
            255,
            int_range(-1, 255),
            doc="The type byte of an LP emergency report that means the radio cancelled its "
            "emergency (undocumented: confirm on your radios); any other type raises the "
            "alarm. -1: every report raises, and only the centre's `clear_alarm` clears.",
        ),
        hrnp_ack_timeout_s=OptionSpec(
            "float",
            1.0,
            positive,
            doc="How long an HRNP DATA frame waits for its DATA_ACK before it is sent again.",
        ),
        hrnp_retries=OptionSpec(
            "int",
            3,
            int_range(0, 20),
            doc="Resends of an unacknowledged HRNP DATA frame before the link counts as down "
            "and is reopened.",
        ),
        keepalive_s=OptionSpec(
            "float",
            30.0,
            positive,
            doc="A radio-control query goes to the connected radio after this much silence; "
            "no HRNP ack to it reopens the link.",
        ),
        rrs_port=_port("The radio's registration (RRS) UDP port.", 3002),
        lp_port=_port("The radio's location (LP) UDP port.", 3003),
        tmp_port=_port("The radio's text message (TMP) UDP port.", 3004),
        local_host=OptionSpec(
            "str",
            "0.0.0.0",  # noqa: S104 - the radio's own USB network interface
            None,
            _UDP,
            doc="Address the gateway's service sockets bind to (the PC IP of the radio's "
            "codeplug, or 0.0.0.0).",
        ),
        local_rrs_port=_port(
            "The gateway's UDP port for registration, where the radio sends.", 3002
        ),
        local_lp_port=_port("The gateway's UDP port for location, where the radio sends.", 3003),
        local_tmp_port=_port("The gateway's UDP port for text, where the radio sends.", 3004),
    ),
    address=radio_id,
    address_example="1001",
    offline_after_s=1800.0,
    transports=CLIENT_TRANSPORTS,
    capabilities=Capabilities(
        text=True, max_text_chars=1000, location_poll=True, native_answers=True, alarms=True
    ),
    driver="gateway.drivers.hytera.driver:HyteraDriver",
    docs="protocols/hytera.md",
    serial_defaults={"baudrate": SERIAL_BAUDRATE},
)
