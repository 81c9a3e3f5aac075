"""Fixtures for the toolkit tests: a real Docker engine, images built once per session.

Docker tests (``@pytest.mark.docker``) skip with the reason when no engine answers, except
with GMF_REQUIRE_DOCKER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.toolkit.toolkit_helpers import TEST_CONTAINER, invoke, need


@pytest.fixture(scope="session")
def docker_client() -> Any:
    from gmf.toolkit import engine
    from gmf.toolkit.errors import ToolkitError

    try:
        return engine.client()
    except ToolkitError as exc:
        need(False, str(exc))


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> subprocess.CompletedProcess[str]:
    """`invoke base-image`, once (debootstrap on a cold engine without a registry)."""
    return invoke("base-image", check=True)


@pytest.fixture(scope="session")
def dev_image(base_image: Any) -> subprocess.CompletedProcess[str]:
    """`invoke build-image`, once (cached layers make it seconds on a warm engine)."""
    return invoke("build-image", check=True)


@pytest.fixture(scope="session")
def dev_container(dev_image: Any, docker_client: Any) -> Iterator[str]:
    """The test dev container (gmf-test-dev), removed at the end of the session."""
    invoke("container.up", check=True)
    yield TEST_CONTAINER
    invoke("container.down")
