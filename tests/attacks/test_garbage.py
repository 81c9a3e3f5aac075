"""Garbage and malformed input, at the HTTP/2 and the gRPC level. Each input gets its defined
answer (RFC 9113 GOAWAY / RST_STREAM code, or the gRPC status), never an exception in the
worker; the worker's RSS stays bounded and a grpcio client is served throughout.

(tests/protocol/test_protocol_errors.py has the first set of bad inputs; these are the ones it lacks.)"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections.abc import Iterator

import gmftest_pb2 as tpb
import helloworld_pb2
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.helpers.hostile import Bystander, RssBound, still_serving
from tests.helpers.rawh2 import PREFACE, SETTINGS_EMPTY, RawClient, frame
from tests.helpers.servers import ServerProcess, server_fixture

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

RUNTIMES = ["uring", "asyncio"]
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR = 0x5, 0x6
RFC_CODES = set(range(0x0, 0xE))

HELLO = helloworld_pb2.HelloRequest(name="raw").SerializeToString()
OPEN = PREFACE + SETTINGS_EMPTY
SAY_HELLO = "/helloworld.Greeter/SayHello"


def message(payload: bytes, flag: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">BL", flag, len(payload) if length is None else length) + payload


def request_headers(path: str = SAY_HELLO, content_type: str = "application/grpc") -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", content_type), ("te", "trailers")]


garbage_server = server_fixture("A one-worker server with the default limits, per runtime.", RUNTIMES)


@contextlib.contextmanager
def hostile(srv: ServerProcess, mib: float = 16) -> Iterator[None]:
    """The attack runs beside a grpcio client that must be served, within an RSS bound, and
    leaves no exception in the worker's log."""
    with Bystander(srv.port), RssBound(srv.pids[0], mib=mib):
        yield
    assert_clean_log(srv)


def assert_clean_log(srv: ServerProcess) -> None:
    log = srv.log()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]


def served(client: RawClient, sid: int) -> None:
    """A SayHello on ``sid`` of this connection completes with status OK."""
    client.grpc_request(sid, SAY_HELLO, message(HELLO))
    frames = client.frames(until=5, stop=lambda f: f.stream_id == sid and "END_STREAM" in f.flags)
    assert frames and isinstance(frames[-1], HeadersFrame) and frames[-1].stream_id == sid, frames[-3:]
    assert client.decode(frames[-1].data)["grpc-status"] == "0"


# -- random bytes ---------------------------------------------------------------------------
def _random_frames(rng: random.Random, n: int) -> bytes:
    out = []
    for _ in range(n):
        ftype = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, rng.randrange(10, 256)])
        sid = rng.choice([0, 1, 2, 3, 5, 7, 0x7FFFFFFF])
        out.append(frame(ftype, rng.randrange(256), sid, rng.randbytes(rng.choice([0, 1, 4, 5, 8, 9, rng.randrange(64)]))))
    return b"".join(out)


def _attack(port: int, data: bytes) -> int | None:
    """Send, read until GOAWAY or a quiet second; returns the GOAWAY code (None: none sent)."""
    client = RawClient(port)
    try:
        client.send(data)
    except OSError:
        pass  # the server closed already
    frames = client.frames(until=1.0, stop=lambda f: isinstance(f, GoAwayFrame))
    client.close()
    codes = [f.error_code for f in frames if isinstance(f, GoAwayFrame)]
    return codes[-1] if codes else None


@pytest.mark.parametrize("kind", ["bytes", "after_preface", "frames"])
def test_random_garbage(garbage_server, kind):
    """Seeded random input: raw bytes, random bytes after a valid preface, and well-delimited
    frames of random type, flags, stream and payload. Every GOAWAY carries an RFC 9113 code."""
    codes = []
    expected = []
    with hostile(garbage_server):
        for seed in range(8):
            rng = random.Random(f"{kind}-{seed}")
            if kind == "bytes":
                data = rng.randbytes(rng.randrange(1, 4096))
            elif kind == "after_preface":
                data = OPEN + rng.randbytes(rng.randrange(1, 4096))
            else:
                data = OPEN + _random_frames(rng, 40)
            if kind == "bytes" and 0x41 <= data[0] <= 0x5A:
                # An upper-case letter first is an HTTP/1.x request line to the protocol choice
                # (gmf/rpc/accept.py): HTTP/1.1 answers these bytes with 400 and closes.
                assert _http1_answer(garbage_server.port, data).startswith(b"HTTP/1.1 400 ")
                expected.append(None)
                continue
            code = _attack(garbage_server.port, data)
            assert code is None or code in RFC_CODES
            assert code != INTERNAL_ERROR, f"seed {seed}: INTERNAL_ERROR means an exception in the worker"
            codes.append(code)
            expected.append(PROTOCOL_ERROR)
    if kind == "bytes":
        assert codes == [c for c in expected if c is not None]  # never a valid preface
        assert None in expected and PROTOCOL_ERROR in expected  # both kinds occur among the seeds


