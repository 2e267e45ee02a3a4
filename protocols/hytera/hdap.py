"""HDAP, the Hytera DMR Application Protocol envelope that every service rides in.

Facts (``../shared/notes/hytera.md`` section 4; sources OK-DMR/dmr-kaitai
``radio_control_protocol.ksy`` for the byte order, alebo62/HyteraNetRpt ``checksum.cpp``, and
the checksum verified on the 35 good vectors of ``../shared/vectors/hytera.json``):

=====  ====  ===============================================================
off    size  field
=====  ====  ===============================================================
0      1     bit 7 reliable flag; bits 6-0 service (``02`` RCP, ``08`` LP, ``09`` TMP,
             ``11`` RRS, ``12`` TP, ``13`` DTP, ``14`` DDS)
1      2     opcode
3      2     payload length
5      n     payload
5+n    1     checksum: ``(0x32 - sum(opcode, length and payload bytes)) & 0xFF``
6+n    1     end ``0x03``
=====  ====  ===============================================================

RCP is little-endian (opcode and length); every other service is big-endian.

Decision (sources conflict, notes section 10.3): a HyteraNetRpt capture ends with ``0x00``
instead of ``0x03`` although both checksums verify. :func:`decode_envelope` accepts any end
byte and keeps it in :attr:`HdapEnvelope.end_byte`, so a caller can count the oddity; the
checksum is always verified (ok-dmrlib's parser does not: a decoder must).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from construct import Bytes, Int8ub, Int16ub, Int16ul, Struct, this

from protocols.hytera.errors import HyteraError

__all__ = [
    "END",
    "MAX_PAYLOAD_BYTES",
    "HdapEnvelope",
    "Service",
    "checksum",
    "decode_envelope",
    "encode_envelope",
]

END: Final = 0x03
MAX_PAYLOAD_BYTES: Final = 1400
"""Inside one HRNP frame (1500 bytes) or one UDP datagram from the radio."""


class Service(enum.IntEnum):
    RCP = 0x02
    LP = 0x08
    TMP = 0x09
    RRS = 0x11
    TP = 0x12
    DTP = 0x13
    DDS = 0x14


_SERVICES: Final = frozenset(int(s) for s in Service)

# Layouts as data: the big-endian services and the little-endian RCP. The decoder reads the
# five header bytes with ``struct`` (two unpacks; the compiled construct costs several times
# more per frame on the receive path, see ``bench/hytera.py``); these are what tests and the
# docs check the layout against.
ENVELOPE_BE: Final = Struct(
    "service" / Int8ub,
    "opcode" / Int16ub,
    "length" / Int16ub,
    "payload" / Bytes(this.length),
    "checksum" / Int8ub,
    "end" / Int8ub,
).compile()
ENVELOPE_LE: Final = Struct(
    "service" / Int8ub,
    "opcode" / Int16ul,
    "length" / Int16ul,
    "payload" / Bytes(this.length),
    "checksum" / Int8ub,
    "end" / Int8ub,
).compile()
_BE: Final = struct.Struct(">BHH")
_LE: Final = struct.Struct("<BHH")


def checksum(body: bytes | bytearray | memoryview) -> int:
    """The envelope checksum over opcode, length and payload."""
    return (0x32 - sum(body)) & 0xFF


@dataclass(frozen=True, slots=True)
class HdapEnvelope:
    """One HDAP PDU: service, opcode (as a number in the service's byte order) and payload."""

    service: int
    opcode: int
    payload: bytes = b""
    reliable: bool = False
    end_byte: int = END

    @property
    def little_endian(self) -> bool:
        return self.service == Service.RCP


def encode_envelope(env: HdapEnvelope) -> bytes:
    if env.service not in _SERVICES:
        raise HyteraError(f"HDAP service 0x{env.service:02X} unknown")
    if len(env.payload) > MAX_PAYLOAD_BYTES:
        raise HyteraError(f"HDAP payload of {len(env.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if not 0 <= env.opcode <= 0xFFFF:
        raise HyteraError(f"HDAP opcode {env.opcode} does not fit 16 bits")
    first = env.service | (0x80 if env.reliable else 0)
    head = (_LE if env.little_endian else _BE).pack(first, env.opcode, len(env.payload))
    body = head[1:] + env.payload
    return head[:1] + body + bytes((checksum(body), env.end_byte))


def decode_envelope(data: bytes) -> HdapEnvelope:
    """Exactly one envelope (a UDP datagram, or an HRNP DATA frame's data)."""
    if len(data) < 7:
        raise HyteraError(f"HDAP of {len(data)} bytes is shorter than its envelope")
    first = data[0]
    service = first & 0x7F
    if service not in _SERVICES:
        raise HyteraError(f"HDAP service 0x{service:02X} unknown")
    _, opcode, length = (_LE if service == Service.RCP else _BE).unpack_from(data)
    if length != len(data) - 7:
        raise HyteraError(f"HDAP length field {length} but {len(data) - 7} payload bytes")
    stored = data[5 + length]
    computed = checksum(memoryview(data)[1 : 5 + length])
    if stored != computed:
        raise HyteraError(f"HDAP checksum 0x{stored:02X}, computed 0x{computed:02X}")
    return HdapEnvelope(service, opcode, data[5 : 5 + length], bool(first & 0x80), data[-1])
