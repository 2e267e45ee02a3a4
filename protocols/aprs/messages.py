"""APRS messages, acks, rejects, bulletins and status reports; outgoing text rules.

Sources (facts only, no code taken):

- APRS101 ch.14 "Messages, Bulletins and Announcements" (https://op-co.de/tmp/APRS101/APRS.html):
  ``:`` + addressee (exactly 9 characters, space padded) + ``:`` + text (0-67 characters; no ``|``,
  ``~``, ``{``) + optional ``{`` + message number (1-5 alphanumerics); ``ack``/``rej`` + the message
  number; addressee ``BLN0``-``BLN9`` bulletins, ``BLNA``-``BLNZ`` announcements.
- APRS 1.1 reply-acks, http://www.wa8lmf.net/bruninga/aprs/replyacks.txt: ``{MM}AA`` on messages,
  ``ackMM}AA`` on acks.
- APRS101 ch.16 "Status Reports": ``>`` + optional ``DDHHMMz`` + text, at most 62 characters without
  the timestamp and 55 with it; no ``|`` or ``~``.
- ``docs/protocols/aprs.md`` section 3: strip trailing whitespace before parsing (a TNC's trailing
  space must not turn an ack into a message); accept an unpadded addressee; limit text to 67 bytes
  of UTF-8 rather than 67 characters.
"""

from __future__ import annotations

import re
from datetime import datetime

from protocols.aprs.common import (
    check_text,
    decode_text,
    decode_timestamp,
    encode_timestamp_dhm,
)
from protocols.aprs.model import (
    AprsAck,
    AprsBulletin,
    AprsError,
    AprsMessage,
    AprsRej,
    AprsStatus,
)

__all__ = [
    "MAX_MESSAGE_TEXT_BYTES",
    "MAX_STATUS_TEXT_BYTES",
    "MAX_STATUS_TEXT_BYTES_WITH_TIMESTAMP",
    "decode_message",
    "decode_status",
    "encode_ack",
    "encode_bulletin",
    "encode_message",
    "encode_rej",
    "encode_status",
    "split_message_text",
]

MAX_MESSAGE_TEXT_BYTES = 67
MAX_STATUS_TEXT_BYTES = 62
MAX_STATUS_TEXT_BYTES_WITH_TIMESTAMP = 55

_ACK_RE = re.compile(rb"(ack|rej)([A-Za-z0-9]{1,5})(?:(\})([A-Za-z0-9]{0,5}))?")
_MSGNO_RE = re.compile(rb"([A-Za-z0-9]{1,5})(?:(\})([A-Za-z0-9]{0,5}))?")
_MSGNO_TEXT_RE = re.compile(r"[A-Za-z0-9]{1,5}", re.ASCII)
_REPLY_ACK_TEXT_RE = re.compile(r"[A-Za-z0-9]{0,5}", re.ASCII)
_ADDRESSEE_RE = re.compile(r"[!-9;-~]{1,9}", re.ASCII)  # printable ASCII without ':' or space
_BULLETIN_ID_RE = re.compile(r"[A-Za-z0-9]{1,6}", re.ASCII)


def decode_message(data: bytes, raw: bytes) -> AprsMessage | AprsAck | AprsRej | AprsBulletin:
    """Decode ``data`` (an info field starting with ``:``, trailing whitespace already stripped)."""
    colon = data.find(b":", 1, 11)  # exactly at 10 on the wire; earlier when the sender did not pad
    if colon < 0:
        raise AprsError(
            f"message addressee not terminated by ':' within 9 characters: {data[:12]!r}"
        )
    addressee = decode_text(data[1:colon]).strip()
    if not addressee:
        raise AprsError("message with an empty addressee")
    body = data[colon + 1 :]
    if addressee.startswith("BLN"):
        return AprsBulletin(addressee, decode_text(body), raw)
    if body[:3] in (b"ack", b"rej"):
        m = _ACK_RE.fullmatch(body)
        if m is not None:
            msgno = m.group(2).decode("ascii")
            reply = m.group(4).decode("ascii") if m.group(3) else None
            if m.group(1) == b"ack":
                return AprsAck(addressee, msgno, reply, raw)
            return AprsRej(addressee, msgno, reply, raw)
    brace = body.rfind(b"{")
    if brace >= 0:
        m = _MSGNO_RE.fullmatch(body, brace + 1)
        if m is not None:
            reply = m.group(3).decode("ascii") if m.group(2) else None
            return AprsMessage(
                addressee, decode_text(body[:brace]), m.group(1).decode("ascii"), reply, raw
            )
    return AprsMessage(addressee, decode_text(body), None, None, raw)


def decode_status(data: bytes, raw: bytes, now: datetime | None) -> AprsStatus:
    """``>`` + optional ``DDHHMMz`` (APRS101) or ``HHMMSSh`` (seen in practice) + text."""
    body = data[1:]
    ts = body[:7]
    if len(ts) == 7 and ts[:6].isdigit() and ts[6:7] in (b"z", b"h"):
        return AprsStatus(decode_text(body[7:]), decode_timestamp(ts, now), raw)
    return AprsStatus(decode_text(body), None, raw)


def _addressee_field(addressee: str, bulletin: bool = False) -> bytes:
    if not _ADDRESSEE_RE.fullmatch(addressee):
        raise AprsError(
            f"addressee must be 1-9 printable ASCII characters without ':': {addressee!r}"
        )
    if not bulletin and addressee.upper().startswith("BLN"):
        raise AprsError(f"addressee {addressee!r} starts with BLN: a bulletin (APRS101 ch.14)")
    return b":" + addressee.encode("ascii").ljust(9) + b":"


