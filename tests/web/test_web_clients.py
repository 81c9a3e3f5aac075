"""Acceptance tests for gRPC-Web and Connect, with real clients: headless Chromium running
@connectrpc/connect-web and grpc-web (built from tests/web), curl, and the connectrpc Python
client. Each test runs against every server in ``SERVERS``.

The servers: the reference peer, connectrpc on uvicorn (tests/web/connect_peer.py), which
proves the harness itself, and GMF on each runtime (tests/web/gmf_server.py, serving
tests/web/services.py with ``cors_origins=[page origin]``): the same assertions are GMF's
acceptance tests. Where the peer lacks a feature (it answers 415 to
``application/grpc-web-text``), ``WebServer`` says so and the test checks that answer instead.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import helloworld_pb2  # importable: see tests/web/__init__.py
import pytest
import route_guide_pb2

from gmf.protocol import grpc as g
from gmf.web import connect, grpcweb
from tests.helpers import ROOT
from tests.helpers.net import free_port, wait_port
from tests.web.webharness import GMF_SERVERS, STARTERS, WebServer, curl, importable, require

HERE = Path(__file__).resolve().parent  # the node scripts and the page they build

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FEATURES = ["Feature 0/1", "Feature 0/2", "Feature 1/0", "Feature 1/1", "Feature 2/0", "Feature 2/2"]
SMALL_RECT = route_guide_pb2.Rectangle(lo=route_guide_pb2.Point(latitude=0, longitude=0),
                                       hi=route_guide_pb2.Point(latitude=20_000_000, longitude=20_000_000))
# connectrpc: the reference peer; gmf-RUNTIME: GMF on each runtime (tests/web/gmf_server.py).
SERVERS = ["connectrpc", *GMF_SERVERS]


@pytest.fixture(scope="module")
def page_port() -> int:
    return free_port()


@pytest.fixture(scope="module", params=SERVERS)
def web_server(request: pytest.FixtureRequest, page_port: int) -> Iterator[WebServer]:
    log = Path(tempfile.mkstemp(prefix=f"web-{request.param}-", suffix=".log")[1])
    server = STARTERS[request.param](f"http://127.0.0.1:{page_port}", log)
    yield server
    server.stop()
    log.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- browsers
@pytest.fixture(scope="session")
def web_page() -> Path:
    """tests/web built once: generated TypeScript (protoc-gen-es) and the esbuild bundle."""
    require("node", shutil.which("node") is None)
    require("tests/web/node_modules (npm install in tests/web)", not (HERE / "node_modules" / "playwright-core").is_dir())
    require(f"Chromium at {CHROMIUM} (apt-get install chromium)", not os.access(CHROMIUM, os.X_OK))
    env = {**os.environ, "PYTHON": sys.executable}
    for script in ("generate.mjs", "build.mjs"):
        subprocess.run(["node", script], cwd=HERE, env=env, check=True, capture_output=True, timeout=120)
    return HERE / "dist"


REFUSED = ["connect_json_unary", "grpcweb_unary"]


@pytest.fixture(scope="module")
def browser_results(web_page: Path, web_server: WebServer, page_port: int) -> dict:
    args = ["node", "run.mjs", "--server", web_server.url, "--page-port", str(page_port)]
    for name in REFUSED:
        args += ["--refused", name]
    proc = subprocess.run(args, cwd=HERE, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"run.mjs failed:\n{proc.stderr[-3000:]}\nserver log:\n{web_server.log.read_text()[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


SCENARIOS = [f"{p}_{s}" for p in ("connect_json", "connect_proto", "grpcweb") for s in ("unary", "stream", "error", "deadline")]
SCENARIOS += ["connect_get", "grpcweblib_binary_unary", "grpcweblib_binary_stream", "grpcweblib_binary_error",
              "grpcweblib_binary_deadline", "grpcweblib_text_unary", "grpcweblib_text_stream", "grpcweblib_text_error"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_browser(browser_results: dict, web_server: WebServer, scenario: str) -> None:
    outcome = browser_results["results"][scenario]
    if "_text_" in scenario and not web_server.grpc_web_text:
        assert not outcome["ok"] and "415" in outcome["message"], outcome
        return
    kind = scenario.rsplit("_", 1)[1]
    if kind == "unary":
        assert outcome == {**outcome, "ok": True, "value": "Hello browser!"}
    elif kind == "stream":
        assert outcome["ok"] and outcome["value"] == FEATURES, outcome
    elif kind == "error":
        assert (outcome["ok"], outcome["code"], outcome["message"]) == (False, g.INVALID_ARGUMENT, "name is required")
    elif kind == "deadline":
        assert not outcome["ok"] and outcome["code"] == g.DEADLINE_EXCEEDED, outcome
        assert outcome["ms"] < 3000, outcome  # the handler sleeps 5 s: the deadline cut it short
    elif kind == "get":
        assert outcome["ok"] and outcome["value"] == "Feature 1/1", outcome


@pytest.mark.parametrize("scenario", REFUSED)
def test_browser_from_a_refused_origin(browser_results: dict, scenario: str) -> None:
    """The same page from an origin the server does not allow: the browser blocks the call."""
    outcome = browser_results["refused"][scenario]
    assert not outcome["ok"] and outcome["message"] == "Failed to fetch", outcome


# ---------------------------------------------------------------------------- curl
def test_curl_connect_json(web_server: WebServer) -> None:
    # The README's line: curl -H 'content-type: application/json' -d '{"name":"John"}' .../SayHello
    status, headers, body = curl("-H", "content-type: application/json", "-d", '{"name":"John"}',
                                 f"{web_server.url}/helloworld.Greeter/SayHello")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "Hello John!"}


def test_curl_connect_proto(web_server: WebServer) -> None:
    status, headers, body = curl("-H", "content-type: application/proto", "-H", "connect-protocol-version: 1",
                                 f"{web_server.url}/helloworld.Greeter/SayHello",
                                 data=helloworld_pb2.HelloRequest(name="proto").SerializeToString())
    assert status == 200 and headers["content-type"] == "application/proto"
    assert helloworld_pb2.HelloReply.FromString(body).message == "Hello proto!"


def test_curl_connect_error_json(web_server: WebServer) -> None:
    status, headers, body = curl("-H", "content-type: application/json", "-d", '{"name":""}',
                                 f"{web_server.url}/helloworld.Greeter/SayHello")
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"code": "invalid_argument", "message": "name is required"}


def test_curl_connect_invalid_json_is_invalid_argument(web_server: WebServer) -> None:
    status, _, body = curl("-H", "content-type: application/json", "-d", '{"name":',
                           f"{web_server.url}/helloworld.Greeter/SayHello")
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"


def test_curl_connect_timeout_ms(web_server: WebServer) -> None:
    start = time.monotonic()
    status, _, body = curl("-H", "content-type: application/json", "-H", "connect-timeout-ms: 300",
                           "-d", '{"name":"slow"}', f"{web_server.url}/helloworld.Greeter/SayHello")
    assert time.monotonic() - start < 3
    assert status == 504 and json.loads(body)["code"] == "deadline_exceeded"


def test_curl_connect_get(web_server: WebServer) -> None:
    status, _, body = curl("-G", "--data-urlencode", 'message={"latitude":10000000,"longitude":10000000}',
                           "-d", "encoding=json", "-d", "connect=v1", f"{web_server.url}/routeguide.RouteGuide/GetFeature")
    assert status == 200 and json.loads(body)["name"] == "Feature 1/1"
    raw = base64.urlsafe_b64encode(route_guide_pb2.Point(latitude=10000000, longitude=10000000).SerializeToString())
    status, _, body = curl("-G", "-d", f"message={raw.decode().rstrip('=')}", "-d", "base64=1", "-d", "encoding=proto",
                           f"{web_server.url}/routeguide.RouteGuide/GetFeature")
    assert status == 200 and route_guide_pb2.Feature.FromString(body).name == "Feature 1/1"


def test_curl_connect_unsupported_codec_is_415(web_server: WebServer) -> None:
    status, _, _ = curl("-H", "content-type: application/xml", "-d", "<x/>", f"{web_server.url}/helloworld.Greeter/SayHello")
    assert status == 415


def test_curl_connect_server_streaming(web_server: WebServer) -> None:
    body_in = connect.envelope(b'{"lo":{"latitude":0,"longitude":0},"hi":{"latitude":20000000,"longitude":20000000}}')
    status, headers, body = curl("-H", "content-type: application/connect+json", f"{web_server.url}/routeguide.RouteGuide/ListFeatures",
                                 data=body_in)
    assert status == 200 and headers["content-type"] == "application/connect+json"
    messages, end = connect.decode_stream_response(body)
    assert [json.loads(m)["name"] for m in messages] == FEATURES
    assert "error" not in end


def test_curl_grpc_web(web_server: WebServer) -> None:
    status, headers, body = curl("-H", "content-type: application/grpc-web+proto", "-H", "x-grpc-web: 1",
                                 f"{web_server.url}/helloworld.Greeter/SayHello",
                                 data=g.frame_message(helloworld_pb2.HelloRequest(name="web").SerializeToString()))
    assert status == 200 and headers["content-type"].startswith("application/grpc-web")
    messages, trailers = grpcweb.decode_response(body, text=False)
    assert [helloworld_pb2.HelloReply.FromString(m).message for m in messages] == ["Hello web!"]
    assert dict(trailers)[b"grpc-status"] == b"0"


def test_curl_grpc_web_error_in_trailers(web_server: WebServer) -> None:
    status, _, body = curl("-H", "content-type: application/grpc-web+proto", f"{web_server.url}/helloworld.Greeter/SayHello",
                           data=g.frame_message(b""))
    assert status == 200
    messages, trailers = grpcweb.decode_response(body, text=False)
    assert messages == [] and dict(trailers)[b"grpc-status"] == b"3"
    assert g.percent_decode(dict(trailers)[b"grpc-message"].decode()) == "name is required"


def test_curl_cors_preflight(web_server: WebServer, page_port: int) -> None:
    origin = f"http://127.0.0.1:{page_port}"
    status, headers, _ = curl("-X", "OPTIONS", "-H", f"origin: {origin}", "-H", "access-control-request-method: POST",
                              "-H", "access-control-request-headers: content-type,connect-protocol-version",
                              f"{web_server.url}/helloworld.Greeter/SayHello")
    assert status == 204 and headers["access-control-allow-origin"] == origin
    assert "POST" in headers["access-control-allow-methods"]
    allowed = {h.strip() for h in headers["access-control-allow-headers"].lower().split(",")}
    assert {"content-type", "connect-protocol-version"} <= allowed


# ---------------------------------------------------------------------------- connectrpc's Python client
@pytest.fixture(scope="module")
def connect_clients() -> object:
    require("connectrpc (the [dev] extra)", not importable("connectrpc"))
    from connect_gen import helloworld_connect, route_guide_connect

    return helloworld_connect, route_guide_connect


PROTOCOLS = ["connect-proto", "connect-json", "grpc-web"]


def _client(module: object, cls: str, url: str, protocol: str) -> object:
    from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
    from connectrpc.protocol import ProtocolType

    kind = ProtocolType.GRPC_WEB if protocol == "grpc-web" else ProtocolType.CONNECT
    codec = google_protobuf_json_codec() if protocol == "connect-json" else google_protobuf_binary_codec()
    return getattr(module, cls)(url, protocol=kind, codec=codec)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connectrpc_client_unary_error_deadline(web_server: WebServer, connect_clients: tuple, protocol: str) -> None:
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError

    hello, _ = connect_clients
    with _client(hello, "GreeterClientSync", web_server.url, protocol) as client:
        assert client.say_hello(helloworld_pb2.HelloRequest(name="py")).message == "Hello py!"
        with pytest.raises(ConnectError) as err:
            client.say_hello(helloworld_pb2.HelloRequest(name=""))
        assert err.value.code == Code.INVALID_ARGUMENT and err.value.message == "name is required"
        start = time.monotonic()
        with pytest.raises(ConnectError) as err:
            client.say_hello(helloworld_pb2.HelloRequest(name="slow"), timeout_ms=300)
        assert err.value.code == Code.DEADLINE_EXCEEDED and time.monotonic() - start < 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connectrpc_client_streaming(web_server: WebServer, connect_clients: tuple, protocol: str) -> None:
    _, guide = connect_clients
    with _client(guide, "RouteGuideClientSync", web_server.url, protocol) as client:
        assert [f.name for f in client.list_features(SMALL_RECT)] == FEATURES
        points = [route_guide_pb2.Point(latitude=lat * 10_000_000, longitude=0) for lat in range(3)]
        summary = client.record_route(iter(points))
        assert (summary.point_count, summary.feature_count) == (3, 2)


def test_connectrpc_client_get(web_server: WebServer, connect_clients: tuple) -> None:
    _, guide = connect_clients
    with _client(guide, "RouteGuideClientSync", web_server.url, "connect-json") as client:
        point = route_guide_pb2.Point(latitude=10_000_000, longitude=10_000_000)
        assert client.get_feature(point, use_get=True).name == "Feature 1/1"


# ---------------------------------------------------------------------------- examples/web
EXAMPLE = ROOT / "examples" / "web"


@pytest.fixture(scope="session")
def example_page(web_page: Path) -> Path:
    """examples/web built as its README says."""
    require("examples/web/node_modules (npm install in examples/web)", not (EXAMPLE / "node_modules" / "esbuild").is_dir())
    subprocess.run(["node", "build.mjs"], cwd=EXAMPLE, env={**os.environ, "PYTHON": sys.executable}, check=True,
                   capture_output=True, timeout=120)
    return EXAMPLE / "dist"


def test_example_page(example_page: Path, web_server: WebServer, page_port: int) -> None:
    """examples/web shows SayHello and ListFeatures with both protocols."""
    _check_example(example_page, web_server.url, page_port)


def test_example_server(example_page: Path) -> None:
    """The page against the example's own server, started as examples/web/README.md says."""
    port, page_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, str(EXAMPLE / "server.py"), "--port", str(port), "--workers", "1",
                             "--cors-origin", f"http://127.0.0.1:{page_port}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=30)
        _check_example(example_page, f"http://127.0.0.1:{port}", page_port)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def _check_example(dist: Path, server_url: str, page_port: int) -> None:
    proc = subprocess.run(["node", "run.mjs", "--server", server_url, "--page-port", str(page_port),
                           "--dist", str(dist), "--example"], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    example = json.loads(proc.stdout.strip().splitlines()[-1])["example"]
    for protocol in ("connect", "grpc-web"):
        lines = example[protocol]
        assert lines[0] == "SayHello: Hello browser!", lines
        assert [line.split(": ", 1)[1].split(" (")[0] for line in lines[1:]] == FEATURES, lines
