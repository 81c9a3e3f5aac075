"""gRPC-Web, sans-IO: content types, the request decoder (binary and base64 text), the response
encoder with the trailers as the last frame of the body.

Spec: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md. Messages use the gRPC
length-prefixed framing (``gmf.protocol.grpc``); a frame whose flag byte has the MSB set carries
the trailers, as an HTTP/1 header block (``name: value\\r\\n`` lines, lower-case names). The
``-text`` content types carry the same bytes base64-encoded; a response may be a concatenation
of separately padded base64 chunks, so the decoder accepts padding at any 4-character boundary.

Answers to bad input (the HTTP status is 200 and the status is in the trailers frame, as
gRPC-Web clients expect):

- invalid base64 in a ``-text`` body -> ``INVALID_ARGUMENT`` "invalid base64 in grpc-web-text body";
- a frame flag other than 0/1 (a trailers frame in a request) -> ``INTERNAL`` (as gRPC);
- a message over the receive limit -> ``RESOURCE_EXHAUSTED`` (as gRPC);
- body ending inside a frame -> ``INTERNAL`` "Incomplete message at end of stream".

Binary (``-bin``) trailers are base64 in both modes, as Envoy and connect-go send them (the
spec's "skipped" second encoding would put raw bytes into a line-based block).
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from ..protocol import grpc as g
from .framing import MessageStream
from .sink import NOTHING, Head, Out

Header = tuple[bytes, bytes]

_TRAILER_FLAG = 0x80
_PREFIX = struct.Struct(">BL")

CONTENT_TYPES = {
    b"application/grpc-web": False,
    b"application/grpc-web+proto": False,
    b"application/grpc-web-text": True,
    b"application/grpc-web-text+proto": True,
}


@dataclass(frozen=True, slots=True)
class GrpcWebFormat:
    text: bool
    content_type: bytes  # echoed in the response


def parse_content_type(value: bytes) -> GrpcWebFormat | None:
    """``application/grpc-web[-text][+proto]`` (parameters ignored) -> its format, else None."""
    base = value.split(b";", 1)[0].strip().lower()
    text = CONTENT_TYPES.get(base)
    return None if text is None else GrpcWebFormat(text, base)


def is_grpc_web(value: bytes) -> bool:
    """Any ``application/grpc-web*`` type (including codecs GMF does not serve, such as +json)."""
    return value[:20].lower() == b"application/grpc-web"


class Base64Stream:
    """Incremental base64 decoder for a stream of separately padded base64 chunks."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data if self._pending else data
        usable = len(buf) - len(buf) % 4
        self._pending = buf[usable:]
        region = buf[:usable]
        if not region:
            return b""
        try:
            if b"=" not in region:
                return base64.b64decode(region, validate=True)
            out = []
            start = 0
            while start < usable:
                pad = region.find(b"=", start)
                if pad < 0:
                    out.append(base64.b64decode(region[start:], validate=True))
                    break
                end = pad - pad % 4 + 4  # the end of the quantum holding the padding
                out.append(base64.b64decode(region[start:end], validate=True))
                start = end
            return b"".join(out)
        except (binascii.Error, ValueError):
            raise g.GrpcError(g.INVALID_ARGUMENT, "invalid base64 in grpc-web-text body") from None

    def end(self) -> None:
        if self._pending:
            raise g.GrpcError(g.INVALID_ARGUMENT, "invalid base64 in grpc-web-text body (truncated)")


class GrpcWebRequestDecoder:
    """Request body chunks -> messages, decompressed per ``grpc-encoding`` (as gRPC does).

    A compressed frame without ``encoding`` (or with ``identity``) is ``INTERNAL``; an encoding
    GMF does not support is ``UNIMPLEMENTED`` (answer with ``grpc-accept-encoding``).
    """

    __slots__ = ("_messages", "_text")

    def __init__(self, fmt: GrpcWebFormat, max_message_length: int, encoding: str | None = None) -> None:
        self._messages = MessageStream(max_message_length, encoding, "grpc-encoding")
        self._text = Base64Stream() if fmt.text else None

    def feed(self, data: bytes) -> list[bytes]:
        if self._text is not None:
            data = self._text.feed(data)
        return self._messages.feed(data) if data else []

    def end(self) -> None:
        """The body ended: raise ``GrpcError`` if it ended inside a frame or a base64 quantum."""
        if self._text is not None:
            self._text.end()
        if self._messages.buffered:
            raise g.GrpcError(g.INTERNAL, "Incomplete message at end of stream")


