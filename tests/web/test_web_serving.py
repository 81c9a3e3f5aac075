"""How GMF serves gRPC-Web and Connect beside gRPC (gmf/rpc/accept.py, http1.py, web.py): one
port for gRPC (grpcio), Connect and gRPC-Web over HTTP/1.1 and HTTP/2 (curl), plaintext and
TLS by ALPN; the switch that turns it off; and the server's machinery applied to these
connections: CORS, deadlines, interceptors, plain-def handlers, the access log, max_connections,
the keep-alive idle timeout and the graceful drain. Real clients: grpcio, curl, raw sockets.

The test server is tests/helpers/apps.py's (helloworld, routeguide, gmftest's services).
"""

from __future__ import annotations

import json
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time

import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest

from gmf.protocol import grpc as g
from gmf.protocol import plain
from gmf.web import connect, grpcweb
from tests.helpers import ROOT, poll
from tests.helpers.hostile import still_serving
from tests.helpers.net import free_port, wait_port
from tests.helpers.servers import ServerProcess, server_fixture, serving
from tests.helpers.tlscerts import Pki, make_pki
from tests.web.webharness import curl

HELLO = "/helloworld.Greeter/SayHello"
UNARY = "/gmftest.TestService/Unary"

web_server = server_fixture("The test server with the defaults (web on), per runtime.")


def connect_json(url: str, body: dict, *extra: str) -> tuple[int, dict[str, str], dict]:
    status, headers, raw = curl("-H", "content-type: application/json", *extra, "-d", json.dumps(body), url)
    return status, headers, json.loads(raw) if raw else {}


