"""grpc-go as a benchmark peer (bench/peers/go): the builder, the Go servers against grpcio's
client, and the Go load client (streamload) against grpc-go, GMF and grpcio-aio servers.

Skips with the builder's reason when Go or its Debian packages are missing, except with
GMF_REQUIRE_GO=1 (CI), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import helloworld_pb2  # importable: see tests/helpers/__init__.py
import helloworld_pb2_grpc
import pytest
import streambench_pb2 as sb
import streambench_pb2_grpc as sb_grpc

from tests.helpers import ROOT
from tests.helpers.net import free_port, wait_port


def _load_go_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("go_build", ROOT / "bench" / "peers" / "go_build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["go_build"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


go_build = _load_go_build()


@pytest.fixture(scope="module")
def peers() -> Any:
    try:
        return go_build.build()
    except go_build.GoUnavailable as exc:
        if os.environ.get("GMF_REQUIRE_GO") == "1":
            pytest.fail(f"GMF_REQUIRE_GO=1 but the Go peers cannot be built: {exc}")
        pytest.skip(str(exc))


@dataclass
class Peer:
    proc: subprocess.Popen[str]
    port: int
    banner: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def go_server(binary: Path, gomaxprocs: int = 1) -> Iterator[Peer]:
    """A Go server on a port it picks (--port 0), ready once it printed its banner."""
    proc = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GOMAXPROCS": str(gomaxprocs)},
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().strip()
        assert " listening on 127.0.0.1:" in banner, f"no readiness line, got {banner!r}"
        port = int(banner.split("127.0.0.1:")[1].split()[0])
        yield Peer(proc, port, banner)
    finally:
        _stop(proc)


@contextmanager
def python_server(script: str, *args: str) -> Iterator[Peer]:
    """A Python server (GMF example or bench peer) in a subprocess, ready once its port accepts."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / script), "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_port(port, timeout=30)
        yield Peer(proc, port, "")
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def streamload(peers: Any, target: str, mode: str, *args: str, duration: float = 1.0) -> tuple[int, dict[str, Any]]:
    """Run the Go load client; returns its exit status and its one JSON line."""
    out = subprocess.run(
        [str(peers.streamload), "--target", target, "--mode", mode, "--duration", str(duration),
         "--warmup", "0.2", *args],
        capture_output=True, text=True, timeout=60,
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {out.stdout!r} (stderr {out.stderr!r})"
    return out.returncode, json.loads(lines[0])


def assert_counted(report: dict[str, Any], mode: str) -> None:
    assert report["mode"] == mode and report["errors"] == 0, report
    assert report["messages"] > 0 and report["messages_per_s"] > 0
    assert 0.9 <= report["duration_s"] <= 2.0
    latency = report["latency_us"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p999"] <= latency["max"]


# --- the builder -------------------------------------------------------------------------------------


def test_build_is_cached_and_go_tests_pass(peers: Any) -> None:
    again = go_build.build()
    assert not again.built and again.seconds < 5  # nothing changed: no go command at all
    assert again.binaries() == peers.binaries()
    assert all(path.is_file() and os.access(path, os.X_OK) for path in peers.binaries().values())
    assert not str(peers.greeter).startswith(str(ROOT))  # built outside the repository
    output = go_build.go_test()  # go vet + go test (the load client's histogram)
    assert "ok  \tgmfpeers/streamload" in output


def test_fingerprint_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("go") is None:
        pytest.skip("go not installed")
    copy = tmp_path / "go"
    shutil.copytree(go_build.SOURCES, copy)
    monkeypatch.setattr(go_build, "SOURCES", copy)
    before = go_build.fingerprint()
    assert go_build.fingerprint() == before
    main = copy / "greeter" / "main.go"
    main.write_text(main.read_text() + "\n// changed\n")
    assert go_build.fingerprint() != before


def test_missing_tools_give_the_skip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(go_build.GoUnavailable) as info:
        go_build.build()
    message = str(info.value)
    assert message.startswith("skipped: go not found")
    assert "install golang-go" in message and "protoc-gen-go-grpc" in message
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peers" / "go_build.py")],
        capture_output=True, text=True, env={**os.environ, "PATH": "/nonexistent"},
    )
    assert out.returncode == go_build.SKIPPED_EXIT and out.stdout.startswith("skipped: go not found")


# --- the Go servers, called by grpcio's client ----------------------------------------------------


def test_go_greeter_answers_grpcio_and_stops_on_sigterm(peers: Any) -> None:
    with go_server(peers.greeter) as server:
        assert server.banner.startswith("grpc-go listening on") and "(GOMAXPROCS=1)" in server.banner
        with grpc.insecure_channel(server.target) as channel:
            reply = helloworld_pb2_grpc.GreeterStub(channel).SayHello(
                helloworld_pb2.HelloRequest(name="John"), timeout=10
            )
        assert reply.message == "Hello John!"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0


def test_go_streambench_answers_grpcio(peers: Any) -> None:
    with go_server(peers.streambench, gomaxprocs=2) as server:
        assert server.banner.startswith("grpc-go-stream listening on") and "(GOMAXPROCS=2)" in server.banner
        with grpc.insecure_channel(server.target) as channel:
            stub = sb_grpc.StreamBenchStub(channel)
            chunks = list(stub.ServerStream(sb.StreamRequest(count=5, size=100), timeout=10))
            assert [c.body for c in chunks] == [bytes(100)] * 5
            assert list(stub.ServerStream(sb.StreamRequest(count=0, size=100), timeout=10)) == []
            sent = [sb.Chunk(body=b"a" * n) for n in (0, 1, 100, 70_000)]
            assert [c.body for c in stub.BidiEcho(iter(sent), timeout=10)] == [c.body for c in sent]
            for bad in (sb.StreamRequest(count=-1), sb.StreamRequest(count=1_000_001), sb.StreamRequest(size=1 << 21)):
                with pytest.raises(grpc.RpcError) as info:
                    list(stub.ServerStream(bad, timeout=10))
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert info.value.details() == "count must be in [0, 1000000] and size in [0, 1048576]"
            assert len(list(stub.ServerStream(sb.StreamRequest(count=2, size=1), timeout=10))) == 2  # still serving
        assert_example_client_works(server.target)


def test_gmf_and_grpcio_streambench_give_the_go_answers() -> None:
    """The Python servers of the same methods answer as grpc-go does (the test above)."""
    for script in ("examples/streambench/server.py", "bench/peers/grpcio_aio_stream_server.py"):
        extra = ("--workers", "1") if script.startswith("examples") else ()
        with python_server(script, *extra) as server, grpc.insecure_channel(server.target) as channel:
            stub = sb_grpc.StreamBenchStub(channel)
            assert [c.body for c in stub.ServerStream(sb.StreamRequest(count=3, size=100), timeout=10)] == [
                bytes(100)
            ] * 3
            sent = [sb.Chunk(body=b"a" * n) for n in (0, 1, 100, 70_000)]
            assert [c.body for c in stub.BidiEcho(iter(sent), timeout=10)] == [c.body for c in sent]
            with pytest.raises(grpc.RpcError) as info:
                list(stub.ServerStream(sb.StreamRequest(size=-1), timeout=10))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, script
            assert info.value.details() == "count must be in [0, 1000000] and size in [0, 1048576]"
            assert_example_client_works(server.target)


def assert_example_client_works(target: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "streambench" / "client.py"), "--target", target, "--count", "7"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["ServerStream: 7 chunks, 700 bytes", "BidiEcho: 7 chunks echoed, 700 bytes"]


# --- the Go load client against every kind of server ---------------------------------------------


@pytest.mark.parametrize("mode", ["stream", "bidi"])
def test_streamload_against_grpc_go(peers: Any, mode: str) -> None:
    with go_server(peers.streambench) as server:
        rc, report = streamload(peers, server.target, mode, "-c", "2", "-s", "2", "--window", "4")
    assert rc == 0
    assert_counted(report, mode)
    if mode == "stream":
        assert abs(report["messages"] - report["calls"] * 100) <= 4 * 100  # 4 calls in flight at each edge
    else:
        assert report["calls"] == 4 and report["window"] == 4 and report["latency_of"] == "message"


@pytest.mark.parametrize("mode", ["stream", "bidi"])
def test_streamload_against_gmf(peers: Any, mode: str) -> None:
    with python_server("examples/streambench/server.py", "--workers", "1") as server:
        rc, report = streamload(peers, server.target, mode, "-c", "2", "-s", "2", "--size", "100")
    assert rc == 0
    assert_counted(report, mode)
    assert report["mb_per_s"] > 0


def test_streamload_against_grpcio_aio(peers: Any) -> None:
    with python_server("bench/peers/grpcio_aio_stream_server.py") as server:
        rc, report = streamload(peers, server.target, "bidi", "-c", "1", "-s", "2")
    assert rc == 0
    assert_counted(report, "bidi")


def test_streamload_unary_against_grpc_go_and_gmf(peers: Any) -> None:
    with go_server(peers.greeter) as server:
        rc, report = streamload(peers, server.target, "unary", "-c", "2", "-s", "4")
    assert rc == 0 and report["name"] == "world"
    assert_counted(report, "unary")
    assert report["calls"] == report["messages"]
    with python_server("examples/helloworld/server.py", "--workers", "1") as server:
        rc, report = streamload(peers, server.target, "unary", "-c", "2", "-s", "4")
    assert rc == 0
    assert_counted(report, "unary")


def test_streamload_reports_failures(peers: Any) -> None:
    with go_server(peers.greeter) as server:
        rc, report = streamload(peers, server.target, "stream", "-c", "1", "-s", "3", duration=0.3)
        assert rc == 1 and report["errors"] == 3 and report["messages"] == 0
        assert "Unimplemented" in report["first_error"] and "streambench.StreamBench" in report["first_error"]
    with go_server(peers.streambench) as server:
        rc, report = streamload(peers, server.target, "stream", "--count", "2000000", duration=0.3)
        assert rc == 1 and "InvalidArgument" in report["first_error"]
    started = time.monotonic()
    rc, report = streamload(peers, f"127.0.0.1:{free_port()}", "bidi", "--connect-timeout", "0.5")
    assert rc == 1 and report["errors"] == 1 and "connection 0" in report["first_error"]
    assert time.monotonic() - started < 10
    out = subprocess.run([str(peers.streamload), "--mode", "nope"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "unknown --mode" in json.loads(out.stdout)["first_error"]
