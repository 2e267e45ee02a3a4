"""CRC-ITU as GT06 uses it: CRC-16/X-25 (``../shared/notes/gt06.md`` section 2).

Polynomial 0x1021 reflected (0x8408), initial value 0xFFFF, input and output reflected, final
XOR 0xFFFF; ``crc_x25(b"123456789") == 0x906E``. Not ``binascii.crc_hqx``, which is the
non-reflected CCITT-FALSE variant (0x29B1 for the same input): a tracker ignores a reply with
the wrong CRC and resends forever.

The table is computed here from the bitwise definition, once at import.
"""

from __future__ import annotations

from typing import Final

__all__ = ["crc_x25"]

_POLY_REFLECTED: Final = 0x8408


def _table() -> tuple[int, ...]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY_REFLECTED if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


_TABLE: Final = _table()


def crc_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X-25 of ``data``."""
    crc = 0xFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF
