"""Length-prefixed request messages, decompressed: what gRPC-Web and Connect streaming share.

Both frame messages as gRPC does (1 flag byte, 4-byte big-endian length); flag bit 0 means the
message is compressed with the call's encoding (``grpc-encoding`` / ``connect-content-encoding``).
Framing errors and the size limit come from ``gmf.protocol.grpc.MessageDecoder``.
"""

from __future__ import annotations

from ..protocol import grpc as g


class MessageStream:
    __slots__ = ("_encoding", "_header", "_max", "_messages")

    def __init__(self, max_message_length: int, encoding: str | None, header: str) -> None:
        self._messages = g.MessageDecoder(max_message_length)
        self._encoding = None if encoding in (None, "identity") else encoding
        self._max = max_message_length
        self._header = header  # named in the error for a compressed message without an encoding

    def feed(self, data: bytes) -> list[bytes]:
        out = []
        for compressed, payload in self._messages.feed(data):
            if compressed:
                if self._encoding is None:
                    raise g.GrpcError(g.INTERNAL, f"Compressed message received without {self._header}")
                payload = g.decompress(self._encoding, payload, self._max)
            out.append(payload)
        return out

    @property
    def buffered(self) -> int:
        return self._messages.buffered
