"""The send side of the sans-IO core: consecutive DATA of a stream share a frame, a whole
response goes out in one piece (send_response), and both respect windows and frame sizes."""

from __future__ import annotations

import struct

from hyperframe.frame import DataFrame, HeadersFrame

from gmf.protocol import frames as f
from tests.helpers.rawh2 import frame
from tests.protocol.test_h2_limits import Peer

BLOCK = b"\x88"


def open_streams(peer: Peer, *sids: int) -> None:
    for sid in sids:
        peer.send(peer.request(sid))
    peer.output()


def test_consecutive_data_of_a_stream_share_one_frame() -> None:
    peer = Peer()
    open_streams(peer, 1, 3)
    window = peer.conn.send_conn_window
    for payload in (b"a" * 10, b"b" * 20, b"c" * 30):
        peer.conn.send_data(1, payload)
    peer.conn.send_data(3, b"other")  # another stream: a frame of its own
    peer.conn.send_data(1, b"d")  # after it: a new frame again
    frames = peer.output()
    assert [(type(fr), fr.stream_id, bytes(fr.data)) for fr in frames] == [
        (DataFrame, 1, b"a" * 10 + b"b" * 20 + b"c" * 30),
        (DataFrame, 3, b"other"),
        (DataFrame, 1, b"d"),
    ]
    assert peer.conn.send_conn_window == window - 66
    assert peer.conn.streams[1].send_window == 65535 - 61
    peer.conn.send_data(1, b"e")  # after data_to_send(): nothing left to join
    peer.conn.send_data(1, b"f", end_stream=True)  # END_STREAM: a frame of its own, with the flag
    frames = peer.output()
    assert [(bytes(fr.data), "END_STREAM" in fr.flags) for fr in frames] == [(b"e", False), (b"f", True)]


def test_joined_frames_stay_within_the_peers_frame_size() -> None:
    peer = Peer()
    open_streams(peer, 1)
    peer.send(frame(0x8, 0, 0, struct.pack(">L", 1 << 20)) + frame(0x8, 0, 1, struct.pack(">L", 1 << 20)))
    for _ in range(3):
        peer.conn.send_data(1, b"x" * 6000)
    peer.conn.send_data(1, b"y" * 4000)
    sizes = [len(fr.data) for fr in peer.output()]
    assert sizes == [12000, 10000] and max(sizes) <= f.DEFAULT_MAX_FRAME


def test_data_beyond_the_window_waits_and_is_not_joined() -> None:
    peer = Peer()
    open_streams(peer, 1)
    peer.conn.send_data(1, b"a" * 60000)
    peer.conn.send_data(1, b"b" * 10000)  # only 5535 bytes of window left: buffered
    assert peer.conn.pending_bytes(1) == 10000 - 5535
    frames = peer.output()
    assert [len(fr.data) for fr in frames] == [16384, 16384, 16384, 10848, 5535]


def test_send_response_is_headers_data_and_trailers_in_one_piece() -> None:
    peer = Peer()
    open_streams(peer, 1)
    assert peer.conn.send_response(1, BLOCK, b"\x00\x00\x00\x00\x02hi", BLOCK)
    assert len(peer.conn._out) == 1
    frames = peer.output()
    assert [type(fr) for fr in frames] == [HeadersFrame, DataFrame, HeadersFrame]
    assert bytes(frames[1].data) == b"\x00\x00\x00\x00\x02hi" and "END_STREAM" in frames[2].flags
    assert 1 not in peer.conn.streams  # both sides closed: forgotten
    assert peer.conn.send_response(1, BLOCK, b"late", BLOCK)  # closed: nothing to send, as send_* would
    assert peer.output() == []


def test_send_response_declines_when_the_window_is_short() -> None:
    peer = Peer()
    open_streams(peer, 1)
    peer.conn.send_data(1, b"z" * 65000)
    assert not peer.conn.send_response(1, BLOCK, b"q" * 1000, BLOCK)  # 535 bytes of window left
    assert 1 in peer.conn.streams and peer.conn.pending_bytes(1) == 0  # nothing was queued for it


def test_queued_data_counts_the_payload_waiting_for_the_next_write() -> None:
    """What ``GrpcConnection.send_message`` reads to send a long stream's output early: DATA
    payload bytes queued since the last ``data_to_send``, joined or not, of every stream."""
    peer = Peer()
    open_streams(peer, 1, 3)
    assert peer.conn.queued_data() == 0
    peer.conn.send_data(1, b"a" * 100)
    peer.conn.send_data(1, b"b" * 50)  # joins the first frame
    peer.conn.send_data(3, b"c" * 10)
    peer.conn.send_headers(3, BLOCK)  # headers are not DATA
    assert peer.conn.queued_data() == 160
    frames = peer.output()
    assert [len(fr.data) for fr in frames if isinstance(fr, DataFrame)] == [150, 10]
    assert peer.conn.queued_data() == 0
