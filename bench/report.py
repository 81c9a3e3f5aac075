"""Turn a run's points into a console table, Markdown, JSON and a self-contained HTML chart."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import Point

HEADERS = (
    "server", "shape", "req/s", "fastest", "slowest", "average", "p50", "p99", "errors", "vs base",
    "CPU/req", "CPU%", "vs go", "CPU vs go",
)


def fmt_us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f}s"
    if value >= 1_000:
        return f"{value / 1_000:.2f}ms"
    return f"{value:.0f}us"


def fmt_ratio(point: Point) -> str:
    return fmt_x(point.ratio)


def fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def fmt_cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}us"


def row(point: Point) -> list[str]:
    shape = point.shape if point.target_rps is None else f"{point.shape} @{point.target_rps:,}/s"
    if point.failure is not None:
        return [point.server, shape, "FAILED"] + ["-"] * (len(HEADERS) - 3)
    return [
        point.server,
        shape,
        f"{point.req_per_s:,.0f}",
        fmt_us(point.min_us),
        fmt_us(point.max_us),
        fmt_us(point.mean_us),
        fmt_us(point.p50_us),
        fmt_us(point.p99_us),
        str(point.errors),
        fmt_ratio(point),
        fmt_cpu(point.cpu_us),
        fmt_pct(point.cpu_percent),
        fmt_x(point.go_ratio),
        fmt_x(point.go_cpu_ratio),
    ]


def text_table(points: Sequence[Point], title: str = "") -> str:
    rows = [list(HEADERS)] + [row(p) for p in points]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    numeric = set(range(2, len(HEADERS)))

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [title] if title else []
    out.append(line(rows[0]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in rows[1:])
    return "\n".join(out)


def markdown_table(points: Sequence[Point]) -> str:
    out = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(HEADERS) - 2)) + "|",
    ]
    out.extend("| " + " | ".join(row(p)) + " |" for p in points)
    return "\n".join(out)


@dataclass
class Target:
    """One goal (issues 5 and 11) and what the run measured for it."""

    goal: str
    measured: str
    met: bool | None  # None: not measured in this run

    def mark(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


def _find(points: Sequence[Point], server: str, shape: str, mode: str = "peak") -> Point | None:
    for p in points:
        if p.server == server and p.shape == shape and p.mode == mode and p.failure is None:
            return p
    return None


def _ratio(a: Point | None, b: Point | None) -> float | None:
    if a is None or b is None or b.req_per_s <= 0:
        return None
    return a.req_per_s / b.req_per_s


def targets(
    points: Sequence[Point], memory: Sequence[dict[str, Any]], rss: Sequence[dict[str, Any]] = ()
) -> list[Target]:
    """Issue 5's targets; throughput goals are listed (as "not measured") only when the run had peak points."""
    out: list[Target] = []
    if not any(p.mode == "peak" for p in points):
        return _memory_targets(memory) + rss_targets(rss)
    one_connection = next((p.shape for p in points if p.shape in ("1x100", "1x200")), "1x100")
    for shape in (one_connection, "16x16"):
        r = _ratio(_find(points, "gmf", shape), _find(points, "grpcio-aio-unpinned", shape))
        out.append(
            Target(
                f"gmf (all workers) >= 2.5x grpcio-aio unpinned, {shape}",
                "-" if r is None else f"{r:.2f}x",
                None if r is None else r >= 2.5,
            )
        )
    singles = [p.server for p in points if p.server.startswith("gmf-1-")]
    singles = list(dict.fromkeys(singles))
    for shape, what in (("connect-json", "Connect unary JSON"), ("grpc-web", "gRPC-Web unary")):
        ratios = {s: _ratio(_find(points, s, shape), _find(points, "connectrpc", shape)) for s in singles}
        found = {s: r for s, r in ratios.items() if r is not None}
        if found or _find(points, "connectrpc", shape) is not None:
            out.append(Target(f"gmf, one pinned worker >= 2x connectrpc on uvicorn, {what} over HTTP/1.1 (16 conns)",
                              ", ".join(f"{s} {r:.2f}x" for s, r in found.items()) or "-",
                              None if not found else max(found.values()) >= 2.0))
    for peer in ("grpcio-aio", "grpclib"):
        for shape in (one_connection, "16x16"):
            ratios = {s: _ratio(_find(points, s, shape), _find(points, peer, shape)) for s in singles}
            found = {s: r for s, r in ratios.items() if r is not None}
            measured = ", ".join(f"{s} {r:.2f}x" for s, r in found.items()) or "-"
            out.append(
                Target(
                    f"gmf, one pinned worker >= 3x {peer} pinned, {shape}",
                    measured,
                    None if not found else max(found.values()) >= 3.0,
                )
            )
    for server, base in (("gmf", "grpcio-aio-unpinned"), *((s, "grpcio-aio") for s in singles)):
        mine = next((p for p in points if p.server == server and p.mode == "fixed-rate" and not p.failure
                     and p.baseline in (None, base)), None)
        theirs = next((p for p in points if p.server == base and p.mode == "fixed-rate" and not p.failure
                       and p.baseline in (None, base)), None)
        if mine is None or theirs is None or mine.p99_us is None or theirs.p99_us is None:
            continue
        out.append(
            Target(
                f"p99 at 50% of {base}'s peak ({mine.target_rps} req/s): {server} <= {base}",
                f"{fmt_us(mine.p99_us)} vs {fmt_us(theirs.p99_us)}",
                mine.p99_us <= theirs.p99_us,
            )
        )
    out += _memory_targets(memory)
    out += rss_targets(rss)
    out += _sync_targets(points)
    uring, uvloop = _find(points, "gmf-1-uring", "1000x1"), _find(points, "gmf-1-uvloop", "1000x1")
    r = _ratio(uring, uvloop)
    if r is not None and uring is not None and uvloop is not None:
        out.append(
            Target(
                "io_uring vs uvloop runtime at 1000x1 (report both)",
                f"{uring.req_per_s:,.0f} vs {uvloop.req_per_s:,.0f} req/s ({r:.2f}x"
                + (", within noise)" if abs(r - 1) < 0.05 else ")"),
                r >= 1.0,
            )
        )
    return out


