"""Helpers for the toolkit tests.

Docker tests (``@pytest.mark.docker``) skip with the reason when no engine answers, except
with GMF_REQUIRE_DOCKER=1 (CI), where that is a failure. Names and ports differ from a
developer's ``gmf-dev`` / 50051 so the suite never touches them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.helpers.net import free_port

REQUIRE = os.environ.get("GMF_REQUIRE_DOCKER") == "1"
TEST_CONTAINER = "gmf-test-dev"


def need(tool_ok: bool, reason: str) -> None:
    """Skip (or fail under GMF_REQUIRE_DOCKER=1) when a tool the test needs is missing."""
    if not tool_ok:
        if REQUIRE:
            pytest.fail(f"{reason} (GMF_REQUIRE_DOCKER=1)")
        pytest.skip(reason)


def invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 900,
           check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` in the repo as a user would; output captured."""
    full_env = {**os.environ, "GMF_DEV_CONTAINER": TEST_CONTAINER, "GMF_DEV_PORT": str(TEST_PORT), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=full_env, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"invoke {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


TEST_PORT = free_port()  # the test dev container's published port


def exec_out(client: Any, name: str, cmd: list[str]) -> tuple[int, str]:
    result = client.containers.get(name).exec_run(cmd, workdir="/usr/src/app")
    return int(result.exit_code), result.output.decode(errors="replace")
