"""Every known HTTP/2 attack class, sent by a raw-socket client at a real GMF worker.

For each: the reply (GOAWAY / RST_STREAM code, gRPC status), the worker's RSS grows less
than RSS_MIB while a grpcio bystander on another connection gets every call served
(tests/helpers/hostile.py), and a fresh connection is served afterwards. docs/security.md lists them.
"""

from __future__ import annotations

import struct
import time

import gmftest_pb2 as tpb
import gmftest_pb2_grpc
import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

from tests.helpers import poll
from tests.helpers.apps import wait_handler_started
from tests.helpers.hostile import Bystander, RssBound
from tests.helpers.rawh2 import RawClient, frame
from tests.helpers.servers import server_fixture

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

RSS_MIB = 8  # what ROUNDS of one attack may add to the worker's RSS (~25-30 MiB at rest)
ROUNDS = 10  # each attack is repeated on fresh connections
ENHANCE_YOUR_CALM, PROTOCOL_ERROR, REFUSED_STREAM = 0xB, 0x1, 0x7
BUDGET = 1000  # max_unproductive_frames default
RESET_BURST = 1000  # gmf.protocol.h2limits.RESET_BURST
MAX_STREAMS = 100  # max_concurrent_streams default


attack_server = server_fixture("A one-worker server with the default limits, per runtime.", ["uring", "asyncio"],
                               workers=1)


