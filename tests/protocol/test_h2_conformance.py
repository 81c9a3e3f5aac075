"""RFC 9113 request-side MUSTs of the sans-IO core, driven directly (no sockets): each malformed
request or trailer block (8.1.1, 8.2, 8.3) is a stream error PROTOCOL_ERROR and the next
request on the same connection is served; the error types of 5.1, 5.1.1 and 5.3.1. The same
cases against a real worker, with a grpcio bystander: tests/attacks/test_malformed.py."""

from __future__ import annotations

import struct

import pytest
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from gmf.protocol.h2conn import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from gmf.protocol.h2fields import check
from tests.helpers.malformed import MALFORMED_REQUESTS, MALFORMED_TRAILERS, WELL_FORMED_REQUESTS, request
from tests.helpers.rawh2 import frame
from tests.protocol.test_h2_limits import TRAILERS, Peer

PROTOCOL_ERROR, STREAM_CLOSED = 0x1, 0x5  # RFC 9113 7
pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too


def block(peer: Peer, fields) -> bytes:
    return peer.encoder.encode(fields)


def headers(peer: Peer, sid: int, fields, end_stream: bool = True, priority: bytes = b"") -> bytes:
    flags = 0x4 | (0x1 if end_stream else 0) | (0x20 if priority else 0)
    return frame(0x1, flags, sid, priority + block(peer, fields))


def resets(peer: Peer) -> list[tuple[int, int]]:
    return [(fr.stream_id, fr.error_code) for fr in peer.output() if isinstance(fr, RstStreamFrame)]


def connection_error(peer: Peer, events: list) -> int:
    ends = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert ends, f"expected a connection error, got {events}"
    goaways = [fr for fr in peer.output() if isinstance(fr, GoAwayFrame)]
    assert goaways and goaways[-1].error_code == ends[0].error_code
    return ends[0].error_code


def served_next(peer: Peer, sid: int) -> None:
    """The connection lives on: a good request on ``sid`` is received."""
    events = peer.send(headers(peer, sid, request()))
    assert [type(e) for e in events] == [RequestReceived] and events[0].stream_id == sid


@pytest.mark.parametrize("name", sorted(MALFORMED_REQUESTS))
def test_malformed_request_is_a_stream_error(name):
    fields, section = MALFORMED_REQUESTS[name]
    peer = Peer()
    events = peer.send(headers(peer, 1, fields))
    assert not [e for e in events if isinstance(e, RequestReceived)], f"malformed ({section}) request accepted"
    assert resets(peer) == [(1, PROTOCOL_ERROR)]
    served_next(peer, 3)
    served_next(peer, 5)  # a repeat of the block, now from the decoder's cache
    peer.send(headers(peer, 7, fields))
    assert resets(peer) == [(7, PROTOCOL_ERROR)]  # and the malformed one, cached, still refused


@pytest.mark.parametrize("name", sorted(WELL_FORMED_REQUESTS))
def test_well_formed_request_is_received(name):
    peer = Peer()
    events = peer.send(headers(peer, 1, WELL_FORMED_REQUESTS[name]))
    assert [type(e) for e in events] == [RequestReceived]
    assert not resets(peer)


@pytest.mark.parametrize("name", sorted(MALFORMED_TRAILERS))
def test_malformed_trailers_are_a_stream_error(name):
    fields, section = MALFORMED_TRAILERS[name]
    peer = Peer()
    peer.send(headers(peer, 1, request(), end_stream=False))
    events = peer.send(headers(peer, 1, fields))
    assert [type(e) for e in events] == [StreamReset] and events[0].error_code == PROTOCOL_ERROR, section
    assert resets(peer) == [(1, PROTOCOL_ERROR)]
    served_next(peer, 3)


def test_good_trailers_end_the_stream():
    peer = Peer()
    peer.send(headers(peer, 1, request(), end_stream=False))
    events = peer.send(headers(peer, 1, [("x-trailer", "1")]))
    assert [type(e) for e in events] == [StreamEnded]


