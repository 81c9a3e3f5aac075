"""The servers a benchmark run compares, and how to start, check and stop them.

Every server is a separate process started from its script (or, for grpc-go, its binary,
built by ``bench/peers/go_build.py``) with ``--port P``; pinned ones run under
``taskset -c CPU`` (and GMF's single worker also gets ``--cpu CPU``, i.e.
``Placement.fixed(CPU)``; grpc-go on one core gets ``GOMAXPROCS=1``).  Readiness = the TCP
port accepts, then a real grpcio client (``validate.py`` in a child process) gets the
expected answer with status OK (``Hello world!``, or the streambench methods' chunks), and for
servers of the web rows a Connect JSON and a gRPC-Web call over HTTP/1.1 do too.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from tests.helpers.net import free_port, port_open  # the one copy, shared with the tests

from . import ROOT
from .h2load import GRPC_HEADERS, GRPC_PATH
from .machine import proc_stats
from .peers import go_build

GMF_SERVER = Path("examples/helloworld/server.py")
GMF_STREAM_SERVER = Path("examples/streambench/server.py")
PEERS = Path("bench/peers")
GMF_SYNC_SERVER = PEERS / "gmf_sync_server.py"  # the Greeter as a plain def, served by gmf.server()
BLOCK_SHAPE = "16x4"  # the blocking-handler rows: 64 calls in flight, each sleeping 5 ms
BASELINE = "grpcio-aio"
WEB_BASELINE = "connectrpc"  # the ratio column of the web rows (Connect and gRPC-Web over HTTP/1.1)
GREETER = "greeter"  # helloworld.Greeter/SayHello: the unary shapes (h2load)
STREAMBENCH = "streambench"  # streambench.StreamBench: the streaming shapes (streamload)

_go: go_build.GoPeers | str | None = None  # the built Go peers, or why they cannot be built


def go_peers() -> go_build.GoPeers | str:
    """The Go binaries (built once per process, cached on disk by go_build), or the skip reason."""
    global _go
    if _go is None:
        try:
            _go = go_build.build()
        except go_build.GoUnavailable as exc:
            _go = str(exc)
        except go_build.GoBuildError as exc:
            _go = f"skipped: the Go peers did not build: {str(exc).splitlines()[0]}"
    return _go



@dataclass(frozen=True)
class ServerSpec:
    name: str
    script: Path  # relative to the repository root (for Go peers: bench/peers/go/<binary>)
    args: tuple[str, ...] = ()
    pinned: bool = True  # taskset to the server CPU
    gmf_cpu: bool = False  # pass --cpu SERVER_CPU (GMF's Placement.fixed)
    baseline: str = BASELINE  # ratio column: req/s relative to this server (gRPC shapes)
    description: str = ""
    go_binary: str | None = None  # a Go peer: the go_build binary to run instead of a script
    env: tuple[tuple[str, str], ...] = ()  # extra environment (GOMAXPROCS)
    service: str = GREETER  # what it serves: GREETER (unary shapes) or STREAMBENCH (streaming)
    go_ref: str | None = None  # the grpc-go server its "vs go" columns compare with
    protocols: tuple[str, ...] = ("grpc",)  # "grpc": gRPC over HTTP/2; "web": Connect and gRPC-Web over HTTP/1.1
    needs: tuple[str, ...] = ()  # Python modules the server imports
    shapes: tuple[str, ...] = ()  # measured at these shapes only, whatever the run's (e.g. a blocking handler's)

    def argv(self, port: int, server_cpu: int) -> list[str]:
        cmd: list[str] = []
        if self.pinned:
            cmd += ["taskset", "-c", str(server_cpu)]
        if self.go_binary is not None:
            peers = go_peers()
            if isinstance(peers, str):
                raise ServerError(f"{self.name}: {peers}")
            cmd += [str(peers.binaries()[self.go_binary]), "--host", "127.0.0.1", "--port", str(port), *self.args]
            return cmd
        cmd += [sys.executable, str(self.script), "--port", str(port), *self.args]
        if self.gmf_cpu:
            cmd += ["--cpu", str(server_cpu)]
        return cmd

    def pinning(self, server_cpu: int) -> str:
        procs = dict(self.env).get("GOMAXPROCS")
        if not self.pinned:
            if self.script in (GMF_SERVER, GMF_STREAM_SERVER, GMF_SYNC_SERVER) and not self.gmf_cpu:
                if dict(self.env).get("GMF_PLACEMENT") == "unbound":
                    return "one worker per CPU, not pinned (Placement.unbound)"
                return "one worker per CPU, each pinned by GMF"
            return "unpinned (all CPUs)" + (" (GOMAXPROCS = CPUs)" if self.go_binary else "")
        how = " (Placement.fixed)" if self.gmf_cpu else f" (taskset, GOMAXPROCS={procs})" if procs else " (taskset)"
        return f"CPU {server_cpu}{how}"

    def missing(self) -> str | None:
        """Why this server cannot run here, or None. For a Go peer it is a skip line
        (``skipped: ...``): Go or its Debian packages are not installed."""
        if self.go_binary is not None:
            peers = go_peers()
            return peers if isinstance(peers, str) else None
        if not (ROOT / self.script).exists():
            return f"{self.script} not found"
        missing = [m for m in self.needs if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} not installed (the [dev] extra)"
        return None

    @property
    def skippable(self) -> bool:
        """Missing counts as skipped (with the reason), not as a failed run: the Go peers."""
        return self.go_binary is not None


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            "gmf",
            GMF_SERVER,
            pinned=False,
            baseline="grpcio-aio-unpinned",
            description="GMF, one worker per CPU, default runtime",
            protocols=("grpc", "web"),
        ),
        ServerSpec(
            "gmf-unbound",
            GMF_SERVER,
            pinned=False,
            env=(("GMF_PLACEMENT", "unbound"),),
            baseline="grpcio-aio-unpinned",
            description="GMF, one worker per CPU, default runtime, GMF_PLACEMENT=unbound: workers not pinned, "
                        "for CPUs shared with other busy processes (here: the load generator)",
        ),
        *(
            ServerSpec(
                f"gmf-1-{runtime}",
                GMF_SERVER,
                args=("--runtime", runtime),
                gmf_cpu=True,
                description=f"GMF, one worker pinned, {runtime} runtime",
                protocols=("grpc", "web"),
            )
            for runtime in ("uring", "uvloop", "asyncio")
        ),
        ServerSpec(
            "gmf-1-auto",
            GMF_SERVER,
            args=("--runtime", "auto"),
            gmf_cpu=True,
            description="GMF, one worker pinned, default runtime (idle-connection memory)",
        ),
        ServerSpec(
            "grpcio-aio",
            PEERS / "grpcio_aio_server.py",
            description="grpcio grpc.aio server pinned to one CPU",
        ),
        ServerSpec(
            "grpcio-aio-unpinned",
            PEERS / "grpcio_aio_server.py",
            pinned=False,
            baseline="grpcio-aio-unpinned",
            description="grpcio grpc.aio server, unpinned (baseline for all-workers GMF)",
        ),
        ServerSpec(
            "grpcio-sync",
            PEERS / "grpcio_sync_server.py",
            description="grpcio thread-pool server pinned to one CPU",
        ),
        ServerSpec("grpclib", PEERS / "grpclib_server.py", description="grpclib pinned to one CPU"),
        ServerSpec(
            "grpc-go-1",
            PEERS / "go" / "greeter",
            go_binary="greeter",
            env=(("GOMAXPROCS", "1"),),
            description="grpc-go 1.33 pinned to one CPU, GOMAXPROCS=1",
        ),
        ServerSpec(
            "grpc-go",
            PEERS / "go" / "greeter",
            pinned=False,
            baseline="grpcio-aio-unpinned",
            go_binary="greeter",
            description="grpc-go 1.33 on all CPUs (GOMAXPROCS = CPUs)",
        ),
        ServerSpec(
            "gmf-1-stream",
            GMF_STREAM_SERVER,
            args=("--runtime", "uring"),
            gmf_cpu=True,
            baseline="grpcio-aio-stream",
            service=STREAMBENCH,
            go_ref="grpc-go-1-stream",
            description="GMF streambench, one worker pinned, uring runtime",
        ),
        ServerSpec(
            "gmf-stream",
            GMF_STREAM_SERVER,
            pinned=False,
            baseline="grpcio-aio-stream",
            service=STREAMBENCH,
            go_ref="grpc-go-stream",
            description="GMF streambench, one worker per CPU, default runtime",
        ),
        ServerSpec(
            "grpcio-aio-stream",
            PEERS / "grpcio_aio_stream_server.py",
            baseline="grpcio-aio-stream",
            service=STREAMBENCH,
            go_ref="grpc-go-1-stream",
            description="grpcio grpc.aio streambench server pinned to one CPU (the same servicer as GMF's)",
        ),
        ServerSpec(
            "grpc-go-1-stream",
            PEERS / "go" / "streambench",
            go_binary="streambench",
            env=(("GOMAXPROCS", "1"),),
            baseline="grpcio-aio-stream",
            service=STREAMBENCH,
            description="grpc-go 1.33 streambench pinned to one CPU, GOMAXPROCS=1",
        ),
        ServerSpec(
            "grpc-go-stream",
            PEERS / "go" / "streambench",
            pinned=False,
            go_binary="streambench",
            baseline="grpcio-aio-stream",
            service=STREAMBENCH,
            description="grpc-go 1.33 streambench on all CPUs",
        ),
        # Sync (plain def) handlers, the way grpcio services have them (issue 11)
        ServerSpec(
            "gmf-1-def",
            GMF_SYNC_SERVER,
            gmf_cpu=True,
            baseline="grpcio-sync",
            description="GMF, one worker pinned, the Greeter as a plain def (gmf.server(), default placement)",
        ),
        ServerSpec(
            "gmf-1-def-inline",
            GMF_SYNC_SERVER,
            args=("--sync-handlers", "inline"),
            gmf_cpu=True,
            baseline="grpcio-sync",
            description="as gmf-1-def, forced inline on the loop (the path before handler threads)",
        ),
        ServerSpec(
            "gmf-sync-block",
            GMF_SYNC_SERVER,
            args=("--block-ms", "5"),
            pinned=False,
            baseline="grpcio-sync-block",
            shapes=(BLOCK_SHAPE,),
            description="GMF at its defaults (one worker per CPU, 10 handler threads each), a def handler blocking 5 ms",
        ),
        ServerSpec(
            "grpcio-sync-block",
            PEERS / "grpcio_sync_server.py",
            args=("--block-ms", "5"),
            pinned=False,
            baseline="grpcio-sync-block",
            shapes=(BLOCK_SHAPE,),
            description="grpcio's thread-pool server (10 threads), unpinned, the handler blocking 5 ms",
        ),
        ServerSpec(
            WEB_BASELINE,
            PEERS / "connectrpc_server.py",
            baseline=WEB_BASELINE,
            description="connectrpc (Connect, gRPC-Web) on uvicorn with httptools and uvloop, pinned to one CPU",
            protocols=("web",),
            needs=("connectrpc", "uvicorn"),
        ),
    )
}

# The grpc-go server each unary server is compared with in the "vs go" columns.
_GO_REFS = {"gmf": "grpc-go", "gmf-unbound": "grpc-go", "grpcio-aio-unpinned": "grpc-go"}
for _name, _spec in list(SERVERS.items()):
    if _spec.service == GREETER and "grpc" in _spec.protocols and _spec.go_ref is None and not _name.startswith("grpc-go"):
        SERVERS[_name] = replace(_spec, go_ref=_GO_REFS.get(_name, "grpc-go-1"))

ALIASES: dict[str, tuple[str, ...]] = {
    "all": tuple(name for name in SERVERS if name not in ("gmf-1-auto", "gmf-stream", "grpc-go-stream")),
    "gmf-1": ("gmf-1-uring", "gmf-1-uvloop", "gmf-1-asyncio"),
    "gmf-all": ("gmf", "gmf-1-uring", "gmf-1-uvloop", "gmf-1-asyncio"),
    "peers": ("grpcio-aio", "grpcio-aio-unpinned", "grpcio-sync", "grpclib", WEB_BASELINE),
    "go": ("grpc-go-1", "grpc-go"),
    "stream": ("gmf-1-stream", "grpcio-aio-stream", "grpc-go-1-stream"),
    "stream-all": ("gmf-stream", "grpc-go-stream"),
    "sync": ("gmf-1-def", "gmf-1-def-inline", "grpcio-sync", "gmf-sync-block", "grpcio-sync-block"),
    "block": ("gmf-sync-block", "grpcio-sync-block"),
    "web": ("gmf-1-uring", WEB_BASELINE),
}


def select(text: str) -> list[ServerSpec]:
    """Comma-separated server names or aliases (all, gmf-1, gmf-all, peers), order kept, no repeats."""
    names: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        expanded = ALIASES.get(item, (item,))
        for name in expanded:
            if name not in SERVERS:
                known = ", ".join([*SERVERS, *ALIASES])
                raise ValueError(f"unknown server {name!r}; known: {known}")
            if name not in names:
                names.append(name)
    return [SERVERS[name] for name in names]


def raise_nofile_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (GMF's workers are the children of the server process)."""
    return sorted(child for child, _name, fields in proc_stats() if len(fields) > 1 and int(fields[1]) == pid)


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB (from /proc/PID/status), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class ServerError(RuntimeError):
    pass


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def banner(self) -> str:
        """The first line the server printed (its ready line, e.g. which runtime it picked)."""
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return text.splitlines()[0][:200] if text else ""

    def worker_pids(self) -> list[int]:
        """The processes that serve: the server's children, or the server itself if it has none."""
        return children_of(self.proc.pid) or [self.proc.pid]

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # The server runs in its own session: whatever it left behind (workers) goes with it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)