def request_headers(path: str, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", "application/grpc"), ("te", "trailers")] + (extra or [])


def message(msg) -> bytes:
    body = msg.SerializeToString()
    return struct.pack(">BL", 0, len(body)) + body


def connect(port: int) -> RawClient:
    client = RawClient(port, timeout=10)
    client.handshake()
    client.send(frame(0x4, 0x1, 0, b""))  # ACK the server's SETTINGS, as a client does
    return client


def send_until_closed(client: RawClient, data: bytes) -> None:
    """Send an attack; the server may cut us off before it has read all of it."""
    try:
        client.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def goaway(client: RawClient, until: float = 10.0) -> tuple[GoAwayFrame, list[Frame]]:
    frames = client.frames(until=until, stop=lambda f: isinstance(f, GoAwayFrame))
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways, f"expected GOAWAY, got {frames[-5:]}"
    assert client.closed(wait=5), "the server must close the connection after GOAWAY"
    return goaways[-1], frames


def status_of(client: RawClient, stream_id: int) -> dict[str, str]:
    frames = client.frames(until=10, stop=lambda f: f.stream_id == stream_id and "END_STREAM" in f.flags)
    blocks = [f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == stream_id]
    assert blocks, f"no response on stream {stream_id}: {frames}"
    return client.decode(blocks[-1].data)


# ------------------------------------------------------------------------ control-frame floods
def test_ping_flood_cve_2019_9512(attack_server):
    """PINGs with nothing served in between: grpc-core's ping strikes; GOAWAY after the third."""
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        for _ in range(ROUNDS):  # again and again: no leak, the bystander served throughout
            client = connect(attack_server.port)
            send_until_closed(client, frame(0x6, 0, 0, b"flooding") * 5000)
            last, frames = goaway(client)
            assert last.error_code == ENHANCE_YOUR_CALM and last.additional_data == b"too_many_pings"
            assert sum(isinstance(f, PingFrame) for f in frames) <= 3
            client.close()


def test_settings_flood_cve_2019_9515(attack_server):
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        for _ in range(ROUNDS):  # again and again: no leak, the bystander served throughout
            client = connect(attack_server.port)
            settings = frame(0x4, 0, 0, struct.pack(">HL", 4, 70000))
            send_until_closed(client, settings * (BUDGET + 500))
            last, frames = goaway(client)
            assert last.error_code == ENHANCE_YOUR_CALM
            acks = sum(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in frames)
            assert acks <= BUDGET + 1  # the handshake's SETTINGS is free
            client.close()


def test_cut_off_connection_cancels_its_calls(attack_server):
    """The calls in flight on a connection that gets GOAWAY ENHANCE_YOUR_CALM are cancelled
    (their handlers see CancelledError); the worker serves others."""
    key = f"cut-off-{time.monotonic()}"
    client = connect(attack_server.port)
    body = message(tpb.EchoRequest(action="sleep", message=key, sleep_seconds=30))
    client.send(client.headers(1, request_headers("/gmftest.TestService/Unary")) + frame(0x0, 0x1, 1, body))
    with grpc.insecure_channel(attack_server.target) as channel:  # one worker: the one running the handler
        wait_handler_started(channel, key)
    send_until_closed(client, frame(0x4, 0, 0, b"") * (BUDGET + 1))
    assert goaway(client)[0].error_code == ENHANCE_YOUR_CALM
    client.close()
    with grpc.insecure_channel(attack_server.target) as channel:
        stub = gmftest_pb2_grpc.TestServiceStub(channel)
        assert stub.Unary(tpb.EchoRequest(action="was_cancelled", message=key), timeout=10).message == "cancelled"


def test_priority_shuffling_cve_2019_9513(attack_server):
    """Resource loop: PRIORITY frames reshuffling the dependency tree of open streams."""
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        for _ in range(ROUNDS):  # again and again: no leak, the bystander served throughout
            client = connect(attack_server.port)
            open_streams = [client.headers(sid, request_headers("/gmftest.TestService/ClientStream")) for sid in range(1, 21, 2)]
            shuffle = b"".join(frame(0x2, 0, sid, struct.pack(">LB", 0x80000000 | (sid % 19 + 2), 255))
                               for sid in range(1, 21, 2))
            send_until_closed(client, b"".join(open_streams) + shuffle * (BUDGET // 10 + 50))
            last, _ = goaway(client)
            assert last.error_code == ENHANCE_YOUR_CALM
            client.close()


def test_empty_frames_flood_cve_2019_9518(attack_server):
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        for _ in range(ROUNDS):  # again and again: no leak, the bystander served throughout
            client = connect(attack_server.port)
            client.send(client.headers(1, request_headers("/gmftest.TestService/ClientStream")))
            send_until_closed(client, frame(0x0, 0, 1, b"") * (BUDGET + 500))
            last, _ = goaway(client)
            assert last.error_code == ENHANCE_YOUR_CALM
            client.close()
            # the same with empty CONTINUATION fragments of a header block that never ends
            client = connect(attack_server.port)
            block = client.encoder.encode(request_headers("/helloworld.Greeter/SayHello"))
            send_until_closed(client, frame(0x1, 0, 1, block) + frame(0x9, 0, 1, b"") * (BUDGET + 500))
            last, _ = goaway(client)
            assert last.error_code == ENHANCE_YOUR_CALM
            client.close()


def test_reset_flood_cve_2019_9514(attack_server):
    """Malformed requests (no :path) that each draw a RST_STREAM PROTOCOL_ERROR, sent in
    batches within MAX_CONCURRENT_STREAMS: cut off once the budget is spent."""
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        for _ in range(ROUNDS):  # again and again: no leak, the bystander served throughout
            client = connect(attack_server.port)
            bad = [(":method", "POST"), (":scheme", "http"), (":authority", "x"), ("content-type", "application/grpc")]
            sid, frames, batch = 1, [], 50
            for _ in range(BUDGET // batch + 5):
                try:
                    client.send(b"".join(client.headers(sid + 2 * i, bad, end_stream=True) for i in range(batch)))
                except (BrokenPipeError, ConnectionResetError):
                    break
                sid += 2 * batch
                last_sid = sid - 2
                frames += client.frames(until=10, stop=lambda f, last=last_sid: isinstance(f, GoAwayFrame) or f.stream_id == last)
                if any(isinstance(f, GoAwayFrame) for f in frames):
                    break
            goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
            assert [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM]
            resets = [f for f in frames if isinstance(f, RstStreamFrame)]
            # the layer above resets them after each read: one read's worth (<= MAX_STREAMS) more
            assert BUDGET <= len(resets) <= BUDGET + batch and all(r.error_code == PROTOCOL_ERROR for r in resets)
            assert client.closed(wait=5)
            client.close()


# ------------------------------------------------------------------------ header blocks
def test_zero_length_headers_cve_2019_9516(attack_server):
    """Empty values cost 32 bytes each: a block of them over the limit gets RESOURCE_EXHAUSTED
    (the connection lives on), an empty name is a malformed request (RST_STREAM
    PROTOCOL_ERROR), and far over the limit the connection is cut off."""
    hello = message(helloworld_pb2.HelloRequest(name="z"))
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        for _ in range(ROUNDS):  # again and again: no leak, the bystander served throughout
            client = connect(attack_server.port)
            path = "/helloworld.Greeter/SayHello"
            client.send(client.headers(1, request_headers(path, [("x-e", "")] * 2500)) + frame(0x0, 0x1, 1, hello))
            assert status_of(client, 1)["grpc-status"] == "8"  # ~87 KB of header list > 64 KiB
            empty_name = client.encoder.encode(request_headers(path)) + b"\x00\x00\x00"  # literal "" : ""
            client.send(frame(0x1, 0x5, 3, empty_name))
            frames = client.frames(until=10, stop=lambda f: isinstance(f, RstStreamFrame))
            assert [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)] == [(3, PROTOCOL_ERROR)]
            client.send(client.headers(5, request_headers(path)) + frame(0x0, 0x1, 5, hello))
            assert status_of(client, 5)["grpc-status"] == "0"  # same connection, HPACK in sync
            send_until_closed(client, client.headers(7, request_headers(path, [("x-e", "")] * 10000), end_stream=True))
            last, _ = goaway(client)  # ~350 KB of header list: past 4 x the limit
            assert last.error_code == ENHANCE_YOUR_CALM
            client.close()


def test_hpack_bomb(attack_server):
    """A 4 KB dynamic-table entry, then a 16 KB block of 1-byte references to it (64 MB if
    decoded): decoding stops at 4 x the 64 KiB limit and the connection is cut off; memory
    stays flat. A block moderately over the limit only fails its call."""
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        for _ in range(ROUNDS):  # again and again: no leak, the bystander served throughout
            client = connect(attack_server.port)
            hello = message(helloworld_pb2.HelloRequest(name="b"))
            path = "/helloworld.Greeter/SayHello"
            client.send(client.headers(1, request_headers(path, [("x-bomb", "b" * 4000)])) + frame(0x0, 0x1, 1, hello))
            assert status_of(client, 1)["grpc-status"] == "0"
            ref = bytes([0x80 | 62])  # x-bomb, now the only dynamic-table entry (it evicted the rest)
            base = client.encoder.encode([NeverIndexedHeaderTuple(k, v) for k, v in request_headers(path)])
            client.send(frame(0x1, 0x4, 3, base + ref * 20) + frame(0x0, 0x1, 3, hello))
            assert status_of(client, 3)["grpc-status"] == "8"  # ~80 KB: this call only
            send_until_closed(client, frame(0x1, 0x5, 5, ref * 16000))
            last, _ = goaway(client)
            assert last.error_code == ENHANCE_YOUR_CALM
            client.close()


def test_continuation_flood(attack_server):
    """HEADERS then endless CONTINUATION frames without END_HEADERS: the block is never
    decoded and past 4 x the header list limit (256 KiB) the connection is cut off."""
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        for _ in range(ROUNDS):  # again and again: no leak, the bystander served throughout
            client = connect(attack_server.port)
            block = client.encoder.encode(request_headers("/helloworld.Greeter/SayHello"))
            client.send(frame(0x1, 0, 1, block))
            piece = frame(0x9, 0, 1, b"\x00" * 16384)
            sent = 0
            try:
                while sent < 64 << 20:  # "endless": 64 MiB unless the server stops it
                    client.send(piece * 16)
                    sent += 16 * 16384
            except (BrokenPipeError, ConnectionResetError):
                pass
            # the server stops after 256 KiB; the two sockets' kernel buffers absorb a few MiB more
            assert sent < 32 << 20, f"the server read {sent} bytes of one header block"
            last, _ = goaway(client)
            assert last.error_code == ENHANCE_YOUR_CALM
            client.close()


# ------------------------------------------------------------------------ rapid reset
def test_rapid_reset_cve_2023_44487(attack_server):
    """Rounds of MAX_STREAMS requests whose handlers start, then RST_STREAM for all of them:
    GOAWAY after RESET_BURST resets, and the handlers started (and cancelled) on that
    connection stay under RESET_BURST + MAX_STREAMS."""
    key = f"rapid-{time.monotonic()}"
    body = message(tpb.EchoRequest(action="count_start", message=key, sleep_seconds=30))
    with Bystander(attack_server.port), RssBound(attack_server.pids[0], mib=RSS_MIB):
        client = connect(attack_server.port)
        hdrs = request_headers("/gmftest.TestService/Unary")
        sid, got = 1, []
        for _ in range(RESET_BURST // MAX_STREAMS + 5):
            sids = list(range(sid, sid + 2 * MAX_STREAMS, 2))
            sid += 2 * MAX_STREAMS
            try:
                client.send(b"".join(client.headers(s, hdrs) + frame(0x0, 0x1, s, body) for s in sids))
                got += client.frames(until=0.05, stop=lambda f: isinstance(f, GoAwayFrame))  # handlers start
                client.send(b"".join(frame(0x3, 0, s, b"\x00\x00\x00\x08") for s in sids))
            except (BrokenPipeError, ConnectionResetError):
                break
            if any(isinstance(f, GoAwayFrame) for f in got):
                break
        if not any(isinstance(f, GoAwayFrame) for f in got):
            got += goaway(client)[1]
        assert [f.error_code for f in got if isinstance(f, GoAwayFrame)] == [ENHANCE_YOUR_CALM]
        assert client.closed(wait=5)
        client.close()
    with grpc.insecure_channel(attack_server.target) as channel:
        stub = gmftest_pb2_grpc.TestServiceStub(channel)
        started = int(stub.Unary(tpb.EchoRequest(action="started", message=key), timeout=10).message)
    assert MAX_STREAMS <= started <= RESET_BURST + MAX_STREAMS, started


# ------------------------------------------------------------------------ keepalive with grpcio
def test_grpcio_aggressive_keepalive_gets_too_many_pings(attack_server, capfd):
    """A grpcio client pinging every 100 ms without calls against the default 300 s minimum:
    GOAWAY ENHANCE_YOUR_CALM "too_many_pings" (grpcio logs it and backs off), and the
    channel's next call works after it reconnects."""
    options = [("grpc.keepalive_time_ms", 100), ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.max_pings_without_data", 0)]
    with Bystander(attack_server.port), grpc.insecure_channel(attack_server.target, options=options) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        assert stub.SayHello(helloworld_pb2.HelloRequest(name="a"), timeout=10).message == "Hello a!"
        # The server logs the cut; grpcio logs the GOAWAY it got (either is seen first under load).
        seen_before = attack_server.log().count("too_many_pings")
        poll.until(lambda: attack_server.log().count("too_many_pings") > seen_before,
                   lambda: f"the server to send GOAWAY too_many_pings; its log: {attack_server.log()[-2000:]}", timeout=20)
        poll.until(lambda: "too_many_pings" in capfd.readouterr().err,
                   "grpcio to report the GOAWAY too_many_pings the server sent", timeout=20, interval=0.2)
        assert stub.SayHello(helloworld_pb2.HelloRequest(name="b"), timeout=10).message == "Hello b!"


def test_default_grpcio_long_stream_is_never_cut_off(attack_server, capfd):
    """A default grpcio client (BDP pings as data arrives) on a 3 s server stream."""
    with grpc.insecure_channel(attack_server.target) as channel:
        stub = gmftest_pb2_grpc.TestServiceStub(channel)
        request = tpb.EchoRequest(message="s", payload=b"p" * 20000, count=300, sleep_seconds=0.01)
        replies = list(stub.ServerStream(request, timeout=60))
        assert len(replies) == 300 and replies[-1].index == 299
    assert "too_many_pings" not in capfd.readouterr().err