def test_trailers_without_end_stream_are_a_stream_error():
    peer = Peer()
    peer.send(headers(peer, 1, request(), end_stream=False))
    events = peer.send(headers(peer, 1, [("x-trailer", "1")], end_stream=False))
    assert [type(e) for e in events] == [StreamReset]
    assert resets(peer) == [(1, PROTOCOL_ERROR)]


def test_a_block_is_checked_once():
    """The verdict lives on the decoder's cached HeaderList: repeats are not checked again."""
    peer = Peer()
    peer.send(headers(peer, 1, request()))  # fills the dynamic table: not cached
    first = peer.send(headers(peer, 3, request()))[0].headers  # indexed fields only: cached
    verdict = first.check
    assert verdict is not None and verdict.request_error is None
    second = peer.send(headers(peer, 5, request()))[0].headers
    assert second is first and second.check is verdict


# ------------------------------------------------------------------------ content-length (8.1.1)
@pytest.mark.parametrize("length, chunks, ok", [
    (5, [b"12345"], True),
    (5, [b"12", b"345"], True),
    (0, [b""], True),
    (5, [b"1234"], False),  # too little at END_STREAM
    (5, [b"123", b"456"], False),  # too much
])
def test_content_length_must_match_the_data(length, chunks, ok):
    peer = Peer()
    peer.send(headers(peer, 1, request(extra=[("content-length", str(length))]), end_stream=False))
    events = []
    for i, chunk in enumerate(chunks):
        events += peer.send(frame(0x0, 0x1 if i == len(chunks) - 1 else 0, 1, chunk))
    if ok:
        assert [type(e) for e in events] == [DataReceived] * len(chunks) and events[-1].end_stream
        assert not resets(peer)
    else:
        assert isinstance(events[-1], StreamReset) and events[-1].error_code == PROTOCOL_ERROR
        assert resets(peer) == [(1, PROTOCOL_ERROR)]
    served_next(peer, 3)


def test_content_length_with_end_stream_on_headers():
    peer = Peer()
    events = peer.send(headers(peer, 1, request(extra=[("content-length", "3")])))
    assert not events and resets(peer) == [(1, PROTOCOL_ERROR)]
    events = peer.send(headers(peer, 3, request(extra=[("content-length", "0")])))
    assert [type(e) for e in events] == [RequestReceived]


def test_trailers_before_the_announced_content():
    peer = Peer()
    peer.send(headers(peer, 1, request(extra=[("content-length", "10")]), end_stream=False) + frame(0x0, 0, 1, b"12345"))
    events = peer.send(headers(peer, 1, [("x-t", "1")]))
    assert isinstance(events[-1], StreamReset) and resets(peer) == [(1, PROTOCOL_ERROR)]


# ------------------------------------------------------------------------ error types (5.1, 5.1.1, 5.3.1)
def test_headers_on_a_closed_stream_is_stream_closed():
    """5.1: after both END_STREAMs the stream is closed; a frame other than PRIORITY,
    WINDOW_UPDATE or RST_STREAM on it is a connection error STREAM_CLOSED."""
    for late in (lambda p: headers(p, 1, [("x-late", "1")]), lambda p: headers(p, 1, request(), end_stream=False),
                 lambda p: frame(0x0, 0x1, 1, b"x")):
        peer = Peer()
        peer.send(headers(peer, 1, request()))
        peer.conn.send_headers(1, TRAILERS, end_stream=True)
        peer.output()
        assert connection_error(peer, peer.send(late(peer))) == STREAM_CLOSED


def test_headers_on_a_stream_the_client_reset_is_stream_closed():
    peer = Peer()
    peer.send(headers(peer, 1, request(), end_stream=False) + frame(0x3, 0, 1, struct.pack(">L", 8)))
    assert connection_error(peer, peer.send(headers(peer, 1, [("x-late", "1")]))) == STREAM_CLOSED


