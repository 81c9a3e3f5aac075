"""Fixtures shared by every test folder: the session's test server on each runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Importing tests.helpers puts the generated code on sys.path, before any test module imports it.
from tests.helpers.servers import RUNTIMES, ServerProcess, require_runtime, spawn


@pytest.fixture(scope="session", params=RUNTIMES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The test server, one worker, on each runtime (the whole core suite runs on each)."""
    require_runtime(request.param)
    proc = spawn(request.param, workers=1, options={"max_send_message_length": 5 * 1024 * 1024})
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def target(server: ServerProcess) -> str:
    return server.target