GO_PAIRS = (("gmf-1-uring", "grpc-go-1"), ("gmf", "grpc-go"), ("gmf-unbound", "grpc-go"),
            ("gmf-1-stream", "grpc-go-1-stream"), ("gmf-stream", "grpc-go-stream"))


def _p99_rounds(mine: Point, theirs: Point) -> str:
    """`` (rounds A-B vs C-D)``: each server's lowest and highest p99 over its repeats, when both
    ran more than once (a median p99 one round apart from the other's may be noise)."""
    spans = []
    for point in (mine, theirs):
        values = [run["p99_us"] for run in point.runs if run.get("p99_us") is not None]
        if len(values) < 2:
            return ""
        spans.append(f"{fmt_us(min(values))}-{fmt_us(max(values))}")
    return f" (rounds {spans[0]} vs {spans[1]})"


def go_targets(points: Sequence[Point]) -> list[Target]:
    """Issue 13's goals: GMF >= 1.0x grpc-go (req/s and, on a busy machine the steadier number,
    CPU per request), and p99 <= grpc-go's, per shape, for each GMF/grpc-go pair in the run."""
    out: list[Target] = []
    peaks = [p for p in points if p.mode == "peak"]
    for gmf, go in GO_PAIRS:
        for mine in (p for p in peaks if p.server == gmf and p.failure is None):
            theirs = _find(points, go, mine.shape)
            if theirs is None:
                continue
            rate = _ratio(mine, theirs)
            cpu = theirs.cpu_us / mine.cpu_us if theirs.cpu_us and mine.cpu_us else None
            out.append(Target(
                f"{gmf} >= 1.0x {go}, {mine.shape}",
                f"{fmt_x(rate)} req/s, {fmt_x(cpu)} CPU/req ({fmt_cpu(mine.cpu_us)} vs {fmt_cpu(theirs.cpu_us)})",
                None if rate is None else rate >= 1.0,
            ))
            if mine.p99_us is not None and theirs.p99_us is not None:
                out.append(Target(
                    f"p99 {gmf} <= {go}, {mine.shape}",
                    f"{fmt_us(mine.p99_us)} vs {fmt_us(theirs.p99_us)}{_p99_rounds(mine, theirs)}",
                    mine.p99_us <= theirs.p99_us,
                ))
        # The fixed-rate runs: both at the same rate (50% of grpcio's peak, or of grpc-go's: fixed-go).
        for mine in (p for p in points if p.server == gmf and p.mode == "fixed-rate" and p.failure is None):
            theirs = next((p for p in points if p.server == go and p.mode == "fixed-rate" and p.failure is None
                           and p.shape == mine.shape and p.target_rps == mine.target_rps), None)
            if theirs is None or mine.p99_us is None or theirs.p99_us is None:
                continue
            of = f" (50% of {mine.baseline}'s peak)" if mine.baseline else ""
            out.append(Target(
                f"p99 {gmf} <= {go}, {mine.shape} at a fixed {mine.target_rps or 0:,} req/s{of}",
                f"{fmt_us(mine.p99_us)} vs {fmt_us(theirs.p99_us)} (p50 {fmt_us(mine.p50_us)} vs {fmt_us(theirs.p50_us)})"
                f"{_p99_rounds(mine, theirs)}",
                mine.p99_us <= theirs.p99_us,
            ))
    return out


