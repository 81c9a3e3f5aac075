"""Prometheus: the supervisor's /metrics endpoint (``metrics_port=``) and ``python -m gmf stats``,
which reads that endpoint and prints a table.

Metric names and labels are documented in docs/observability.md.
"""

from __future__ import annotations

import argparse
import errno
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from .errors import StartupError

DEFAULT_URL = "http://127.0.0.1:9464/metrics"

StatsSource = Callable[[], dict[str, Any]]


class GmfCollector:
    """Yields the metric families from a fresh ``ServerHandle.stats()``-shaped dict per scrape."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        stats = self._source()
        workers: dict[int, dict[str, Any]] = stats["workers"]
        simple = [
            ("gmf_connections_accepted", "Connections accepted", "connections_accepted", CounterMetricFamily),
            ("gmf_connections_refused", "Connections refused over max_connections", "connections_refused",
             CounterMetricFamily),
            ("gmf_connections_open", "Connections open now", "connections_open", GaugeMetricFamily),
            ("gmf_received_bytes", "Bytes received from clients", "bytes_received", CounterMetricFamily),
            ("gmf_sent_bytes", "Bytes sent to clients", "bytes_sent", CounterMetricFamily),
            ("gmf_worker_restarts", "Times a worker was restarted after it died", "restarts", CounterMetricFamily),
        ]
        for name, doc, key, kind in simple:
            family = kind(name, doc, labels=["worker"])
            for worker_id, w in workers.items():
                family.add_metric([str(worker_id)], w[key])
            yield family
        alive = GaugeMetricFamily("gmf_workers_alive", "Worker processes running")
        alive.add_metric([], sum(1 for w in workers.values() if w["alive"]))
        yield alive
        started = CounterMetricFamily("gmf_rpcs_started", "RPCs started", labels=["worker", "method"])
        finished = CounterMetricFamily("gmf_rpcs_finished", "RPCs finished, by status code",
                                       labels=["worker", "method", "code"])
        for worker_id, w in workers.items():
            for method, n in w["rpcs_started"].items():
                started.add_metric([str(worker_id), method], n)
            for method, codes in w["rpcs_finished"].items():
                for code, n in codes.items():
                    finished.add_metric([str(worker_id), method, code], n)
        yield started
        yield finished


class MetricsServer:
    """prometheus_client's HTTP server with its own registry, in a daemon thread."""

    def __init__(self, host: str, port: int, source: StatsSource) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(GmfCollector(source))  # type: ignore[arg-type]
        try:
            self._httpd: WSGIServer
            self._thread: threading.Thread
            self._httpd, self._thread = start_http_server(port, host, registry)
        except OSError as exc:
            why = "address already in use (choose another metrics_port)" if exc.errno == errno.EADDRINUSE else (
                exc.strerror or str(exc))
            raise StartupError(f"cannot serve metrics on {host}:{port}: {why}") from None
        self.port = int(self._httpd.server_address[1])

    def fileno(self) -> int:
        return self._httpd.fileno()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# ------------------------------------------------------------------------- python -m gmf stats
@dataclass
class Scrape:
    """The counters of one /metrics page, summed over workers."""

    workers: int
    per_worker: dict[str, dict[str, float]]  # worker -> short name -> value
    totals: dict[str, float]
    rpcs: dict[tuple[str, str], float]  # (method, code) -> finished
    started: dict[str, float]


def parse(text: str) -> Scrape:
    per_worker: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    rpcs: dict[tuple[str, str], float] = {}
    started: dict[str, float] = {}
    workers = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if not name.startswith("gmf_") or name.endswith("_created"):
                continue
            short = name[4:].removesuffix("_total")
            labels = sample.labels
            if short == "workers_alive":
                workers = int(sample.value)
            elif short == "rpcs_finished":
                key = (labels["method"], labels["code"])
                rpcs[key] = rpcs.get(key, 0) + sample.value
            elif short == "rpcs_started":
                started[labels["method"]] = started.get(labels["method"], 0) + sample.value
            if "worker" in labels:
                row = per_worker.setdefault(labels["worker"], {})
                row[short] = row.get(short, 0) + sample.value
                totals[short] = totals.get(short, 0) + sample.value
    return Scrape(workers, per_worker, totals, rpcs, started)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render(s: Scrape) -> str:
    t = s.totals

    def num(key: str, row: dict[str, float] = t) -> str:
        return f"{row.get(key, 0):.0f}"

    lines = [
        f"workers      {s.workers} alive, {num('worker_restarts')} restart(s)",
        f"connections  {num('connections_accepted')} accepted, {num('connections_open')} open, "
        f"{num('connections_refused')} refused",
        f"bytes        {_size(t.get('received_bytes', 0))} received, {_size(t.get('sent_bytes', 0))} sent",
        f"rpcs         {num('rpcs_started')} started, {num('rpcs_finished')} finished",
        "",
    ]
    width = max([len("method"), *(len(m) for m, _ in s.rpcs)])
    lines.append(f"{'method':<{width}}  {'code':<19} {'rpcs':>10}")
    for (method, code), n in sorted(s.rpcs.items()):
        lines.append(f"{method:<{width}}  {code:<19} {n:>10.0f}")
    lines += ["", f"{'worker':<6} {'accepted':>9} {'open':>6} {'refused':>8} {'started':>10} {'finished':>10} "
                  f"{'received':>10} {'sent':>10}"]
    for worker, row in sorted(s.per_worker.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0):
        lines.append(
            f"{worker:<6} {num('connections_accepted', row):>9} {num('connections_open', row):>6} "
            f"{num('connections_refused', row):>8} {num('rpcs_started', row):>10} {num('rpcs_finished', row):>10} "
            f"{_size(row.get('received_bytes', 0)):>10} {_size(row.get('sent_bytes', 0)):>10}"
        )
    return "\n".join(lines)


def fetch(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def stats_main(argv: list[str] | None = None) -> int:
    """``python -m gmf stats [--url URL]``: print a running server's counters."""
    parser = argparse.ArgumentParser(prog="gmf stats", description="print the counters of a running GMF server")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"its Prometheus endpoint (default {DEFAULT_URL})")
    args = parser.parse_args(argv)
    try:
        text = fetch(args.url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"gmf: error: cannot read {args.url}: {reason} (start the server with metrics_port=PORT "
              "or --metrics-port PORT, and pass --url http://HOST:PORT/metrics)", file=sys.stderr)
        return 1
    scrape = parse(text)
    if not scrape.per_worker:
        print(f"gmf: error: {args.url} has no gmf_ metrics (is it a GMF server's metrics_port?)", file=sys.stderr)
        return 1
    print(render(scrape))
    return 0
