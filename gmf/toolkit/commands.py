"""test / check / proto (and the harness tasks, in a container): the same commands natively or inside the dev container.

Inside the container a task runs as ``invoke <task>`` (natively there), so both paths share
one definition; exit codes and output pass through. Arguments after ``--`` on the command
line (``invoke test -- -x --lf``) go to pytest unchanged.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys

from . import checkout, container
from .errors import ToolkitError, note

MYPY_PATHS = ("gmf", "tasks.py", "bench", "soak")  # the package, the wiring and the dev harness

DEV_HINT = ("install the dev extra into this Python: `python3 -m pip install -e '.[dev]'` (on a Debian/Ubuntu "
            "system Python, in a venv first: `python3 -m venv .venv && . .venv/bin/activate`), "
            "or run it in the dev container with --container")


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


def passthrough(remainder: str, argv: list[str] | None = None) -> list[str]:
    """The words after ``--`` as the shell split them (Invoke hands tasks only their space-joined
    text, which loses quoting: ``-k "a or b"``); falls back to splitting that text."""
    argv = sys.argv if argv is None else argv
    if "--" in argv:
        words = argv[argv.index("--") + 1:]
        if " ".join(words) == remainder:
            return words
    return shlex.split(remainder)


def pytest_args(k: str | None, paths: list[str], extra: list[str] | None = None) -> list[str]:
    """``-k``, paths, then the user's own arguments."""
    return [*(["-k", k] if k else []), *paths, *(extra or [])]


def pytest_command(python: str, args: list[str]) -> list[str]:
    """pytest with every skip/xfail/failure reason shown (-ra; the user's ``-r`` comes later and wins)."""
    return [python, "-m", "pytest", "-ra", *args]


def require_modules(*modules: str) -> None:
    """A ToolkitError naming the fix when this Python lacks a dev tool (not `No module named`)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ToolkitError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed for "
                           f"{sys.executable}: {DEV_HINT}")


def test(k: str | None = None, paths: list[str] | None = None, extra: list[str] | None = None) -> int:
    require_modules("pytest")
    return native(pytest_command(sys.executable, pytest_args(k, paths or [], extra)))


def check() -> int:
    """ruff, then mypy; both always run, the exit code is the first failure's."""
    require_modules("ruff", "mypy")
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
