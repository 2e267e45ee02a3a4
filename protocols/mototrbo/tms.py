"""TMS, the Text Messaging Service (UDP 4007): text to and from a person at a radio.

Layout (``../shared/notes/mototrbo.md`` section 3; dmr-kaitai and ok-dmrlib vectors, dmrshark,
trbodatasvc, a TYT MD-390 capture in kf7eel/hbnet issue 11)::

    length u16 BE | first header | address length | address | SN header | [SN/encoding] | text

- First header: bit 7 ext (SN headers follow), bit 6 ack requested, bit 5 (set on texts and
  some acks), bit 4 control, bits 3-0 type (0 text, 0xF ack). Control + type 0 is the
  service availability message.
- SN header: bit 7 ext, bits 4-0 the sequence number's low 5 bits; the next byte (when ext):
  bits 6-5 its high 2 bits, bits 4-0 the encoding (``0x04``: UCS-2 / UTF-16LE). The sequence
  number is 7 bits; its header bytes are kept as received, because the ack echoes them.
- Text: UTF-16LE, usually ``<subject>\\r\\n<body>``; with no subject it starts ``\\r\\n``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from construct import BitsInteger, BitStruct, Flag

from protocols.mototrbo.common import MototrboError

ENCODING_UTF16LE: Final = 0x04
"""UCS-2 / UTF-16LE. Sources conflict (one blog says big-endian); every code source and
captured frame shows little-endian with this encoding value (notes section 3)."""
TEXT_ACK_REQUESTED_HEADER: Final = 0xE0
"""A text with ack requested (dmrshark: "0xe0 implies a TMS ACK packet"); ``0xA0`` without."""
ACK_FIRST_HEADER: Final = 0xBF
"""The first header of the acks we send: what a real radio sent (ok-dmrlib's UDP capture
``0003bf0007``). trbodatasvc sends ``0x9F``; both decode as acks everywhere."""
ACK_ECHOES_SN_HEADER_BYTES: Final = True
"""Sources conflict on an ack's sequence bytes: dmrshark echoes the received SN header byte,
ok-dmrlib's vector carries both SN header bytes, trbodatasvc sends one byte without the ext
bit. The majority (and the notes' advice) is to echo the SN header byte(s) as received;
docs/protocols/mototrbo.md says how to confirm it on a radio."""
MAX_SN: Final = 127
MAX_ADDRESS_BYTES: Final = 32
DEFAULT_MAX_TEXT_CHARS: Final = 280
"""Current radios show 280 characters; first-generation radios 138 (cwh050 wiki)."""
FIRST_GENERATION_MAX_TEXT_CHARS: Final = 138
SUBJECT_SEPARATOR: Final = "\r\n"

FIRST_HEADER: Final = BitStruct(
    "ext" / Flag,
    "ack_requested" / Flag,
    "bit5" / Flag,
    "control" / Flag,
    "pdu_type" / BitsInteger(4),
).compile()
SN_LOW: Final = BitStruct("ext" / Flag, "reserved" / BitsInteger(2), "sn_low" / BitsInteger(5))
SN_HIGH: Final = BitStruct("ext" / Flag, "sn_high" / BitsInteger(2), "encoding" / BitsInteger(5))


class TmsType(enum.IntEnum):
    TEXT = 0
    ACK = 0xF


@dataclass(frozen=True, slots=True)
class TmsText:
    """A text message. ``sn`` is None when it carries no sequence number."""

    text: str
    sn: int | None
    ack_requested: bool = True
    address: bytes = b""
    encoding: int = ENCODING_UTF16LE
    sn_header: bytes = b""
    """The SN header byte(s) as received, for the ack."""

    @property
    def subject(self) -> str:
        subject, sep, _ = self.text.partition(SUBJECT_SEPARATOR)
        return subject if sep else ""

    @property
    def body(self) -> str:
        """The text without its subject line (or the empty one: a leading CR LF)."""
        _, sep, body = self.text.partition(SUBJECT_SEPARATOR)
        return body if sep else self.text


@dataclass(frozen=True, slots=True)
class TmsAck:
    """The ack of a text. ``sn`` is None for an ack without SN; ``sn_bits`` is 7 when both SN
    header bytes came, 5 when one did (then only the low bits of ``sn`` are known)."""

    sn: int | None
    sn_header: bytes = b""
    address: bytes = b""

    @property
    def sn_bits(self) -> int:
        return 7 if len(self.sn_header) >= 2 else 5 if self.sn_header else 0

    def matches(self, sn: int) -> bool:
        """True when this ack answers our text with sequence number ``sn``."""
        if self.sn is None:
            return False
        return self.sn == sn if self.sn_bits == 7 else self.sn == sn & 0x1F


@dataclass(frozen=True, slots=True)
class TmsAvailability:
    """Service availability (control, type 0): a radio announcing its text service."""

    ack_requested: bool
    address: bytes = b""
    rest: bytes = b""


TmsMessage = TmsText | TmsAck | TmsAvailability


def _body(data: bytes) -> bytes:
    if len(data) < 4:
        raise MototrboError(f"TMS datagram of {len(data)} bytes is too short")
    length = int.from_bytes(data[:2], "big")
    if length < 2:
        raise MototrboError(f"TMS length {length} leaves no headers")
    if len(data) < 2 + length:
        # ok-dmrlib accepts a frame two bytes short of its length; we do not.
        raise MototrboError(f"TMS length says {length} bytes, {len(data) - 2} follow")
    return data[2 : 2 + length]


def _sn(body: bytes, pos: int) -> tuple[int | None, int, bytes, int]:
    """(sn, encoding, header bytes, next position) from the SN header(s) at ``pos``."""
    if pos >= len(body):
        raise MototrboError("TMS SN header missing")
    low = SN_LOW.parse(body[pos : pos + 1])
    sn = low.sn_low
    encoding = ENCODING_UTF16LE
    end = pos + 1
    if low.ext:
        if end >= len(body):
            raise MototrboError("TMS second SN header missing")
        high = SN_HIGH.parse(body[end : end + 1])
        sn |= high.sn_high << 5
        encoding = high.encoding
        end += 1
        if high.ext:
            raise MototrboError("TMS SN header chain longer than two bytes")
    return sn, encoding, body[pos:end], end


def decode(data: bytes) -> TmsMessage:
    """One TMS datagram; raises :class:`MototrboError` and nothing else for bad input."""
    body = _body(data)
    first = FIRST_HEADER.parse(body[:1])
    address_len = body[1]
    if address_len > MAX_ADDRESS_BYTES or 2 + address_len > len(body):
        raise MototrboError(f"TMS address of {address_len} bytes does not fit")
    address = body[2 : 2 + address_len]
    pos = 2 + address_len
    if first.pdu_type == TmsType.ACK:
        if not first.ext:
            return TmsAck(None, b"", address)
        ack_sn, _, header, _ = _sn(body, pos)
        return TmsAck(ack_sn, header, address)
    if first.pdu_type != TmsType.TEXT:
        raise MototrboError(f"TMS PDU type {first.pdu_type:#x} is not known")
    if first.control:
        return TmsAvailability(first.ack_requested, address, body[pos:])
    sn: int | None = None
    encoding = ENCODING_UTF16LE  # no SN header: assume the one encoding every radio uses
    header = b""
    if first.ext:
        sn, encoding, header, pos = _sn(body, pos)
    if encoding != ENCODING_UTF16LE:
        raise MototrboError(f"TMS text encoding {encoding:#x} is not supported")
    raw = body[pos:]
    if len(raw) % 2:
        raise MototrboError("TMS UTF-16 text has an odd number of bytes")
    try:
        text = raw.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise MototrboError(f"TMS text is not UTF-16LE: {exc.reason}") from None
    return TmsText(text, sn, first.ack_requested, address, encoding, header)


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(2, "big") + body


def _address(address: bytes) -> bytes:
    if len(address) > MAX_ADDRESS_BYTES:
        raise MototrboError(f"TMS address longer than {MAX_ADDRESS_BYTES} bytes")
    return bytes([len(address)]) + address


def sn_header(sn: int, encoding: int = ENCODING_UTF16LE) -> bytes:
    """The two SN header bytes for a 7-bit sequence number."""
    if not 0 <= sn <= MAX_SN:
        raise MototrboError(f"TMS sequence number {sn} is not 0..{MAX_SN}")
    low: bytes = SN_LOW.build({"ext": True, "reserved": 0, "sn_low": sn & 0x1F})
    high: bytes = SN_HIGH.build({"ext": False, "sn_high": sn >> 5, "encoding": encoding})
    return low + high


def encode_text(
    text: str, sn: int, *, ack_requested: bool = True, address: bytes = b"", subject: str = ""
) -> bytes:
    """A text with sequence number ``sn``, as UTF-16LE, with a subject line (empty: the text
    starts with CR LF, as radios send it)."""
    if SUBJECT_SEPARATOR in subject:
        raise MototrboError("a TMS subject cannot contain CR LF")
    first = TEXT_ACK_REQUESTED_HEADER if ack_requested else TEXT_ACK_REQUESTED_HEADER & ~0x40
    payload = (subject + SUBJECT_SEPARATOR + text).encode("utf-16-le", errors="surrogatepass")
    return _frame(bytes([first]) + _address(address) + sn_header(sn) + payload)


def encode_raw_text(message: TmsText) -> bytes:
    """``message`` as it was received (its text as is, its SN header bytes as they came)."""
    first = FIRST_HEADER.build(
        {
            "ext": bool(message.sn_header),
            "ack_requested": message.ack_requested,
            "bit5": True,
            "control": False,
            "pdu_type": TmsType.TEXT,
        }
    )
    payload = message.text.encode("utf-16-le", errors="surrogatepass")
    return _frame(first + _address(message.address) + message.sn_header + payload)


def encode_ack(received: TmsText | bytes, *, first_header: int = ACK_FIRST_HEADER) -> bytes:
    """The ack of a received text: its SN header bytes echoed (see
    :data:`ACK_ECHOES_SN_HEADER_BYTES`), or the given SN header bytes."""
    header = received.sn_header if isinstance(received, TmsText) else received
    address = received.address if isinstance(received, TmsText) else b""
    if not header:
        return _frame(bytes([first_header & ~0x80]) + _address(address))
    if not ACK_ECHOES_SN_HEADER_BYTES:  # pragma: no cover - the other reading, kept named
        header = bytes([header[0] & 0x7F])
    return _frame(bytes([first_header]) + _address(address) + header)


def encode_ack_for(sn: int) -> bytes:
    """An ack for sequence number ``sn`` in the two-byte form (what a radio's stub sends)."""
    return _frame(bytes([ACK_FIRST_HEADER, 0]) + sn_header(sn, encoding=0))


def fits(text: str, max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> bool:
    """True when ``text`` fits the radio's display limit (UTF-16 code units)."""
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2 <= max_chars
