"""The mototrbo protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the decimal radio id (24 bits); its IP address is derived from it and the
link's ``cai``. The link is a ``udp-listen://`` server on the control station's PC side: the
url's port is ARS (registration), and the driver binds the TMS and LRRP ports on the same host.
Only ``udp-listen`` is supported: radios are told apart by the source address of what they
send, which a one-peer ``udp://`` link cannot do.
"""

from __future__ import annotations

from typing import Final

from gateway.drivers.spec import (
    Capabilities,
    ProtocolSpec,
    dial_in_options,
    options,
)
from gateway.errors import ConfigError
from gateway.options import OptionSpec, each, float_range, int_range, positive

_MAX_RADIO_ID: Final = 0xFFFFFF  # DMR radio ids are 24 bits
PRESET_STAGES: Final = ("acknowledged", "declined", "contacted", "on_scene", "feedback", "closed")
"""Stages a preset text may stand for (the task answers of SPEC section 5)."""
REFRESH_MIN: Final = 30
"""ARS refresh time asked of the radios, in minutes (the answer counts half hours)."""
OFFLINE_AFTER_S: Final = 2700.0
"""1.5 refresh periods: a radio that missed one refresh (and sent nothing else) is offline."""


def radio_id(address: str) -> str:
    """A decimal radio id 1..16777215, without leading zeros."""
    if not address.isascii() or not address.isdigit() or not 1 <= int(address) <= _MAX_RADIO_ID:
        raise ValueError(f"{address!r} is not a decimal radio id (1 to {_MAX_RADIO_ID})")
    return str(int(address))


def preset_text(value: str, key: str) -> str:
    """``"text=stage"``: a quick text of the radios and the task stage it answers."""
    text, sep, stage = value.rpartition("=")
    if not sep or not text.strip():
        raise ConfigError(key, f'expected "text=stage", like "收到=acknowledged", got {value!r}')
    if stage.strip() not in PRESET_STAGES:
        raise ConfigError(key, f"stage must be one of {', '.join(PRESET_STAGES)}, got {stage!r}")
    return f"{text.strip()}={stage.strip()}"


_PORT: Final = int_range(1, 65535)
_UDP_LISTEN: Final = frozenset({"udp-listen"})

SPEC = ProtocolSpec(
    name="mototrbo",
    title="MOTOTRBO DMR radios through a control station (ARS, TMS, LRRP over UDP)",
    options=options(
        tms_port=OptionSpec(
            "int",
            4007,
            _PORT,
            doc="UDP port of the text service (TMS), on the gateway and the radios.",
        ),
        lrrp_port=OptionSpec(
            "int",
            4001,
            _PORT,
            doc="UDP port of the location service (LRRP), on the gateway and the radios.",
        ),
        ars_port=OptionSpec(
            "int",
            0,
            int_range(0, 65535),
            doc="The radios' ARS port when it differs from the url's port (0: the url's port): "
            "where the gateway sends its ARS query when the link starts. Registrations are "
            "answered to the address they came from.",
        ),
        cai=OptionSpec(
            "int",
            12,
            int_range(1, 254),
            doc="Common Air Interface network of the radios: radio N is at "
            "`<cai>.(N>>16).((N>>8)&255).(N&255)` (12 in MOTOTRBO's default plan).",
        ),
        location_interval_s=OptionSpec(
            "float",
            60.0,
            float_range(0.0, 86400.0),
            doc="Each radio reports its position this often once registered (a triggered "
            "location request, in whole seconds); 0: no periodic reports.",
        ),
        location_distance_m=OptionSpec(
            "int",
            0,
            int_range(0, 100000),
            doc="Each radio also reports after moving this far (LRRP token 0x78; sources "
            "disagree on its meaning, confirm on a radio); 0: not asked.",
        ),
        arm_emergency=OptionSpec(
            "bool",
            True,
            doc="On registration, ask each radio to report its position on emergency, which "
            "the gateway raises as an `emergency` alarm with that position.",
        ),
        ars_refresh_min=OptionSpec(
            "int",
            REFRESH_MIN,
            int_range(30, 3810),
            doc="Refresh time the ARS answer asks of the radios, in minutes (rounded up to half "
            "hours). Keep `idle_timeout_s` above it: a radio silent on ARS that long is offline.",
        ),
        retry_intervals_s=OptionSpec(
            "float_list", (10.0, 20.0, 40.0), each(positive, max_items=16)
        ),
        text_limit=OptionSpec(
            "int",
            280,
            int_range(16, 280),
            doc="Longest text one message carries: 280 characters on current radios, 138 on "
            "first-generation ones. Longer texts go as numbered parts, `(1/2) ...`.",
        ),
        status_stages=OptionSpec(
            "str_list",
            (),
            each(preset_text, max_items=64),
            doc='The radios\' preset (quick) texts that answer a task, as `"text=stage"` '
            '(`["收到=acknowledged", "到达=on_scene"]`): a text that is exactly one of them '
            "reports that stage; other texts are read like any reply.",
        ),
        channel_hold_s=OptionSpec(
            "float",
            0.5,
            float_range(0.0, 10.0),
            doc="Seconds the radio channel is held for each datagram the gateway sends: the "
            "gateway hands the control station one at a time, most urgent first (acks, then "
            "urgent tasks), instead of filling its queue (about 0.5 s per DMR data message).",
        ),
        offline_after_s=OptionSpec("float", OFFLINE_AFTER_S, positive),
        # A radio registers again every refresh period: silence on ARS beyond 1.5 of them is a
        # missed refresh, and its session (and availability) ends.
        **dial_in_options(radio_id, idle_timeout_s=OFFLINE_AFTER_S),
    ),
    address=radio_id,
    address_example="1001",
    offline_after_s=OFFLINE_AFTER_S,
    transports=_UDP_LISTEN,
    capabilities=Capabilities(
        text=True,
        max_text_chars=280,
        location_poll=True,
        native_answers=True,
        alarms=True,
    ),
    driver="gateway.drivers.mototrbo.driver:MototrboDriver",
    docs="protocols/mototrbo.md",
)