def wait_ready(server: RunningServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(
                f"{server.spec.name} exited with {server.proc.returncode} before listening:\n{server.log_tail()}"
            )
        if port_open(server.port):
            return
        time.sleep(0.05)
    raise ServerError(f"{server.spec.name} did not listen on port {server.port} within {timeout:.0f}s")


def validate(port: int, calls: int = 4, timeout: float = 30.0, service: str = GREETER) -> None:
    """Real grpcio client calls (in a child process) must get the expected answers and status OK."""
    cmd = [sys.executable, "-m", "bench.validate", "--port", str(port), "--calls", str(calls), "--service", service]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"grpcio validation call timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise ServerError(f"grpcio validation failed: {(proc.stderr or proc.stdout).strip()[-500:]}")


def validate_web(port: int, timeout: float = 10.0) -> None:
    """Connect unary JSON and gRPC-Web unary over HTTP/1.1 (http.client) must both get
    ``Hello world!`` with status OK: what h2load's web rows send."""
    import http.client
    import json

    from .h2load import WEB_REQUESTS

    for web in WEB_REQUESTS.values():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            headers = dict(h.split(": ", 1) for h in web.headers)
            conn.request("POST", GRPC_PATH, body=web.body, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except OSError as exc:
            raise ServerError(f"{web.name} validation call failed: {exc}") from exc
        finally:
            conn.close()
        if web.name == "connect-json":
            ok = response.status == 200 and json.loads(body or b"{}") == {"message": "Hello world!"}
        else:
            ok = response.status == 200 and b"Hello world!" in body and b"grpc-status:0" in body.replace(b" ", b"")
        if not ok:
            raise ServerError(f"{web.name} validation: HTTP {response.status} {body[:200]!r}")


def server_env(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """The harness's environment plus the repository on PYTHONPATH (works without an install)."""
    env = dict(os.environ)
    env.update(extra)
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_h2load_request(port: int, body_file: Path, timeout: float = 10.0) -> None:
    """Send h2load's exact request once with nghttp (same library, same headers and body) and
    require a gRPC OK: ``grpc-status: 0`` in the trailers and the reply in the DATA frame.
    Skipped when nghttp (Debian nghttp2-client) is not installed."""
    if shutil.which("nghttp") is None:
        return
    cmd = ["nghttp", "-v", "-d", str(body_file)]
    for header in GRPC_HEADERS:
        cmd += ["-H", header]
    cmd.append(f"http://127.0.0.1:{port}{GRPC_PATH}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"nghttp check timed out after {timeout:.0f}s") from exc
    if "grpc-status: 0" not in proc.stdout or "Hello world!" not in proc.stdout:
        raise ServerError(f"h2load's request did not get a gRPC OK (nghttp -v):\n{proc.stdout[-800:]}")


@contextmanager
def launch(
    spec: ServerSpec, server_cpu: int, settle_s: float = 0.3, body_file: Path | None = None
) -> Iterator[RunningServer]:
    """Start ``spec``, wait until it listens and answers a real gRPC call, stop it afterwards.

    With ``body_file`` (h2load's request body) the exact h2load request is also checked once.
    """
    reason = spec.missing()
    if reason:
        raise ServerError(f"{spec.name}: {reason}")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"gmf-bench-{spec.name}-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                spec.argv(port, server_cpu),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=server_env(spec.env),
            )
        server = RunningServer(spec, port, proc, log_path)
        try:
            wait_ready(server)
            if "grpc" in spec.protocols:
                validate(port, service=spec.service)
                if body_file is not None and spec.service == GREETER:
                    check_h2load_request(port, body_file)
            if "web" in spec.protocols:
                validate_web(port)
            time.sleep(settle_s)  # let every worker of a multi-process server reach its accept loop
            if proc.poll() is not None:
                raise ServerError(f"{spec.name} exited after validation:\n{server.log_tail()}")
            yield server
        finally:
            server.stop()