def raw_http1(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection, read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


# ---------------------------------------------------------------------------- one port, every protocol
def test_one_port_serves_grpc_connect_and_grpc_web_over_both_http_versions(web_server: ServerProcess) -> None:
    url = f"http://{web_server.target}{HELLO}"
    still_serving(web_server.port)  # gRPC over HTTP/2 (grpcio)
    for version in ("--http1.1", "--http2-prior-knowledge"):
        status, headers, body = connect_json(url, {"name": "John"}, version)
        assert (status, headers["content-type"], body) == (200, "application/json", {"message": "Hello John!"}), version
        status, headers, raw = curl(version, "-H", "content-type: application/grpc-web+proto", url,
                                    data=g.frame_message(helloworld_pb2.HelloRequest(name="web").SerializeToString()))
        messages, trailers = grpcweb.decode_response(raw, text=False)
        assert status == 200 and dict(trailers)[b"grpc-status"] == b"0", version
        assert helloworld_pb2.HelloReply.FromString(messages[0]).message == "Hello web!"
    # Connect server streaming over HTTP/2 (the h2c connection's DATA frames carry the envelopes)
    status, _, raw = curl("--http2-prior-knowledge", "-H", "content-type: application/connect+json",
                          f"http://{web_server.target}/gmftest.TestService/ServerStream",
                          data=connect.envelope(b'{"message":"s","count":3}'))
    messages, end = connect.decode_stream_response(raw)
    assert status == 200 and [json.loads(m).get("index", 0) for m in messages] == [0, 1, 2] and "error" not in end


def test_requests_that_are_no_rpc(web_server: ServerProcess) -> None:
    """No RPC of any protocol: 405/415 with what is allowed and gmf.protocol.plain's text, the
    same over both HTTP versions (HEAD: the length only; a plain OPTIONS: 204, no content)."""
    for version in ("--http1.1", "--http2-prior-knowledge"):
        status, headers, body = curl(version, f"http://{web_server.target}/")
        assert (status, headers["allow"], body) == (405, "POST", plain.TEXT), version
        assert headers["content-type"] == "text/plain; charset=utf-8", version
        assert headers["content-length"] == str(len(plain.TEXT)), version
        status, headers, body = curl(version, "-X", "POST", "-H", "content-type: text/plain", f"http://{web_server.target}{HELLO}")
        assert status == 415 and body == plain.TEXT, version
        accepted = headers["accept-post"].split(", ")
        assert "application/json" in accepted and ("application/grpc" in accepted) == (version != "--http1.1"), version
        status, headers, body = curl(version, "-I", f"http://{web_server.target}/")  # HEAD (-I: -o gets the head)
        assert (status, headers["content-length"]) == (405, str(len(plain.TEXT))) and plain.TEXT not in body, version
        status, headers, body = curl(version, "-X", "OPTIONS", f"http://{web_server.target}/")
        assert (status, body) == (204, b"") and "content-length" not in headers and "content-type" not in headers, version
    out = raw_http1(web_server.port, b"POST /x HTTP/1.1\r\nHost: a\r\ncontent-type: application/grpc\r\n"
                                     b"content-length: 0\r\nconnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 415 ") and out.endswith(plain.TEXT), out  # gRPC needs HTTP/2: gRPC-Web is what HTTP/1.1 gets
    out = raw_http1(web_server.port, b"HEAD / HTTP/1.1\r\nHost: a\r\nconnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405 ") and b"content-length: %d\r\n" % len(plain.TEXT) in out, out
    assert out.endswith(b"\r\n\r\n") and plain.TEXT not in out, out  # HEAD: the length, no body
    # keep-alive: the answer does not end the connection; the next request on it is served
    out = raw_http1(web_server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                                     b"GET / HTTP/1.1\r\nHost: a\r\nconnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 405 ") == 2 and out.count(plain.TEXT) == 2, out


# ---------------------------------------------------------------------------- the switch
nogrpcweb_server = server_fixture("The test server with web=False: gRPC over HTTP/2 only.", ["asyncio", "uring"],
                                  options={"web": False})


def test_web_false_is_grpc_only(nogrpcweb_server: ServerProcess) -> None:
    from hyperframe.frame import GoAwayFrame

    from tests.helpers.rawh2 import RawClient

    client = RawClient(nogrpcweb_server.port)
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    goaways = [f for f in client.frames(stop=lambda f: isinstance(f, GoAwayFrame)) if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[-1].error_code == 1  # PROTOCOL_ERROR: not the HTTP/2 preface
    client.close()
    status, headers, body = curl("--http2-prior-knowledge", "-H", "content-type: application/json", "-d", "{}",
                                 f"http://{nogrpcweb_server.target}{HELLO}")
    assert (status, headers["accept-post"], body) == (415, "application/grpc", plain.TEXT)  # plain.not_grpc's
    still_serving(nogrpcweb_server.port)


# ---------------------------------------------------------------------------- TLS: ALPN chooses
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("web-pki"))


def _tls(pki: Pki, **extra: object) -> dict:
    return {"tls": {"certificate_chain": pki.path("server.pem"), "private_key": pki.path("server.key")}, **extra}


tls_web_server = server_fixture("The test server over TLS (web on), per runtime.",
                                options=lambda request: _tls(request.getfixturevalue("pki")))


def _alpn(pki: Pki, port: int, offer: list[str]) -> str | None:
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.set_alpn_protocols(offer)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        return sock.selected_alpn_protocol()


def test_tls_alpn_h2_and_http11(tls_web_server: ServerProcess, pki: Pki) -> None:
    port = tls_web_server.port
    assert _alpn(pki, port, ["h2", "http/1.1"]) == "h2"  # the server's preference: gRPC clients get h2
    assert _alpn(pki, port, ["http/1.1"]) == "http/1.1"
    url = f"https://localhost:{port}{HELLO}"
    for version in ("--http1.1", "--http2"):
        status, headers, raw = curl(version, "--cacert", pki.path("ca.pem"),
                                    "-H", "content-type: application/json", "-d", '{"name":"tls"}', url)
        assert (status, json.loads(raw)) == (200, {"message": "Hello tls!"}), version
    creds = grpc.ssl_channel_credentials(pki.read("ca.pem"))
    with grpc.secure_channel(f"localhost:{port}", creds) as ch:
        assert helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name="g"), timeout=10).message == "Hello g!"


def test_tls_without_web_offers_h2_only(pki: Pki) -> None:
    with serving("asyncio", options=_tls(pki, web=False)) as srv:
        assert _alpn(pki, srv.port, ["h2", "http/1.1"]) == "h2"
        assert _alpn(pki, srv.port, ["http/1.1"]) is None


# ---------------------------------------------------------------------------- CORS
def test_cors_is_off_by_default(web_server: ServerProcess) -> None:
    origin = "http://page.example"
    status, headers, _ = curl("-X", "OPTIONS", "-H", f"origin: {origin}", "-H", "access-control-request-method: POST",
                              f"http://{web_server.target}{HELLO}")
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = connect_json(f"http://{web_server.target}{HELLO}", {"name": "x"}, "-H", f"origin: {origin}")
    assert status == 200 and "access-control-allow-origin" not in headers