def profile_markdown(entry: dict[str, Any]) -> str:
    """One profiled run (bench/profile.py): its categories and hottest functions."""
    title = f"Profile: {entry['server']} at {entry['shape']}"
    lines = [f"**{title}** (py-spy, {entry.get('samples', 0):,} samples of the loop thread over "
             f"{entry.get('seconds', 0):g}s{'' if entry.get('native') else ', Python frames only'})", "",
             "| where | share |", "|---|---:|"]
    lines += [f"| {name} | {share * 100:.1f}% |" for name, share in entry.get("categories", {}).items()]
    lines += ["", "| self (innermost Python function) | share |", "|---|---:|"]
    lines += [f"| `{name}` | {share * 100:.1f}% |" for name, share in entry.get("self_functions", {}).items()]
    return "\n".join(lines)


# Issue 11's goals for plain-def handlers: (server, baseline, shape, at least), listed when measured.
SYNC_GOALS = (
    ("gmf-sync-block", "grpcio-sync-block", "16x4", 2.0),
    ("gmf-1-def", "grpcio-sync", "1x100", 5.0),
    ("gmf-1-def", "grpcio-sync", "16x16", 5.0),
    ("gmf-1-def", "gmf-1-def-inline", "1x100", 0.9),
    ("gmf-1-def", "gmf-1-def-inline", "16x16", 0.9),
)


def _sync_targets(points: Sequence[Point]) -> list[Target]:
    out: list[Target] = []
    for server, base, shape, least in SYNC_GOALS:
        r = _ratio(_find(points, server, shape), _find(points, base, shape))
        if r is not None:
            out.append(Target(f"{server} >= {least:g}x {base}, {shape}", f"{r:.2f}x", r >= least))
    return out


def _memory_targets(memory: Sequence[dict[str, Any]]) -> list[Target]:
    out: list[Target] = []
    for entry in memory:
        if not str(entry.get("server", "")).startswith("gmf") or entry.get("rss_after_kib") is None:
            continue
        mib = entry["rss_after_kib"] / 1024
        out.append(
            Target(
                f"{entry['requested']:,} idle connections on one worker ({entry['server']}) <= 300 MB RSS",
                f"{mib:.0f} MiB with {entry['held']:,} held",
                mib * 1.048576 <= 300 and entry["held"] >= entry["requested"],
            )
        )
    return out


RSS_FLAT_KIB_PER_MILLION = 256  # "RSS flat" (issue 13): under 256 KiB (~260 B per request) per million after segment 1


def rss_targets(rss: Sequence[dict[str, Any]]) -> list[Target]:
    """Issue 13's "RSS flat over millions of requests", for each GMF server of the rss run."""
    out: list[Target] = []
    for entry in rss:
        if not str(entry.get("server", "")).startswith("gmf"):
            continue
        growth = entry.get("growth_kib_per_million")
        unit = "requests" if entry.get("unit", "req") == "req" else "messages"
        out.append(Target(
            f"RSS flat over {entry.get('units', 0) / 1e6:.1f}M {unit} ({entry['server']}, {entry.get('shape')}): "
            f"< {RSS_FLAT_KIB_PER_MILLION:,} KiB per million after the first segment",
            "-" if growth is None else (f"{growth:+,.0f} KiB per million; {_mib(entry.get('start_kib'))} -> "
                                        f"{_mib(entry.get('end_kib'))}, peak {_mib(entry.get('peak_kib'))}"),
            None if growth is None or entry.get("failure") else growth < RSS_FLAT_KIB_PER_MILLION,
        ))
    return out


def web_table(points: Sequence[Point]) -> str:
    """The web rows: req/s and the server's CPU per request, each against connectrpc's."""
    base = {p.shape: p for p in points if p.server == "connectrpc" and p.failure is None}
    out = ["Web over HTTP/1.1 keep-alive, 16 connections (vs connectrpc on uvicorn, same pinned CPU)",
           f"{'server':<14}{'shape':<14}{'req/s':>10}{'cpu/req':>10}{'req/s ratio':>13}{'cpu ratio':>11}"]
    for p in points:
        if p.failure is not None:
            out.append(f"{p.server:<14}{p.shape:<14}{'FAILED':>10}")
            continue
        peer = base.get(p.shape)
        cpu_ratio = f"{peer.cpu_us / p.cpu_us:.2f}x" if peer and peer.cpu_us and p.cpu_us else "-"
        out.append(f"{p.server:<14}{p.shape:<14}{p.req_per_s:>10,.0f}{fmt_us(p.cpu_us):>10}{fmt_ratio(p):>13}{cpu_ratio:>11}")
    return "\n".join(out)


