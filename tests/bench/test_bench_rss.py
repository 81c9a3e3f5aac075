"""The rss run (bench/rss.py): growth per million, the segment loop, its report and targets,
and the harness options (no servers needed)."""

from __future__ import annotations

import itertools

from bench import harness as bench
from bench import report, servers
from bench.h2load import H2loadResult
from bench.rss import RssResult, RssSample, growth_per_million, run_rss


def samples(*points: tuple[int, int]) -> list[RssSample]:
    return [RssSample(units, float(i), rss) for i, (units, rss) in enumerate(points)]


def test_growth_per_million_is_the_least_squares_slope() -> None:
    assert growth_per_million(samples((1_000_000, 30_000), (2_000_000, 30_000), (3_000_000, 30_000))) == 0
    grows = samples((1_000_000, 30_000), (2_000_000, 30_500), (3_000_000, 31_000))
    assert growth_per_million(grows) == 500
    noisy = samples((0, 100), (1_000_000, 300), (2_000_000, 200), (3_000_000, 400))  # slope of the fit
    assert abs((growth_per_million(noisy) or 0) - 80) < 1e-6
    assert growth_per_million(samples((1, 5))) is None and growth_per_million([]) is None
    assert growth_per_million(samples((7, 5), (7, 9))) is None  # no units between them


def test_run_rss_reads_the_server_around_and_during_each_segment() -> None:
    rss = itertools.count(20_000, 100)  # every read of the server's RSS 100 KiB more
    done: list[int] = []

    def segment(i: int) -> H2loadResult:
        done.append(i)
        return H2loadResult(succeeded=250_000, req_per_s=50_000.0, elapsed_s=5.0)

    result = run_rss(RssResult("gmf-1-uring", "16x16"), lambda: next(rss), segment, 4, interval_s=60)
    assert done == [0, 1, 2, 3] and result.segments == 4 and result.units == 1_000_000
    assert [s.units for s in result.samples] == [250_000, 500_000, 750_000, 1_000_000]
    assert result.start_kib is not None and result.warm_kib == result.samples[0].rss_kib
    assert result.end_kib == result.samples[-1].rss_kib and result.peak_kib == result.end_kib
    assert result.start_kib < result.warm_kib < result.end_kib and result.failure is None
    # one read per segment end (the sampler's own reads come in between): 100 KiB per 250k at least
    growth = result.to_dict()["growth_kib_per_million"]
    assert growth is not None and growth >= 400


def test_run_rss_stops_when_the_server_is_gone() -> None:
    reads = iter([20_000, 20_000, None, None, None])
    result = run_rss(RssResult("x", "16x16"), lambda: next(reads, None),
                     lambda i: H2loadResult(succeeded=10), 3, interval_s=60)
    assert result.failure == "the server process is gone" and result.segments == 1 and not result.samples


def test_rss_report_and_targets() -> None:
    flat = RssResult("gmf-1-uring", "16x16", segments=3, units=3_000_000, seconds=60.0, start_kib=28_000,
                     warm_kib=29_000, end_kib=29_010, peak_kib=30_000,
                     samples=samples((1_000_000, 29_000), (2_000_000, 29_004), (3_000_000, 29_010))).to_dict()
    leaky = {**flat, "server": "gmf-1-stream", "shape": "stream:1x4", "unit": "msg",
             "growth_kib_per_million": 5_000.0}
    go = {**flat, "server": "grpc-go-1"}
    table = report.rss_markdown([flat, leaky, go, {"server": "gmf-1-auto", "failure": "did not start"}])
    assert "| gmf-1-uring | 16x16 | 3,000,000 req | 50,000/s | 27.3 MiB | 28.3 MiB | 28.3 MiB | 29.3 MiB | +6 KiB |" in table  # from segment 2 on
    assert "FAILED: did not start" in table
    goals = {t.goal.split(":")[0]: t for t in report.rss_targets([flat, leaky, go])}
    assert goals["RSS flat over 3.0M requests (gmf-1-uring, 16x16)"].met is True
    assert goals["RSS flat over 3.0M messages (gmf-1-stream, stream"].met is False
    assert not any("grpc-go" in goal for goal in goals)  # go is measured, not a goal
    assert any(t.goal.startswith("RSS flat") for t in report.targets([], [], [flat]))


def test_rss_options_and_defaults() -> None:
    shapes, special = bench.parse_shapes("16x16,rss")
    assert [s.name for s in shapes] == ["16x16"] and special == {"rss"}
    assert "rss" in bench.FULL_SHAPES.split(",")
    config = bench.make_config(quick=False, servers="gmf-1-uring", shapes="rss", duration=None,
                               results_dir="/tmp/unused", rss_requests=1_000, rss_segments=2)
    assert config.rss and config.rss_requests == 1_000 and config.rss_segments == 2
    assert [s.name for s in config.rss_servers] == ["gmf-1-uring", "grpc-go-1"]
    assert "grpc-go-1" in [s.name for s in config.memory_servers]
    assert bench.rss_shape(servers.SERVERS["gmf-1-uring"]).name == "16x16"
    assert bench.rss_shape(servers.SERVERS["gmf-1-stream"]).name == bench.RSS_STREAM_SHAPE