def _check_msgno(msgno: str) -> bytes:
    if not _MSGNO_TEXT_RE.fullmatch(msgno):
        raise AprsError(f"message number must be 1-5 letters or digits: {msgno!r}")
    return msgno.encode("ascii")


def _reply_suffix(reply_ack: str | None) -> bytes:
    if reply_ack is None:
        return b""
    if not _REPLY_ACK_TEXT_RE.fullmatch(reply_ack):
        raise AprsError(f"reply-ack must be 0-5 letters or digits: {reply_ack!r}")
    return b"}" + reply_ack.encode("ascii")


def encode_message(
    addressee: str, text: str, msgno: str | None = None, reply_ack: str | None = None
) -> bytes:
    """``:ADDRESSEE:text{msgno`` (``{msgno}reply`` with ``reply_ack``).

    ``text`` must already obey the rules (at most 67 UTF-8 bytes, no ``|~{`` or control characters):
    run it through :func:`sanitize_text` and :func:`split_message_text` first. Raises
    :class:`AprsError`.
    """
    out = _addressee_field(addressee) + check_text(text, "message text", MAX_MESSAGE_TEXT_BYTES)
    if msgno is not None:
        out += b"{" + _check_msgno(msgno) + _reply_suffix(reply_ack)
    elif reply_ack is not None:
        raise AprsError("a reply-ack needs a message number")
    return out


def encode_ack(addressee: str, msgno: str, reply_ack: str | None = None) -> bytes:
    """``:ADDRESSEE:ackMSGNO``; ``addressee`` is the sender of the message being acknowledged."""
    return _addressee_field(addressee) + b"ack" + _check_msgno(msgno) + _reply_suffix(reply_ack)


def encode_rej(addressee: str, msgno: str, reply_ack: str | None = None) -> bytes:
    """``:ADDRESSEE:rejMSGNO``: refuse a message (the sender stops retrying)."""
    return _addressee_field(addressee) + b"rej" + _check_msgno(msgno) + _reply_suffix(reply_ack)


def encode_bulletin(bulletin_id: str, text: str) -> bytes:
    """``:BLNid     :text`` (``id`` 0-9 bulletin, A-Z announcement); bulletins carry no msgno."""
    if not _BULLETIN_ID_RE.fullmatch(bulletin_id):
        raise AprsError(f"bulletin id must be 1-6 letters or digits: {bulletin_id!r}")
    text_bytes = check_text(text, "bulletin text", MAX_MESSAGE_TEXT_BYTES)
    return _addressee_field("BLN" + bulletin_id, bulletin=True) + text_bytes


def encode_status(text: str, timestamp: datetime | None = None) -> bytes:
    """``>[DDHHMMz]text``; text limits 62 bytes, or 55 with a timestamp (APRS101 ch.16)."""
    if timestamp is None:
        return b">" + check_text(text, "status text", MAX_STATUS_TEXT_BYTES)
    body = check_text(text, "status text", MAX_STATUS_TEXT_BYTES_WITH_TIMESTAMP)
    return b">" + encode_timestamp_dhm(timestamp) + body


def _take(text: str, budget: int) -> tuple[str, str]:
    """Split ``text`` into a head of at most ``budget`` UTF-8 bytes and the rest.

    Cuts at a code point boundary; prefers the last space when that keeps at least half the budget
    (the space itself is dropped).
    """
    data = text.encode("utf-8")
    if len(data) <= budget:
        return text, ""
    cut = budget
    while cut > 0 and (data[cut] & 0xC0) == 0x80:  # data[cut] continues a character: back off
        cut -= 1
    if cut == 0:
        raise AprsError(f"limit of {budget} bytes cannot hold one character")
    space = data.rfind(b" ", 0, cut + 1)
    if space >= budget // 2:
        return data[:space].decode("utf-8"), data[space + 1 :].decode("utf-8")
    return data[:cut].decode("utf-8"), data[cut:].decode("utf-8")


def split_message_text(text: str, limit: int = MAX_MESSAGE_TEXT_BYTES) -> list[str]:
    """Split ``text`` into message texts of at most ``limit`` UTF-8 bytes each.

    Text that fits is returned as is, in a one-element list. Longer text becomes numbered parts
    ``"(1/3) ..."``, ``"(2/3) ..."``, the prefix counted in the limit: radios show each message on
    its own, retries can reorder them, and the numbering lets the person reassemble them and see
    that one is missing, at a cost of 6 bytes of 67 per part. Cuts never fall inside a UTF-8
    character (they may fall between a base character and a combining mark); a space near the end of
    a part is preferred as the cut and then dropped. The text is not sanitised here: call
    :func:`sanitize_text` first.
    """
    if len(text.encode("utf-8")) <= limit:
        return [text]
    for digits in (1, 2, 3):
        parts: list[str] = []
        rest = text
        while rest:
            prefix_len = len(str(len(parts) + 1)) + digits + 4  # "(" i "/" n ") "
            if limit - prefix_len < 4:
                raise AprsError(f"limit {limit} leaves no room for text after the part number")
            head, rest = _take(rest, limit - prefix_len)
            parts.append(head)
            if len(parts) >= 10**digits and rest:
                break
        if not rest and len(parts) < 10**digits:
            total = len(parts)
            return [f"({i}/{total}) {part}" for i, part in enumerate(parts, 1)]
    raise AprsError("text needs more than 999 messages")
