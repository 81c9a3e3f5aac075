"""Bad bytes and protocol edge cases: each gets its defined answer (GOAWAY, RST_STREAM, a gRPC
status) and the worker keeps serving a well-behaved grpcio client afterwards."""

from __future__ import annotations

import socket
import struct
import time

import helloworld_pb2
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame

from tests.helpers.hostile import rss_kib, still_serving
from tests.helpers.rawh2 import PREFACE, SETTINGS_EMPTY, RawClient, frame
from tests.helpers.servers import RUNTIMES, serving

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

HELLO = helloworld_pb2.HelloRequest(name="raw").SerializeToString()
HELLO_BODY = struct.pack(">BL", 0, len(HELLO)) + HELLO

# error codes
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR, REFUSED_STREAM = 1, 3, 6, 9, 7


def goaway_of(frames) -> GoAwayFrame:
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways, f"expected GOAWAY, got {frames}"
    return goaways[-1]


@pytest.fixture
def port(session_server):
    return session_server.port


BAD_INPUTS = {
    "garbage_preface": (b"\x00\x01\x02garbage-garbage-garbage-garbage", PROTOCOL_ERROR),
    "first_frame_not_settings": (PREFACE + frame(0x6, 0, 0, b"12345678"), PROTOCOL_ERROR),
    "ping_wrong_length": (PREFACE + SETTINGS_EMPTY + frame(0x6, 0, 0, b"1234"), FRAME_SIZE_ERROR),
    "settings_bad_length": (PREFACE + frame(0x4, 0, 0, b"\x00\x01\x00"), FRAME_SIZE_ERROR),
    "headers_even_stream": (PREFACE + SETTINGS_EMPTY + frame(0x1, 0x5, 2, b"\x82"), PROTOCOL_ERROR),
    "bad_hpack": (PREFACE + SETTINGS_EMPTY + frame(0x1, 0x5, 1, b"\xff\xff\xff\xff\xff\xff"), COMPRESSION_ERROR),
    "oversized_frame": (PREFACE + SETTINGS_EMPTY + struct.pack(">BHBBL", 0x10, 0, 0, 0, 1), FRAME_SIZE_ERROR),
    "data_on_idle_stream": (PREFACE + SETTINGS_EMPTY + frame(0x0, 0, 5, b"abc"), PROTOCOL_ERROR),
    "window_update_zero": (PREFACE + SETTINGS_EMPTY + frame(0x8, 0, 0, b"\x00\x00\x00\x00"), PROTOCOL_ERROR),
    "push_promise": (PREFACE + SETTINGS_EMPTY + frame(0x5, 0x4, 1, b"\x00\x00\x00\x02\x82"), PROTOCOL_ERROR),
    "continuation_without_headers": (PREFACE + SETTINGS_EMPTY + frame(0x9, 0x4, 1, b"\x82"), PROTOCOL_ERROR),
    "settings_bad_window": (PREFACE + frame(0x4, 0, 0, struct.pack(">HL", 4, 2**31)), FLOW_CONTROL_ERROR),
    "rst_on_idle_stream": (PREFACE + SETTINGS_EMPTY + frame(0x3, 0, 9, b"\x00\x00\x00\x08"), PROTOCOL_ERROR),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_bytes_get_goaway_and_server_keeps_serving(port, name):
    data, code = BAD_INPUTS[name]
    client = RawClient(port)
    client.send(data)
    frames = client.frames(stop=lambda f: isinstance(f, GoAwayFrame))
    assert goaway_of(frames).error_code == code
    assert client.closed(), "the server must close the connection after a connection error"
    client.close()
    still_serving(port)


def test_http1_request_is_answered_over_http1(port):
    """An HTTP/1.1 request line is not garbage on this port: gRPC-Web and Connect are served
    beside gRPC (docs/web.md), so it gets an HTTP/1.1 answer (405: GET without a Connect
    query). With ``web=False`` it is a bad preface (tests/web/test_web_serving.py)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 405 "), out
    still_serving(port)


def test_truncated_connection_and_reset(port):
    for data in (PREFACE[:10], PREFACE + SETTINGS_EMPTY + frame(0x1, 0x4, 1, b"")[:5]):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(data)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        s.close()
    still_serving(port)


def test_ping_is_answered(port):
    client = RawClient(port)
    client.handshake()
    client.send(frame(0x6, 0, 0, b"gmf-ping"))
    frames = client.frames(stop=lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
    pings = [f for f in frames if isinstance(f, PingFrame)]
    assert pings and pings[-1].opaque_data == b"gmf-ping" and "ACK" in pings[-1].flags
    client.close()


def _response(client: RawClient, stream_id: int):
    frames = client.frames(stop=lambda f: f.stream_id == stream_id and "END_STREAM" in f.flags)
    return [f for f in frames if f.stream_id == stream_id]


def test_unimplemented_is_trailers_only(port):
    client = RawClient(port)
    client.handshake()
    client.grpc_request(1, "/no.Such/Method", HELLO_BODY)
    frames = _response(client, 1)
    assert len(frames) == 1 and isinstance(frames[0], HeadersFrame) and "END_STREAM" in frames[0].flags
    headers = client.decode(frames[0].data)
    assert headers[":status"] == "200" and headers["grpc-status"] == "12"
    client.close()


def test_unsupported_encoding_is_unimplemented(port):
    client = RawClient(port)
    client.handshake()
    client.grpc_request(1, "/helloworld.Greeter/SayHello", HELLO_BODY, extra=[("grpc-encoding", "snappy")])
    frames = _response(client, 1)
    headers = client.decode(frames[-1].data)
    assert headers["grpc-status"] == "12"
    assert "gzip" in headers.get("grpc-accept-encoding", "")
    client.close()
    still_serving(port)


def test_compressed_flag_without_encoding_is_internal(port):
    client = RawClient(port)
    client.handshake()
    client.grpc_request(1, "/helloworld.Greeter/SayHello", b"\x01" + HELLO_BODY[1:])
    headers = client.decode(_response(client, 1)[-1].data)
    assert headers["grpc-status"] == "13"
    client.close()


def test_not_grpc_content_type_and_method(port):
    client = RawClient(port)
    client.handshake()
    base = [(":scheme", "http"), (":path", "/helloworld.Greeter/SayHello"), (":authority", "x")]
    # an HTTP answer with a text body (tests/protocol/test_not_grpc.py)
    client.send(client.headers(1, [(":method", "POST"), *base, ("content-type", "text/plain")], end_stream=True))
    assert client.decode(_response(client, 1)[0].data)[":status"] == "415"
    client.send(client.headers(3, [(":method", "GET"), *base, ("content-type", "application/grpc")], end_stream=True))
    assert client.decode(_response(client, 3)[0].data)[":status"] == "405"
    client.send(client.headers(5, [(":method", "POST"), (":scheme", "http")], end_stream=True))  # no :path: malformed
    frames = _response(client, 5) or client.frames(until=1)
    assert any(isinstance(f, RstStreamFrame) and f.error_code == PROTOCOL_ERROR for f in frames)
    client.close()
    still_serving(port)


def test_unary_response_split_frames_and_continuation(port):
    """A request whose headers arrive in HEADERS + CONTINUATION and body in 1-byte DATA frames."""
    client = RawClient(port)
    client.handshake()
    block = client.encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", "/helloworld.Greeter/SayHello"),
                                   (":authority", "x"), ("content-type", "application/grpc"), ("x-pad", "p" * 300)])
    client.send(frame(0x1, 0, 1, block[:10]) + frame(0x9, 0, 1, block[10:20]) + frame(0x9, 0x4, 1, block[20:]))
    for i, byte in enumerate(HELLO_BODY):
        client.send(frame(0x0, 0x1 if i == len(HELLO_BODY) - 1 else 0, 1, bytes([byte])))
    frames = _response(client, 1)
    data = b"".join(f.data for f in frames if isinstance(f, DataFrame))
    assert helloworld_pb2.HelloReply.FromString(data[5:]).message == "Hello raw!"
    assert client.decode(frames[-1].data)["grpc-status"] == "0"
    client.close()


def test_data_beyond_stream_window_is_flow_control_error(port):
    client = RawClient(port)
    client.handshake()
    hdrs = [(":method", "POST"), (":scheme", "http"), (":path", "/gmftest.TestService/Unary"),
            (":authority", "x"), ("content-type", "application/grpc")]
    client.send(client.headers(1, hdrs))
    # A unary handler reads nothing before END_STREAM: complete messages queue up, the server
    # stops crediting the 1 MiB stream window, and a client ignoring that overruns it.
    message = struct.pack(">BL", 0, 16379) + b"\x00" * 16379
    client.send(b"".join(frame(0x0, 0, 1, message) for _ in range(200)))
    frames = client.frames(until=3, stop=lambda f: isinstance(f, RstStreamFrame))
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert resets and resets[0].error_code == FLOW_CONTROL_ERROR
    client.close()
    still_serving(port)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_too_many_streams_refused(runtime):
    with serving(runtime, options={"max_concurrent_streams": 2}) as small:
        client = RawClient(small.port)
        client.handshake()
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", "/gmftest.TestService/ClientStream"),
                (":authority", "x"), ("content-type", "application/grpc")]
        for sid in (1, 3, 5):
            client.send(client.headers(sid, hdrs))
        frames = client.frames(until=2, stop=lambda f: isinstance(f, RstStreamFrame))
        assert any(isinstance(f, RstStreamFrame) and f.stream_id == 5 and f.error_code == REFUSED_STREAM for f in frames)
        client.close()
        still_serving(small.port)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_graceful_shutdown_sends_goaway_no_error(runtime):
    with serving(runtime, workers=1) as srv:
        client = RawClient(srv.port)
        client.handshake()
        client.frames(until=1, stop=lambda f: f.type == 0x4)
        srv.proc.send_signal(__import__("signal").SIGTERM)
        frames = client.frames(until=10, stop=lambda f: isinstance(f, GoAwayFrame))
        goaway = goaway_of(frames)
        assert goaway.error_code == 0  # NO_ERROR: a graceful GOAWAY
        assert client.closed(wait=10)
        client.close()
        assert srv.proc.wait(timeout=20) == 0


def test_rapid_reset_gets_enhance_your_calm(port):
    """CVE-2023-44487: opening and immediately resetting streams is answered with GOAWAY
    ENHANCE_YOUR_CALM once it goes past a burst; other clients are unaffected."""
    client = RawClient(port)
    client.handshake()
    hdrs = [(":method", "POST"), (":scheme", "http"), (":path", "/gmftest.TestService/ClientStream"),
            (":authority", "x"), ("content-type", "application/grpc")]
    burst = []
    for i in range(1500):
        sid = 2 * i + 1
        burst.append(client.headers(sid, hdrs) + frame(0x3, 0, sid, b"\x00\x00\x00\x08"))
    client.send(b"".join(burst))
    frames = client.frames(until=10, stop=lambda f: isinstance(f, GoAwayFrame))
    assert goaway_of(frames).error_code == 0xB
    client.close()
    still_serving(port)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_client_that_never_reads_does_not_stop_others(runtime):
    """A client floods PINGs and never reads the ACKs: the server stops reading from it once
    its answers back up (bounded memory), and keeps serving everyone else. The PING limits
    (strikes, queued control frames: tests/attacks/test_attacks_h2.py) are off here, so transport
    backpressure alone must bound the server."""
    with serving(runtime, options={"keepalive_min_ping_interval": 0, "max_pending_control_frames": 10**9}) as srv:
        worker = srv.pids[0]
        before = rss_kib(worker)
        client = RawClient(srv.port)
        client.handshake()
        client.sock.settimeout(0.5)
        chunk = frame(0x6, 0, 0, b"12345678") * 4000  # 68 KB of PINGs, 68 KB of ACKs owed
        pushed = 0
        deadline = time.monotonic() + 6
        try:
            while pushed < 60_000_000 and time.monotonic() < deadline:
                client.sock.sendall(chunk)
                pushed += len(chunk)
        except TimeoutError:
            pass  # the server stopped reading from us
        still_serving(srv.port)  # the worker's loop has run since: what it read is handled
        grown_mib = (rss_kib(worker) - before) / 1024
        client.close()
        still_serving(srv.port)
        assert pushed < 60_000_000, "the server kept reading from a peer that does not read its answers"
        assert grown_mib < 16, f"worker RSS grew by {grown_mib:.0f} MiB for a peer that never reads"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_silent_connection_closed_after_handshake_timeout(runtime):
    """A client that connects and never sends the preface (slowloris) is closed after
    handshake_timeout, and the worker keeps serving."""
    with serving(runtime, workers=1, options={"handshake_timeout": 0.5}) as srv:
        silent = socket.create_connection(("127.0.0.1", srv.port))
        partial = RawClient(srv.port)
        partial.send(PREFACE[:10])
        assert RawClient.closed(partial, wait=5)
        silent.settimeout(5)
        data = silent.recv(65536)  # our SETTINGS arrive first, then the close
        while data:
            data = silent.recv(65536)
        silent.close()
        partial.close()
        healthy = RawClient(srv.port)
        healthy.handshake()
        time.sleep(0.8)  # the interval under test: past the timeout, a connection that did its handshake stays open
        assert not healthy.closed(wait=0.2)
        healthy.close()
        still_serving(srv.port)
