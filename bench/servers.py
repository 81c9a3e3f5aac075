"""The servers a benchmark run compares, and how to start, check and stop them.

Every server is a separate process started from its script with ``--port P``; pinned
ones run under ``taskset -c CPU`` (and GMF's single worker also gets ``--cpu CPU``, i.e.
``Placement.fixed(CPU)``).  Readiness = the TCP port accepts, then a real grpcio client
(``validate.py`` in a child process) gets ``Hello world!`` with status OK, and for servers
of the web rows a Connect JSON and a gRPC-Web call over HTTP/1.1 do too.
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
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.net import free_port, port_open  # the one copy, shared with the tests

from . import ROOT
from .h2load import GRPC_HEADERS, GRPC_PATH
from .machine import proc_stats

GMF_SERVER = Path("examples/helloworld/server.py")
PEERS = Path("bench/peers")
GMF_SYNC_SERVER = PEERS / "gmf_sync_server.py"  # the Greeter as a plain def, served by gmf.server()
BLOCK_SHAPE = "16x4"  # the blocking-handler rows: 64 calls in flight, each sleeping 5 ms
BASELINE = "grpcio-aio"
WEB_BASELINE = "connectrpc"  # the ratio column of the web rows (Connect and gRPC-Web over HTTP/1.1)


@dataclass(frozen=True)
class ServerSpec:
    name: str
    script: Path  # relative to the repository root
    args: tuple[str, ...] = ()
    pinned: bool = True  # taskset to the server CPU
    gmf_cpu: bool = False  # pass --cpu SERVER_CPU (GMF's Placement.fixed)
    baseline: str = BASELINE  # ratio column: req/s relative to this server (gRPC shapes)
    description: str = ""
    protocols: tuple[str, ...] = ("grpc",)  # "grpc": gRPC over HTTP/2; "web": Connect and gRPC-Web over HTTP/1.1
    needs: tuple[str, ...] = ()  # Python modules the server imports
    shapes: tuple[str, ...] = ()  # measured at these shapes only, whatever the run's (e.g. a blocking handler's)

    def argv(self, port: int, server_cpu: int) -> list[str]:
        cmd: list[str] = []
        if self.pinned:
            cmd += ["taskset", "-c", str(server_cpu)]
        cmd += [sys.executable, str(self.script), "--port", str(port), *self.args]
        if self.gmf_cpu:
            cmd += ["--cpu", str(server_cpu)]
        return cmd

    def pinning(self, server_cpu: int) -> str:
        if not self.pinned:
            if self.script in (GMF_SERVER, GMF_SYNC_SERVER) and not self.gmf_cpu:
                return "one worker per CPU, each pinned by GMF"
            return "unpinned (all CPUs)"
        return f"CPU {server_cpu}" + (" (Placement.fixed)" if self.gmf_cpu else " (taskset)")

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        if not (ROOT / self.script).exists():
            return f"{self.script} not found"
        missing = [m for m in self.needs if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} not installed (the [dev] extra)"
        return None


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

ALIASES: dict[str, tuple[str, ...]] = {
    "all": tuple(name for name in SERVERS if name != "gmf-1-auto"),
    "gmf-1": ("gmf-1-uring", "gmf-1-uvloop", "gmf-1-asyncio"),
    "gmf-all": ("gmf", "gmf-1-uring", "gmf-1-uvloop", "gmf-1-asyncio"),
    "peers": ("grpcio-aio", "grpcio-aio-unpinned", "grpcio-sync", "grpclib", WEB_BASELINE),
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


def validate(port: int, calls: int = 4, timeout: float = 30.0) -> None:
    """A real grpcio client call (in a child process) must get 'Hello world!' and status OK."""
    cmd = [sys.executable, "-m", "bench.validate", "--port", str(port), "--calls", str(calls)]
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


def server_env() -> dict[str, str]:
    """The harness's environment plus the repository on PYTHONPATH (works without an install)."""
    env = dict(os.environ)
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
                env=server_env(),
            )
        server = RunningServer(spec, port, proc, log_path)
        try:
            wait_ready(server)
            if "grpc" in spec.protocols:
                validate(port)
                if body_file is not None:
                    check_h2load_request(port, body_file)
            if "web" in spec.protocols:
                validate_web(port)
            time.sleep(settle_s)  # let every worker of a multi-process server reach its accept loop
            if proc.poll() is not None:
                raise ServerError(f"{spec.name} exited after validation:\n{server.log_tail()}")
            yield server
        finally:
            server.stop()
