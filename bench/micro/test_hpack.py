"""HPACK decode of typical gRPC request headers: the hpack package, and GMF's caching decoder."""

from __future__ import annotations

import hpack
import pytest
from conftest import REQUEST_HEADERS, Wire

pytestmark = pytest.mark.benchmark(group="hpack")


def test_hpack_decode_first_request(benchmark, wire: Wire) -> None:
    """A new connection's first block: literals with incremental indexing."""

    def decode() -> list:
        return hpack.Decoder().decode(wire.first_block, raw=True)

    assert len(benchmark(decode)) == len(REQUEST_HEADERS)


def test_hpack_decode_steady_state(benchmark, wire: Wire) -> None:
    """Later requests on the connection: indexed fields only (the common case)."""
    decoder = wire.decoder_after_first
    assert len(benchmark(decoder.decode, wire.next_block, raw=True)) == len(REQUEST_HEADERS)


def test_hpack_encode_response_headers(benchmark) -> None:
    """What a naive server does per response: HPACK-encode the response headers and trailers."""
    encoder = hpack.Encoder()
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    trailers = [(b"grpc-status", b"0")]

    def encode() -> bytes:
        return encoder.encode(headers) + encoder.encode(trailers)

    assert benchmark(encode)


def test_gmf_decode_steady_state(benchmark, wire: Wire) -> None:
    codec = pytest.importorskip("gmf.protocol.hpack_codec")
    decoder = codec.CachingDecoder()
    decoder.decode(wire.first_block)
    assert len(benchmark(decoder.decode, wire.next_block)) == len(REQUEST_HEADERS)


def test_gmf_decode_first_request(benchmark, wire: Wire) -> None:
    codec = pytest.importorskip("gmf.protocol.hpack_codec")

    def decode() -> list:
        return codec.CachingDecoder().decode(wire.first_block)

    assert len(benchmark(decode)) == len(REQUEST_HEADERS)
