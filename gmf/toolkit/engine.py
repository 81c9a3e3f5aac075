"""Connecting to the Docker engine (docker SDK), with a clear error when there is none."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from .errors import ToolkitError

# The docker SDK ships no type information: its client is Any to mypy.
Client = Any



def engine_address() -> str:
    """Where the SDK will look for the engine (DOCKER_HOST or the default socket)."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _connect() -> Client:
    try:
        from docker.errors import DockerException

        import docker
    except ImportError as exc:
        raise ToolkitError(
            "the docker SDK is not installed: run `pip install -e .[toolkit]` (or use --native)"
        ) from exc
    try:
        quick = docker.from_env(timeout=10)  # type: ignore[attr-defined,unused-ignore]
        quick.ping()  # a dead or unreachable engine fails here in seconds
        quick.close()
        client = docker.from_env(timeout=600)  # type: ignore[attr-defined,unused-ignore]  # builds are long
    except (DockerException, OSError) as exc:
        raise ToolkitError(
            f"no Docker engine at {engine_address()}; start Docker or use --native ({_short(exc)})"
        ) from None
    return client


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


@lru_cache(maxsize=1)
def client() -> Client:
    """The engine client (one per process); raises ToolkitError when none answers."""
    return _connect()


def available() -> bool:
    """True when a Docker engine answers (used to pick container vs native by default)."""
    try:
        client()
    except ToolkitError:
        return False
    return True


def api_error(exc: BaseException, doing: str) -> ToolkitError:
    """Turn an SDK/API failure into a ToolkitError that says what was being done."""
    explanation = getattr(exc, "explanation", None) or _short(exc)
    return ToolkitError(f"{doing} failed: {explanation}")
