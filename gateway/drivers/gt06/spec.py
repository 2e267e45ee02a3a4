"""The gt06 protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the 15-digit IMEI. Trackers dial in over TCP (``listen://``); each connection
is a session bound to the IMEI of its login (:mod:`gateway.drivers.gt06.driver`).
"""

from __future__ import annotations

import re
from typing import Final

from gateway.drivers.spec import (
    Capabilities,
    ProtocolSpec,
    dial_in_options,
    options,
)
from gateway.errors import ConfigError
from gateway.options import OptionSpec, each, int_range, one_of, positive


def imei(address: str) -> str:
    """A 15-digit IMEI, as the tracker sends it in its login."""
    if not address.isascii() or not address.isdigit() or len(address) != 15:
        raise ValueError(f"{address!r} is not an IMEI (15 digits)")
    return address


_OFFSET_RE: Final = re.compile(r"\A([+-])(\d{2}):(\d{2})\Z")
TIME_ZONE_UTC: Final = "UTC"
TIME_ZONE_LOGIN: Final = "login"


def time_zone_offset_minutes(value: str) -> int | None:
    """Minutes east of UTC for ``"UTC"`` or ``"+08:00"``; ``None`` for ``"login"``;
    :class:`ValueError` for anything else."""
    if value == TIME_ZONE_UTC:
        return 0
    if value == TIME_ZONE_LOGIN:
        return None
    match = _OFFSET_RE.match(value)
    if match is None:
        raise ValueError(f'{value!r} is not "UTC", "login" or an offset like "+08:00"')
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3))
    if hours > 14 or minutes >= 60:
        raise ValueError(f"{value!r} is not a UTC offset")
    return (hours * 60 + minutes) * (-1 if sign == "-" else 1)


def _time_zone(value: str, key: str) -> str:
    try:
        time_zone_offset_minutes(value)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return value


SPEC = ProtocolSpec(
    name="gt06",
    title="GT06 GPS trackers (Concox and compatible)",
    options=options(
        offline_after_s=OptionSpec("float", 600.0, positive),
        **dial_in_options(imei, idle_timeout_s=600.0),
        login_timeout_s=OptionSpec(
            "float",
            30.0,
            positive,
            doc="A connection that has not logged in (packet 0x01 with an IMEI the link "
            "accepts) within this many seconds is closed. Trackers log in at once after "
            "connecting.",
        ),
        max_frame_bytes=OptionSpec(
            "int",
            1024,
            int_range(64, 65541),
            doc="The longest packet accepted, start to stop bytes. A longer length field is "
            "rejected at once (counted as `oversize`) instead of buffered.",
        ),
        time_zone=OptionSpec(
            "str",
            TIME_ZONE_UTC,
            _time_zone,
            doc='The zone of the times in classic location and alarm packets (0x12, 0x16): `"UTC"` '
            '(set the trackers to UTC with the SMS `GMT,E,0#`), a fixed offset such as `"+08:00"` '
            '(the factory default of many trackers), or `"login"`: the zone each tracker states '
            "in its extended login (UTC when it does not). Packets 0x22, 0x26 and 0x27 are UTC "
            "whatever this says. Positions are always published in UTC.",
        ),
        has_screen=OptionSpec(
            "bool",
            False,
            doc="The trackers of this link have a screen that shows the text of an online command "
            "(0x80): tasks and `send_text` go to them as 0x80 and the tracker's reply (0x15 or "
            "0x21) makes the task `delivered`. Without a screen, text to them fails at once.",
        ),
        text_encoding=OptionSpec(
            "str",
            "ascii",
            one_of("ascii", "utf-8"),
            doc='How text is written into an 0x80 command: `"ascii"` (the vendor documents; '
            'text with other characters fails) or `"utf-8"` for screens that show it. At most '
            "251 bytes fit one command.",
        ),
        retry_intervals_s=OptionSpec(
            "float_list",
            (30.0, 60.0, 120.0),
            each(positive, max_items=16),
            doc="An 0x80 text without a reply is sent again after each of these intervals (the "
            "same server flag, so a late reply to any copy counts); after the last it has failed.",
        ),
    ),
    address=imei,
    address_example="123456789012345",
    offline_after_s=600.0,
    transports=frozenset({"listen"}),
    capabilities=Capabilities(
        text=True,
        # One 0x80 command carries at most 251 bytes: 80 characters of Chinese in UTF-8.
        max_text_chars=80,
        alarms=True,
    ),
    driver="gateway.drivers.gt06.driver:Gt06Driver",
    docs="protocols/gt06.md",
)
