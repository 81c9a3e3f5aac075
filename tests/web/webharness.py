"""Shared by the web acceptance tests: the servers under test and a curl runner."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.net import free_port, wait_port
from tests.helpers.servers import RUNTIMES, require_runtime


def require(what: str, missing: bool) -> None:
    if missing:
        if os.environ.get("GMF_REQUIRE_WEB") == "1":
            pytest.fail(f"{what} is required (GMF_REQUIRE_WEB=1) but missing")
        pytest.skip(f"{what} missing")


def importable(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@dataclass
class WebServer:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    grpc_web_text: bool  # serves application/grpc-web-text (connectrpc does not: 415)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start_script(kind: str, module: str, cors_origin: str, log: Path, grpc_web_text: bool,
                  extra: tuple[str, ...] = ()) -> WebServer:
    """``python -m tests.web.<module>`` from the checkout, ready once its port accepts."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", f"tests.web.{module}", "--port", str(port),
                                 "--cors-origin", cors_origin, *extra], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_port(port, timeout=30)
    except Exception:
        proc.kill()
        raise RuntimeError(f"tests.web.{module} did not start:\n{log.read_text()}") from None
    return WebServer(kind, port, proc, log, grpc_web_text)


def start_connectrpc(cors_origin: str, log: Path) -> WebServer:
    require("connectrpc and uvicorn (the [dev] extra)", not importable("connectrpc", "uvicorn"))
    return _start_script("connectrpc", "connect_peer", cors_origin, log, grpc_web_text=False)


def start_gmf(runtime: str) -> Callable[[str, Path], WebServer]:
    """GMF on ``runtime`` serving tests/web/services.py (``tests/web/gmf_server.py``)."""

    def start(cors_origin: str, log: Path) -> WebServer:
        require_runtime(runtime)
        return _start_script(f"gmf-{runtime}", "gmf_server", cors_origin, log, grpc_web_text=True,
                             extra=("--runtime", runtime))

    return start


STARTERS = {"connectrpc": start_connectrpc, **{f"gmf-{r}": start_gmf(r) for r in RUNTIMES}}
GMF_SERVERS = [f"gmf-{r}" for r in RUNTIMES]


def curl(*args: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """Run curl; returns (HTTP status, lower-cased response headers, body)."""
    require("curl", shutil.which("curl") is None)
    with tempfile.TemporaryDirectory() as tmp:
        head, body = Path(tmp) / "head", Path(tmp) / "body"
        cmd = ["curl", "-sS", "--max-time", "20", "-D", str(head), "-o", str(body), *args]
        if data is not None:
            (Path(tmp) / "req").write_bytes(data)
            cmd += ["--data-binary", f"@{Path(tmp) / 'req'}"]
        subprocess.run(cmd, check=True, timeout=30)
        lines = head.read_bytes().decode("latin-1").split("\r\n")
        blocks = [i for i, line in enumerate(lines) if line.startswith("HTTP/")]
        status = int(lines[blocks[-1]].split()[1])
        headers = {}
        for line in lines[blocks[-1] + 1 :]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers, body.read_bytes()
