"""Reduction of repeats, ratios, targets and the report writers (no servers needed)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from bench import harness as bench
from bench import profile as prof
from bench import report, servers
from bench.h2load import H2loadResult
from bench.results import Point, add_go_ratios, add_ratios, reduce_runs


def run(rps: float, p99: float, errors: int = 0) -> H2loadResult:
    return H2loadResult(
        req_per_s=rps, min_us=100, max_us=p99 * 2, mean_us=p99 / 2, p50_us=p99 / 3, p99_us=p99, failed=errors
    )


def sample_points() -> list[Point]:
    points = []
    for server, rps in (
        ("grpcio-aio", 6000.0),
        ("gmf-1-uring", 19000.0),
        ("gmf", 31000.0),
        ("grpcio-aio-unpinned", 12000.0),
    ):
        for shape in ("1x100", "16x16"):
            p = Point(server, shape, "CPU 0")
            reduce_runs(p, [run(rps * 0.9, 900), run(rps, 1000, errors=1), run(rps * 1.1, 5000)])
            points.append(p)
    add_ratios(points, {name: spec.baseline for name, spec in servers.SERVERS.items()})
    return points


def test_median_and_ratio() -> None:
    points = sample_points()
    gmf1 = next(p for p in points if p.server == "gmf-1-uring" and p.shape == "16x16")
    assert gmf1.req_per_s == 19000 and gmf1.p99_us == 1000 and gmf1.errors == 1 and len(gmf1.runs) == 3
    assert gmf1.ratio is not None and abs(gmf1.ratio - 19000 / 6000) < 1e-9
    gmf = next(p for p in points if p.server == "gmf")
    assert (
        gmf.baseline == "grpcio-aio-unpinned"
        and gmf.ratio is not None
        and abs(gmf.ratio - 31000 / 12000) < 1e-9
    )


def test_targets() -> None:
    items = report.targets(
        sample_points(),
        [{"server": "gmf-1-auto", "requested": 10000, "held": 10000, "rss_after_kib": 200 * 1024}],
    )
    by_goal = {t.goal: t for t in items}
    assert by_goal["gmf (all workers) >= 2.5x grpcio-aio unpinned, 1x100"].met is True
    assert by_goal["gmf, one pinned worker >= 3x grpcio-aio pinned, 16x16"].met is True
    assert by_goal["gmf, one pinned worker >= 3x grpclib pinned, 16x16"].met is None  # not in the run
    assert any("idle connections" in t.goal and t.met for t in items)


def test_tables_and_files(tmp_path: Path) -> None:
    points = sample_points() + [Point("grpclib", "1x100", "CPU 0", failure="exited with 1")]
    text = report.text_table(points, "title")
    assert "FAILED" in text and "3.17x" in text and text.splitlines()[0] == "title"
    data = {
        "meta": {"timestamp": "T", "machine_line": "m", "pinning": "p", "method": "x", "servers": {}},
        "points": [p.to_dict() for p in points],
        "memory": [
            {
                "server": "gmf-1-auto",
                "requested": 10,
                "held": 10,
                "rss_before_kib": 1024,
                "rss_after_kib": 2048,
                "per_connection_kib": 102.4,
            }
        ],
        "targets": [],
    }
    written = bench.write_outputs(data, tmp_path, "20260101T000000Z")
    assert {p.name for p in written} >= {"latest.json", "latest.md", "latest.html", "20260101T000000Z.json"}
    assert json.loads((tmp_path / "latest.json").read_text())["points"][0]["server"] == "grpcio-aio"
    md = (tmp_path / "latest.md").read_text()
    assert "| gmf-1-uring | 16x16 | 19,000 |" in md and "2.0 MiB" in md
    page = (tmp_path / "latest.html").read_text()
    svgs = page.split("<svg")[1:]
    assert len(svgs) == 2
    for chunk in svgs:
        ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")  # well-formed inline SVG


def test_server_selection_and_shapes() -> None:
    names = [s.name for s in servers.select("gmf-1,grpcio-aio,gmf-1-uring")]
    assert names == ["gmf-1-uring", "gmf-1-uvloop", "gmf-1-asyncio", "grpcio-aio"]
    assert "gmf-1-auto" not in [s.name for s in servers.select("all")]
    shapes, special = bench.parse_shapes("1x100,fixed,16x16,memory,bidi:4x8,fixed-go")
    assert [s.name for s in shapes] == ["1x100", "16x16", "bidi:4x8"] and special == {"fixed", "memory", "fixed-go"}
    assert shapes[2].mode == "bidi" and shapes[2].connections == 4 and shapes[2].unit == "msg"
    spec = servers.SERVERS["gmf-1-uvloop"]
    assert spec.argv(4000, 0)[:3] == ["taskset", "-c", "0"] and spec.argv(4000, 0)[-2:] == ["--cpu", "0"]
    assert servers.SERVERS["grpcio-aio-unpinned"].argv(4000, 0)[0] != "taskset"


def test_go_ratios_and_targets() -> None:
    points = []
    for server, rps, cpu, p99 in (("gmf-1-uring", 45000.0, 14.0, 20000), ("grpc-go-1", 50000.0, 12.6, 9000)):
        p = Point(server, "16x16", "CPU 0")
        result = run(rps, p99)
        result.elapsed_s, result.server_cpu_s, result.server_window_s = 2.0, rps * 2.0 * cpu / 1e6, 2.0
        reduce_runs(p, [result])
        points.append(p)
    add_go_ratios(points, {name: spec.go_ref for name, spec in servers.SERVERS.items()})
    gmf = points[0]
    assert gmf.go_ref == "grpc-go-1" and gmf.go_ratio is not None and abs(gmf.go_ratio - 0.9) < 1e-9
    assert gmf.cpu_us is not None and abs(gmf.cpu_us - 14.0) < 1e-6
    assert gmf.go_cpu_ratio is not None and abs(gmf.go_cpu_ratio - 0.9) < 1e-6
    assert gmf.cpu_percent is not None and abs(gmf.cpu_percent - 100 * 45000 * 2 * 14 / 1e6 / 2) < 1e-6
    goals = {t.goal: t for t in report.go_targets(points)}
    assert goals["gmf-1-uring >= 1.0x grpc-go-1, 16x16"].met is False
    assert "0.90x req/s, 0.90x CPU/req" in goals["gmf-1-uring >= 1.0x grpc-go-1, 16x16"].measured
    assert goals["p99 gmf-1-uring <= grpc-go-1, 16x16"].met is False
    assert "0.90x" in report.text_table(points)



def test_all_workers_rows_pinned_and_unbound_against_grpc_go() -> None:
    """The all-workers row twice: as deployed by default (each worker pinned) and with
    GMF_PLACEMENT=unbound (the kernel places them beside the load generator); both are
    compared with grpc-go on all CPUs, each with its own goal line."""
    unbound = servers.SERVERS["gmf-unbound"]
    assert unbound.go_ref == "grpc-go" and ("GMF_PLACEMENT", "unbound") in unbound.env
    assert unbound.argv(4000, 0)[0] != "taskset" and "not pinned" in unbound.pinning(0)
    assert "each pinned by GMF" in servers.SERVERS["gmf"].pinning(0)
    points = []
    for server, rps in (("gmf", 22000.0), ("gmf-unbound", 28000.0), ("grpc-go", 24000.0)):
        p = Point(server, "1000x1", "all")
        result = run(rps, 40000)
        result.elapsed_s, result.server_cpu_s, result.server_window_s = 2.0, rps * 2.0 * 25 / 1e6, 2.0
        reduce_runs(p, [result])
        points.append(p)
    goals = {t.goal: t for t in report.go_targets(points)}
    assert goals["gmf >= 1.0x grpc-go, 1000x1"].met is False
    assert goals["gmf-unbound >= 1.0x grpc-go, 1000x1"].met is True

def test_profile_categories() -> None:
    raw = "\n".join([
        "Worker.run (gmf/worker.py:137);_run_once (asyncio/base_events.py:1884);"
        "GrpcConnection.data_received (gmf/rpc/connection.py:128);"
        "H2ServerConnection.receive_data (gmf/protocol/h2conn.py:270) 30",
        "Worker.run (gmf/worker.py:137);Call.deserialize (gmf/rpc/call.py:185);upb_Decoder_Decode (_message.abi3.so) 5",
        "Worker.run (gmf/worker.py:137);run_unary_async (gmf/rpc/runner.py:114);gc_collect_main (libpython3.11.so) 10",
        "Worker.run (gmf/worker.py:137);UringSelector.select (gmf/runtime/uring_selector.py:125);"
        "Ring._wait (gmf/runtime/uring_ring.py:125);ring_wait (_uring.cpython-311-x86_64-linux-gnu.so) 20",
        "Worker.run (gmf/worker.py:137);Ring.submit_and_wait (gmf/runtime/uring_ring.py:150);"
        "ring_submit (_uring.cpython-311-x86_64-linux-gnu.so);syscall (libc.so.6) 15",
        "Worker.run (gmf/worker.py:137);Greeter.SayHello (examples/helloworld/server.py:20) 20",
        "Thread._bootstrap (threading.py:1002);Condition.wait (threading.py:331);pthread_cond_wait (libc.so.6) 99",
        "garbage line",
    ])
    b = prof.parse_raw(raw)
    assert b.samples == 100 and b.other_threads == 99 and b.native
    assert dict(b.shares()) == {
        "idle (waiting for I/O)": 0.2, "cyclic GC": 0.1, "syscalls (io_uring, send/recv, epoll)": 0.15,
        "HTTP/2 core": 0.3, "protobuf": 0.05, "handler": 0.2,
    }
    assert b.top(1) == [("H2ServerConnection.receive_data (gmf/protocol/h2conn.py)", 0.3)]
    entry = {"server": "gmf-1-uring", "shape": "16x16", "seconds": 2, **b.to_dict()}
    assert "| HTTP/2 core | 30.0% |" in report.profile_markdown(entry)
    assert prof.one_line(entry).startswith("100 samples; HTTP/2 core 30%")


def test_sync_rows_their_shapes_and_targets() -> None:
    """The plain-def rows: the blocking pair is measured at its own 16x4 only (and skips the
    fixed-rate run); issue 11's ratios are listed when measured."""
    config = bench.make_config(quick=True, servers=None, shapes=None, duration=None, results_dir="/tmp/unused")
    names = [s.name for s in config.servers]
    assert "gmf-sync-block" in names and "grpcio-sync-block" in names and "gmf" in names
    runner = bench.Runner(config, Path("/dev/null"))
    assert [s.name for s in runner.shapes_of(servers.SERVERS["gmf-sync-block"])] == ["16x4"]
    assert [s.name for s in runner.shapes_of(servers.SERVERS["gmf"])] == ["1x100", "16x16"]
    assert [s.name for s in runner.shapes_of(servers.SERVERS["gmf-1-stream"])] == ["bidi:4x8"]
    assert servers.SERVERS["gmf-1-def"].argv(4000, 0)[-2:] == ["--cpu", "0"]
    assert servers.SERVERS["gmf-sync-block"].pinning(0) == "one worker per CPU, each pinned by GMF"
    points = []
    for server, shape, rps in (("gmf-sync-block", "16x4", 3600.0), ("grpcio-sync-block", "16x4", 1400.0),
                               ("gmf-1-def", "16x16", 19000.0), ("gmf-1-def-inline", "16x16", 20000.0),
                               ("grpcio-sync", "16x16", 2500.0)):
        point = Point(server, shape, "-")
        reduce_runs(point, [run(rps, 1000)])
        points.append(point)
    by_goal = {t.goal: t for t in report.targets(points, [])}
    assert by_goal["gmf-sync-block >= 2x grpcio-sync-block, 16x4"].met is True
    assert by_goal["gmf-1-def >= 5x grpcio-sync, 16x16"].measured == "7.60x"
    assert by_goal["gmf-1-def >= 0.9x gmf-1-def-inline, 16x16"].met is True
    assert "gmf-1-def >= 5x grpcio-sync, 1x100" not in by_goal  # not measured: not listed


