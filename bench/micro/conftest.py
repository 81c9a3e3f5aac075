"""Shared inputs of the microbenchmarks: the bytes a real gRPC client sends for one unary call.

Run with ``invoke bench --micro`` (or ``pytest bench/micro``); not part of the default
``pytest`` run (``testpaths = ["tests"]``).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import hpack
import pytest

ROOT = Path(__file__).resolve().parents[2]
for extra in (ROOT, ROOT / "examples" / "helloworld"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import helloworld_pb2  # noqa: E402

PATH = b"/helloworld.Greeter/SayHello"
# What grpcio's C-core client sends for a unary call (same fields and order).
REQUEST_HEADERS: list[tuple[bytes, bytes]] = [
    (b":scheme", b"http"),
    (b":method", b"POST"),
    (b":authority", b"127.0.0.1:50051"),
    (b":path", PATH),
    (b"te", b"trailers"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-python/1.85.3 grpc-c/52.0.0 (linux; chttp2)"),
    (b"grpc-accept-encoding", b"identity, deflate, gzip"),
    (b"grpc-timeout", b"4999913u"),
]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


@dataclass(frozen=True)
class Wire:
    first_block: bytes  # HPACK block of a connection's first request (literals, adds to the table)
    next_block: bytes  # the same headers again: indexed fields from the dynamic table
    message: bytes  # serialized HelloRequest(name="world")
    framed: bytes  # gRPC length-prefixed message (the DATA payload)
    client_start: bytes  # preface + SETTINGS
    decoder_after_first: hpack.Decoder

    def request(self, stream_id: int, block: bytes | None = None, credit: int = 0) -> bytes:
        """HEADERS (END_HEADERS) + DATA (END_STREAM) of one unary call.

        ``credit``: also return that many bytes of connection send window (a WINDOW_UPDATE on
        stream 0, as a real client does), so a long benchmark never runs out of window.
        """
        out = frame(0x1, 0x4, stream_id, block or self.next_block) + frame(0x0, 0x1, stream_id, self.framed)
        if credit:
            out += frame(0x8, 0, 0, struct.pack(">I", credit))
        return out


@pytest.fixture(scope="session")
def wire() -> Wire:
    encoder = hpack.Encoder()
    first = encoder.encode(REQUEST_HEADERS)
    nxt = encoder.encode(REQUEST_HEADERS)
    decoder = hpack.Decoder()
    decoder.decode(first)
    message = helloworld_pb2.HelloRequest(name="world").SerializeToString()
    return Wire(
        first_block=first,
        next_block=nxt,
        message=message,
        framed=struct.pack(">BI", 0, len(message)) + message,
        client_start=PREFACE + frame(0x4, 0, 0, b""),
        decoder_after_first=decoder,
    )
