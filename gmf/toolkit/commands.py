"""test / check / proto (and the harness tasks, in a container): the same commands natively or inside the dev container.

Inside the container a task runs as ``invoke <task>`` (natively there), so both paths share
one definition; exit codes and output pass through.
"""

from __future__ import annotations

import subprocess
import sys

from . import checkout, container
from .errors import note

MYPY_PATHS = ("gmf", "tasks.py", "bench", "soak")  # the package, the wiring and the dev harness


def native(cmd: list[str]) -> int:
    note(" ".join(cmd))
    try:
        return subprocess.call(cmd, cwd=checkout.root())
    except FileNotFoundError:
        note(f"{cmd[0]} not found: run `pip install -e .[dev]`")
        return 127
    except KeyboardInterrupt:
        return 130


def in_container(task_args: list[str], settings: container.Settings | None = None) -> int:
    """Run ``invoke <task_args>`` in the dev container."""
    return container.exec_in(settings or container.Settings(), ["invoke", *task_args])


def pytest_args(k: str | None, paths: list[str]) -> list[str]:
    return [*(["-k", k] if k else []), *paths]


def test(k: str | None = None, paths: list[str] | None = None) -> int:
    return native([sys.executable, "-m", "pytest", *pytest_args(k, paths or [])])


def check() -> int:
    """ruff, then mypy; both always run, the exit code is the first failure's."""
    codes = [
        native([sys.executable, "-m", "ruff", "check", "."]),
        native([sys.executable, "-m", "mypy", *MYPY_PATHS]),
    ]
    return next((c for c in codes if c), 0)


def proto() -> int:
    from gmf.toolkit import proto as proto_module

    proto_module.generate()
    return 0


def stats(url: str | None = None) -> int:
    """``invoke stats``: a running server's counters (``python -m gmf stats``)."""
    from gmf.exporter import stats_main

    return stats_main(["--url", url] if url else [])
