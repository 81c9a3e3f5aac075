"""The receive side of the sans-IO core: frames are cut straight out of each read, and a frame
(or the preface) split across reads, anywhere, is put together without changing what comes out."""

from __future__ import annotations

import pytest
from hyperframe.frame import GoAwayFrame

from gmf.protocol import frames as f
from gmf.protocol.h2conn import ConnectionTerminated, DataReceived, H2ServerConnection, RequestReceived
from tests.helpers.rawh2 import PREFACE, SETTINGS_EMPTY, frame
from tests.protocol.test_h2_limits import REQUEST, Peer

pytestmark = pytest.mark.core


def conversation() -> bytes:
    """A client's first bytes: preface, SETTINGS, a request on each of two streams with a
    message in two DATA frames on one of them."""
    peer = Peer()  # only for its HPACK encoder
    return (PREFACE + SETTINGS_EMPTY + peer.request(1, end_stream=False) + peer.request(3)
            + frame(0x0, 0, 1, b"\x00\x00\x00\x00\x05he") + frame(0x0, 0x1, 1, b"llo"))


def summary(events: list) -> list[tuple]:
    out = []
    for e in events:
        if isinstance(e, RequestReceived):
            out.append(("request", e.stream_id, e.headers[2][1]))
        elif isinstance(e, DataReceived):
            out.append(("data", e.stream_id, bytes(e.data), e.end_stream))
        elif isinstance(e, ConnectionTerminated):
            out.append(("terminated", e.error_code))
    return out


def receive_in_pieces(data: bytes, cuts: list[int]) -> list:
    conn = H2ServerConnection()
    conn.initiate_connection()
    events: list = []
    start = 0
    for cut in [*cuts, len(data)]:
        events += conn.receive_data(data[start:cut])
        start = cut
    return events


def test_every_split_of_the_bytes_gives_the_same_events() -> None:
    data = conversation()
    whole = summary(receive_in_pieces(data, []))
    assert whole == [("request", 1, b"/helloworld.Greeter/SayHello"), ("request", 3, b"/helloworld.Greeter/SayHello"),
                     ("data", 1, b"\x00\x00\x00\x00\x05he", False), ("data", 1, b"llo", True)]
    for cut in range(1, len(data)):  # one cut anywhere: in the preface, a header, a payload
        assert summary(receive_in_pieces(data, [cut])) == whole, cut
    # byte by byte, and in uneven runs that leave parts of several frames behind
    assert summary(receive_in_pieces(data, list(range(1, len(data))))) == whole
    assert summary(receive_in_pieces(data, list(range(7, len(data), 13)))) == whole


def test_an_oversized_frame_is_refused_once_its_header_is_whole() -> None:
    """FRAME_SIZE_ERROR as soon as the 9 header bytes are in, however they were split: the
    server does not hold the announced payload first (RFC 9113 4.2)."""
    peer = Peer()
    header = f.frame_header(f.DEFAULT_MAX_FRAME + 1, f.DATA, 0, 1)
    assert peer.send(header[:4]) == []
    events = peer.send(header[4:] + b"x" * 100)
    assert [e.error_code for e in events if isinstance(e, ConnectionTerminated)] == [f.FRAME_SIZE_ERROR]
    goaways = [fr for fr in peer.output() if isinstance(fr, GoAwayFrame)]
    assert goaways and goaways[-1].error_code == f.FRAME_SIZE_ERROR
    assert peer.send(b"more") == []  # a terminated connection takes nothing more


def test_a_large_frame_across_many_reads_is_assembled_once() -> None:
    peer = Peer()
    peer.send(peer.request(1, end_stream=False))
    body = bytes(range(256)) * 60  # 15,360 bytes: under the frame size, in 100 reads
    data = frame(0x0, 0x1, 1, body)
    events: list = []
    for i in range(0, len(data), len(data) // 100 + 1):
        events += peer.send(data[i : i + len(data) // 100 + 1])
    received = [e for e in events if isinstance(e, DataReceived)]
    assert len(received) == 1 and received[0].data == body and received[0].end_stream
    assert len(peer.conn._buf) == 0  # nothing left held


def test_requests_decode_in_order_after_a_split_header_block() -> None:
    peer = Peer()
    request = peer.request(1)
    assert peer.send(request[:5]) == []
    events = peer.send(request[5:])
    assert [e.headers[0] for e in events if isinstance(e, RequestReceived)] == [(b":method", b"POST")]
    assert REQUEST[0] == (":method", "POST")
