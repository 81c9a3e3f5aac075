"""RSS over millions of requests: does a worker's memory stay flat under sustained load?

The load runs in ``segments`` back-to-back load-generator runs against one server (unary:
``h2load -n`` requests each; streaming: the Go streamload client for a few seconds each), new
connections every segment, so connection set-up and tear-down are in it too. The serving
process's VmRSS (for GMF: the worker, the server's child process) is read before the load,
after every segment (the server is idle then) and every ``interval_s`` while it runs (the
peak). Growth is the least-squares slope of RSS over the units done, from the end of the
first segment (warm-up: caches, the allocator's arenas, the frozen GC's first young
objects) to the end, in KiB per million requests (or messages).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .h2load import H2loadResult


@dataclass
class RssSample:
    units: int  # requests (or messages) done when it was read
    seconds: float  # since the load started
    rss_kib: int


@dataclass
class RssResult:
    server: str
    shape: str
    unit: str = "req"
    segments: int = 0
    units: int = 0  # requests (messages) done over all segments
    errors: int = 0
    seconds: float = 0.0
    start_kib: int | None = None  # before the load
    warm_kib: int | None = None  # after the first segment
    end_kib: int | None = None
    peak_kib: int | None = None
    samples: list[RssSample] = field(default_factory=list)  # one per segment end
    failure: str | None = None

    @property
    def growth_kib_per_million(self) -> float | None:
        """KiB of RSS per million units after the first segment (slope of the segment ends)."""
        return growth_per_million(self.samples[1:] if len(self.samples) > 2 else self.samples)

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["growth_kib_per_million"] = self.growth_kib_per_million
        data["rate"] = self.rate
        return data


def growth_per_million(samples: Sequence[RssSample]) -> float | None:
    """Least-squares slope of RSS (KiB) over units, per million units; None below two points."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mean_x = sum(s.units for s in samples) / n
    mean_y = sum(s.rss_kib for s in samples) / n
    sxx = sum((s.units - mean_x) ** 2 for s in samples)
    if sxx == 0:
        return None
    sxy = sum((s.units - mean_x) * (s.rss_kib - mean_y) for s in samples)
    return sxy / sxx * 1_000_000


class PeakSampler:
    """Reads ``measure()`` every ``interval_s`` in a thread and keeps the highest value."""

    def __init__(self, measure: Callable[[], int | None], interval_s: float = 0.25) -> None:
        self._measure = measure
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak: int | None = None
        self.reads = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.take()
            self._stop.wait(self._interval)

    def take(self) -> int | None:
        value = self._measure()
        if value is not None:
            self.reads += 1
            self.peak = value if self.peak is None else max(self.peak, value)
        return value

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_rss(
    result: RssResult,
    measure: Callable[[], int | None],
    segment: Callable[[int], H2loadResult],
    segments: int,
    progress: Callable[[str], None] | None = None,
    interval_s: float = 0.25,
) -> RssResult:
    """Run ``segment(i)`` ``segments`` times, reading ``measure()`` (the server's RSS in KiB)
    around and during them, into ``result``."""
    result.start_kib = measure()
    started = time.monotonic()
    with PeakSampler(measure, interval_s) as sampler:
        for i in range(segments):
            load = segment(i)
            result.segments += 1
            result.units += load.succeeded or round(load.req_per_s * load.elapsed_s)
            result.errors += load.errors
            rss = sampler.take()
            if rss is None:
                result.failure = "the server process is gone"
                break
            result.samples.append(RssSample(result.units, round(time.monotonic() - started, 2), rss))
            if progress:
                progress(f"  rss {result.server} segment {i + 1}/{segments}: {result.units:,} {result.unit}, "
                         f"{rss / 1024:.1f} MiB ({load.req_per_s:,.0f} {result.unit}/s)")
    result.seconds = round(time.monotonic() - started, 2)
    result.peak_kib = sampler.peak
    if result.samples:
        result.warm_kib = result.samples[0].rss_kib
        result.end_kib = result.samples[-1].rss_kib
    return result

