"""The harness against a real peer server: launch + grpcio validation, ~1 s of h2load, idle connections."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from bench import h2load, servers
from bench import harness as bench
from bench.memory import hold_idle

pytestmark = pytest.mark.skipif(
    shutil.which("h2load") is None, reason="h2load (Debian nghttp2-client) not installed"
)


def test_h2load_against_grpcio_aio(tmp_path: Path) -> None:
    body = tmp_path / "req.bin"
    body.write_bytes(h2load.hello_request_body())
    spec = servers.SERVERS["grpcio-aio-unpinned"]
    with servers.launch(spec, server_cpu=0) as server:
        assert server.banner().startswith("grpcio-aio listening")
        load = h2load.LoadSpec(port=server.port, shape=h2load.Shape(4, 8), duration_s=1.0, warmup_s=0.2)
        result = h2load.run_h2load(load, body)
    assert result.req_per_s > 100
    assert result.errors == 0 and result.status_2xx == result.succeeded > 0
    assert result.p50_us is not None and result.p99_us is not None
    assert result.min_us <= result.p50_us <= result.p99_us <= result.max_us
    assert result.logged == result.succeeded
    assert server.proc.poll() is not None  # stopped on exit


def test_validation_rejects_a_non_grpc_port() -> None:
    with pytest.raises(servers.ServerError):
        servers.validate(servers.free_port(), calls=1, timeout=20)


def test_idle_connections_against_grpclib() -> None:
    with servers.launch(servers.SERVERS["grpclib"], server_cpu=0) as server:
        pid = server.worker_pids()[0]
        result = asyncio.run(hold_idle(server.port, 50, lambda: servers.rss_kib(pid), settle_s=0.2))
    assert result.opened == result.held == 50 and result.failed == 0
    assert (
        result.rss_before_kib and result.rss_after_kib and result.rss_after_kib >= result.rss_before_kib // 2
    )


def test_quick_style_run_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = bench.make_config(
        quick=True,
        servers="grpclib",
        shapes="2x4,fixed",
        duration=0.5,
        results_dir=str(tmp_path),
        repeats=1,
        warmup=0.1,
    )
    config.servers[0] = servers.ServerSpec(  # its own baseline, so the fixed-rate run has a peak to use
        "grpclib", servers.PEERS / "grpclib_server.py", baseline="grpclib", description="test"
    )
    assert bench.run_config(config) == 0
    out = capsys.readouterr().out
    assert "round 1 grpclib" in out and "fixed rate" in out and "pinned to CPU" in out
    assert (tmp_path / "latest.json").exists() and (tmp_path / "latest.html").exists()
