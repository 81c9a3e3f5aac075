"""``invoke bench``: GMF side by side with grpc-go, grpcio and grpclib (see docs/benchmarking.md).

Unary shapes load helloworld SayHello with h2load; streaming shapes (``stream:CxS``,
``bidi:CxS``) load streambench with the Go streamload client. Every point also records the
server's CPU time per request (or message), which a busy machine does not distort the way it
distorts req/s, and the ratios to grpc-go. A profiled run per GMF server (py-spy) says where
the time goes.

python -m bench --quick                  # ~2 minute smoke run
python -m bench                          # the full run (~25 minutes)
python -m bench --servers gmf,peers --shapes 16x16,fixed --duration 3
python -m bench --micro                  # pytest-benchmark microbenchmarks
python -m bench --compare OLD.json NEW.json
python -m bench --shapes rss --rss-requests 1000000   # RSS over a million requests (bench/rss.py)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import ROOT, machine, report
from . import profile as prof
from .h2load import (
    UNARY,
    WEB_REQUESTS,
    H2loadError,
    H2loadResult,
    LoadSpec,
    Shape,
    hello_request_body,
    run_h2load,
)
from .memory import hold_idle
from .results import Point, add_go_ratios, add_ratios, reduce_runs
from .rss import RssResult, run_rss
from .servers import (
    GREETER,
    SERVERS,
    WEB_BASELINE,
    ServerError,
    ServerSpec,
    go_peers,
    launch,
    raise_nofile_limit,
    rss_kib,
    select,
)
from .streamload import run_streamload

FULL_SERVERS = "all"
QUICK_SERVERS = "gmf,gmf-unbound,gmf-1-uring,grpcio-aio,grpcio-aio-unpinned,grpc-go-1,grpc-go,gmf-1-stream,grpc-go-1-stream,block"
FULL_SHAPES = "1x100,16x16,1000x1,stream:1x4,bidi:4x8,web,fixed,fixed-go,memory,rss"
QUICK_SHAPES = "1x100,16x16,bidi:4x8"
# Profiled (py-spy) at every shape of the run they serve, when they are in the run.
PROFILED = ("gmf-1-uring", "gmf-1-stream")
SPECIAL_SHAPES = ("fixed", "fixed-go", "memory", "rss")
WEB_SHAPES = tuple(WEB_REQUESTS)  # "web" in --shapes: all of them (HTTP/1.1 keep-alive, 16 connections)
FIXED_SHAPE = "16x16"
MEMORY_SERVERS = "gmf-1-auto,grpcio-aio,grpc-go-1"
# The RSS run (bench/rss.py): each server under sustained load in segments, its RSS read.
RSS_SERVERS = "gmf-1-uring,grpc-go-1"
RSS_REQUESTS = 3_000_000  # unary requests over all segments (~1 minute per server at 50-70k req/s)
RSS_SEGMENTS = 10
RSS_UNARY_SHAPE = "16x16"
RSS_STREAM_SHAPE = "stream:1x4"  # streambench servers: ServerStream calls of 100 messages
RSS_STREAM_REQUESTS_PER_S = 75_000  # streaming runs --rss-requests / this seconds (40 s by default)


@dataclass
class Config:
    servers: list[ServerSpec]
    shapes: list[Shape]
    fixed_rate: bool
    memory: bool
    duration_s: float
    warmup_s: float
    repeats: int
    results_dir: Path
    server_cpu: int
    load_cpu: int | None
    memory_servers: list[ServerSpec] = field(default_factory=list)
    memory_connections: int = 10_000
    rss: bool = False
    fixed_go: bool = False  # each GMF server and its grpc-go at 50% of that grpc-go's peak
    rss_servers: list[ServerSpec] = field(default_factory=list)
    rss_requests: int = RSS_REQUESTS
    rss_segments: int = RSS_SEGMENTS
    fixed_fraction: float = 0.5
    profile: bool = True  # py-spy runs of the GMF servers (PROFILES)
    skipped: dict[str, str] = field(default_factory=dict)  # server -> why it was left out (no Go)


def log(message: str) -> None:
    print(message, flush=True)


def pick_cpus() -> tuple[int, int | None]:
    """Server CPU = the first allowed CPU, load generator = the last (None if only one CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return cpus[0], None
    return cpus[0], cpus[-1]


def parse_shapes(text: str) -> tuple[list[Shape], set[str]]:
    """Load shapes, and which of SPECIAL_SHAPES (``fixed``, ``fixed-go``, ``memory``, ``rss``) are asked for."""
    shapes: list[Shape] = []
    names = [part.strip() for part in text.split(",") if part.strip()]
    names = [n for name in names for n in (WEB_SHAPES if name == "web" else (name,))]
    for name in names:
        if name not in SPECIAL_SHAPES:
            shape = Shape.parse(name)
            if shape not in shapes:
                shapes.append(shape)
    return shapes, set(names) & set(SPECIAL_SHAPES)


def pinning_text(config: Config) -> str:
    load = f"h2load pinned to CPU {config.load_cpu}" if config.load_cpu is not None else "h2load unpinned"
    return (
        f"{load}; single-worker and peer servers pinned to CPU {config.server_cpu}; "
        f"'gmf' (one worker per CPU) and 'grpcio-aio-unpinned' use all {os.cpu_count()} CPUs"
    )


def method_text(config: Config) -> str:
    return (
        f"h2load -t1, unary helloworld SayHello(name='world') (web rows: h2load --h1 -c 16, Connect JSON or "
        f"gRPC-Web over HTTP/1.1 keep-alive); streaming: bench/peers/go/streamload "
        f"(stream: ServerStream of 100 x 100-byte chunks per call; bidi: BidiEcho, one 100-byte chunk in "
        f"flight per call); each point = median of {config.repeats} runs "
        f"of {config.duration_s:g}s after a {config.warmup_s:g}s warm-up, servers restarted per round; "
        "p50/p99 from h2load's per-request log (streamload's histogram); errors = non-2xx + failed streams, "
        "summed over runs; CPU/unit = the server's user+system CPU time (/proc/PID/stat, all its processes "
        "and threads) over the measured phase divided by the requests (messages) done"
    )


def applies(spec: ServerSpec, shape: Shape) -> bool:
    """A server is loaded at the shapes of the protocol it speaks (gRPC shapes: gRPC servers;
    web rows: web servers) and of what it serves (unary: Greeter, streaming: streambench)."""
    return shape.protocol in spec.protocols and (shape.mode == UNARY) == (spec.service == GREETER)


def _record_into(out: dict[str, str | None], pid: int, seconds: float, raw: Path) -> None:
    out["error"] = prof.record(pid, seconds, raw)


class Runner:
    def __init__(self, config: Config, body_file: Path, web_bodies: dict[str, Path] | None = None) -> None:
        self.config = config
        self.body_file = body_file
        self.web_bodies = web_bodies or {}
        self.runs: dict[tuple[str, str], list[H2loadResult]] = {}
        self.failures: dict[tuple[str, str], str] = {}
        self.banners: dict[str, str] = {}

    def load(
        self, server: Any, shape: Shape, rps_per_client: int | None = None, duration_s: float | None = None
    ) -> H2loadResult:
        c = self.config
        pids = [server.proc.pid, *server.worker_pids()]

        def server_cpu() -> float | None:
            return machine.cpu_seconds(list(dict.fromkeys(pids)))

        duration = c.duration_s if duration_s is None else duration_s
        if shape.mode != UNARY:
            peers = go_peers()
            if isinstance(peers, str):
                raise H2loadError(peers)
            return run_streamload(peers.streamload, server.port, shape, duration, c.warmup_s, c.load_cpu, server_cpu)
        spec = LoadSpec(
            port=server.port,
            shape=shape,
            duration_s=duration,
            warmup_s=c.warmup_s,
            rps_per_client=rps_per_client,
        )
        body = self.body_file if shape.web is None else self.web_bodies[shape.web.name]
        return run_h2load(spec, body, cpu=c.load_cpu, server_cpu=server_cpu)

    def shapes_of(self, spec: ServerSpec) -> list[Shape]:
        """The shapes ``spec`` is measured at: its own, if it has any, else the run's; of those,
        the ones that load what it serves and in the protocol it speaks (``applies``)."""
        shapes = [Shape.parse(name) for name in spec.shapes] if spec.shapes else self.config.shapes
        return [shape for shape in shapes if applies(spec, shape)]

    def pairs(self) -> list[tuple[ServerSpec, list[Shape]]]:
        """Each server with its shapes (servers with none left out)."""
        out = [(spec, self.shapes_of(spec)) for spec in self.config.servers]
        return [(spec, shapes) for spec, shapes in out if shapes]

    def peak(self) -> list[Point]:
        c = self.config
        broken: dict[str, str] = {}
        pairs = self.pairs()
        total = sum(len(shapes) for _, shapes in pairs) * c.repeats
        done = 0
        for rnd in range(1, c.repeats + 1):
            for spec, shapes in pairs:
                if spec.name in broken:
                    done += len(shapes)
                    continue
                left = len(shapes)
                try:
                    with launch(spec, c.server_cpu, body_file=self.body_file) as server:
                        self.banners.setdefault(spec.name, server.banner())
                        for shape in shapes:
                            done += 1
                            left -= 1
                            key = (spec.name, shape.name)
                            try:
                                result = self.load(server, shape)
                            except H2loadError as exc:
                                self.failures[key] = str(exc).splitlines()[0]
                                log(
                                    f"[{done}/{total}] round {rnd} {spec.name:<20} {shape.name:>7}: h2load failed: {exc}"
                                )
                                continue
                            self.runs.setdefault(key, []).append(result)
                            cpu = result.cpu_us_per_unit
                            log(
                                f"[{done}/{total}] round {rnd} {spec.name:<20} {shape.name:>10}: "
                                f"{result.req_per_s:>9,.0f} {shape.unit}/s  p50 {report.fmt_us(result.p50_us):>8}  "
                                f"p99 {report.fmt_us(result.p99_us):>8}  errors {result.errors}  "
                                f"CPU {'-' if cpu is None else f'{cpu:.1f}us'}/{shape.unit} "
                                f"({report.fmt_pct(result.server_cpu_percent)} of a CPU)"
                            )
                            if server.proc.poll() is not None:
                                raise ServerError(f"{spec.name} died during the load:\n{server.log_tail()}")
                except ServerError as exc:
                    broken[spec.name] = str(exc)
                    log(f"!! {spec.name}: {exc}")
                    done += left
        points = []
        for spec, shapes in pairs:
            for shape in shapes:
                key = (spec.name, shape.name)
                point = Point(spec.name, shape.name, spec.pinning(c.server_cpu))
                if key in self.runs:
                    reduce_runs(point, self.runs[key])
                else:
                    point.failure = broken.get(spec.name) or self.failures.get(key) or "no runs"
                points.append(point)
        web_names = set(WEB_SHAPES)
        add_ratios([p for p in points if p.shape not in web_names], {s.name: s.baseline for s in c.servers})
        add_ratios([p for p in points if p.shape in web_names], {s.name: WEB_BASELINE for s in c.servers})
        add_go_ratios(points, {s.name: s.go_ref for s in c.servers})
        return points

    def fixed_shape(self) -> Shape | None:
        """The fixed-rate runs' shape (16x16 if measured at peak, else the first unary shape)."""
        shape_names = [s.name for s in self.config.shapes if s.mode == UNARY and s.web is None]
        if not shape_names:
            log("!! fixed-rate run skipped: it needs a peak shape to measure the baseline first")
            return None
        return Shape.parse(FIXED_SHAPE if FIXED_SHAPE in shape_names else shape_names[0])

    def fixed_rate(self, peak: list[Point]) -> list[Point]:
        """Every server at ``fixed_fraction`` of its baseline's peak on the fixed-rate shape."""
        c = self.config
        shape = self.fixed_shape()
        if shape is None:
            return []
        peaks = {p.server: p.req_per_s for p in peak if p.shape == shape.name and p.failure is None}
        points: list[Point] = []
        for spec in c.servers:
            if spec.service != GREETER or spec.shapes or "grpc" not in spec.protocols:  # streaming, web-only, or own shapes only
                continue
            base_peak = peaks.get(spec.baseline)
            if not base_peak:
                log(f"!! fixed rate: no {spec.baseline} peak at {shape.name}, {spec.name} skipped")
                continue
            points.append(self.fixed_point(spec, shape, base_peak, spec.baseline))
        return points

    def fixed_go(self, peak: list[Point]) -> list[Point]:
        """Each GMF Greeter server and its grpc-go (``go_ref``) at ``fixed_fraction`` of that
        grpc-go's peak: latency at a load where both work, not at grpcio's rate (issue 13)."""
        c = self.config
        shape = self.fixed_shape()
        if shape is None:
            return []
        peaks = {p.server: p.req_per_s for p in peak if p.shape == shape.name and p.failure is None}
        names = {spec.name for spec in c.servers}
        points: list[Point] = []
        for go in dict.fromkeys(s.go_ref for s in c.servers if s.service == GREETER and s.name.startswith("gmf")):
            mine = [s for s in c.servers if s.go_ref == go and s.name.startswith("gmf") and not s.shapes]
            if go is None or go not in names or not mine or not peaks.get(go):
                continue
            for spec in [*mine, SERVERS[go]]:
                points.append(self.fixed_point(spec, shape, peaks[go], go))
        return points

    def fixed_point(self, spec: ServerSpec, shape: Shape, base_peak: float, base: str) -> Point:
        """``spec`` loaded at ``fixed_fraction`` of ``base_peak`` (``base``'s), ``repeats`` times."""
        c = self.config
        per_client = max(1, math.ceil(base_peak * c.fixed_fraction / shape.connections))
        target = per_client * shape.connections
        point = Point(spec.name, shape.name, spec.pinning(c.server_cpu), mode="fixed-rate", target_rps=target,
                      baseline=base)
        runs: list[H2loadResult] = []
        try:
            with launch(spec, c.server_cpu, body_file=self.body_file) as server:
                for rnd in range(1, c.repeats + 1):
                    result = self.load(server, shape, rps_per_client=per_client)
                    runs.append(result)
                    log(
                        f"fixed rate {target:,}/s round {rnd} {spec.name:<20}: {result.req_per_s:,.0f} req/s  "
                        f"p50 {report.fmt_us(result.p50_us)}  p99 {report.fmt_us(result.p99_us)}  "
                        f"errors {result.errors}"
                    )
        except (ServerError, H2loadError) as exc:
            log(f"!! fixed rate {spec.name}: {exc}")
            if not runs:
                point.failure = str(exc).splitlines()[0]
        reduce_runs(point, runs)
        return point

    def profile(self, tmp: Path) -> list[dict[str, Any]]:
        """One py-spy recording per PROFILED server and shape of the run, on a server started for it."""
        c = self.config
        out: list[dict[str, Any]] = []
        pairs = [(spec, shape) for spec in c.servers if spec.name in PROFILED for shape in self.shapes_of(spec)]
        for spec, shape in pairs:
            name, shape_name = spec.name, shape.name
            seconds = max(2.0, min(5.0, c.duration_s))
            entry: dict[str, Any] = {"server": name, "shape": shape_name, "seconds": seconds}
            try:
                with launch(spec, c.server_cpu, body_file=self.body_file) as server:
                    worker = server.worker_pids()[0]
                    raw = tmp / f"profile-{name}-{shape_name.replace(':', '-')}.txt"
                    recorded: dict[str, str | None] = {}
                    sampler = threading.Timer(c.warmup_s, _record_into, args=(recorded, worker, seconds, raw))
                    sampler.start()
                    result = self.load(server, shape, duration_s=seconds + 1.0)
                    sampler.join()
                    if recorded.get("error"):
                        entry["failure"] = recorded["error"]
                    else:
                        breakdown = prof.parse_raw(raw.read_text(errors="replace"))
                        entry.update(breakdown.to_dict())
                        entry["rate_under_profiler"] = result.req_per_s
            except (ServerError, H2loadError) as exc:
                entry["failure"] = str(exc).splitlines()[0]
            log(f"profile {name} {shape_name}: " + (entry.get("failure") or prof.one_line(entry)))
            out.append(entry)
        return out

    def memory(self) -> list[dict[str, Any]]:
        c = self.config
        out: list[dict[str, Any]] = []
        for spec in c.memory_servers:
            log(f"idle connections: {c.memory_connections:,} to {spec.name} ({spec.pinning(c.server_cpu)})")
            try:
                with launch(spec, c.server_cpu, body_file=self.body_file) as server:
                    pids = server.worker_pids()
                    measure = workers_rss(pids)
                    result = asyncio.run(hold_idle(server.port, c.memory_connections, measure, progress=log))
                    entry = {
                        "server": spec.name,
                        "worker_pids": pids,
                        "banner": server.banner(),
                        **result.to_dict(),
                    }
                    log(
                        f"  {spec.name}: {result.held:,}/{c.memory_connections:,} held, RSS "
                        f"{(result.rss_before_kib or 0) / 1024:.1f} -> {(result.rss_after_mib or 0):.1f} MiB"
                    )
            except ServerError as exc:
                log(f"!! memory {spec.name}: {exc}")
                entry = {
                    "server": spec.name,
                    "requested": c.memory_connections,
                    "failure": str(exc).splitlines()[0],
                }
            out.append(entry)
        return out


    def rss(self) -> list[dict[str, Any]]:
        """Each RSS server under sustained load in segments, its workers' RSS read (bench/rss.py)."""
        c = self.config
        out: list[dict[str, Any]] = []
        for spec in c.rss_servers:
            shape = rss_shape(spec)
            result = RssResult(spec.name, shape.name, unit=shape.unit)
            stream_seconds = c.rss_requests / RSS_STREAM_REQUESTS_PER_S
            what = f"{c.rss_requests:,} requests" if shape.mode == UNARY else f"{stream_seconds:g}s of {shape.name}"
            log(f"rss: {what} to {spec.name} in {c.rss_segments} segments ({spec.pinning(c.server_cpu)})")
            try:
                with launch(spec, c.server_cpu, body_file=self.body_file) as server:
                    measure = workers_rss(server.worker_pids())
                    per_segment = max(1, c.rss_requests // c.rss_segments)
                    seconds = stream_seconds / c.rss_segments

                    def segment(
                        _i: int, server: Any = server, shape: Shape = shape, requests: int = per_segment,
                        seconds: float = seconds,
                    ) -> H2loadResult:
                        if shape.mode != UNARY:  # no warm-up: every message counts
                            peers = go_peers()
                            if isinstance(peers, str):
                                raise H2loadError(peers)
                            return run_streamload(peers.streamload, server.port, shape, seconds, 0.0, c.load_cpu)
                        load = LoadSpec(port=server.port, shape=shape, requests=requests)
                        return run_h2load(load, self.body_file, cpu=c.load_cpu, timeout_s=600.0, request_log=False)

                    run_rss(result, measure, segment, c.rss_segments, progress=log)
            except (ServerError, H2loadError) as exc:
                log(f"!! rss {spec.name}: {exc}")
                result.failure = str(exc).splitlines()[0]
            entry = result.to_dict()
            growth = entry["growth_kib_per_million"]
            log(f"  {spec.name}: RSS {(result.start_kib or 0) / 1024:.1f} -> {(result.end_kib or 0) / 1024:.1f} MiB "
                f"(peak {(result.peak_kib or 0) / 1024:.1f}) over {result.units:,} {shape.unit}, "
                f"growth {'-' if growth is None else f'{growth:+,.0f}'} KiB per million")
            out.append(entry)
        return out


def rss_shape(spec: ServerSpec) -> Shape:
    """The load of a server's RSS run: unary 16x16 (h2load) or server streaming (streamload)."""
    return Shape.parse(RSS_UNARY_SHAPE if spec.service == GREETER else RSS_STREAM_SHAPE)


def workers_rss(pids: list[int]) -> Callable[[], int | None]:
    """The summed VmRSS (KiB) of a server's serving processes; None once one is gone."""

    def measure() -> int | None:
        sizes = [rss_kib(pid) for pid in pids]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)

    return measure


def write_outputs(data: dict[str, Any], results_dir: Path, stamp: str) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    md, page = report.markdown(data), report.html_report(data)
    written = []
    for name in (stamp, "latest"):
        report.write_json(results_dir / f"{name}.json", data)
        (results_dir / f"{name}.md").write_text(md)
        (results_dir / f"{name}.html").write_text(page)
        written += [results_dir / f"{name}.{ext}" for ext in ("json", "md", "html")]
    return written


def run_config(config: Config) -> int:
    if shutil.which("h2load") is None:
        log("h2load not found: install Debian's nghttp2-client (apt-get install nghttp2-client)")
        return 2
    if config.load_cpu is not None and shutil.which("taskset") is None:
        log("taskset not found (util-linux): cannot pin")
        return 2
    nofile = raise_nofile_limit()
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    info = machine.describe()
    log(f"GMF bench {stamp}: {machine.one_line(info)}")
    log(f"pinning: {pinning_text(config)}; RLIMIT_NOFILE {nofile}")
    busy = machine.busy_processes()
    for pid, name, percent in busy:
        log(
            f"!! machine not idle: pid {pid} ({name}) uses {percent:.0f}% of a CPU; absolute numbers will be low"
        )
    log(f"servers: {', '.join(s.name for s in config.servers)}")
    log(
        f"shapes: {', '.join(s.name for s in config.shapes) or '-'}"
        f"{' + fixed rate' if config.fixed_rate else ''}{' + fixed rate vs go' if config.fixed_go else ''}"
        f"{' + idle memory' if config.memory else ''}"
        f"{' + rss' if config.rss else ''}; "
        f"{config.repeats} x {config.duration_s:g}s after {config.warmup_s:g}s warm-up"
    )
    extra = [*(config.memory_servers if config.memory else []), *(config.rss_servers if config.rss else [])]
    for spec in dict((s.name, s) for s in [*config.servers, *extra]).values():
        reason = spec.missing()
        if reason and spec.skippable:
            config.skipped[spec.name] = reason
            log(f"-- {spec.name} left out: {reason}")
        elif reason:
            log(f"!! {spec.name} cannot run: {reason}")
    config.servers = [s for s in config.servers if s.name not in config.skipped]
    config.memory_servers = [s for s in config.memory_servers if s.name not in config.skipped]
    config.rss_servers = [s for s in config.rss_servers if s.name not in config.skipped]
    with tempfile.TemporaryDirectory(prefix="gmf-bench-") as tmp:
        body = Path(tmp) / "req.bin"
        body.write_bytes(hello_request_body("world"))
        web_bodies = {}
        for name, request in WEB_REQUESTS.items():
            web_bodies[name] = Path(tmp) / f"{name}.bin"
            web_bodies[name].write_bytes(request.body)
        runner = Runner(config, body, web_bodies)
        points = runner.peak() if config.shapes else []
        peak = list(points)
        if config.fixed_rate:
            points += runner.fixed_rate(peak)
        if config.fixed_go:
            points += runner.fixed_go(peak)
        memory = runner.memory() if config.memory else []
        rss = runner.rss() if config.rss else []
        profiles = runner.profile(Path(tmp)) if config.profile else []
    data: dict[str, Any] = {
        "meta": {
            "timestamp": stamp,
            "machine": info,
            "machine_line": machine.one_line(info),
            "pinning": pinning_text(config),
            "method": method_text(config),
            "server_cpu": config.server_cpu,
            "load_cpu": config.load_cpu,
            "duration_s": config.duration_s,
            "warmup_s": config.warmup_s,
            "repeats": config.repeats,
            "elapsed_s": round(time.monotonic() - started, 1),
            "busy_before": [{"pid": pid, "name": name, "cpu_percent": pct} for pid, name, pct in busy],
            "servers": {
                s.name: {
                    "description": s.description,
                    "pinning": s.pinning(config.server_cpu),
                    "baseline": s.baseline,
                    "banner": runner.banners.get(s.name, ""),
                }
                for s in config.servers
            },
        },
        "points": [p.to_dict() for p in points],
        "memory": memory,
        "rss": rss,
        "profiles": profiles,
        "skipped": config.skipped,
    }
    data["targets"] = [vars(t) for t in report.targets(points, memory, rss)]
    data["go_targets"] = [vars(t) for t in report.go_targets(points)]
    peak = [p for p in points if p.mode == "peak"]
    fixed = [p for p in points if p.mode == "fixed-rate"]
    log("")
    if peak:
        log(report.text_table(peak, f"Peak throughput ({pinning_text(config)})"))
        web_points = [p for p in peak if p.shape in WEB_SHAPES]
        if web_points:
            log("")
            log(report.web_table(web_points))
    if fixed:
        log("")
        log(report.text_table(fixed, "Fixed rate: 50% of the 16x16 peak of the baseline (grpcio; with fixed-go: grpc-go)"))
    if memory:
        log("")
        log(report.memory_markdown(memory))
    if rss:
        log("")
        log(report.rss_markdown(rss))
    if data["go_targets"]:
        log("")
        log(report.targets_markdown([report.Target(**t) for t in data["go_targets"]]))
    if data["targets"]:
        log("")
        log(report.targets_markdown([report.Target(**t) for t in data["targets"]]))
    for entry in profiles:
        if not entry.get("failure"):
            log("")
            log(report.profile_markdown(entry))
    written = write_outputs(data, config.results_dir, stamp)
    log("")
    log(
        f"wrote {', '.join(str(p) for p in written if p.stem == 'latest')} (and {stamp}.*) in {data['meta']['elapsed_s']}s"
    )
    failed = [p for p in points if p.failure] + [m for m in [*memory, *rss] if m.get("failure")]
    return 1 if failed else 0


def make_config(
    *,
    quick: bool,
    servers: str | None,
    shapes: str | None,
    duration: float | None,
    results_dir: str,
    repeats: int | None = None,
    warmup: float | None = None,
    memory_servers: str | None = None,
    connections: int | None = None,
    rss_servers: str | None = None,
    rss_requests: int | None = None,
    rss_segments: int | None = None,
    server_cpu: int | None = None,
    load_cpu: int | None = None,
    profile: bool | None = None,
) -> Config:
    shape_list, special = parse_shapes(shapes or (QUICK_SHAPES if quick else FULL_SHAPES))
    default_server, default_load = pick_cpus()
    results = Path(results_dir)
    if not results.is_absolute():
        results = ROOT / results
    return Config(
        servers=select(servers or (QUICK_SERVERS if quick else FULL_SERVERS)),
        shapes=shape_list,
        fixed_rate="fixed" in special,
        fixed_go="fixed-go" in special,
        memory="memory" in special,
        duration_s=duration if duration is not None else (1.0 if quick else 5.0),
        warmup_s=warmup if warmup is not None else (0.5 if quick else 1.0),
        repeats=repeats if repeats is not None else 3,
        results_dir=results,
        server_cpu=server_cpu if server_cpu is not None else default_server,
        load_cpu=load_cpu if load_cpu is not None else default_load,
        memory_servers=select(memory_servers or MEMORY_SERVERS),
        memory_connections=connections if connections is not None else 10_000,
        rss="rss" in special,
        rss_servers=select(rss_servers or RSS_SERVERS),
        rss_requests=rss_requests if rss_requests is not None else RSS_REQUESTS,
        rss_segments=rss_segments if rss_segments is not None else RSS_SEGMENTS,
        profile=profile if profile is not None else True,
    )


def run(
    *,
    quick: bool = False,
    micro: bool = False,
    servers: str | None = None,
    shapes: str | None = None,
    duration: float | None = None,
    results_dir: str = "bench/results",
) -> int:
    """Run the load benchmark (or, with ``micro``, the microbenchmarks); returns an exit status."""
    if micro:
        from .microbench import run_micro

        return run_micro(Path(results_dir) if Path(results_dir).is_absolute() else ROOT / results_dir)
    try:
        config = make_config(
            quick=quick, servers=servers, shapes=shapes, duration=duration, results_dir=results_dir
        )
    except ValueError as exc:
        log(str(exc))
        return 2
    return run_config(config)


def compare(old: Path, new: Path, out: Callable[[str], None] = log) -> int:
    """Print req/s and p99 of two result JSON files side by side (e.g. two commits)."""
    import json

    a, b = json.loads(old.read_text()), json.loads(new.read_text())
    olds = {(p["server"], p["shape"], p["mode"]): p for p in a["points"]}
    out(f"old: {old} ({a['meta']['machine']['git']})\nnew: {new} ({b['meta']['machine']['git']})")
    out(
        f"{'server':<22}{'shape':>8}{'mode':>12}{'old req/s':>12}{'new req/s':>12}{'change':>9}{'old p99':>10}{'new p99':>10}"
    )
    for p in b["points"]:
        q = olds.get((p["server"], p["shape"], p["mode"]))
        if q is None or p.get("failure") or q.get("failure"):
            continue
        change = (p["req_per_s"] / q["req_per_s"] - 1) * 100 if q["req_per_s"] else 0.0
        out(
            f"{p['server']:<22}{p['shape']:>8}{p['mode']:>12}{q['req_per_s']:>12,.0f}{p['req_per_s']:>12,.0f}"
            f"{change:>+8.1f}%{report.fmt_us(q['p99_us']):>10}{report.fmt_us(p['p99_us']):>10}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="GMF vs grpcio/grpclib under h2load (docs/benchmarking.md)",
    )
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run: fewer servers, 1s points")
    parser.add_argument(
        "--micro", action="store_true", help="run the pytest-benchmark microbenchmarks instead"
    )
    parser.add_argument(
        "--servers",
        help=f"comma list of {', '.join(SERVERS)} or aliases all, peers, gmf-1, gmf-all (default: all)",
    )
    parser.add_argument(
        "--shapes",
        help=f"comma list of CONNxSTREAMS, 'fixed' (fixed-rate run at 50%% of grpcio's peak), 'fixed-go' "
        f"(GMF and grpc-go at 50%% of grpc-go's peak), 'memory' (idle connections), "
        f"'rss' (RSS over millions of requests) (default: {FULL_SHAPES})",
    )
    parser.add_argument("--memory", action="store_true", help="add the idle-connection memory run")
    parser.add_argument("--rss", action="store_true", help="add the RSS-over-millions-of-requests run")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 5, quick 1)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds before each run (default 1, quick 0.5)")
    parser.add_argument("--repeats", type=int, help="runs per point, median reported (default 3)")
    parser.add_argument("--connections", type=int, help="idle connections for the memory run (default 10000)")
    parser.add_argument("--memory-servers", help=f"servers for the memory run (default {MEMORY_SERVERS})")
    parser.add_argument(
        "--rss-servers",
        help=f"servers for the rss run (default {RSS_SERVERS}; streambench servers get {RSS_STREAM_SHAPE} "
        f"for RSS_REQUESTS / {RSS_STREAM_REQUESTS_PER_S:,} seconds)",
    )
    parser.add_argument(
        "--rss-requests", type=int,
        help=f"unary requests of the rss run, per server (default {RSS_REQUESTS:,}: about a minute per server)",
    )
    parser.add_argument(
        "--rss-segments", type=int, help=f"load runs the rss run is split in, RSS read after each (default {RSS_SEGMENTS})"
    )
    parser.add_argument("--server-cpu", type=int, help="CPU for pinned servers (default: first allowed)")
    parser.add_argument("--load-cpu", type=int, help="CPU for h2load (default: last allowed)")
    parser.add_argument("--results-dir", default="bench/results")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy runs of the GMF servers")
    parser.add_argument(
        "--compare", nargs=2, metavar=("OLD_JSON", "NEW_JSON"), help="compare two result files"
    )
    args = parser.parse_args(argv)
    if args.compare:
        return compare(Path(args.compare[0]), Path(args.compare[1]))
    if args.micro:
        return run(micro=True, results_dir=args.results_dir)
    shapes = args.shapes
    for special in ("memory", "rss"):
        if getattr(args, special):
            base = shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
            shapes = base if special in base.split(",") else f"{base},{special}"
    try:
        config = make_config(
            quick=args.quick,
            servers=args.servers,
            shapes=shapes,
            duration=args.duration,
            results_dir=args.results_dir,
            repeats=args.repeats,
            warmup=args.warmup,
            memory_servers=args.memory_servers,
            connections=args.connections,
            rss_servers=args.rss_servers,
            rss_requests=args.rss_requests,
            rss_segments=args.rss_segments,
            server_cpu=args.server_cpu,
            load_cpu=args.load_cpu,
            profile=not args.no_profile,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if config.repeats < 1:
        parser.error("--repeats must be >= 1")
    if config.rss_segments < 2 or config.rss_requests < config.rss_segments:
        parser.error("--rss-segments must be >= 2 and --rss-requests at least one per segment")
    return run_config(config)


if __name__ == "__main__":
    sys.exit(main())