def trailer_block(code: int, message: str, metadata: list[Header]) -> bytes:
    lines = [b"grpc-status: %d\r\n" % code]
    if message:
        lines.append(b"grpc-message: " + g.percent_encode(message).encode("ascii") + b"\r\n")
    lines.extend(name + b": " + value + b"\r\n" for name, value in metadata)
    return b"".join(lines)


def trailer_frame(code: int, message: str, metadata: list[Header]) -> bytes:
    block = trailer_block(code, message, metadata)
    return _PREFIX.pack(_TRAILER_FLAG, len(block)) + block


def parse_trailer_block(block: bytes) -> list[Header]:
    """The inverse of :func:`trailer_block` (used by tests and by a client)."""
    out: list[Header] = []
    for line in block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append((name.strip().lower(), value.strip()))
    return out


class GrpcWebResponse:
    """A :class:`gmf.web.sink.ResponseEncoder` for gRPC-Web.

    ``unary=True`` holds the message until ``finish`` so the whole response goes out with a
    ``content-length`` in one write; streaming responses send the head at ``start`` and each
    message as it comes (chunked on HTTP/1.1).
    """

    __slots__ = ("_body", "_fmt", "_head_sent", "_unary", "_metadata")

    def __init__(self, fmt: GrpcWebFormat, *, unary: bool = False) -> None:
        self._fmt = fmt
        self._unary = unary
        self._head_sent = False
        self._metadata: list[Header] = []
        self._body: list[bytes] = []

    @property
    def head_sent(self) -> bool:
        return self._head_sent

    def _head(self, content_length: int | None) -> Head:
        self._head_sent = True
        return Head(200, [(b"content-type", self._fmt.content_type), *self._metadata], content_length)

    def _encode(self, data: bytes) -> bytes:
        return base64.b64encode(data) if self._fmt.text else data

    def start(self, metadata: list[Header]) -> Out:
        if self._head_sent:
            raise RuntimeError("initial metadata was already sent")
        self._metadata = list(metadata)
        if self._unary:
            self._head_sent = True  # logically sent: held for one write at finish
            return NOTHING
        return Out(self._head(None))

    def message(self, payload: bytes) -> Out:
        frame = g.frame_message(payload)
        if self._unary:
            self._head_sent = True
            self._body.append(frame)
            return NOTHING
        head = None if self._head_sent else self._head(None)
        return Out(head, self._encode(frame))

    def finish(self, code: int, message: str, metadata: list[Header]) -> Out:
        trailers = trailer_frame(code, message, metadata)
        if self._unary:
            body = self._encode(b"".join(self._body) + trailers)
            self._body = []
            return Out(self._head(len(body)), body, True)
        if not self._head_sent:  # trailers-only: the head and the trailers frame
            body = self._encode(trailers)
            return Out(self._head(len(body)), body, True)
        return Out(None, self._encode(trailers), True)


def decode_response(body: bytes, text: bool) -> tuple[list[bytes], list[Header]]:
    """A whole response body -> (messages, trailers): a small client half for tests and tools."""
    data = Base64Stream().feed(body) if text else body
    messages: list[bytes] = []
    trailers: list[Header] = []
    pos = 0
    while pos + 5 <= len(data):
        flag, length = _PREFIX.unpack_from(data, pos)
        payload = data[pos + 5 : pos + 5 + length]
        if flag & _TRAILER_FLAG:
            trailers = parse_trailer_block(payload)
        else:
            messages.append(payload)
        pos += 5 + length
    return messages, trailers
