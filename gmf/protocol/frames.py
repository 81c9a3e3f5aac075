"""HTTP/2 frame constants and serializers (RFC 9113 section 4 and 6)."""

from __future__ import annotations

import struct
from typing import Final

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Final: compiled, the modules that use these read them as constants folded in at build time,
# not as attributes of this module looked up per frame.

# frame types
DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

# flags
FLAG_END_STREAM: Final = 0x1
FLAG_ACK: Final = 0x1
FLAG_END_HEADERS: Final = 0x4
FLAG_PADDED: Final = 0x8
FLAG_PRIORITY: Final = 0x20

# settings identifiers
SETTINGS_HEADER_TABLE_SIZE: Final = 0x1
SETTINGS_ENABLE_PUSH: Final = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS: Final = 0x3
SETTINGS_INITIAL_WINDOW_SIZE: Final = 0x4
SETTINGS_MAX_FRAME_SIZE: Final = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE: Final = 0x6

# error codes
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
SETTINGS_TIMEOUT: Final = 0x4
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
CONNECT_ERROR: Final = 0xA
ENHANCE_YOUR_CALM: Final = 0xB
INADEQUATE_SECURITY: Final = 0xC
HTTP_1_1_REQUIRED: Final = 0xD

DEFAULT_WINDOW: Final = 65535
DEFAULT_MAX_FRAME: Final = 16384
MAX_WINDOW: Final = 2**31 - 1

_U32 = struct.Struct(">L")
_U32x2 = struct.Struct(">LL")
_SETTING = struct.Struct(">HL")


def frame_header(length: int, ftype: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header of a frame (RFC 9113 4.1). One int's ``to_bytes``: compiled, about half
    the cost of ``struct.pack`` with its five arguments (a header per DATA frame sent)."""
    return (length << 48 | ftype << 40 | flags << 32 | stream_id).to_bytes(9, "big")


# DATA frame headers are made from two cached pieces (a stream sends many): the 3-byte length,
# from this list for frames of fewer than 4,096 bytes (filled as lengths are first used), and
# the stream's 6 bytes after it (``data_tail``, kept on the stream). Compiled, one concatenation
# instead of ``frame_header``'s to_bytes (boxing an int of 9 bytes, then its byte array).
_SHORT_FRAME: Final = 4096
_LENGTHS: Final[list[bytes | None]] = [None] * _SHORT_FRAME


def data_tail(stream_id: int) -> bytes:
    """Type, flags (none) and stream id: what follows the length in this stream's DATA headers."""
    return (DATA << 40 | stream_id).to_bytes(6, "big")


def data_header(length: int, tail: bytes) -> bytes:
    """``frame_header(length, DATA, 0, stream_id)`` given ``tail = data_tail(stream_id)``."""
    if length < _SHORT_FRAME:
        head = _LENGTHS[length]
        if head is None:
            head = _LENGTHS[length] = length.to_bytes(3, "big")
        return head + tail
    return length.to_bytes(3, "big") + tail


def settings_frame(settings: dict[int, int]) -> bytes:
    body = b"".join(_SETTING.pack(k, v) for k, v in settings.items())
    return frame_header(len(body), SETTINGS, 0, 0) + body


SETTINGS_ACK = frame_header(0, SETTINGS, FLAG_ACK, 0)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame_header(4, WINDOW_UPDATE, 0, stream_id) + increment.to_bytes(4, "big")


def rst_stream(stream_id: int, error_code: int) -> bytes:
    return frame_header(4, RST_STREAM, 0, stream_id) + _U32.pack(error_code)


def goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    return frame_header(8 + len(debug), GOAWAY, 0, 0) + _U32x2.pack(last_stream_id, error_code) + debug


_PING_HEADER: Final = frame_header(8, PING, 0, 0)
_PING_ACK_HEADER: Final = frame_header(8, PING, FLAG_ACK, 0)  # grpc-go clients ping every few reads (BDP)


def ping(payload: bytes, ack: bool) -> bytes:
    return (_PING_ACK_HEADER if ack else _PING_HEADER) + payload


def headers_frames(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS (+ CONTINUATION frames when the block exceeds the peer's max frame size)."""
    flags = FLAG_END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame_header(len(block), HEADERS, flags | FLAG_END_HEADERS, stream_id) + block
    chunks = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
    out = [frame_header(len(chunks[0]), HEADERS, flags, stream_id), chunks[0]]
    for i, chunk in enumerate(chunks[1:], start=2):
        last = FLAG_END_HEADERS if i == len(chunks) else 0
        out += [frame_header(len(chunk), CONTINUATION, last, stream_id), chunk]
    return b"".join(out)
