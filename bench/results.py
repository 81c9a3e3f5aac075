"""Result records of a benchmark run and how repeats are reduced to one point (the median)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from .h2load import H2loadResult


@dataclass
class Point:
    """One (server, shape) measurement: the per-metric median over its repeats."""

    server: str
    shape: str
    pinning: str
    mode: str = "peak"  # "peak" (as fast as possible) or "fixed-rate"
    target_rps: int | None = None  # fixed-rate: total requests/s asked for
    req_per_s: float = 0.0
    min_us: float = 0.0
    max_us: float = 0.0
    mean_us: float = 0.0
    p50_us: float | None = None
    p99_us: float | None = None
    errors: int = 0  # summed over repeats
    ratio: float | None = None  # req/s relative to the baseline server
    baseline: str | None = None
    cpu_us: float | None = None  # server CPU microseconds per request (or message), median
    cpu_percent: float | None = None  # share of a CPU the server got while measured, median
    go_ref: str | None = None  # the grpc-go server of the "vs go" columns
    go_ratio: float | None = None  # req/s relative to go_ref's on the same shape
    go_cpu_ratio: float | None = None  # go_ref's CPU per request / ours (> 1: less CPU than grpc-go)
    failure: str | None = None  # the server or h2load failed: no numbers
    runs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Point:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _median_opt(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return _median(present) if present else None


def reduce_runs(point: Point, runs: list[H2loadResult]) -> Point:
    """Fill ``point`` with the median of every metric over ``runs`` (errors are summed)."""
    point.runs = [r.to_dict() for r in runs]
    if not runs:
        return point
    point.req_per_s = _median([r.req_per_s for r in runs])
    point.min_us = _median([r.min_us for r in runs])
    point.max_us = _median([r.max_us for r in runs])
    point.mean_us = _median([r.mean_us for r in runs])
    point.p50_us = _median_opt([r.p50_us for r in runs])
    point.p99_us = _median_opt([r.p99_us for r in runs])
    point.errors = sum(r.errors for r in runs)
    point.cpu_us = _median_opt([r.cpu_us_per_unit for r in runs])
    point.cpu_percent = _median_opt([r.server_cpu_percent for r in runs])
    return point


def add_ratios(points: list[Point], baselines: dict[str, str]) -> None:
    """Set ``ratio`` = req/s / req/s of the server's baseline on the same shape and mode."""
    by_key = {(p.server, p.shape, p.mode): p for p in points if p.failure is None}
    for point in points:
        base_name = baselines.get(point.server)
        point.baseline = base_name
        base = by_key.get((base_name, point.shape, point.mode)) if base_name else None
        if point.failure is None and base is not None and base.req_per_s > 0:
            point.ratio = point.req_per_s / base.req_per_s


def add_go_ratios(points: list[Point], refs: dict[str, str | None]) -> None:
    """Set ``go_ratio`` (req/s vs the grpc-go server named in ``refs``) and ``go_cpu_ratio``
    (its CPU per request divided by ours) on the same shape and mode."""
    by_key = {(p.server, p.shape, p.mode): p for p in points if p.failure is None}
    for point in points:
        ref_name = refs.get(point.server)
        point.go_ref = ref_name
        ref = by_key.get((ref_name, point.shape, point.mode)) if ref_name else None
        if point.failure is not None or ref is None:
            continue
        if ref.req_per_s > 0:
            point.go_ratio = point.req_per_s / ref.req_per_s
        if ref.cpu_us and point.cpu_us:
            point.go_cpu_ratio = ref.cpu_us / point.cpu_us