def test_headers_on_a_stream_id_never_opened_is_protocol_error():
    """5.1.1: a new stream's id must be above every id the client opened; HEADERS (with or
    without END_STREAM) on a lower id it never opened is a connection error PROTOCOL_ERROR."""
    for end_stream in (True, False):
        peer = Peer()
        peer.send(headers(peer, 5, request()))
        assert connection_error(peer, peer.send(headers(peer, 3, request(), end_stream=end_stream))) == PROTOCOL_ERROR


def test_trailers_in_flight_after_our_reset_are_ignored():
    """5.1: frames on a stream we reset are ignored (the client may have sent them before it
    saw our RST_STREAM)."""
    peer = Peer()
    peer.send(headers(peer, 1, request(), end_stream=False))
    peer.conn.reset_stream(1, PROTOCOL_ERROR)
    peer.output()
    events = peer.send(frame(0x0, 0, 1, b"abc") + headers(peer, 1, [("x-t", "1")]))
    assert not events and not peer.conn.terminated and not resets(peer)
    served_next(peer, 3)


def test_priority_on_itself_is_a_stream_error():
    """5.3.1: a stream cannot depend on itself, in HEADERS or in PRIORITY: stream error
    PROTOCOL_ERROR; other priorities are accepted and ignored."""
    peer = Peer()
    events = peer.send(headers(peer, 1, request(), priority=struct.pack(">LB", 1, 15)))
    assert not events and resets(peer) == [(1, PROTOCOL_ERROR)]
    events = peer.send(headers(peer, 3, request(), end_stream=False, priority=struct.pack(">LB", 0x80000001, 15)))
    assert [type(e) for e in events] == [RequestReceived] and not resets(peer)
    events = peer.send(frame(0x2, 0, 3, struct.pack(">LB", 3, 15)))  # an open stream
    assert [type(e) for e in events] == [StreamReset] and resets(peer) == [(3, PROTOCOL_ERROR)]
    assert not peer.send(frame(0x2, 0, 9, struct.pack(">LB", 9, 15)))  # an idle stream
    assert resets(peer) == [(9, PROTOCOL_ERROR)]
    assert not peer.send(frame(0x2, 0, 11, struct.pack(">LB", 1, 15)))  # not itself: ignored
    assert not resets(peer)
    assert not peer.send(headers(peer, 1, [("x-t", "1")]))  # trailers of stream 1, which we reset: ignored
    served_next(peer, 13)


def test_check_finds_both_verdicts_in_one_pass():
    good = [(n.encode(), v.encode()) for n, v in request()]
    verdict = check(good)
    assert verdict.request_error is None and verdict.trailers_error == "pseudo-header in trailers"
    assert check([(b"x-t", b"1")]).trailers_error is None
    assert check([(b"x-t", b"1")]).request_error == "missing :method"
    assert check(good + [(b"content-length", b"7")]).content_length == 7


def test_connect_needs_authority_only():
    """8.5: CONNECT has :method and :authority, no :scheme or :path (GMF answers it 405)."""
    assert check([(b":method", b"CONNECT"), (b":authority", b"h:443")]).request_error is None
    assert check([(b":method", b"CONNECT"), (b":authority", b"h:443"), (b":path", b"/")]).request_error
    assert check([(b":method", b"CONNECT")]).request_error



@pytest.mark.parametrize("name, value", [
    (b"::method", b"POST"), (b"x\x00y", b"1"), (b"x:", b"1"), (b"\x7f", b"1"), (b"x y", b"1"), (b"", b""),
    (b"x-v", b"\x00"), (b"x-v", b" "), (b"x-v", b"\t"), (b"x-v", b"a\r"), (b"te", b"gzip"),
])
def test_check_byte_rules_on_single_fields(name, value):
    """The block-at-once byte checks of h2fields, on the edges of their classes."""
    good = [(n.encode(), v.encode()) for n, v in request()]
    for position in (0, len(good)):  # first (before the pseudo-headers) and last
        headers = good[:position] + [(name, value)] + good[position:]
        assert check(headers).request_error is not None, (name, value, position)
    assert check([(b"x-ok", b"")]).trailers_error is None
