"""gRPC message framing: 5-byte prefix + protobuf (de)serialization of helloworld messages."""

from __future__ import annotations

import struct

import helloworld_pb2
import pytest
from conftest import Wire

pytestmark = pytest.mark.benchmark(group="grpc message framing")

PREFIX = struct.Struct(">BI")


def test_frame_reply(benchmark) -> None:
    def encode() -> bytes:
        payload = helloworld_pb2.HelloReply(message="Hello world!").SerializeToString()
        return PREFIX.pack(0, len(payload)) + payload

    assert len(benchmark(encode)) == 5 + 14


def test_unframe_request(benchmark, wire: Wire) -> None:
    def decode() -> str:
        _flag, length = PREFIX.unpack_from(wire.framed)
        return helloworld_pb2.HelloRequest.FromString(wire.framed[5 : 5 + length]).name

    assert benchmark(decode) == "world"


def test_gmf_message_decoder(benchmark, wire: Wire) -> None:
    grpc_proto = pytest.importorskip("gmf.protocol.grpc")

    def decode() -> int:
        return len(grpc_proto.MessageDecoder(4 << 20).feed(wire.framed))

    assert benchmark(decode) == 1


def test_gmf_frame_message(benchmark, wire: Wire) -> None:
    grpc_proto = pytest.importorskip("gmf.protocol.grpc")
    assert len(benchmark(grpc_proto.frame_message, wire.message)) == len(wire.framed)
