"""The harness against a real peer server: launch + grpcio validation, ~1 s of h2load, idle connections."""

from __future__ import annotations

import asyncio
import json
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


def test_streaming_rows_against_grpc_go_with_cpu_and_a_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GMF's and grpc-go's streambench servers under the Go streamload client, with the server
    CPU per message, the vs-go ratios and a py-spy profile of GMF; without Go the Go servers
    are left out with the reason and the run still succeeds."""
    config = bench.make_config(
        quick=True,
        servers="gmf-1-stream,grpc-go-1-stream,grpc-go-1",
        shapes="stream:1x2,2x4",
        duration=1.0,
        results_dir=str(tmp_path),
        repeats=1,
        warmup=0.2,
    )
    config.profile = shutil.which("py-spy") is not None
    go = servers.go_peers()
    assert bench.run_config(config) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "latest.json").read_text())
    points = {(p["server"], p["shape"]): p for p in data["points"]}
    gmf = points[("gmf-1-stream", "stream:1x2")]
    assert gmf["req_per_s"] > 0 and gmf["cpu_us"] and gmf["cpu_us"] > 0 and gmf["errors"] == 0
    assert ("gmf-1-stream", "2x4") not in points  # unary shapes load Greeter servers only
    if isinstance(go, str):
        assert go.startswith("skipped:") and data["skipped"]["grpc-go-1"] == go and "left out" in out
    else:
        assert points[("grpc-go-1", "2x4")]["cpu_us"] > 0
        assert gmf["go_ref"] == "grpc-go-1-stream" and gmf["go_ratio"] > 0 and gmf["go_cpu_ratio"] > 0
        assert any(t["goal"].startswith("gmf-1-stream >= 1.0x grpc-go-1-stream") for t in data["go_targets"])
    if config.profile:
        (entry,) = data["profiles"]
        assert entry["server"] == "gmf-1-stream" and not entry.get("failure"), entry
        assert entry["samples"] > 0 and entry["categories"]


def test_without_go_the_go_servers_are_left_out_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "skipped: go not found, install golang-go"
    monkeypatch.setattr(servers, "_go", reason)
    config = bench.make_config(
        quick=True, servers="grpc-go-1,grpc-go-1-stream", shapes="2x4,bidi:1x1", duration=0.5,
        results_dir=str(tmp_path), repeats=1, warmup=0.1,
    )
    assert bench.run_config(config) == 0
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["skipped"] == {"grpc-go-1": reason, "grpc-go-1-stream": reason} and data["points"] == []
    assert f"grpc-go-1 left out: {reason}" in capsys.readouterr().out
    assert reason in (tmp_path / "latest.md").read_text()


def test_rss_run_against_grpclib(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The rss shape end to end: h2load -n in segments against one server, its RSS read around
    and during them, the table in the output and the entry in the JSON."""
    config = bench.make_config(
        quick=True, servers="grpclib", shapes="rss", duration=None, results_dir=str(tmp_path),
        rss_servers="grpclib", rss_requests=600, rss_segments=2,
    )
    config.profile = False
    assert bench.run_config(config) == 0
    (entry,) = json.loads((tmp_path / "latest.json").read_text())["rss"]
    assert entry["server"] == "grpclib" and entry["shape"] == "16x16" and entry["failure"] is None
    assert entry["segments"] == 2 and entry["units"] == 600 and entry["errors"] == 0
    assert [s["units"] for s in entry["samples"]] == [300, 600]
    assert entry["start_kib"] > 0 and entry["peak_kib"] >= entry["end_kib"] > 0
    assert "| grpclib | 16x16 | 600 req |" in capsys.readouterr().out
