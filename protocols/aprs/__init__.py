"""APRS over AX.25 UI frames: typed packets, decoders and encoders (sans-IO).

Typical receive path: ``kiss.KissDecoder.feed`` -> ``ax25.decode`` -> :func:`decode_frame`. Typical
send path: :func:`sanitize_text` -> :func:`split_message_text` -> :func:`encode_message` ->
``ax25.encode`` -> ``kiss.encode_frame``.
"""

from protocols.aprs.common import sanitize_text
from protocols.aprs.decode import decode_frame, decode_info
from protocols.aprs.messages import (
    MAX_MESSAGE_TEXT_BYTES,
    encode_ack,
    encode_bulletin,
    encode_message,
    encode_rej,
    encode_status,
    split_message_text,
)
from protocols.aprs.mice import MIC_E_STATUSES, encode_mic_e
from protocols.aprs.model import (
    AprsAck,
    AprsBulletin,
    AprsError,
    AprsMessage,
    AprsPacket,
    AprsPosition,
    AprsRej,
    AprsStatus,
    AprsUnknown,
    PositionFormat,
)
from protocols.aprs.position import encode_position

__all__ = [
    "MAX_MESSAGE_TEXT_BYTES",
    "MIC_E_STATUSES",
    "AprsAck",
    "AprsBulletin",
    "AprsError",
    "AprsMessage",
    "AprsPacket",
    "AprsPosition",
    "AprsRej",
    "AprsStatus",
    "AprsUnknown",
    "PositionFormat",
    "decode_frame",
    "decode_info",
    "encode_ack",
    "encode_bulletin",
    "encode_message",
    "encode_mic_e",
    "encode_position",
    "encode_rej",
    "encode_status",
    "sanitize_text",
    "split_message_text",
]
