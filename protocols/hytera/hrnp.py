"""HRNP, the Hytera Radio Network Protocol: the frame and session layer between a PC and a
radio on its serial port (and, for radio control, on its USB network interface).

Facts (``../shared/notes/hytera.md`` section 2; sources OK-DMR/ok-dmrlib
``okdmr/tests/dmrlib/hytera/pdu/test_hrnp.py``, alebo62/HyteraNetRpt ``udp_rcp.cpp``,
OK-DMR/Hytera_Homebrew_Bridge ``tests/data/hrnp.*.bin``), big-endian:

=====  ====  ===============================================================
off    size  field
=====  ====  ===============================================================
0      1     header ``0x7E``
1      1     version (``0x04`` current; ``0x03`` and ``0x00`` seen in captures)
2      1     block (``0x00`` in every capture)
3      1     opcode: CONNECT ``FE``, ACCEPT ``FD``, REJECT ``FC``, CLOSE ``FB``,
             CLOSE_ACK ``FA``, DATA ``00``, DATA_ACK ``10`` (VOICE ``01``)
4      1     source (PC ``0x20``, radio ``0x10``)
5      1     destination
6      2     packet number (DATA_ACK echoes the DATA's)
8      2     total length, the 12-byte header included
10     2     checksum: RFC 1071 over the frame with these two bytes zero
12     n     data (an HDAP PDU, DATA only)
=====  ====  ===============================================================

The streaming decoder discards bytes until ``0x7E``, waits for the header, checks the length
(12 to :data:`MAX_FRAME_BYTES`) and the checksum; a header or checksum that fails costs one
byte (it resynchronises on the next ``0x7E`` after the bad start), so garbage between frames
loses only the damaged frame. Its buffer never holds more than one frame's worth plus one read.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from construct import Bytes, Const, Int8ub, Int16ub, Struct, this

from protocols.hytera.errors import HyteraError

__all__ = [
    "HEADER",
    "HEADER_BYTES",
    "MAX_FRAME_BYTES",
    "PC_ADDRESS",
    "RADIO_ADDRESS",
    "HrnpDecoder",
    "HrnpFrame",
    "HrnpOpcode",
    "HrnpRejected",
    "decode_frame",
    "encode_frame",
    "internet_checksum",
]

HEADER: Final = 0x7E
HEADER_BYTES: Final = 12
MAX_FRAME_BYTES: Final = 1500
"""Longest frame accepted. HDAP text of 256 UTF-16 units is about 560 bytes; nothing the
radio sends comes near this. It caps what a peer that sends a huge length can make us buffer."""
PC_ADDRESS: Final = 0x20
RADIO_ADDRESS: Final = 0x10
DEFAULT_VERSION: Final = 0x04
MAX_VERSION: Final = 0x04
"""Versions 0x00, 0x03 and 0x04 are seen in captures; a higher one is taken for noise."""


class HrnpOpcode(enum.IntEnum):
    DATA = 0x00
    VOICE = 0x01
    DATA_ACK = 0x10
    CLOSE_ACK = 0xFA
    CLOSE = 0xFB
    REJECT = 0xFC
    ACCEPT = 0xFD
    CONNECT = 0xFE


_OPCODES: Final = frozenset(int(op) for op in HrnpOpcode)

# The layout as data. The streaming decoder below reads the header with ``struct`` instead:
# this compiled construct parses about 266k frames/s against struct's millions
# (../shared/notes/performance.md), and ``bench/hytera.py`` shows the splitter is the hot path.
FRAME: Final = Struct(
    "header" / Const(bytes([HEADER])),
    "version" / Int8ub,
    "block" / Int8ub,
    "opcode" / Int8ub,
    "src" / Int8ub,
    "dst" / Int8ub,
    "packet_number" / Int16ub,
    "length" / Int16ub,
    "checksum" / Int16ub,
    "data" / Bytes(this.length - HEADER_BYTES),
).compile()
_HEADER: Final = struct.Struct(">BBBBBBHHH")


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071: the one's complement of the one's complement sum of big-endian 16-bit words
    (an odd length padded with one zero byte)."""
    view = bytes(data)
    if len(view) & 1:
        view += b"\x00"
    total: int = sum(struct.unpack(f">{len(view) // 2}H", view))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True, slots=True)
class HrnpFrame:
    """One HRNP frame; ``raw`` is the bytes it came from (empty for one built to send)."""

    opcode: int
    src: int
    dst: int
    packet_number: int = 0
    data: bytes = b""
    version: int = DEFAULT_VERSION
    block: int = 0
    raw: bytes = b""

    @property
    def name(self) -> str:
        return HrnpOpcode(self.opcode).name if self.opcode in _OPCODES else f"0x{self.opcode:02X}"


