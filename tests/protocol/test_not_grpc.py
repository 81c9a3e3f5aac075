"""Requests that are not gRPC (``GET /``, a POST of another content-type, HEAD) get an HTTP
status and a short text/plain body saying this is a gRPC server, sent as DATA under flow
control; gRPC calls on the same connection are unaffected. Real HTTP/2 clients: nghttp (Debian
nghttp2-client, installed by .ci/run beside h2load) and curl when present; the raw client for
flow control."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest
from hyperframe.frame import DataFrame, HeadersFrame

from gmf.protocol import plain
from tests.attacks.test_garbage import served
from tests.helpers.hostile import Bystander
from tests.helpers.rawh2 import PREFACE, RawClient, frame
from tests.helpers.servers import server_fixture

TEXT = plain.TEXT.decode()
pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too


def _answer(client: RawClient, sid: int) -> tuple[dict[str, str], bytes]:
    frames = client.frames(until=5, stop=lambda f: f.stream_id == sid and "END_STREAM" in f.flags)
    mine = [f for f in frames if f.stream_id == sid]
    assert mine and isinstance(mine[0], HeadersFrame), frames
    return client.decode(mine[0].data), b"".join(f.data for f in mine if isinstance(f, DataFrame))


nogrpcweb_server = server_fixture("The test server with web=False: gRPC over HTTP/2 only.", ["asyncio"],
                                  options={"web": False})
NOT_GRPC = pytest.mark.parametrize("method, content_type, status", [
    ("GET", None, "405"),
    ("POST", "text/plain", "415"),
    ("POST", None, "415"),
    ("PUT", "application/grpc", "405"),
])


@NOT_GRPC
def test_not_grpc_gets_status_and_text(session_server, method, content_type, status):
    """With the web protocols on (the default): ``allow``/``accept-post`` list what is served,
    POST and application/grpc among them."""
    listed = _not_grpc(session_server.port, method, content_type, status)
    assert ("POST" if status == "405" else "application/grpc") in listed.split(", "), listed


@NOT_GRPC
def test_not_grpc_without_web(nogrpcweb_server, method, content_type, status):
    """web=False: the same status and text, with exactly plain.not_grpc's fields."""
    listed = _not_grpc(nogrpcweb_server.port, method, content_type, status)
    assert listed == ("POST" if status == "405" else "application/grpc")


def _not_grpc(port: int, method: str, content_type: str | None, status: str) -> str:
    """Send the request, check the status and the text, and that the connection serves gRPC
    after it; returns the ``allow`` (405) or ``accept-post`` (415) field."""
    with Bystander(port):
        client = RawClient(port)
        client.handshake()
        fields = [(":method", method), (":scheme", "http"), (":path", "/"), (":authority", "x")]
        fields += [("content-type", content_type)] if content_type else []
        client.send(client.headers(1, fields, end_stream=True))
        headers, body = _answer(client, 1)
        assert headers[":status"] == status
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert int(headers["content-length"]) == len(body) and body.decode() == TEXT
        served(client, 3)  # the same connection serves gRPC after it
        client.close()
    return headers.get("allow" if status == "405" else "accept-post", "")


def test_head_gets_the_length_only(session_server):
    client = RawClient(session_server.port)
    client.handshake()
    client.send(client.headers(1, [(":method", "HEAD"), (":scheme", "http"), (":path", "/"), (":authority", "x")],
                               end_stream=True))
    headers, body = _answer(client, 1)
    assert headers[":status"] == "405" and headers["content-length"] == str(len(plain.TEXT)) and body == b""
    client.close()


def test_text_body_waits_for_flow_control(session_server):
    """A client with a 10-byte stream window gets 10 bytes of the body, the rest as it opens
    the window: the answer is DATA like any other."""
    client = RawClient(session_server.port)
    client.send(PREFACE + frame(0x4, 0, 0, struct.pack(">HL", 0x4, 10)))
    client.send(client.headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")],
                               end_stream=True))
    frames = client.frames(stop=lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
    frames += client.ping_roundtrip()  # everything the server had to send before the PING ACK
    first = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
    assert first == plain.TEXT[:10] and not [f for f in frames if "END_STREAM" in f.flags and f.stream_id == 1]
    assert client.decode(next(f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == 1).data)[":status"] == "405"
    client.send(frame(0x8, 0, 1, struct.pack(">L", 1000)))
    frames = client.frames(until=5, stop=lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
    rest = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
    assert first + rest == plain.TEXT and "END_STREAM" in frames[-1].flags
    client.close()


def test_grpc_request_unchanged(session_server):
    """The gRPC answer to a gRPC request is exactly as before: 200, application/grpc."""
    client = RawClient(session_server.port)
    client.handshake()
    served(client, 1)
    client.close()


@pytest.mark.parametrize("tool", ["nghttp", "curl"])
def test_http2_clients_show_the_text(session_server, tool):
    path = shutil.which(tool)
    if path is None:
        if tool == "nghttp":
            pytest.fail("nghttp is not installed: apt-get install nghttp2-client (.ci/run does)")
        pytest.skip("curl is not installed")
    url = f"http://127.0.0.1:{session_server.port}/"
    argv = [path, url] if tool == "nghttp" else [path, "-sS", "--http2-prior-knowledge", "-w", "\n%{http_code}", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert TEXT in out.stdout, (out.stdout, out.stderr)
    if tool == "curl":
        assert out.stdout.rstrip().endswith("405")
