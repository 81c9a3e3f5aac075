"""The devcontainer, proven with the devcontainers CLI (npm @devcontainers/cli) on the local engine.

Works with no registry: the build is FROM the local base tag made by `invoke base-image`.
The container is found by a test-only id label, so a developer's devcontainer is untouched.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from gmf.toolkit.run import READY_PROBE
from tests.helpers import ROOT
from tests.helpers.net import free_port
from tests.toolkit.toolkit_helpers import need

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]  # the first test builds the images
LABEL = "org.gmf.test=devcontainer"


def devcontainer(sub: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`devcontainer SUB --workspace-folder ROOT --id-label LABEL ARGS` (options before exec's command)."""
    return subprocess.run(["devcontainer", sub, "--workspace-folder", str(ROOT), "--id-label", LABEL, *args],
                          capture_output=True, text=True, timeout=timeout)


def test_devcontainer_up_exec_and_helloworld_round_trip(dev_image: Any, docker_client: Any) -> None:
    need(shutil.which("devcontainer") is not None,
         "devcontainers CLI not installed (npm install -g @devcontainers/cli)")
    try:
        up = devcontainer("up", "--remove-existing-container")
        assert '"outcome":"success"' in up.stdout, up.stdout[-3000:] + up.stderr[-3000:]
        imported = devcontainer("exec", "python", "-c", "import gmf, grpc; print('import ok', gmf.__file__)")
        assert imported.returncode == 0 and "import ok /usr/src/app/gmf" in imported.stdout, imported.stderr
        port = free_port()
        script = (
            f"python examples/helloworld/server.py --port {port} --workers 1 >/tmp/server.log 2>&1 & pid=$!; "
            f"python -c \"$0\" {port} 60 || {{ cat /tmp/server.log; exit 3; }}; "
            f"python examples/helloworld/client.py --target 127.0.0.1:{port}; rc=$?; "
            "kill -INT $pid; wait $pid; exit $rc"
        )
        trip = devcontainer("exec", "bash", "-c", script, READY_PROBE, timeout=180)
        assert trip.returncode == 0 and "Hello" in trip.stdout, trip.stdout + trip.stderr
    finally:
        for box in docker_client.containers.list(all=True, filters={"label": LABEL}):
            box.remove(force=True)