@dataclass(frozen=True, slots=True)
class HrnpRejected:
    """Bytes the decoder dropped, and why (a short fixed word, for counters)."""

    reason: str
    raw: bytes


def encode_frame(frame: HrnpFrame) -> bytes:
    """The frame's bytes, length and checksum computed."""
    length = HEADER_BYTES + len(frame.data)
    if length > MAX_FRAME_BYTES:
        raise HyteraError(f"HRNP frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    for name, value, bits in (
        ("version", frame.version, 8),
        ("block", frame.block, 8),
        ("opcode", frame.opcode, 8),
        ("src", frame.src, 8),
        ("dst", frame.dst, 8),
        ("packet_number", frame.packet_number, 16),
    ):
        if not 0 <= value < (1 << bits):
            raise HyteraError(f"HRNP {name} {value} does not fit {bits} bits")
    head = _HEADER.pack(
        HEADER, frame.version, frame.block, frame.opcode, frame.src, frame.dst,
        frame.packet_number, length, 0,
    )  # fmt: skip
    checksum = internet_checksum(head + frame.data)
    return head[:10] + checksum.to_bytes(2, "big") + frame.data


def decode_frame(data: bytes) -> HrnpFrame:
    """Exactly one frame; raises :class:`HyteraError` for anything else."""
    if len(data) < HEADER_BYTES:
        raise HyteraError(f"HRNP frame of {len(data)} bytes is shorter than its header")
    header, version, block, opcode, src, dst, number, length, checksum = _HEADER.unpack_from(data)
    if header != HEADER:
        raise HyteraError(f"HRNP frame starts with 0x{header:02X}, not 0x7E")
    if length != len(data):
        raise HyteraError(f"HRNP length field {length} but {len(data)} bytes")
    if length > MAX_FRAME_BYTES:
        raise HyteraError(f"HRNP frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    computed = internet_checksum(data[:10] + b"\x00\x00" + data[12:])
    if computed != checksum:
        raise HyteraError(f"HRNP checksum 0x{checksum:04X}, computed 0x{computed:04X}")
    if opcode not in _OPCODES:
        raise HyteraError(f"HRNP opcode 0x{opcode:02X} unknown")
    if version > MAX_VERSION:
        raise HyteraError(f"HRNP version 0x{version:02X} unknown")
    return HrnpFrame(opcode, src, dst, number, bytes(data[12:]), version, block, bytes(data))


class HrnpDecoder:
    """Bytes in (any chunking), frames and rejections out, in order.

    A header is taken as one only when it is plausible: a known opcode, version 0 to
    :data:`MAX_VERSION`, block 0 (every capture) and a length from 12 to ``max_frame_bytes``;
    so a stray ``0x7E`` in noise rarely makes the decoder wait for a length it made up. When
    it does, :meth:`resync` (called by the reader after a quiet spell) gives up on the
    frame in progress and looks for the next ``0x7E``.
    """

    __slots__ = ("_buffer", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self.max_frame_bytes = max_frame_bytes

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def resync(self) -> list[HrnpFrame | HrnpRejected]:
        """Drop the incomplete frame's first byte (nothing more came for it) and decode what
        follows it: the rejected bytes and any frames behind them."""
        if not self._buffer:
            return []
        dropped = bytes(self._buffer[:1])
        del self._buffer[:1]
        return [HrnpRejected("truncated", dropped), *self.feed(b"")]

    def feed(self, data: bytes) -> list[HrnpFrame | HrnpRejected]:
        buffer = self._buffer
        buffer += data
        out: list[HrnpFrame | HrnpRejected] = []
        start = 0
        size = len(buffer)
        unpack = _HEADER.unpack_from
        while True:
            at = buffer.find(b"\x7e", start)
            if at < 0:
                if size > start:
                    out.append(HrnpRejected("noise", bytes(buffer[start:])))
                start = size
                break
            if at > start:
                out.append(HrnpRejected("noise", bytes(buffer[start:at])))
                start = at
            if size - at < HEADER_BYTES:
                break
            _, _, _, opcode, src, dst, number, length, checksum = unpack(buffer, at)
            if (
                length < HEADER_BYTES
                or length > self.max_frame_bytes
                or opcode not in _OPCODES
                or buffer[at + 1] > MAX_VERSION
                or buffer[at + 2] != 0
            ):
                out.append(HrnpRejected("header", bytes(buffer[at : at + HEADER_BYTES])))
                start = at + 1
                continue
            if size - at < length:
                break
            frame = bytes(buffer[at : at + length])
            if internet_checksum(frame[:10] + b"\x00\x00" + frame[12:]) != checksum:
                out.append(HrnpRejected("checksum", frame))
                start = at + 1
                continue
            out.append(HrnpFrame(opcode, src, dst, number, frame[12:], frame[1], frame[2], frame))
            start = at + length
        del buffer[:start]
        return out
