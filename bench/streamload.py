"""Drive the Go streaming load client (bench/peers/go/streamload) and read its JSON line.

The streaming shapes of the benchmark: ``stream:CxS`` (C connections, S ServerStream calls in
flight on each, every call asking for 100 chunks of 100 bytes; latency = one whole call) and
``bidi:CxS`` (S BidiEcho calls per connection, one 100-byte chunk in flight per call; latency =
one round trip). The rate is messages per second (chunks received by the client). Results
come back as :class:`~bench.h2load.H2loadResult` so the harness reduces and reports them like
the unary points.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .h2load import CpuClock, H2loadError, H2loadResult, Shape, run_measured

CHUNK_BYTES = 100
STREAM_COUNT = 100  # chunks per ServerStream call


def streamload_command(
    binary: Path, port: int, shape: Shape, duration_s: float, warmup_s: float, cpu: int | None = None
) -> list[str]:
    cmd: list[str] = ["taskset", "-c", str(cpu)] if cpu is not None else []
    cmd += [
        str(binary), "--target", f"127.0.0.1:{port}", "--mode", shape.mode,
        "-c", str(shape.connections), "-s", str(shape.streams), "--size", str(CHUNK_BYTES),
        "--count", str(STREAM_COUNT), "--warmup", f"{warmup_s:g}", "--duration", f"{duration_s:g}",
    ]
    return cmd


def parse_json(line: str) -> H2loadResult:
    """streamload's JSON line -> a result (rate = messages/s; latencies in microseconds)."""
    data: dict[str, Any] = json.loads(line)
    latency = data.get("latency_us") or {}
    result = H2loadResult(
        requests_total=int(data.get("messages", 0)),
        succeeded=int(data.get("messages", 0)),
        errored=int(data.get("errors", 0)),
        req_per_s=float(data.get("messages_per_s", 0.0)),
        elapsed_s=float(data.get("duration_s", 0.0)),
        min_us=float(latency.get("min", 0.0)),
        max_us=float(latency.get("max", 0.0)),
        mean_us=float(latency.get("mean", 0.0)),
        p50_us=latency.get("p50"),
        p90_us=latency.get("p90"),
        p99_us=latency.get("p99"),
    )
    if data.get("first_error"):
        result.notes.append(f"first error: {data['first_error']}")
    result.notes.append(f"latency of {data.get('latency_of', '?')}; calls/s {data.get('calls_per_s', '-')}")
    return result


def run_streamload(
    binary: Path,
    port: int,
    shape: Shape,
    duration_s: float,
    warmup_s: float,
    cpu: int | None = None,
    server_cpu: CpuClock | None = None,
) -> H2loadResult:
    cmd = streamload_command(binary, port, shape, duration_s, warmup_s, cpu)
    budget = 60.0 + duration_s + warmup_s
    try:
        proc, cpu_s, window_s = run_measured(cmd, budget, warmup_s, server_cpu)
    except subprocess.TimeoutExpired as exc:
        raise H2loadError(f"streamload did not finish within {budget:.0f}s: {' '.join(cmd)}") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise H2loadError(f"streamload printed no result ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    result = parse_json(lines[-1])
    result.server_cpu_s, result.server_window_s = cpu_s, window_s
    if proc.returncode != 0 and not result.errors:
        result.errored += 1
        result.notes.append(f"streamload exit status {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return result
