"""Drive h2load with gRPC framing and parse what it prints (and its per-request log).

h2load knows nothing about gRPC: we hand it a body file holding one length-prefixed
message and the two request headers gRPC needs.  It counts HTTP statuses only; the
gRPC status lives in the trailers, which is why the harness also validates every
server once with a real grpcio client before loading it (see ``servers.validate``).
"""

from __future__ import annotations

import math
import re
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GRPC_PATH = "/helloworld.Greeter/SayHello"
GRPC_HEADERS: tuple[str, ...] = ("content-type: application/grpc", "te: trailers")


def encode_string_field(field_number: int, value: str) -> bytes:
    """Protobuf wire encoding of one length-delimited field (enough for HelloRequest)."""
    data = value.encode()
    out = bytearray(_varint((field_number << 3) | 2))
    out += _varint(len(data))
    out += data
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def grpc_frame(message: bytes, compressed: bool = False) -> bytes:
    """gRPC length-prefixed message: 1 byte compressed flag, 4 bytes big-endian length."""
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def hello_request_body(name: str = "world") -> bytes:
    """The request body h2load sends: a framed ``HelloRequest(name=name)``."""
    return grpc_frame(encode_string_field(1, name))


UNARY, STREAM, BIDI = "unary", "stream", "bidi"


@dataclass(frozen=True)
class Web:
    """A request over HTTP/1.1 (h2load --h1): gRPC-Web or Connect, its headers and body."""

    name: str
    headers: tuple[str, ...]
    body: bytes


WEB_REQUESTS = {
    web.name: web
    for web in (
        Web("connect-json", ("content-type: application/json",), b'{"name":"world"}'),
        Web("grpc-web", ("content-type: application/grpc-web+proto", "x-grpc-web: 1"), hello_request_body("world")),
    )
}
WEB_CONNECTIONS = 16  # HTTP/1.1 keep-alive connections, one request at a time each (issue 16)


@dataclass(frozen=True)
class Shape:
    """A load shape: ``connections`` x ``streams`` concurrent streams per connection.

    ``mode`` is ``unary`` (h2load, SayHello), or ``stream``/``bidi`` (the Go streamload client:
    ServerStream calls of 100 chunks, or BidiEcho round trips, 100-byte chunks); those are
    written ``stream:1x4`` and ``bidi:4x8``. With ``web``, HTTP/1.1 keep-alive connections
    (one request in flight each) carrying a unary web request (h2load --h1)."""

    connections: int
    streams: int
    mode: str = UNARY
    web: Web | None = None

    @property
    def name(self) -> str:
        if self.web is not None:
            return self.web.name
        base = f"{self.connections}x{self.streams}"
        return base if self.mode == UNARY else f"{self.mode}:{base}"

    @property
    def protocol(self) -> str:
        return "grpc" if self.web is None else "web"

    @property
    def unit(self) -> str:
        """What the rate counts: requests (unary) or messages (streaming)."""
        return "req" if self.mode == UNARY else "msg"

    @classmethod
    def parse(cls, text: str) -> Shape:
        web = WEB_REQUESTS.get(text.strip())
        if web is not None:
            return cls(WEB_CONNECTIONS, 1, UNARY, web)
        match = re.fullmatch(r"\s*(?:(stream|bidi):)?(\d+)\s*[xX]\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"bad shape {text!r}: expected [stream:|bidi:]CONNECTIONSxSTREAMS, e.g. 16x16")
        shape = cls(int(match.group(2)), int(match.group(3)), match.group(1) or UNARY)
        if shape.connections < 1 or shape.streams < 1:
            raise ValueError(f"bad shape {text!r}: both numbers must be >= 1")
        return shape


@dataclass
class H2loadResult:
    """One h2load run.  Times are microseconds."""

    requests_total: int = 0
    succeeded: int = 0
    failed: int = 0
    errored: int = 0
    timeout: int = 0
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    req_per_s: float = 0.0
    elapsed_s: float = 0.0
    min_us: float = 0.0
    max_us: float = 0.0
    mean_us: float = 0.0
    sd_us: float = 0.0
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    logged: int = 0  # requests in the per-request log (those the percentiles come from)
    server_cpu_s: float | None = None  # CPU time the server used while measured (/proc/PID/stat)
    server_window_s: float | None = None  # the wall time that CPU time was measured over
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_us_per_unit(self) -> float | None:
        """Server CPU microseconds per request (or message): robust to a busy machine."""
        done = self.req_per_s * self.elapsed_s
        if self.server_cpu_s is None or done <= 0:
            return None
        return self.server_cpu_s / done * 1e6

    @property
    def server_cpu_percent(self) -> float | None:
        """How much of a CPU the server got while measured (100 = one CPU)."""
        if self.server_cpu_s is None or not self.server_window_s:
            return None
        return self.server_cpu_s / self.server_window_s * 100

    @property
    def errors(self) -> int:
        """Everything that is not a completed 2xx response."""
        return self.failed + self.errored + self.timeout + self.status_3xx + self.status_4xx + self.status_5xx

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = self.errors
        data["cpu_us_per_unit"] = self.cpu_us_per_unit
        data["server_cpu_percent"] = self.server_cpu_percent
        return data


_UNITS_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0, "h": 3_600_000_000.0}
_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s|m|h), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TIME_FOR_REQUEST = re.compile(
    r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)"
)