def targets_markdown(items: Sequence[Target]) -> str:
    out = ["| goal | measured | status |", "|---|---|---|"]
    out.extend(f"| {t.goal} | {t.measured} | {t.mark()} |" for t in items)
    return "\n".join(out)


def memory_markdown(memory: Sequence[dict[str, Any]]) -> str:
    out = [
        "| server | connections asked | held | RSS before | RSS after | per connection |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in memory:
        if m.get("failure"):
            out.append(f"| {m['server']} | {m.get('requested', '-')} | FAILED: {m['failure']} | | | |")
            continue
        before = m.get("rss_before_kib")
        after = m.get("rss_after_kib")
        per = m.get("per_connection_kib")
        out.append(
            f"| {m['server']} | {m['requested']:,} | {m['held']:,} | "
            f"{'-' if before is None else f'{before / 1024:.1f} MiB'} | "
            f"{'-' if after is None else f'{after / 1024:.1f} MiB'} | "
            f"{'-' if per is None else f'{per:.1f} KiB'} |"
        )
    return "\n".join(out)


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def rss_markdown(entries: Sequence[dict[str, Any]]) -> str:
    """The rss run (bench/rss.py): RSS before, after the first segment, at the end, the peak."""
    mib = _mib
    out = [
        "| server | shape | done | rate | start | after segment 1 | end | peak | growth per million |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in entries:
        if e.get("failure") and not e.get("samples"):
            out.append(f"| {e['server']} | {e.get('shape', '-')} | FAILED: {e['failure']} | | | | | | |")
            continue
        growth = e.get("growth_kib_per_million")
        unit = e.get("unit", "req")
        out.append(
            f"| {e['server']} | {e['shape']} | {e['units']:,} {unit} | {e.get('rate', 0):,.0f}/s | "
            f"{mib(e.get('start_kib'))} | {mib(e.get('warm_kib'))} | {mib(e.get('end_kib'))} | "
            f"{mib(e.get('peak_kib'))} | {'-' if growth is None else f'{growth:+,.0f} KiB'} |"
        )
    return "\n".join(out)


def markdown(data: dict[str, Any]) -> str:
    meta = data["meta"]
    peak = [Point.from_dict(p) for p in data["points"] if p["mode"] == "peak"]
    fixed = [Point.from_dict(p) for p in data["points"] if p["mode"] == "fixed-rate"]
    parts = [
        f"# Benchmark {meta['timestamp']}",
        "",
        f"- machine: {meta['machine_line']}",
        f"- pinning: {meta['pinning']}",
        f"- method: {meta['method']}",
        *(
            f"- machine not idle at start: pid {b['pid']} ({b['name']}) used {b['cpu_percent']:.0f}% of a CPU"
            for b in meta.get("busy_before", [])
        ),
        "",
        "## Peak throughput",
        "",
        markdown_table(peak),
        "",
        "`vs base`: req/s relative to grpcio-aio pinned to the same single CPU; for `gmf` (all workers) "
        "and `grpcio-aio-unpinned`, relative to grpcio-aio unpinned; for the plain-def rows, relative to "
        "grpcio-sync (`gmf-1-def*`) and grpcio-sync-block (`gmf-sync-block`); streaming servers relative to "
        "grpcio-aio-stream. Streaming rows count messages (`req/s` = messages/s, `CPU/req` = per message). "
        "`CPU/req`: the server's CPU time per request; `CPU%`: how much of a CPU it got while measured "
        "(below 100% on a pinned server means the machine was busy or the load generator was the limit). "
        "`vs go`: req/s relative to grpc-go on the same cores (`grpc-go-1` for one core, `grpc-go` for all); "
        "`CPU vs go`: grpc-go's CPU per request divided by ours (above 1: less CPU than grpc-go).",
    ]
    if fixed:
        parts += ["", "## Fixed rate (50% of the baseline's peak: grpcio's, or with fixed-go grpc-go's)", "",
                  markdown_table(fixed)]
    if data.get("memory"):
        parts += ["", "## Idle connections", "", memory_markdown(data["memory"])]
    if data.get("rss"):
        parts += ["", "## RSS under sustained load", "", rss_markdown(data["rss"])]
    if data.get("go_targets"):
        parts += ["", "## vs grpc-go (issue 13)", "", targets_markdown([Target(**t) for t in data["go_targets"]])]
    if data.get("targets"):
        parts += ["", "## Targets (issues 5 and 11)", "", targets_markdown([Target(**t) for t in data["targets"]])]
    for entry in data.get("profiles", []):
        if entry.get("failure"):
            parts += ["", f"Profile of {entry['server']} at {entry['shape']}: not recorded ({entry['failure']})"]
        else:
            parts += ["", profile_markdown(entry)]
    if data.get("skipped"):
        parts += ["", "## Left out", ""]
        parts += [f"- `{name}`: {why}" for name, why in data["skipped"].items()]
    servers = meta.get("servers", {})
    if servers:
        parts += ["", "## Servers", ""]
        parts += [f"- `{name}`: {info['description']}; {info['pinning']}" for name, info in servers.items()]
    return "\n".join(parts) + "\n"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d", "#64748b")


def svg_bars(
    title: str, groups: list[tuple[str, list[tuple[str, float | None, str]]]], colors: dict[str, str]
) -> str:
    """Horizontal grouped bars: groups of (label, value, value text); no external assets."""
    label_w, bar_w, bar_h, gap, pad = 170, 520, 18, 4, 10
    values = [v for _, bars in groups for _, v, _ in bars if v is not None]
    top = max(values) if values else 1.0
    height = pad * 2 + 24
    for _, bars in groups:
        height += 22 + len(bars) * (bar_h + gap) + 8
    width = label_w + bar_w + 120
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="12">',
        f'<text x="{pad}" y="{pad + 14}" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]
    y = pad + 30
    for group, bars in groups:
        out.append(f'<text x="{pad}" y="{y + 14}" font-weight="bold">{html.escape(group)}</text>')
        y += 22
        for label, value, text in bars:
            out.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{html.escape(label)}</text>')
            if value is not None:
                w = max(1.0, bar_w * value / top)
                color = colors.get(label, "#64748b")
                out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
                out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 13}">{html.escape(text)}</text>')
            else:
                out.append(f'<text x="{label_w + 6}" y="{y + 13}" fill="#b91c1c">{html.escape(text)}</text>')
            y += bar_h + gap
        y += 8
    out.append("</svg>")
    return "\n".join(out)


def html_report(data: dict[str, Any]) -> str:
    points = [Point.from_dict(p) for p in data["points"]]
    peak = [p for p in points if p.mode == "peak"]
    servers = list(dict.fromkeys(p.server for p in points))
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(servers)}
    shapes = list(dict.fromkeys(p.shape for p in peak))

    def bars(metric: str) -> list[tuple[str, list[tuple[str, float | None, str]]]]:
        groups = []
        for shape in shapes:
            items: list[tuple[str, float | None, str]] = []
            for p in peak:
                if p.shape != shape:
                    continue
                if p.failure is not None:
                    items.append((p.server, None, "failed"))
                elif metric == "rps":
                    ratio = f" ({p.ratio:.2f}x)" if p.ratio is not None else ""
                    items.append((p.server, p.req_per_s, f"{p.req_per_s:,.0f}{ratio}"))
                else:
                    items.append((p.server, p.p99_us, fmt_us(p.p99_us)))
            groups.append((shape, items))
        return groups

    fixed = [p for p in points if p.mode == "fixed-rate"]
    fixed_groups = [
        (
            f"fixed rate {p.shape} @ {p.target_rps:,} req/s" if p.target_rps else p.shape,
            [
                (
                    p.server,
                    p.p99_us if p.failure is None else None,
                    fmt_us(p.p99_us) if p.failure is None else "failed",
                )
            ],
        )
        for p in fixed
    ]
    meta = data["meta"]
    body = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>GMF benchmark {html.escape(meta['timestamp'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,td:nth-child(2)"
        "{text-align:left}</style></head><body>",
        f"<h1>GMF benchmark {html.escape(meta['timestamp'])}</h1>",
        f"<p>{html.escape(meta['machine_line'])}<br>{html.escape(meta['pinning'])}<br>"
        f"{html.escape(meta['method'])}</p>",
        svg_bars("Requests per second (higher is better)", bars("rps"), colors),
        svg_bars("p99 latency at peak load (lower is better)", bars("p99"), colors),
    ]
    if fixed_groups:
        body.append(svg_bars("p99 latency at a fixed rate (lower is better)", fixed_groups, colors))
    body.append("<h2>Table</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in HEADERS) + "</tr>")
    for p in points:
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row(p)) + "</tr>")
    body.append("</table></body></html>")
    return "\n".join(body) + "\n"
