"""Reduction of repeats, ratios, targets and the report writers (no servers needed)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from bench import harness as bench
from bench import report, servers
from bench.h2load import H2loadResult
from bench.results import Point, add_ratios, reduce_runs


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
        for shape in ("1x200", "16x16"):
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
    assert by_goal["gmf (all workers) >= 2.5x grpcio-aio unpinned, 1x200"].met is True
    assert by_goal["gmf, one pinned worker >= 3x grpcio-aio pinned, 16x16"].met is True
    assert by_goal["gmf, one pinned worker >= 3x grpclib pinned, 16x16"].met is None  # not in the run
    assert any("idle connections" in t.goal and t.met for t in items)


def test_tables_and_files(tmp_path: Path) -> None:
    points = sample_points() + [Point("grpclib", "1x200", "CPU 0", failure="exited with 1")]
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
    shapes, fixed, memory = bench.parse_shapes("1x200,fixed,16x16,memory")
    assert [s.name for s in shapes] == ["1x200", "16x16"] and fixed and memory
    spec = servers.SERVERS["gmf-1-uvloop"]
    assert spec.argv(4000, 0)[:3] == ["taskset", "-c", "0"] and spec.argv(4000, 0)[-2:] == ["--cpu", "0"]
    assert servers.SERVERS["grpcio-aio-unpinned"].argv(4000, 0)[0] != "taskset"


def test_sync_rows_their_shapes_and_targets() -> None:
    """The plain-def rows: the blocking pair is measured at its own 16x4 only (and skips the
    fixed-rate run); issue 11's ratios are listed when measured."""
    config = bench.make_config(quick=True, servers=None, shapes=None, duration=None, results_dir="/tmp/unused")
    names = [s.name for s in config.servers]
    assert "gmf-sync-block" in names and "grpcio-sync-block" in names and "gmf" in names
    runner = bench.Runner(config, Path("/dev/null"))
    assert [s.name for s in runner.shapes_of(servers.SERVERS["gmf-sync-block"])] == ["16x4"]
    assert [s.name for s in runner.shapes_of(servers.SERVERS["gmf"])] == ["1x200", "16x16"]
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
    assert "gmf-1-def >= 5x grpcio-sync, 1x200" not in by_goal  # not measured: not listed