def to_us(value: str, unit: str) -> float:
    return float(value) * _UNITS_US[unit]


def parse_output(text: str) -> H2loadResult:
    """Parse h2load's summary (stdout).  Raises ValueError when it has no summary."""
    result = H2loadResult()
    finished = _FINISHED.search(text)
    requests = _REQUESTS.search(text)
    if not finished or not requests:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise ValueError(f"h2load printed no summary; last lines:\n{tail}")
    result.elapsed_s = to_us(finished.group(1), finished.group(2)) / 1_000_000
    result.req_per_s = float(finished.group(3))
    total, _started, _done, succeeded, failed, errored, timeout = (int(g) for g in requests.groups())
    result.requests_total, result.succeeded = total, succeeded
    result.failed, result.errored, result.timeout = failed, errored, timeout
    status = _STATUS.search(text)
    if status:
        result.status_2xx, result.status_3xx, result.status_4xx, result.status_5xx = (
            int(g) for g in status.groups()
        )
    timing = _TIME_FOR_REQUEST.search(text)
    if timing:
        g = timing.groups()
        result.min_us = to_us(g[0], g[1])
        result.max_us = to_us(g[2], g[3])
        result.mean_us = to_us(g[4], g[5])
        result.sd_us = to_us(g[6], g[7])
    return result


def parse_log(text: str) -> list[int]:
    """Durations (us) of completed requests from an h2load ``--log-file``.

    Columns: start time (us since epoch), HTTP status (-1 for a failed stream), duration (us).
    Failed streams are left out: their "duration" is not a response time.
    """
    durations: list[int] = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        try:
            status, duration = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if status > 0:
            durations.append(duration)
    return durations


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} out of range")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def add_percentiles(result: H2loadResult, durations: list[int]) -> None:
    if not durations:
        result.notes.append("per-request log empty: no percentiles")
        return
    durations.sort()
    result.logged = len(durations)
    result.p50_us = percentile(durations, 50)
    result.p90_us = percentile(durations, 90)
    result.p99_us = percentile(durations, 99)


