"""``invoke bench --micro``: pytest-benchmark over the hot path, saved runs, a compare table and chart.

Runs ``pytest bench/micro --benchmark-autosave --benchmark-storage=<results>/micro`` (every
run is kept, so runs are comparable over time; ``pytest-benchmark compare`` reads the same
storage) and writes ``<results>/micro/latest.{json,md,html}`` with a comparison against the
previous saved run.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import ROOT
from .report import PALETTE, svg_bars

MICRO_DIR = ROOT / "bench" / "micro"


def pytest_command(storage: Path, json_out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(MICRO_DIR),
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-autosave",
        f"--benchmark-storage=file://{storage}",
        f"--benchmark-json={json_out}",
        "--benchmark-sort=name",
        "--benchmark-columns=min,median,mean,stddev,ops,rounds",
    ]


def saved_runs(storage: Path) -> list[Path]:
    """Autosaved runs (``<storage>/<machine>/NNNN_*.json``), oldest first."""
    return sorted(storage.glob("*/[0-9][0-9][0-9][0-9]_*.json"), key=lambda p: (p.stat().st_mtime, p.name))


def medians(data: dict[str, Any]) -> dict[str, float]:
    """Benchmark name -> median seconds."""
    return {b["name"]: float(b["stats"]["median"]) for b in data.get("benchmarks", [])}


def fmt_ns(seconds: float) -> str:
    ns = seconds * 1e9
    return f"{ns / 1000:.2f} us" if ns >= 10_000 else f"{ns:.0f} ns"


def groups(data: dict[str, Any]) -> dict[str, str]:
    """Benchmark name -> its group (``pytestmark = pytest.mark.benchmark(group=...)``)."""
    return {b["name"]: b.get("group") or "" for b in data.get("benchmarks", [])}


def compare_markdown(
    current: dict[str, float],
    previous: dict[str, float] | None,
    label: str,
    group_of: dict[str, str] | None = None,
) -> str:
    group_of = group_of or {}
    out = [f"| group | benchmark | median | {label} | change |", "|---|---|---:|---:|---:|"]
    for name, value in sorted(current.items(), key=lambda item: (group_of.get(item[0], ""), item[0])):
        old = (previous or {}).get(name)
        change = "-" if not old else f"{(value / old - 1) * 100:+.1f}%"
        out.append(
            f"| {group_of.get(name, '')} | {name} | {fmt_ns(value)} | {'-' if old is None else fmt_ns(old)} | {change} |"
        )
    return "\n".join(out)


def micro_html(current: dict[str, float], previous: dict[str, float] | None, title: str) -> str:
    groups: list[tuple[str, list[tuple[str, float | None, str]]]] = []
    for name, value in sorted(current.items()):
        bars: list[tuple[str, float | None, str]] = [("this run", value * 1e9, fmt_ns(value))]
        if previous and name in previous:
            bars.append(("previous", previous[name] * 1e9, fmt_ns(previous[name])))
        groups.append((name, bars))
    colors = {"this run": PALETTE[0], "previous": PALETTE[-1]}
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif'>"
        f"<h1>{html.escape(title)}</h1>"
        + svg_bars("Median time per call (lower is better)", groups, colors)
        + "</body></html>\n"
    )


def run_micro(results_dir: Path) -> int:
    out_dir = results_dir / "micro"
    out_dir.mkdir(parents=True, exist_ok=True)
    json_out = out_dir / "latest.json"
    before = saved_runs(out_dir)
    print(f"microbenchmarks: {MICRO_DIR.relative_to(ROOT)} -> {out_dir}", flush=True)
    rc = subprocess.run(pytest_command(out_dir, json_out), cwd=ROOT, check=False).returncode
    if rc != 0 or not json_out.exists():
        print(f"pytest exited with {rc}", flush=True)
        return rc or 1
    data = json.loads(json_out.read_text())
    current = medians(data)
    previous_file = before[-1] if before else None
    previous = medians(json.loads(previous_file.read_text())) if previous_file else None
    label = f"previous ({previous_file.name})" if previous_file else "previous (none)"
    table = compare_markdown(current, previous, label, groups(data))
    (out_dir / "latest.md").write_text(f"# Microbenchmarks\n\n{table}\n")
    (out_dir / "latest.html").write_text(micro_html(current, previous, "GMF microbenchmarks"))
    print("\n" + table + "\n", flush=True)
    print(f"wrote {out_dir / 'latest.md'}, {out_dir / 'latest.html'}; saved runs: {len(saved_runs(out_dir))}")
    print(f"compare any two saved runs: pytest-benchmark --storage file://{out_dir} compare 0001 0002")
    return 0
