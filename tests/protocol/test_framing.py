"""The byte-level framing helpers the hot path uses instead of building each header from an int:
cached message prefixes, DATA headers from cached pieces, and the decoder's one-message path.
Each must give exactly what the plain construction gives, at and around every cache bound."""

from __future__ import annotations

import struct

import pytest

from gmf.protocol import frames as f
from gmf.protocol import grpc as g


def reference_prefix(payload: bytes, compressed: bool) -> bytes:
    return struct.pack(">BI", 1 if compressed else 0, len(payload)) + payload


@pytest.mark.parametrize("size", [0, 1, 100, 255, 256, 1023, 1024, 1025, 70000])
@pytest.mark.parametrize("compressed", [False, True])
def test_frame_message_matches_the_plain_prefix(size: int, compressed: bool) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for _ in range(2):  # the second time from the cache (small, uncompressed)
        assert g.frame_message(payload, compressed) == reference_prefix(payload, compressed)


@pytest.mark.parametrize("length", [0, 1, 107, 4095, 4096, 16384, (1 << 24) - 1])
@pytest.mark.parametrize("sid", [1, 3, 0x1234567, (1 << 31) - 1])
def test_data_header_matches_frame_header(length: int, sid: int) -> None:
    tail = f.data_tail(sid)
    assert len(tail) == 6
    for _ in range(2):
        assert f.data_header(length, tail) == f.frame_header(length, f.DATA, 0, sid)
    assert f.frame_header(length, f.DATA, 0, sid) == struct.pack(">I", length)[1:] + struct.pack(">BBI", 0, 0, sid)


def test_feed_one_takes_exactly_one_whole_uncompressed_message() -> None:
    dec = g.MessageDecoder(1 << 20)
    assert dec.feed_one(g.frame_message(b"hello")) == b"hello"
    assert dec.feed_one(g.frame_message(b"")) == b""
    assert dec.buffered == 0


@pytest.mark.parametrize(
    "data",
    [
        g.frame_message(b"hello")[:-1],  # incomplete
        g.frame_message(b"ab") + g.frame_message(b"c"),  # two messages
        g.frame_message(b"zz", compressed=True),  # compressed: the call decompresses
        b"\x00\x00\x00",  # shorter than a prefix
        b"\x02\x00\x00\x00\x01x",  # invalid flag: feed raises
    ],
)
def test_feed_one_leaves_everything_else_to_feed(data: bytes) -> None:
    dec = g.MessageDecoder(1 << 20)
    assert dec.feed_one(data) is None
    assert dec.buffered == 0  # nothing consumed: feed sees all of it


def test_feed_one_leaves_limits_and_errors_to_feed() -> None:
    dec = g.MessageDecoder(4)
    big = g.frame_message(b"hello")
    assert dec.feed_one(big) is None
    with pytest.raises(g.GrpcError) as err:
        dec.feed(big)
    assert err.value.code == g.RESOURCE_EXHAUSTED
    bad = g.MessageDecoder(100)
    assert bad.feed_one(b"\x02\x00\x00\x00\x01x") is None
    with pytest.raises(g.GrpcError) as err:
        bad.feed(b"\x02\x00\x00\x00\x01x")
    assert err.value.code == g.INTERNAL


def test_feed_one_does_not_skip_what_feed_buffered() -> None:
    dec = g.MessageDecoder(1 << 20)
    whole = g.frame_message(b"first") + g.frame_message(b"second")
    assert dec.feed(whole[:7]) == []  # the start of "first" is buffered
    assert dec.feed_one(g.frame_message(b"x")) is None  # must not jump ahead of it
    assert dec.feed(whole[7:]) == [(False, b"first"), (False, b"second")]
    assert dec.feed_one(g.frame_message(b"x")) == b"x"  # nothing buffered any more