def format_duration(seconds: float) -> str:
    """h2load's duration syntax: integers with a unit (it rejects "0.5")."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


@dataclass(frozen=True)
class LoadSpec:
    """What one h2load invocation does."""

    port: int
    shape: Shape
    duration_s: float | None = None  # timing-based (-D) when set
    requests: int | None = None  # count-based (-n) otherwise
    warmup_s: float = 0.0  # only with duration
    rps_per_client: int | None = None  # fixed-rate run (--rps, per client)
    host: str = "127.0.0.1"
    path: str = GRPC_PATH


def h2load_command(
    spec: LoadSpec, body_file: Path, log_file: Path | None = None, cpu: int | None = None
) -> list[str]:
    cmd: list[str] = []
    if cpu is not None:
        cmd += ["taskset", "-c", str(cpu)]
    cmd += ["h2load"]
    if spec.duration_s is not None:
        cmd += ["-D", format_duration(spec.duration_s)]
        if spec.warmup_s > 0:
            cmd += ["--warm-up-time", format_duration(spec.warmup_s)]
    else:
        cmd += ["-n", str(spec.requests or 1000)]
    cmd += ["-c", str(spec.shape.connections), "-m", str(spec.shape.streams), "-t1"]
    if spec.rps_per_client is not None:
        cmd += ["--rps", str(spec.rps_per_client)]
    cmd += ["-d", str(body_file)]
    web = spec.shape.web
    if web is not None:
        cmd.append("--h1")
    for header in GRPC_HEADERS if web is None else web.headers:
        cmd += ["-H", header]
    if log_file is not None:
        cmd += ["--log-file", str(log_file)]
    cmd.append(f"http://{spec.host}:{spec.port}{spec.path}")
    return cmd


class H2loadError(RuntimeError):
    pass


CpuClock = Callable[[], float | None]  # the server's CPU seconds so far (None: gone)


def run_measured(
    cmd: list[str], budget: float, warmup_s: float, server_cpu: CpuClock | None
) -> tuple[subprocess.CompletedProcess[str], float | None, float | None]:
    """Run a load generator; with ``server_cpu``, also the server's CPU time (and the wall time)
    from the end of the warm-up to the generator's exit. Returns (process, cpu_s, window_s)."""
    if server_cpu is None:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=budget, check=False), None, None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + budget
        try:
            proc.wait(timeout=warmup_s)
        except subprocess.TimeoutExpired:
            pass
        cpu0, t0 = server_cpu(), time.monotonic()
        try:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        cpu1, t1 = server_cpu(), time.monotonic()
        done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if cpu0 is None or cpu1 is None:
        return done, None, None
    return done, cpu1 - cpu0, t1 - t0


def run_h2load(
    spec: LoadSpec,
    body_file: Path,
    cpu: int | None = None,
    timeout_s: float | None = None,
    server_cpu: CpuClock | None = None,
    request_log: bool = True,
) -> H2loadResult:
    """Run h2load once; returns the parsed summary with percentiles from its per-request log
    (and, with ``server_cpu``, the server's CPU time over the measured phase). Without
    ``request_log`` (millions of requests: the RSS run) no log is written and there are no
    percentiles."""
    budget = timeout_s
    if budget is None:
        budget = 60.0 + (spec.duration_s or 0.0) + spec.warmup_s
    with tempfile.TemporaryDirectory(prefix="gmf-h2load-") as tmp:
        log_file = Path(tmp) / "requests.log"
        cmd = h2load_command(spec, body_file, log_file if request_log else None, cpu)
        try:
            proc, cpu_s, window_s = run_measured(cmd, budget, spec.warmup_s, server_cpu)
        except subprocess.TimeoutExpired as exc:
            raise H2loadError(f"h2load did not finish within {budget:.0f}s: {' '.join(cmd)}") from exc
        try:
            result = parse_output(proc.stdout)
        except ValueError as exc:
            raise H2loadError(f"{exc}\nstderr: {proc.stderr.strip()[-500:]}") from exc
        result.server_cpu_s, result.server_window_s = cpu_s, window_s
        if log_file.exists():
            add_percentiles(result, parse_log(log_file.read_text()))
        elif request_log:
            result.notes.append("h2load wrote no per-request log")
    return result
