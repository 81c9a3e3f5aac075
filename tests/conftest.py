"""Fixtures shared by every test folder: the session's test server on each runtime."""

from __future__ import annotations

import pytest

# Importing tests.helpers puts the generated code on sys.path, before any test module imports it.
from tests.helpers.servers import ServerProcess, server_fixture

collect_ignore_glob = ["protos/*"]  # generated code (test_pb2.py is the interop test.proto's), not tests

session_server = server_fixture(
    "The test server with default limits, one worker, on each runtime, for the whole session (the core suites "
    "run on each runtime).", scope="session", options={"max_send_message_length": 5 * 1024 * 1024})


@pytest.fixture(scope="session")
def target(session_server: ServerProcess) -> str:
    """``127.0.0.1:PORT`` of the session's test server."""
    return session_server.target
