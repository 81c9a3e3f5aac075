"""The HTTP/2 abuse limits of the sans-IO core, driven directly (no sockets, a fake clock):
each limit's exact threshold, its answer, and that ordinary traffic never reaches it."""

from __future__ import annotations

import struct

import pytest
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, PingFrame, RstStreamFrame, SettingsFrame

from gmf import _native
from gmf.protocol import frames as f
from gmf.protocol.h2conn import (
    HEADER_HARD_FACTOR,
    ConnectionTerminated,
    DataReceived,
    H2ServerConnection,
    RequestReceived,
    StreamReset,
)
from tests.helpers.rawh2 import PREFACE, SETTINGS_EMPTY, frame

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/helloworld.Greeter/SayHello"),
           (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")]
TRAILERS = b"\x88"  # any block will do: the core does not look at what it sends
ENHANCE_YOUR_CALM, PROTOCOL_ERROR, REFUSED_STREAM = 0xB, 0x1, 0x7


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Peer:
    """One H2ServerConnection and the client side of it: frames in, parsed frames out."""

    def __init__(self, **limits) -> None:
        self.clock = Clock()
        self.conn = H2ServerConnection(clock=self.clock, **limits)
        self.conn.initiate_connection()
        self.encoder = Encoder()
        self.events = self.send(PREFACE + SETTINGS_EMPTY + frame(0x4, 0x1, 0, b""))
        self.output()

    def send(self, data: bytes) -> list:
        return self.conn.receive_data(data)

    def output(self) -> list[Frame]:
        data, out = self.conn.data_to_send(), []
        while data:
            fr, length = Frame.parse_frame_header(memoryview(data[:9]))
            fr.parse_body(memoryview(data[9 : 9 + length]))
            out.append(fr)
            data = data[9 + length :]
        return out

    def request(self, sid: int, end_stream: bool = True, headers: list | None = None) -> bytes:
        block = self.encoder.encode(headers or REQUEST)
        return frame(0x1, 0x4 | (0x1 if end_stream else 0), sid, block)

    def respond(self, sid: int) -> None:
        self.conn.send_headers(sid, TRAILERS, end_stream=True)


def terminated(events: list, reason: str | None = None) -> ConnectionTerminated:
    ends = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert ends, f"expected a connection error, got {events}"
    assert ends[0].error_code == ENHANCE_YOUR_CALM
    if reason is not None:
        assert reason in ends[0].reason
    return ends[0]


def goaway(peer: Peer) -> GoAwayFrame:
    goaways = [fr for fr in peer.output() if isinstance(fr, GoAwayFrame)]
    assert goaways
    return goaways[-1]


PING = frame(0x6, 0, 0, b"12345678")


# ------------------------------------------------------------------------ settings
def advertised(conn: H2ServerConnection) -> dict[int, int]:
    """The settings of the SETTINGS frame a new connection sends first."""
    conn.initiate_connection()
    data = conn.data_to_send()
    settings, length = Frame.parse_frame_header(memoryview(data[:9]))
    settings.parse_body(memoryview(data[9 : 9 + length]))
    assert isinstance(settings, SettingsFrame)
    return dict(settings.settings)


def test_defaults_are_advertised_in_settings():
    settings = advertised(H2ServerConnection())
    assert settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 100
    assert settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 65536
    from gmf import GmfServer

    limits = GmfServer(workers=1).options.h2_limits()  # the server passes its defaults through
    assert limits["max_concurrent_streams"] == 100 and limits["max_header_list_size"] == 65536
    with pytest.raises(ValueError):
        GmfServer(workers=1, max_unproductive_frames=0)


def test_connections_with_the_same_limits_share_one_settings_frame():
    """Every connection of a worker advertises the same limits: one bytes object, not a dict
    and a frame per connection (issue 13: 10,000 idle connections per worker)."""
    assert H2ServerConnection()._settings_frame is H2ServerConnection()._settings_frame
    settings = advertised(H2ServerConnection(max_concurrent_streams=7))
    assert settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 7 and settings[SettingsFrame.ENABLE_PUSH] == 0


# ------------------------------------------------------------------------ PING strikes
def test_pings_too_soon_get_too_many_pings_after_max_strikes():
    peer = Peer(keepalive_min_ping_interval=10, max_ping_strikes=2)
    for _ in range(3):  # the first is free, then strikes 1 and 2
        assert not peer.send(PING)
        peer.clock.now += 1
    assert len([fr for fr in peer.output() if isinstance(fr, PingFrame)]) == 3
    terminated(peer.send(PING), "too_many_pings")
    last = goaway(peer)
    assert last.error_code == ENHANCE_YOUR_CALM and last.additional_data == b"too_many_pings"


def test_pings_at_the_minimum_interval_are_fine():
    peer = Peer(keepalive_min_ping_interval=10, max_ping_strikes=0)
    for _ in range(50):
        assert not peer.send(PING)
        peer.clock.now += 10


def test_sending_headers_or_data_forgives_pings():
    """grpc-core resets strikes when it sends HEADERS/DATA: BDP pings of a busy client."""
    peer = Peer(keepalive_min_ping_interval=300, max_ping_strikes=2)
    sid = 1
    for _ in range(100):
        events = peer.send(peer.request(sid) + PING + PING + PING)
        assert [type(e) for e in events] == [RequestReceived]
        peer.respond(sid)
        sid += 2
    assert not peer.conn.terminated


def test_ping_interval_zero_disables_strikes():
    peer = Peer(keepalive_min_ping_interval=0)
    for _ in range(100):
        assert not peer.send(PING * 10)
        peer.output()


# ------------------------------------------------------------------------ queued control frames
def test_control_frames_queued_are_capped_per_flush():
    peer = Peer(keepalive_min_ping_interval=0, max_pending_control_frames=10)
    for _ in range(20):  # taken by the runtime after every read: never more than 5 waiting
        assert not peer.send(PING * 5)
        assert len(peer.output()) == 5
    terminated(peer.send(PING * 11), "control frames queued")


# ------------------------------------------------------------------------ unproductive frames
UNPRODUCTIVE = {
    "settings": SETTINGS_EMPTY,
    "settings_ack": frame(0x4, 0x1, 0, b""),
    "priority": frame(0x2, 0, 3, struct.pack(">LB", 1, 16)),
    "unknown_type": frame(0x42, 0, 0, b"xyz"),
    "ping_ack": frame(0x6, 0x1, 0, b"12345678"),
}


@pytest.mark.parametrize("name", sorted(UNPRODUCTIVE))
def test_unproductive_frames_exhaust_the_budget(name):
    peer = Peer(max_unproductive_frames=50)
    assert not any(isinstance(e, ConnectionTerminated) for e in peer.send(UNPRODUCTIVE[name] * 50))
    terminated(peer.send(UNPRODUCTIVE[name]), "without useful work")
    assert goaway(peer).error_code == ENHANCE_YOUR_CALM


def test_budget_refills_when_we_respond():
    peer = Peer(max_unproductive_frames=50)
    sid = 1
    for _ in range(20):
        events = peer.send(UNPRODUCTIVE["settings"] * 40 + peer.request(sid))
        assert any(isinstance(e, RequestReceived) for e in events)
        peer.respond(sid)
        sid += 2
    assert not peer.conn.terminated


def test_requests_alone_do_not_refill_the_budget():
    """A request we never answer is no useful work yet: interleaving requests does not
    let a client flood PRIORITY frames."""
    peer = Peer(max_unproductive_frames=50)
    events = []
    for sid in range(1, 200, 2):
        events += peer.send(peer.request(sid, end_stream=False) + UNPRODUCTIVE["priority"])
    terminated(events, "PRIORITY")


def test_empty_data_frames_flood():
    """CVE-2019-9518: empty DATA frames without END_STREAM."""
    peer = Peer(max_unproductive_frames=50)
    events = peer.send(peer.request(1, end_stream=False) + frame(0x0, 0, 1, b"") * 50)
    assert [type(e) for e in events] == [RequestReceived]
    terminated(peer.send(frame(0x0, 0, 1, b"")), "empty DATA")
    # a DATA frame that carries bytes, or ends the stream, is useful
    peer = Peer(max_unproductive_frames=50)
    events = peer.send(peer.request(1, end_stream=False) + frame(0x0, 0, 1, b"x") * 200 + frame(0x0, 1, 1, b""))
    assert sum(isinstance(e, DataReceived) for e in events) == 201


def test_empty_continuation_flood():
    peer = Peer(max_unproductive_frames=50)
    block = peer.encoder.encode(REQUEST)
    events = peer.send(frame(0x1, 0, 1, block) + frame(0x9, 0, 1, b"") * 50)
    assert not events
    terminated(peer.send(frame(0x9, 0, 1, b"")), "CONTINUATION")


def test_frames_on_closed_streams():
    peer = Peer(max_unproductive_frames=50)
    peer.send(peer.request(1))
    peer.respond(1)
    peer.output()
    # WINDOW_UPDATE and RST_STREAM may still arrive on a closed stream (RFC 9113 5.1); DATA or
    # HEADERS may not (tests/protocol/test_h2_conformance.py: connection error STREAM_CLOSED)
    closed = [frame(0x8, 0, 1, b"\x00\x00\x00\x01"), frame(0x3, 0, 1, b"\x00\x00\x00\x08")]
    events = peer.send(b"".join(closed) * 25)  # 50: after the response the budget is full again
    assert not events
    terminated(peer.send(b"".join(closed)))


def test_reset_flood_stream_errors():
    """CVE-2019-9514: requests made to draw RST_STREAM (DATA after END_STREAM: STREAM_CLOSED)."""
    peer = Peer(max_unproductive_frames=50)
    events = []
    for sid in range(1, 2 * 60, 2):
        events += peer.send(peer.request(sid) + frame(0x0, 0, sid, b"x"))
    resets = [e for e in events if isinstance(e, StreamReset)]
    assert len(resets) == 50 and all(r.error_code == f.STREAM_CLOSED and not r.remote for r in resets)
    terminated(events, "stream errors")


def test_application_resets_count_when_the_next_stream_opens():
    """The layer above resets malformed requests (no :path); a client repeating them is cut off
    at the next stream it opens."""
    peer = Peer(max_unproductive_frames=50)
    sid = 1
    for _ in range(51):
        assert [type(e) for e in peer.send(peer.request(sid))] == [RequestReceived]
        peer.conn.reset_stream(sid, PROTOCOL_ERROR)
        sid += 2
    terminated(peer.send(peer.request(sid)), "malformed requests")


def test_streams_over_the_limit_are_refused_and_counted():
    peer = Peer(max_concurrent_streams=2, max_unproductive_frames=50)
    events = peer.send(b"".join(peer.request(sid, end_stream=False) for sid in (1, 3, 5)))
    assert [type(e) for e in events] == [RequestReceived, RequestReceived]
    refused = [fr for fr in peer.output() if isinstance(fr, RstStreamFrame)]
    assert [(r.stream_id, r.error_code) for r in refused] == [(5, REFUSED_STREAM)]
    events = peer.send(b"".join(peer.request(sid, end_stream=False) for sid in range(7, 7 + 2 * 50, 2)))
    terminated(events, "MAX_CONCURRENT_STREAMS")


def test_refused_after_goaway_are_not_counted():
    peer = Peer(max_unproductive_frames=5)
    peer.conn.start_shutdown()
    peer.conn.finish_shutdown()  # the final GOAWAY: streams above its last id are refused
    events = peer.send(b"".join(peer.request(sid) for sid in range(1, 100, 2)))
    assert not events and not peer.conn.terminated


# ------------------------------------------------------------------------ header blocks
LIMIT = 4096


def test_continuation_flood_is_cut_off_before_decoding():
    """CONTINUATION frames without END_HEADERS: the block is never decoded; past
    HEADER_HARD_FACTOR x the advertised limit the connection is cut off."""
    peer = Peer(max_header_list_size=LIMIT)
    piece = b"\x00" * 1024  # not even valid HPACK: it is never decoded
    events = peer.send(frame(0x1, 0, 1, piece))
    for _ in range(HEADER_HARD_FACTOR * LIMIT // 1024 - 1):
        events += peer.send(frame(0x9, 0, 1, piece))
    assert not events
    terminated(peer.send(frame(0x9, 0, 1, piece)), "header block too large")


def test_hpack_bomb_is_refused_without_materializing():
    """One 4000-byte dynamic-table entry, then a block of 1-byte references to it: the
    decoder stops at HEADER_HARD_FACTOR x the limit."""
    peer = Peer(max_header_list_size=LIMIT)
    big = ("x-bomb", "b" * 4000)
    events = peer.send(peer.request(1, headers=[*REQUEST, big]))  # 4 KB over the limit: decoded
    assert [type(e) for e in events] == [RequestReceived]
    peer.respond(1)
    index = bytes([0x80 | 62])  # the newest dynamic entry: x-bomb
    events = peer.send(frame(0x1, 0x5, 3, index * 16000))  # 16 KB that would decode to 64 MB
    terminated(events, "far beyond the limit")


def test_moderately_oversized_block_reaches_the_application():
    """Between the limit and the hard cap the request is decoded: the layer above answers
    that call alone (RESOURCE_EXHAUSTED) and the connection lives on."""
    peer = Peer(max_header_list_size=LIMIT)
    events = peer.send(peer.request(1, headers=[*REQUEST, ("x-big", "a" * (2 * LIMIT))]))
    assert [type(e) for e in events] == [RequestReceived]


def test_zero_length_headers():
    """CVE-2019-9516: empty values still cost 32 bytes each in the header list size; a flood
    of them hits the hard cap."""
    peer = Peer(max_header_list_size=LIMIT)
    events = peer.send(peer.request(1, headers=[*REQUEST, ("x-e", "")]))
    assert [type(e) for e in events] == [RequestReceived]
    peer.respond(1)
    index = bytes([0x80 | 62])  # the dynamic entry ("x-e", ""): 1 byte -> 35 bytes of list
    events = peer.send(frame(0x1, 0x5, 3, index * (HEADER_HARD_FACTOR * LIMIT // 35 + 1)))
    terminated(events, "far beyond the limit")


def test_empty_header_name_is_a_stream_error_and_hpack_stays_in_sync():
    peer = Peer()
    empty_name = b"\x40\x00\x01v"  # literal with incremental indexing, new name "", value "v"
    block = peer.encoder.encode(REQUEST) + empty_name
    peer.encoder.header_table.add(b"", b"v")  # mirror what the server's table now holds
    assert not peer.send(frame(0x1, 0x5, 1, block))  # the application never sees it
    assert [(r.stream_id, r.error_code) for r in peer.output() if isinstance(r, RstStreamFrame)] == [(1, PROTOCOL_ERROR)]
    events = peer.send(peer.request(3))  # indexed against the table both sides still share
    assert [type(e) for e in events] == [RequestReceived]
    assert dict(events[0].headers)[b":path"] == b"/helloworld.Greeter/SayHello"


# ------------------------------------------------------------------------ rapid reset
def test_rapid_reset_is_cut_off_after_the_burst():
    peer = Peer()
    events = []
    for sid in range(1, 2 * 1200, 2):
        events += peer.send(peer.request(sid, end_stream=False) + frame(0x3, 0, sid, b"\x00\x00\x00\x08"))
        if peer.conn.terminated:
            break
    assert sum(isinstance(e, RequestReceived) for e in events) == 1001
    terminated(events, "reset by the client")


# ------------------------------------------------------------------------ ordinary traffic
def test_busy_well_behaved_client_never_trips_a_limit():
    """What grpcio does on a busy connection: requests, WINDOW_UPDATEs, BDP PINGs and
    SETTINGS changes, all interleaved with our responses, for a long time."""
    peer = Peer()
    sid = 1
    for i in range(3000):
        extra = PING + frame(0x8, 0, 0, b"\x00\x00\x10\x00")
        if i % 10 == 0:
            extra += frame(0x4, 0, 0, struct.pack(">HL", 4, 1 << 20))
        events = peer.send(peer.request(sid) + extra)
        assert [type(e) for e in events] == [RequestReceived], events
        peer.respond(sid)
        peer.output()
        peer.clock.now += 0.001
        sid += 2
    assert not peer.conn.terminated


def test_connection_keeps_cpythons_fast_attribute_access():
    """CPython (3.11+) shares an instance's attribute keys, and specializes attribute access
    on them, only up to 30 attributes: past that every frame pays (measured +8% on the
    receive path). Limits that only unusual frames need live in ``_limits``."""
    if _native.build()["compiled"]:
        pytest.skip("compiled with mypyc: a native class has fixed fields, no instance dict")
    conn = H2ServerConnection()
    conn.initiate_connection()
    conn.receive_data(PREFACE + SETTINGS_EMPTY)
    assert len(vars(conn)) <= 30, sorted(vars(conn))
