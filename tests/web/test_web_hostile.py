"""Hostile HTTP/1.1 and bad RPC input against GMF on each runtime: each gets its defined
answer, a grpcio client on the same port (gRPC over HTTP/2) is served throughout, and a Connect
call (curl, HTTP/1.1) on another connection is served after.

The reference peer answers these in its own ways and is not held to them.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gmf.protocol import grpc as g
from gmf.web import grpcweb
from tests.helpers.hostile import Bystander
from tests.web.test_web_http1 import REJECTIONS
from tests.web.webharness import GMF_SERVERS, STARTERS, WebServer, curl

HOSTILE_SERVERS = GMF_SERVERS
MAX_MESSAGE = 4 * 1024 * 1024


@pytest.fixture(scope="module", params=HOSTILE_SERVERS)
def hostile_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    log = Path(tmp_path_factory.mktemp("hostile")) / f"{request.param}.log"
    server = STARTERS[request.param]("http://127.0.0.1:1", log)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def grpc_bystander(hostile_server: WebServer) -> Iterator[None]:
    """A grpcio client on the same port, calling SayHello over HTTP/2 throughout each test:
    every call must succeed (tests.helpers.hostile.Bystander)."""
    with Bystander(hostile_server.port):
        yield


def raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
        return out


def bystander(server: WebServer) -> None:
    status, _, body = curl("-H", "content-type: application/json", "-d", '{"name":"bystander"}',
                           f"{server.url}/helloworld.Greeter/SayHello")
    assert status == 200 and json.loads(body) == {"message": "Hello bystander!"}


# On the port shared with gRPC the first bytes choose the protocol (gmf/rpc/accept.py): these
# two are HTTP/2's, which answers with its SETTINGS and, for garbage, GOAWAY(PROTOCOL_ERROR).
HTTP2_ON_SHARED_PORT = {"garbage request line": True, "the HTTP/2 preface": False}
SETTINGS_FRAME_START = b"\x00\x00\x18\x04\x00\x00\x00\x00\x00"  # 24 bytes of SETTINGS on stream 0


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_hostile_http1(hostile_server: WebServer, name: str) -> None:
    data, status = REJECTIONS[name]
    out = raw(hostile_server.port, data)
    if name in HTTP2_ON_SHARED_PORT:
        assert out.startswith(SETTINGS_FRAME_START), out[:200]
        goaway = b"\x07\x00" + bytes(8) + b"\x00\x00\x00\x01"  # GOAWAY on stream 0, last stream 0, PROTOCOL_ERROR
        assert (goaway in out) == HTTP2_ON_SHARED_PORT[name], out[:200]
    else:
        assert out.startswith(b"HTTP/1.1 %d " % status), out[:200]
    bystander(hostile_server)


def test_slow_head_gets_408_while_others_are_served(hostile_server: WebServer) -> None:
    result: dict[str, bytes] = {}
    slow = threading.Thread(target=lambda: result.update(out=raw(hostile_server.port, b"POST /x HTTP/1.1\r\nHost: a\r\n")))
    slow.start()
    bystander(hostile_server)  # served while the slow head is pending
    slow.join(10)
    assert result["out"].startswith(b"HTTP/1.1 408 "), result


def test_slow_body_gets_408(hostile_server: WebServer) -> None:
    start = time.monotonic()
    out = raw(hostile_server.port, b"POST /helloworld.Greeter/SayHello HTTP/1.1\r\nHost: a\r\n"
                                   b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{")
    assert out.startswith(b"HTTP/1.1 408 ") and time.monotonic() - start < 5
    bystander(hostile_server)


def test_pipelined_requests_answered_in_order(hostile_server: WebServer) -> None:
    body = b'{"name":"%d"}'
    reqs = b"".join(b"POST /helloworld.Greeter/SayHello HTTP/1.1\r\nHost: a\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n" % len(body % i) + body % i for i in range(20))
    out = raw(hostile_server.port, reqs + b"GET /x/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    replies = [json.loads(chunk.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0] or b"{}")
               for chunk in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert [r["message"] for r in replies] == [f"Hello {i}!" for i in range(20)]
    assert b"HTTP/1.1 405 " in out


def test_invalid_json_is_invalid_argument(hostile_server: WebServer) -> None:
    for bad in ['{"name":', '[]', '{"name": 5}']:
        status, _, body = curl("-H", "content-type: application/json", "-d", bad,
                               f"{hostile_server.url}/helloworld.Greeter/SayHello")
        assert status == 400 and json.loads(body)["code"] == "invalid_argument", (bad, body)
    bystander(hostile_server)


def test_body_over_the_message_limit_is_resource_exhausted(hostile_server: WebServer) -> None:
    status, _, body = curl("-H", "content-type: application/proto", f"{hostile_server.url}/helloworld.Greeter/SayHello",
                           data=b"\x0a" + b"x" * MAX_MESSAGE)
    assert status == 429 and json.loads(body)["code"] == "resource_exhausted"
    bystander(hostile_server)


def test_invalid_base64_in_grpc_web_text(hostile_server: WebServer) -> None:
    status, _, body = curl("-H", "content-type: application/grpc-web-text", f"{hostile_server.url}/helloworld.Greeter/SayHello",
                           data=b"AAAA!!!!")
    assert status == 200
    _, trailers = grpcweb.decode_response(base64.b64decode(body), text=False)
    assert dict(trailers)[b"grpc-status"] == str(g.INVALID_ARGUMENT).encode()
    bystander(hostile_server)


def test_unknown_method(hostile_server: WebServer) -> None:
    status, _, body = curl("-H", "content-type: application/json", "-d", "{}", f"{hostile_server.url}/no.Such/Method")
    assert status == 501 and json.loads(body)["code"] == "unimplemented"
    status, _, body = curl("-H", "content-type: application/grpc-web+proto", f"{hostile_server.url}/no.Such/Method",
                           data=g.frame_message(b""))
    assert status == 200 and dict(grpcweb.decode_response(body, text=False)[1])[b"grpc-status"] == b"12"
