"""Start GMF servers in subprocesses for tests (never fork beside live grpcio channels).

``spawn`` starts one (the services of ``apps``, with GmfServer options); ``serving`` is the
same as a context manager that skips when the runtime cannot run here and stops the server
afterwards; ``server_fixture`` makes the pytest fixture a test module shares, one server per
runtime. Each module names its fixture for what its server is (``attack_server``, ``cap_server``, ...).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

RUNTIMES = ["uring", "uvloop", "asyncio"]


def runtime_available(name: str) -> str | None:
    """None if the runtime can run here, else why not."""
    from gmf import runtime as rt

    if name == "uring":
        return rt.uring_unavailable()
    if name == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "uvloop not installed"
    return None


def require_runtime(name: str) -> None:
    """Skip the test when runtime ``name`` cannot run here; fail instead for io_uring under
    GMF_REQUIRE_URING=1 (CI, where the kernel has it)."""
    why = runtime_available(name)
    if why:
        if os.environ.get("GMF_REQUIRE_URING") == "1" and name == "uring":
            pytest.fail(f"io_uring runtime required (GMF_REQUIRE_URING=1) but unavailable: {why}")
        pytest.skip(f"runtime {name} unavailable: {why}")


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int
    pids: list[int]
    log_path: Path
    runtime: str
    _stopped: bool = field(default=False)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if not self._stopped:
            self._stopped = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdin:
                self.proc.stdin.close()
            if self.proc.stdout:
                self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(runtime: str = "asyncio", workers: int = 1, options: dict | None = None, grace: float = 5.0,
          address: str = "127.0.0.1:0", env: dict[str, str] | None = None, placement: str | None = None,
          hooks_file: str | None = None) -> ServerProcess:
    log = Path(tempfile.mkstemp(prefix=f"gmf-{runtime}-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "tests.helpers.serve_app", "--runtime", runtime, "--workers", str(workers),
           "--grace", str(grace), "--address", address, "--options", json.dumps(options or {})]
    if placement:
        cmd += ["--placement", placement]
    if hooks_file:
        cmd += ["--hooks-file", hooks_file]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
                            cwd=ROOT, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    port = 0
    pids: list[int] = []
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in iter(proc.stdout.readline, "")] + [lines.put("")],
                     daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (port and pids):
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        if not line:
            break
        if line.startswith("PORT "):
            port = int(line.split()[1])
        elif line.startswith("PIDS "):
            pids = [int(p) for p in line.split()[1:]]
    if not port:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"test server did not start: {log.read_text()}")
    return ServerProcess(proc, port, pids, log, runtime)


@contextmanager
def serving(runtime: str = "asyncio", **kwargs: Any) -> Iterator[ServerProcess]:
    """``spawn(runtime, **kwargs)`` when the runtime can run here (else skip, see
    require_runtime); the server is stopped when the block ends."""
    require_runtime(runtime)
    with spawn(runtime, **kwargs) as proc:
        yield proc


Options = dict[str, Any] | Callable[[pytest.FixtureRequest], dict[str, Any]]


def server_fixture(doc: str, runtimes: Sequence[str] = RUNTIMES, *, options: Options | None = None,
                   scope: str = "module", **kwargs: Any) -> Any:
    """A pytest fixture, parametrized over ``runtimes``: one test server per runtime for the
    ``scope``, started by ``serving(runtime, options=options, **kwargs)``; ``doc`` says what it
    is (``pytest --fixtures``). ``options`` may be a function of the fixture request, for options
    made by other fixtures. Assign it to the name the tests use:
    ``cap_server = server_fixture("...", options={...})``."""

    def fixture(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
        with serving(request.param, options=options(request) if callable(options) else options, **kwargs) as proc:
            yield proc

    fixture.__doc__ = doc
    return pytest.fixture(scope=scope, params=list(runtimes))(fixture)  # type: ignore[call-overload]