def test_fixed_rate_p99_against_grpc_go() -> None:
    """grpc-go-1 runs the fixed-rate shape at the same rate as the one-worker GMF servers (50% of
    their common baseline's peak), and the vs-go goals compare their p99 there."""
    points = []
    for server, p99 in (("gmf-1-uring", 900.0), ("grpc-go-1", 1200.0)):
        p = Point(server, "16x16", "CPU 0", mode="fixed-rate", target_rps=1712)
        reduce_runs(p, [run(1712.0, p99)])
        points.append(p)
    goal = next(t for t in report.go_targets(points) if "fixed" in t.goal)
    assert goal.goal == "p99 gmf-1-uring <= grpc-go-1, 16x16 at a fixed 1,712 req/s" and goal.met is True
    assert goal.measured.startswith("900us vs 1.20ms")
    assert servers.SERVERS["grpc-go-1"].baseline == servers.SERVERS["gmf-1-uring"].baseline


def test_p99_goals_show_each_servers_spread_over_its_rounds() -> None:
    """A p99 goal is decided on the medians; with several rounds each the line also shows each
    server's lowest and highest p99, so a median one round off the other's reads as such."""
    points = []
    for server, p99s in (("gmf-1-uring", (2280.0, 4660.0, 8020.0)), ("grpc-go-1", (4080.0, 4190.0, 6780.0))):
        p = Point(server, "1x100", "CPU 0")
        reduce_runs(p, [run(50000.0, p99) for p99 in p99s])
        points.append(p)
    goal = next(t for t in report.go_targets(points) if t.goal.startswith("p99"))
    assert goal.met is False
    assert goal.measured == "4.66ms vs 4.19ms (rounds 2.28ms-8.02ms vs 4.08ms-6.78ms)"
    single = [Point(p.server, p.shape, p.pinning) for p in points]
    for one, p99 in zip(single, (900.0, 1200.0), strict=True):
        reduce_runs(one, [run(50000.0, p99)])
    assert "rounds" not in next(t for t in report.go_targets(single) if t.goal.startswith("p99")).measured


