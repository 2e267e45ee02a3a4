"""The jt808 protocol as configuration and dispatch see it (see :mod:`gateway.drivers.spec`).

Device address: the terminal's phone number; leading zeros are not significant.

The driver is :class:`gateway.drivers.jt808.driver.Jt808Driver`; the operators' page is
``docs/protocols/jt808.md``.
"""

from __future__ import annotations

from gateway.drivers.spec import (
    Capabilities,
    ProtocolSpec,
    dial_in_options,
    options,
)
from gateway.errors import ConfigError
from gateway.options import OptionSpec, each, float_range, non_empty, positive


def phone_number(address: str) -> str:
    """A terminal phone number of up to 20 digits; a 2013 terminal's 12 digits and the same
    number padded to 20 digits in 2019 are one device, so leading zeros are dropped."""
    if not address.isascii() or not address.isdigit() or len(address) > 20:
        raise ValueError(f"{address!r} is not a terminal phone number (up to 20 digits)")
    return address.lstrip("0") or "0"


def _question_text(value: str, key: str) -> str:
    """A question a terminal can show: 1 to 255 bytes of GBK (its length is one byte)."""
    try:
        size = len(non_empty(value, key).encode("gbk"))
    except UnicodeEncodeError:
        raise ConfigError(key, "must be text GBK can carry (no emoji)") from None
    if size > 255:
        raise ConfigError(key, f"is {size} bytes in GBK, at most 255")
    return value


SPEC = ProtocolSpec(
    name="jt808",
    title="JT/T 808 vehicle terminals, trackers and PoC radios (2013 and 2019)",
    options=options(
        offline_after_s=OptionSpec("float", 600.0, positive),
        **dial_in_options(phone_number),
        auth_timeout_s=OptionSpec(
            "float",
            60.0,
            positive,
            doc="A connection whose terminal has not authenticated (0x0102) within this many "
            "seconds is closed; until then its reports are answered with a failure (0x8001 "
            "result 1) and not published.",
        ),
        accept_unregistered=OptionSpec(
            "bool",
            False,
            None,
            doc="Accept the authentication (0x0102) of a terminal that never registered "
            "(0x0100) with this gateway, whatever code it sends: for cheap trackers that skip "
            "registration and send their phone number or IMEI as the code. The allow list "
            "still applies. Off: such a terminal is refused until it registers.",
        ),
        retry_intervals_s=OptionSpec(
            "float_list",
            (10.0, 20.0, 40.0),
            each(float_range(0.01, 3600.0), max_items=10),
            doc="A text (0x8300) is sent again after each of these waits until the terminal "
            "confirms it (0x0001); after the last one it is `failed`.",
        ),
        ask_to_accept=OptionSpec(
            "bool",
            False,
            None,
            doc="After a task's text is delivered to a 2013 terminal, ask it the `question` "
            "(0x8302, answers 1 accept / 2 decline); the terminal's 0x0302 answer makes the "
            "task `acknowledged` or `declined`. 2019 terminals are never asked (the standard "
            "deleted 0x8302). Only for terminals that show questions.",
        ),
        question=OptionSpec(
            "str",
            "接受任务?",
            _question_text,
            doc="The question `ask_to_accept` sends (GBK; the answers are 接受 and 拒绝).",
        ),
    ),
    address=phone_number,
    address_example="013800138000",
    offline_after_s=600.0,
    transports=frozenset({"listen"}),  # TCP only: no terminal has been tried over UDP
    capabilities=Capabilities(
        text=True,
        max_text_chars=500,
        voice=True,
        location_poll=True,
        native_answers=True,
        alarms=True,
    ),
    driver="gateway.drivers.jt808.driver:Jt808Driver",
    docs="protocols/jt808.md",
)