def test_cors_origins_over_both_http_versions() -> None:
    with serving("asyncio", options={"cors_origins": ["http://page.example"]}) as srv:
        for version in ("--http1.1", "--http2-prior-knowledge"):
            status, headers, _ = curl(version, "-X", "OPTIONS", "-H", "origin: http://page.example",
                                      "-H", "access-control-request-method: POST", f"http://{srv.target}{HELLO}")
            assert status == 204 and headers["access-control-allow-origin"] == "http://page.example", version
            status, headers, _ = connect_json(f"http://{srv.target}{HELLO}", {"name": "x"}, version,
                                              "-H", "origin: http://page.example")
            assert headers["access-control-allow-origin"] == "http://page.example", version
            assert "grpc-status" in headers["access-control-expose-headers"]
            _, headers, _ = connect_json(f"http://{srv.target}{HELLO}", {"name": "x"}, version, "-H", "origin: http://evil")
            assert "access-control-allow-origin" not in headers


# ---------------------------------------------------------------------------- the RPC layer's machinery
def test_connect_and_grpc_web_timeouts_set_the_deadline(web_server: ServerProcess) -> None:
    _, _, body = connect_json(f"http://{web_server.target}{UNARY}", {"action": "time_remaining"},
                              "-H", "connect-timeout-ms: 5000")
    assert 4.0 < float(body["message"]) <= 5.0
    _, _, body = connect_json(f"http://{web_server.target}{UNARY}", {"action": "time_remaining"})
    assert body["message"] == "none"
    _, _, raw = curl("-H", "content-type: application/grpc-web+proto", "-H", "grpc-timeout: 3S", f"http://{web_server.target}{UNARY}",
                     data=g.frame_message(b"\x1a\x0etime_remaining"))
    import gmftest_pb2

    messages, _ = grpcweb.decode_response(raw, text=False)
    assert 2.0 < float(gmftest_pb2.EchoReply.FromString(messages[0]).message) <= 3.0


def test_plain_def_handlers_and_errors(web_server: ServerProcess) -> None:
    """gmftest.SyncService: plain-def handlers from a generic handler, with no descriptor in the
    protobuf pool, so Connect binary works and JSON is 415 (no JSON mapping without the types)."""
    import gmftest_pb2

    url = f"http://{web_server.target}/gmftest.SyncService/Unary"
    status, _, raw = curl("-H", "content-type: application/proto", url,
                          data=gmftest_pb2.EchoRequest(message="x").SerializeToString())
    assert (status, gmftest_pb2.EchoReply.FromString(raw).message) == (200, "sync:x")
    status, _, raw = curl("-H", "content-type: application/proto", url,
                          data=gmftest_pb2.EchoRequest(action="abort", code=g.NOT_FOUND, details="gone").SerializeToString())
    assert (status, json.loads(raw)) == (404, {"code": "not_found", "message": "gone"})
    assert connect_json(url, {"message": "x"})[0] == 415
    status, _, body = connect_json(f"http://{web_server.target}{UNARY}", {"action": "raise", "details": "boom"})
    assert status == 500 and body["code"] == "unknown" and "boom" in body["message"]


def test_interceptors_see_web_calls() -> None:
    with serving("asyncio", options={"interceptors": ["auth"]}) as srv:
        url = f"http://{srv.target}{HELLO}"
        status, _, body = connect_json(url, {"name": "x"})
        assert (status, body["code"]) == (401, "unauthenticated")
        status, _, body = connect_json(url, {"name": "x"}, "-H", "authorization: Bearer good")
        assert (status, body) == (200, {"message": "Hello x!"})
        # the handler an interceptor chain resolves per call still decides the Connect shape
        status, _, raw = curl("-H", "content-type: application/connect+json", "-H", "authorization: Bearer good",
                              f"http://{srv.target}/gmftest.TestService/ServerStream",
                              data=connect.envelope(b'{"count":2}'))
        assert status == 200 and len(connect.decode_stream_response(raw)[0]) == 2


def test_max_concurrent_rpcs_counts_web_calls() -> None:
    """max_concurrent_rpcs (grpcio's maximum_concurrent_rpcs) is one count for every protocol:
    a Connect call while a gRPC call runs is refused (RESOURCE_EXHAUSTED: Connect's 429), and
    web calls over either HTTP version give their place back when they end (a drift either way
    would refuse the later calls, or let two run at once)."""
    import gmftest_pb2
    import gmftest_pb2_grpc

    with serving("asyncio", options={"max_concurrent_rpcs": 1}) as srv:
        url = f"http://{srv.target}{HELLO}"
        for version in ("--http1.1", "--http2-prior-knowledge") * 3:
            assert connect_json(url, {"name": "x"}, version)[::2] == (200, {"message": "Hello x!"}), version
        with grpc.insecure_channel(srv.target) as channel:
            stub = gmftest_pb2_grpc.TestServiceStub(channel)
            slow = stub.Unary.future(gmftest_pb2.EchoRequest(action="sleep", sleep_seconds=3.0, message="held"))
            # (the server's one place is the sleeping call's once its handler runs)
            poll.until(lambda: connect_json(url, {"name": "x"})[0] == 429, "a Connect call refused", 5.0)
            for version in ("--http1.1", "--http2-prior-knowledge"):
                status, _, body = connect_json(url, {"name": "x"}, version)
                assert (status, body["code"]) == (429, "resource_exhausted"), (version, body)
            slow.result(timeout=10)
        for version in ("--http1.1", "--http2-prior-knowledge"):
            assert connect_json(url, {"name": "y"}, version)[2] == {"message": "Hello y!"}, version


