"""``invoke test --python V|all``: the suite (or any part of it) on each tested Python.

For each version of pythons.TARGETS asked for: build its dev image (layer cache: seconds when
nothing changed; the base is made first when missing, pulled or debootstrapped), then run
pytest in a throwaway container of that image with the workspace mounted and the same
seccomp/io_uring, memlock and proxy settings as the dev container. pytest's output streams
through as it comes and its exit code is returned; with several versions each runs in turn
and a table sums them up at the end (the exit code is the first failure's).
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from dataclasses import dataclass

from . import container, engine, image, pythons
from .commands import pytest_command
from .errors import ToolkitError, note
from .pythons import Target

# Passed into the containers: what CI requires of them (io_uring must run there, not skip).
FORWARDED_ENV = ("GMF_REQUIRE_URING",)
# pytest's last line: "3 failed, 410 passed, 2 skipped in 171.20s (0:02:51)" (or with -q, no '=').
SUMMARY = re.compile(r"\b\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)\b.* in [\d.]+s")
PYTEST_CODES = {0: "passed", 1: "FAILED", 2: "interrupted", 3: "internal error", 4: "usage error",
                5: "no tests collected", 130: "interrupted"}


@dataclass
class Outcome:
    target: Target
    code: int
    summary: str
    build_seconds: float
    test_seconds: float

    @property
    def result(self) -> str:
        return PYTEST_CODES.get(self.code, f"exit {self.code}")


def run(spec: str, args: list[str], seccomp: str = "auto", memlock: int | None = None) -> int:
    """pytest ``args`` on each Python of ``spec`` (``3.13``, ``3.11,3.14``, ``all``)."""
    targets = pythons.select(spec)
    engine.client()  # no engine: one clear error before anything else
    outcomes: list[Outcome] = []
    for target in targets:
        outcome = run_one(target, args, seccomp, memlock)
        outcomes.append(outcome)
        if outcome.code == 130:
            break  # Ctrl-C / SIGTERM stops the whole matrix
    if len(targets) > 1:
        print(table(outcomes), flush=True)
    return next((o.code for o in outcomes if o.code), 0)


def run_one(target: Target, args: list[str], seccomp: str, memlock: int | None) -> Outcome:
    started = time.monotonic()
    try:
        tag = image.build_dev(target, compact=True)
    except ToolkitError as exc:
        note(f"Python {target.python}: the image {target.dev_tag} did not build: {exc}")
        return Outcome(target, 1, f"image build failed: {exc}", time.monotonic() - started, 0.0)
    built = time.monotonic()
    settings = container.Settings(name=f"gmf-pytest-{target.suite}-{os.getpid()}", image=tag, seccomp=seccomp,
                                  memlock=memlock)
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    # no cache provider: the workspace is shared with the host's own (other Python's) runs
    command = pytest_command("python", ["-p", "no:cacheprovider", *args])
    tail: deque[str] = deque(maxlen=40)
    code = container.run_throwaway(settings, command, env=env, on_line=tail.append)
    summary = next((m.group(0) for line in reversed(tail) if (m := SUMMARY.search(line))), "")
    return Outcome(target, code, summary or "(no pytest summary line)", built - started, time.monotonic() - built)


def _duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


def table(outcomes: list[Outcome]) -> str:
    """The summary of a matrix run, one row per Python."""
    rows = [("Python", "Debian", "result", "build", "tests", "pytest")]
    rows += [(o.target.python, o.target.suite, o.result, _duration(o.build_seconds), _duration(o.test_seconds),
              o.summary) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join(["", rule, lines[0], rule, *lines[1:], rule])
