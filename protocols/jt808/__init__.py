"""JT/T 808 (2011/2013 and 2019): framing, header, bodies, subpackage reassembly. Pure, sans-IO.

Layouts and facts: ``../shared/notes/jt808.md`` (sources cited per section there).
"""

from protocols.jt808.framing import (
    Frame,
    FrameSplitter,
    Header,
    Jt808Error,
    Rejected,
    decode_bcd_phone,
    decode_frame,
    encode_bcd_phone,
    encode_frame,
    escape,
    unescape,
    xor_check,
)
from protocols.jt808.reassembly import Reassembler

__all__ = [
    "Frame",
    "FrameSplitter",
    "Header",
    "Jt808Error",
    "Reassembler",
    "Rejected",
    "decode_bcd_phone",
    "decode_frame",
    "encode_bcd_phone",
    "encode_frame",
    "escape",
    "unescape",
    "xor_check",
]