def test_access_log_counts_web_calls() -> None:
    with serving("asyncio", options={"access_log": True}) as srv:
        connect_json(f"http://{srv.target}{HELLO}", {"name": "x"})
        curl("-H", "content-type: application/json", "-d", "{}", f"http://{srv.target}/no.Such/Method")
        poll.until(lambda: "/no.Such/Method" in srv.log(), "the access log line of the unknown method")
        lines = srv.log().splitlines()  # "/pkg.Service/Method CODE 0.412ms ipv4:127.0.0.1:PORT"
        assert any(f"{HELLO} OK " in line and "ipv4:127.0.0.1:" in line for line in lines), lines[-5:]
        assert any("/no.Such/Method UNIMPLEMENTED " in line for line in lines), lines[-5:]


# ---------------------------------------------------------------------------- connections
def _keep_alive(port: int) -> socket.socket:
    """A connection that made one Connect call and stays open (keep-alive)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    body = b'{"name":"k"}'
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: a\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                 % (HELLO.encode(), len(body), body))
    reply = b""
    while b"Hello k!" not in reply:
        chunk = sock.recv(65536)
        assert chunk, reply
        reply += chunk
    return sock


def _closed(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_max_connections_counts_http1_connections() -> None:
    with serving("uring", options={"max_connections": 2}) as srv:
        first, second = _keep_alive(srv.port), _keep_alive(srv.port)
        with first, second:
            third = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            with third:
                assert _closed(third, 5)  # refused before any byte
        poll.until(lambda: _try_call(srv.port), "a call once the two connections are gone")


def _try_call(port: int) -> bool:
    try:
        status, _, _ = connect_json(f"http://127.0.0.1:{port}{HELLO}", {"name": "x"})
        return status == 200
    except subprocess.CalledProcessError:
        return False


def test_idle_keep_alive_connection_is_closed() -> None:
    with serving("uvloop", options={"idle_timeout": 1.0}) as srv:
        sock = _keep_alive(srv.port)
        with sock:
            start = time.monotonic()
            assert _closed(sock, 5) and 0.8 < time.monotonic() - start < 4


def test_drain_answers_in_flight_with_connection_close_and_closes_idle() -> None:
    with serving("uring", grace=10.0) as srv:
        idle = _keep_alive(srv.port)
        busy = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        body = b'{"action":"sleep","sleepSeconds":1.5,"message":"drain"}'
        busy.sendall(b"POST %s HTTP/1.1\r\nHost: a\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (UNARY.encode(), len(body), body))
        from tests.helpers.apps import wait_handler_started

        with grpc.insecure_channel(srv.target) as ch:
            wait_handler_started(ch, "drain")
        srv.proc.send_signal(signal.SIGTERM)
        with idle:
            assert _closed(idle, 3)  # idle keep-alive: closed at once
        reply = b""
        with busy:
            while chunk := busy.recv(65536):
                reply += chunk
        head = reply.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200 ") and b"connection: close" in head, reply
        assert srv.proc.wait(20) == 0


# ---------------------------------------------------------------------------- the README's curl line
def test_readme_curl_line_against_the_helloworld_example() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "examples/helloworld/server.py", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=30)
        lines = (ROOT / "README.md").read_text().splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("curl -H 'content-type: application/json'"))
        argv = shlex.split(lines[at].replace("127.0.0.1:50051", f"127.0.0.1:{port}"))
        assert lines[at + 1].startswith("# ") and str(port) in argv[-1], lines[at:at + 2]
        out = subprocess.run(["curl", "-sS", *argv[1:]], capture_output=True, text=True, timeout=30, check=True).stdout
        assert json.loads(out) == json.loads(lines[at + 1][2:]) == {"message": "Hello John!"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)

