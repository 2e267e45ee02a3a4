"""What the three MOTOTRBO services share: the error type, radio addressing, and the
variable-length numbers of LRRP (uintvar, ufloatvar, sfloatvar).

Facts and their sources: ``../shared/notes/mototrbo.md`` (section 1 for addressing, section 4
for the number encodings). Pure functions, no I/O.
"""

from __future__ import annotations

import math
from typing import Final

from protocols import ProtocolError

MAX_RADIO_ID: Final = 0xFFFFFF
"""DMR radio ids are 24 bits."""
DEFAULT_CAI: Final = 12
"""Common Air Interface network of the radios (MOTOTRBO System Planner: radio 12045 is
12.0.47.13); the PC behind a control station answers as CAI + 1."""
MAX_VAR_BYTES: Final = 8
"""Longest uintvar accepted (56 bits): a longer run of continuation bytes is garbage, and
the cap keeps a hostile datagram from building a huge integer."""


class MototrboError(ProtocolError):
    """A MOTOTRBO datagram (ARS, TMS or LRRP) is malformed, or a value cannot be encoded.

    The only exception the codecs raise for bad input."""


def radio_ip(radio_id: int, cai: int = DEFAULT_CAI) -> str:
    """The IPv4 address of radio ``radio_id``: ``cai.(id>>16).((id>>8)&255).(id&255)``."""
    if not 1 <= radio_id <= MAX_RADIO_ID:
        raise MototrboError(f"radio id {radio_id} is outside 1..{MAX_RADIO_ID}")
    if not 0 <= cai <= 255:
        raise MototrboError(f"CAI {cai} is not one byte")
    return f"{cai}.{radio_id >> 16}.{(radio_id >> 8) & 255}.{radio_id & 255}"


def radio_id_of(ip: str, cai: int = DEFAULT_CAI) -> int | None:
    """The radio id behind ``ip`` on network ``cai``; None for any other address."""
    parts = ip.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        return None
    a, b, c, d = (int(p) for p in parts)
    if a != cai or max(b, c, d) > 255:
        return None
    radio_id = (b << 16) | (c << 8) | d
    return radio_id if radio_id >= 1 else None


# --- variable-length numbers (LRRP, binary MBXML) ----------------------------------------


def read_uintvar(data: bytes, pos: int) -> tuple[int, int]:
    """A uintvar at ``pos``: 7 bits per byte, high bit set on all but the last, big-endian
    groups (250 = ``81 7A``). Returns (value, next position)."""
    value = 0
    for _ in range(MAX_VAR_BYTES):
        if pos >= len(data):
            raise MototrboError("uintvar runs past the end")
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos
    raise MototrboError(f"uintvar longer than {MAX_VAR_BYTES} bytes")


def encode_uintvar(value: int) -> bytes:
    if value < 0 or value >= 1 << (7 * MAX_VAR_BYTES):
        raise MototrboError(f"{value} does not fit a uintvar")
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(groups))


def _read_fraction(data: bytes, pos: int) -> tuple[float, int]:
    """The fraction of a float: a uintvar whose n bytes mean value / 128**n."""
    start = pos
    value, pos = read_uintvar(data, pos)
    return value / (128 ** (pos - start)), pos


def read_ufloatvar(data: bytes, pos: int) -> tuple[float, int]:
    """A ufloatvar: a uintvar integer part, then a uintvar fraction (value / 128**n)."""
    integer, pos = read_uintvar(data, pos)
    fraction, pos = _read_fraction(data, pos)
    return integer + fraction, pos


def read_sfloatvar(data: bytes, pos: int) -> tuple[float, int]:
    """An sfloatvar: like a ufloatvar, but bit 6 of the first byte is the sign and only bits
    5-0 of it carry value (inferred from vectors: ``70 40 2b`` = -0.336, ``82 53 4e`` =
    339.61; notes section 4)."""
    if pos >= len(data):
        raise MototrboError("sfloatvar runs past the end")
    first = data[pos]
    negative = bool(first & 0x40)
    value = first & 0x3F
    pos += 1
    more = bool(first & 0x80)
    count = 1
    while more:
        if pos >= len(data):
            raise MototrboError("sfloatvar runs past the end")
        if count >= MAX_VAR_BYTES:
            raise MototrboError(f"sfloatvar longer than {MAX_VAR_BYTES} bytes")
        byte = data[pos]
        pos += 1
        count += 1
        value = (value << 7) | (byte & 0x7F)
        more = bool(byte & 0x80)
    fraction, pos = _read_fraction(data, pos)
    magnitude = value + fraction
    return (-magnitude if negative else magnitude), pos


FRACTION_BYTES: Final = 1
"""Fraction bytes written by the encoders: 1/128 resolution (0.8 cm/s, 8 mm), as the radios
in the vectors send."""


def _encode_fraction(fraction: float) -> bytes:
    return bytes([min(127, round(fraction * 128))])


def _split(value: float) -> tuple[int, float]:
    integer = int(value)
    fraction = value - integer
    if round(fraction * 128) >= 128:  # 0.999 rounds up into the integer part
        integer, fraction = integer + 1, 0.0
    return integer, fraction


def encode_ufloatvar(value: float) -> bytes:
    if not math.isfinite(value) or value < 0:
        raise MototrboError(f"{value} is not a non-negative finite number")
    integer, fraction = _split(value)
    return encode_uintvar(integer) + _encode_fraction(fraction)


def encode_sfloatvar(value: float) -> bytes:
    if not math.isfinite(value):
        raise MototrboError(f"{value} is not a finite number")
    integer, fraction = _split(abs(value))
    sign = 0x40 if value < 0 else 0
    if integer >= 1 << (6 + 7 * (MAX_VAR_BYTES - 1)):
        raise MototrboError(f"{value} does not fit an sfloatvar")
    groups = []
    while integer >= 0x40:
        groups.append(integer & 0x7F)
        integer >>= 7
    head = sign | integer
    body = list(reversed(groups))
    if body:
        head |= 0x80
        body = [b | 0x80 for b in body[:-1]] + [body[-1]]
    return bytes([head, *body]) + _encode_fraction(fraction)