def _http1_answer(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:  # closed with our unread bytes: after its answer
            pass
        return out


# -- malformed frames (connection errors) ---------------------------------------------------
CONNECTION_ERRORS = {
    "data_on_stream_0": (frame(0x0, 0, 0, b"abc"), PROTOCOL_ERROR),
    "headers_on_stream_0": (frame(0x1, 0x5, 0, b"\x82"), PROTOCOL_ERROR),
    "rst_on_stream_0": (frame(0x3, 0, 0, b"\x00\x00\x00\x08"), PROTOCOL_ERROR),
    "rst_bad_length": (frame(0x3, 0, 1, b"\x00\x00\x08"), FRAME_SIZE_ERROR),
    "window_update_bad_length": (frame(0x8, 0, 0, b"\x00\x00\x01"), FRAME_SIZE_ERROR),
    "window_update_bad_length_long": (frame(0x8, 0, 0, b"\x00\x00\x00\x01\x00"), FRAME_SIZE_ERROR),
    "settings_on_stream": (frame(0x4, 0, 1, b""), PROTOCOL_ERROR),
    "settings_ack_with_payload": (frame(0x4, 0x1, 0, b"\x00\x04\x00\x00\x00\x00"), FRAME_SIZE_ERROR),
    "ping_on_stream": (frame(0x6, 0, 1, b"12345678"), PROTOCOL_ERROR),
    "goaway_on_stream": (frame(0x7, 0, 1, b"\x00" * 8), PROTOCOL_ERROR),
    "goaway_short": (frame(0x7, 0, 0, b"\x00" * 4), FRAME_SIZE_ERROR),
    "settings_max_frame_size_too_small": (frame(0x4, 0, 0, struct.pack(">HL", 0x5, 100)), PROTOCOL_ERROR),
    "headers_padding_too_long": (frame(0x1, 0x4 | 0x8, 1, b"\x09\x82"), PROTOCOL_ERROR),
}


@pytest.mark.parametrize("name", sorted(CONNECTION_ERRORS))
def test_malformed_frame_gets_goaway(garbage_server, name):
    data, code = CONNECTION_ERRORS[name]
    with hostile(garbage_server):
        client = RawClient(garbage_server.port)
        client.send(OPEN + data)
        frames = client.frames(stop=lambda f: isinstance(f, GoAwayFrame))
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert goaways and goaways[-1].error_code == code, frames
        assert client.closed()
        client.close()


def test_stream_frames_after_request(garbage_server):
    """Frames that need an open stream first: bad DATA padding (connection error), HEADERS
    reusing a closed stream id for a new request (RFC 9113 5.1: a frame other than PRIORITY,
    WINDOW_UPDATE or RST_STREAM on a closed stream is a connection error STREAM_CLOSED; a
    stream id that was never opened is PROTOCOL_ERROR, 5.1.1: tests/protocol/test_h2_conformance.py)."""
    with hostile(garbage_server):
        client = RawClient(garbage_server.port)
        client.handshake()
        client.send(client.headers(1, request_headers()) + frame(0x0, 0x8, 1, b"\x05ab"))
        frames = client.frames(stop=lambda f: isinstance(f, GoAwayFrame))
        assert [f.error_code for f in frames if isinstance(f, GoAwayFrame)] == [PROTOCOL_ERROR]
        client.close()

        client = RawClient(garbage_server.port)
        client.handshake()
        served(client, 1)
        client.send(client.headers(1, request_headers()))  # stream 1 is closed: not trailers, a new request
        frames = client.frames(stop=lambda f: isinstance(f, GoAwayFrame))
        assert [f.error_code for f in frames if isinstance(f, GoAwayFrame)] == [STREAM_CLOSED]
        client.close()


def test_truncated_frame_then_close(garbage_server):
    """A frame cut short, then EOF or RST from the client: nothing to answer, nothing logged."""
    with hostile(garbage_server):
        cuts = [OPEN + frame(0x0, 0, 1, b"abcdef")[:12],
                OPEN + frame(0x1, 0x4, 1, b"\x82\x86\x84")[:10],
                OPEN + frame(0x4, 0, 0, struct.pack(">HL", 4, 100))[:13]]
        for i, data in enumerate(cuts):
            s = socket.create_connection(("127.0.0.1", garbage_server.port))
            s.sendall(data)
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            else:
                s.shutdown(socket.SHUT_WR)  # EOF, then read until the server closes
                s.settimeout(5)
                while s.recv(65536):
                    pass
            s.close()
        still_serving(garbage_server.port)


def test_unknown_frame_types_are_ignored(garbage_server):
    """RFC 9113 4.1: unknown types (and unknown flags) are ignored, on stream 0 and on a stream,
    also between a request's HEADERS and its DATA; the request is served."""
    with hostile(garbage_server):
        client = RawClient(garbage_server.port)
        client.handshake()
        unknown = frame(0x21, 0xFF, 0, b"x" * 100) + frame(0xFA, 0, 1, b"") + frame(0x0B, 0, 3, b"\x00" * 9)
        client.send(unknown)
        client.send(client.headers(1, request_headers()) + frame(0xEE, 0x1, 1, b"end?") + frame(0x0, 0x1, 1, message(HELLO)))
        frames = client.frames(until=5, stop=lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
        data = b"".join(f.data for f in frames if isinstance(f, DataFrame))
        assert helloworld_pb2.HelloReply.FromString(data[5:]).message == "Hello raw!"
        assert client.decode(frames[-1].data)["grpc-status"] == "0"
        assert not [f for f in frames if isinstance(f, (GoAwayFrame, RstStreamFrame))]
        served(client, 3)
        client.close()


def test_frames_on_closed_streams(garbage_server):
    """Half-closed (remote) stream: DATA or HEADERS after the client's END_STREAM is a stream error
    STREAM_CLOSED (RFC 9113 5.1); a second HEADERS without END_STREAM is a stream PROTOCOL_ERROR.
    Frames after our RST_STREAM are ignored; the connection serves on. DATA or trailers on a
    stream both sides ended: a connection error STREAM_CLOSED (5.1, "closed")."""
    with hostile(garbage_server):
        client = RawClient(garbage_server.port, timeout=10)
        client.handshake()
        sleep = tpb.EchoRequest(action="sleep", sleep_seconds=1.0).SerializeToString()
        path = "/gmftest.TestService/Unary"
        for sid, extra, code in ((1, frame(0x0, 0, 1, b"late"), STREAM_CLOSED),
                                 (3, client.headers(3, [("x-late", "1")], end_stream=True), STREAM_CLOSED)):
            client.grpc_request(sid, path, message(sleep))  # END_STREAM: the stream is half-closed (remote)
            client.send(extra)
            frames = client.frames(until=3, stop=lambda f, sid=sid: isinstance(f, RstStreamFrame) and f.stream_id == sid)
            assert [f.error_code for f in frames if isinstance(f, RstStreamFrame)] == [code]
        client.send(client.headers(5, request_headers()) + client.headers(5, request_headers()))
        frames = client.frames(until=3, stop=lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 5)
        assert [f.error_code for f in frames if isinstance(f, RstStreamFrame)] == [PROTOCOL_ERROR]
        client.send(frame(0x0, 0x1, 5, b""))  # after our RST_STREAM: ignored
        served(client, 7)
        assert not [f for f in client.frames(until=0.5) if isinstance(f, (RstStreamFrame, GoAwayFrame))]
        client.close()
        for late in (lambda c: frame(0x0, 0x1, 1, message(HELLO)), lambda c: c.headers(1, [("x-late", "1")], end_stream=True)):
            client = RawClient(garbage_server.port, timeout=10)
            client.handshake()
            served(client, 1)
            client.send(late(client))  # the stream is closed (both END_STREAMs)
            frames = client.frames(stop=lambda f: isinstance(f, GoAwayFrame))
            assert [f.error_code for f in frames if isinstance(f, GoAwayFrame)] == [STREAM_CLOSED]
            assert client.closed()
            client.close()


# -- gRPC level -----------------------------------------------------------------------------
def _status(client: RawClient, frames, sid: int) -> dict[str, str]:
    ends = [f for f in frames if f.stream_id == sid and isinstance(f, HeadersFrame) and "END_STREAM" in f.flags]
    assert ends, f"stream {sid} got no final HEADERS: {[f for f in frames if f.stream_id == sid]}"
    return client.decode(ends[-1].data)


GRPC_CASES = {
    # name: (request headers, DATA payload, END_STREAM on DATA, expected grpc-status, :status)
    "truncated_length_prefix": (request_headers(), message(HELLO)[:3], True, "13", "200"),
    "compressed_flag_without_encoding": (request_headers(), message(HELLO, flag=1), True, "13", "200"),
    "bytes_beyond_declared_length": (request_headers(), message(HELLO) + b"\x00\x00", True, "13", "200"),
    "two_messages_for_unary": (request_headers(), message(HELLO) * 2, True, "13", "200"),
    "invalid_protobuf": (request_headers(), message(b"\xff\xff\xff"), True, "13", "200"),
    "declared_length_over_limit": (request_headers(), struct.pack(">BL", 0, 0x80000000) + b"x" * 100, False, "8", "200"),
    "bad_compression_flag": (request_headers(), message(HELLO, flag=7), True, "13", "200"),
}


@pytest.mark.parametrize("name", sorted(GRPC_CASES))
def test_grpc_level_bad_message_leaves_other_streams(garbage_server, name):
    """On one connection: a good streaming call opened first, then the bad request. The bad
    stream gets its status (at once: the good one is still open), then the good one completes.
    grpcio's server differs in places: it answers a missing or truncated unary request with
    UNIMPLEMENTED and ignores bytes after the first message; GMF answers INTERNAL for every
    framing violation (as grpc-java and the gRPC spec do) instead of dropping input."""
    headers, body, end, grpc_status, http_status = GRPC_CASES[name]
    with hostile(garbage_server):
        client = RawClient(garbage_server.port)
        client.handshake()
        bidi = request_headers("/gmftest.TestService/Bidi")
        client.send(client.headers(1, bidi) + frame(0x0, 0, 1, message(tpb.EchoRequest(message="first").SerializeToString())))
        first = client.frames(until=5, stop=lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
        assert [f for f in first if isinstance(f, DataFrame) and f.stream_id == 1], "the good stream is running"
        client.send(client.headers(3, headers) + frame(0x0, 0x1 if end else 0, 3, body))
        frames = client.frames(until=5, stop=lambda f: f.stream_id == 3 and "END_STREAM" in f.flags)
        status = _status(client, frames, 3)
        assert status["grpc-status"] == grpc_status, status
        assert status[":status"] == http_status
        client.send(frame(0x0, 0, 1, message(tpb.EchoRequest(message="second").SerializeToString())) + frame(0x0, 0x1, 1, b""))
        frames = client.frames(until=5, stop=lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
        replies = [f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1]
        assert b"second" in b"".join(replies)
        assert _status(client, frames, 1)["grpc-status"] == "0"
        client.close()


def test_huge_declared_length_never_buffered(garbage_server):
    """Many streams each declaring a 2 GiB message and sending 64 KB of it: each is refused with
    RESOURCE_EXHAUSTED at the 5-byte prefix, nothing is buffered, grpcio is served meanwhile."""
    with hostile(garbage_server):
        client = RawClient(garbage_server.port, timeout=10)
        client.handshake()
        chunk = b"y" * 16000
        for i in range(20):
            sid = 2 * i + 1
            client.send(client.headers(sid, request_headers()) + frame(0x0, 0, sid, struct.pack(">BL", 0, 0x80000000)))
            frames = client.frames(until=5, stop=lambda f, sid=sid: f.stream_id == sid and "END_STREAM" in f.flags)
            assert _status(client, frames, sid)["grpc-status"] == "8"
            for _ in range(4):  # the body keeps coming: in flight after our RST_STREAM, ignored
                client.send(frame(0x0, 0, sid, chunk))
        frames = client.frames(until=1)
        assert not [f for f in frames if isinstance(f, (RstStreamFrame, GoAwayFrame)) and f.error_code], frames
        served(client, 101)
        client.close()