def test_fixed_go_runs_each_gmf_server_and_its_grpc_go_at_half_of_grpc_gos_peak(tmp_path: Path) -> None:
    config = bench.make_config(quick=False, servers="gmf-1-uring,gmf,grpcio-aio,grpc-go-1", shapes="16x16,fixed-go",
                               duration=None, results_dir=str(tmp_path))
    assert config.fixed_go and not config.fixed_rate
    runner = bench.Runner(config, tmp_path / "req.bin")
    asked: list[tuple[str, float, str]] = []

    def fixed_point(spec: servers.ServerSpec, shape: object, base_peak: float, base: str) -> Point:
        asked.append((spec.name, base_peak, base))
        return Point(spec.name, "16x16", "CPU 0", mode="fixed-rate", baseline=base)

    runner.fixed_point = fixed_point  # type: ignore[method-assign]
    peak = [Point("grpc-go-1", "16x16", "CPU 0", req_per_s=90_000.0), Point("gmf-1-uring", "16x16", "CPU 0")]
    points = runner.fixed_go(peak)
    # gmf's grpc-go (all cores) is not in the run: gmf is left out
    assert asked == [("gmf-1-uring", 90_000.0, "grpc-go-1"), ("grpc-go-1", 90_000.0, "grpc-go-1")]
    assert [p.baseline for p in points] == ["grpc-go-1", "grpc-go-1"]
