"""Malformed requests against a real worker, from a raw socket (RFC 9113 8.1.1, 8.2, 8.3, and
the error types of 5.1, 5.1.1, 5.3.1): each gets its exact RST_STREAM or GOAWAY code, while a
call already running on the same connection completes and a grpcio bystander on another
connection is served throughout (``hostile``). The sans-IO core's side of the same cases:
tests/protocol/test_h2_conformance.py."""

from __future__ import annotations

import struct

import gmftest_pb2 as tpb
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.attacks.test_garbage import hostile, message, served
from tests.helpers.malformed import MALFORMED_REQUESTS, MALFORMED_TRAILERS, request
from tests.helpers.rawh2 import RawClient, frame
from tests.helpers.servers import server_fixture

PROTOCOL_ERROR, STREAM_CLOSED = 0x1, 0x5
pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too
BIDI = "/gmftest.TestService/Bidi"

malformed_server = server_fixture("A one-worker server with the default limits, per runtime.", ["uring", "asyncio"])


def echo(text: str) -> bytes:
    return message(tpb.EchoRequest(message=text).SerializeToString())


class Running:
    """A bidi call on stream 1 of the raw connection, started before the bad input; ``finish()``
    checks it still echoes and ends with status OK."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        client.send(client.headers(1, request(BIDI)) + frame(0x0, 0, 1, echo("first")))
        frames = client.frames(until=5, stop=lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
        assert [f for f in frames if isinstance(f, DataFrame) and f.stream_id == 1], "the good stream is running"

    def finish(self) -> None:
        client = self.client
        client.send(frame(0x0, 0, 1, echo("second")) + frame(0x0, 0x1, 1, b""))
        frames = client.frames(until=5, stop=lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
        assert b"second" in b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
        assert isinstance(frames[-1], HeadersFrame) and client.decode(frames[-1].data)["grpc-status"] == "0"


def reset_of(client: RawClient, sid: int) -> int:
    frames = client.frames(until=5, stop=lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)))
    assert not [f for f in frames if isinstance(f, GoAwayFrame)], f"a connection error for a stream error: {frames}"
    answers = [f for f in frames if f.stream_id == sid and not isinstance(f, DataFrame)]
    assert answers and isinstance(answers[-1], RstStreamFrame), f"stream {sid} got {answers} (served as a request?)"
    return answers[-1].error_code


def goaway_of(client: RawClient) -> int:
    frames = client.frames(stop=lambda f: isinstance(f, GoAwayFrame))
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways, frames
    assert client.closed(), "the server must close the connection after a connection error"
    return goaways[-1].error_code


def refused_beside_a_running_call(server, send, section: str) -> None:
    """``send(client)`` writes the bad stream 3 while stream 1 runs: RST_STREAM PROTOCOL_ERROR
    for it, the running call completes, the connection serves stream 5, the bystander throughout."""
    with hostile(server):
        client = RawClient(server.port)
        client.handshake()
        running = Running(client)
        client.send(send(client))
        assert reset_of(client, 3) == PROTOCOL_ERROR, f"RFC 9113 {section}"
        running.finish()
        served(client, 5)
        client.close()


@pytest.mark.parametrize("name", sorted(MALFORMED_REQUESTS))
def test_malformed_request_gets_protocol_error(malformed_server, name):
    fields, section = MALFORMED_REQUESTS[name]
    refused_beside_a_running_call(malformed_server, lambda c: c.headers(3, fields) + frame(0x0, 0x1, 3, echo("bad")), section)


@pytest.mark.parametrize("name", sorted(MALFORMED_TRAILERS))
def test_malformed_trailers_get_protocol_error(malformed_server, name):
    fields, section = MALFORMED_TRAILERS[name]
    refused_beside_a_running_call(
        malformed_server,
        lambda c: c.headers(3, request(BIDI)) + frame(0x0, 0, 3, echo("x")) + c.headers(3, fields, end_stream=True),
        section)


@pytest.mark.parametrize("declared, body", [(3, echo("too long")), (100, echo("too short"))])
def test_content_length_not_matching_the_data(malformed_server, declared, body):
    with hostile(malformed_server):
        client = RawClient(malformed_server.port)
        client.handshake()
        running = Running(client)
        fields = request("/helloworld.Greeter/SayHello", extra=[("content-length", str(declared))])
        client.send(client.headers(3, fields) + frame(0x0, 0x1, 3, body))
        assert reset_of(client, 3) == PROTOCOL_ERROR
        running.finish()
        client.close()


def test_content_length_matching_the_data_is_served(malformed_server):
    from tests.attacks.test_garbage import HELLO

    with hostile(malformed_server):
        client = RawClient(malformed_server.port)
        client.handshake()
        body = message(HELLO)
        fields = request("/helloworld.Greeter/SayHello", extra=[("content-length", str(len(body)))])
        client.send(client.headers(1, fields) + frame(0x0, 0x1, 1, body))
        frames = client.frames(until=5, stop=lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
        assert client.decode(frames[-1].data)["grpc-status"] == "0"
        client.close()


@pytest.mark.parametrize("kind", ["headers", "priority"])
def test_stream_depending_on_itself(malformed_server, kind):
    """RFC 9113 5.3.1: a stream error PROTOCOL_ERROR, in HEADERS or in a PRIORITY frame."""
    def send(client: RawClient) -> bytes:
        if kind == "headers":
            return frame(0x1, 0x4 | 0x20, 3, struct.pack(">LB", 3, 200) + client.encoder.encode(request()))
        return client.headers(3, request(BIDI)) + frame(0x2, 0, 3, struct.pack(">LB", 3, 200))

    refused_beside_a_running_call(malformed_server, send, "5.3.1")


def test_headers_on_a_never_opened_stream_is_protocol_error(malformed_server):
    """RFC 9113 5.1.1: after stream 5, HEADERS on stream 3 (skipped, never opened): GOAWAY
    PROTOCOL_ERROR; also as trailers-looking HEADERS with END_STREAM."""
    with hostile(malformed_server):
        for end_stream in (False, True):
            client = RawClient(malformed_server.port)
            client.handshake()
            served(client, 5)
            client.send(client.headers(3, request(), end_stream=end_stream))
            assert goaway_of(client) == PROTOCOL_ERROR
            client.close()


def test_headers_on_a_stream_the_client_reset_is_stream_closed(malformed_server):
    """RFC 9113 5.1: the client reset stream 1; its HEADERS on it again: STREAM_CLOSED."""
    with hostile(malformed_server):
        client = RawClient(malformed_server.port)
        client.handshake()
        client.send(client.headers(1, request(BIDI)) + frame(0x3, 0, 1, b"\x00\x00\x00\x08"))
        served(client, 3)
        client.send(client.headers(1, [("x-late", "1")], end_stream=True))
        assert goaway_of(client) == STREAM_CLOSED
        client.close()
