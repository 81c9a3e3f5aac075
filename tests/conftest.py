from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import tests.apps  # noqa: E402,F401  (puts the generated code on sys.path)
from tests.servers import ServerProcess, runtime_available, spawn  # noqa: E402

RUNTIMES = ["uring", "uvloop", "asyncio"]


def require_runtime(name: str) -> None:
    why = runtime_available(name)
    if why:
        if os.environ.get("GMF_REQUIRE_URING") == "1" and name == "uring":
            pytest.fail(f"io_uring runtime required (GMF_REQUIRE_URING=1) but unavailable: {why}")
        pytest.skip(f"runtime {name} unavailable: {why}")


@pytest.fixture(scope="session", params=RUNTIMES)
def server(request) -> ServerProcess:
    """The test server, one worker, on each runtime (the whole core suite runs on each)."""
    require_runtime(request.param)
    proc = spawn(request.param, workers=1, options={"max_send_message_length": 5 * 1024 * 1024})
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def target(server: ServerProcess) -> str:
    return server.target
