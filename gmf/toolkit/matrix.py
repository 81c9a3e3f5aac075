"""``invoke test --python V|all``: the suite (or any part of it) on each tested Python.

For each version of pythons.TARGETS asked for: build its dev image (layer cache: seconds when
nothing changed; the base is made first when missing, pulled or debootstrapped), then run
pytest in a throwaway container of that image with the workspace mounted and the same
seccomp/io_uring, memlock and proxy settings as the dev container. pytest's output streams
through as it comes and its exit code is returned; with several versions each runs in turn
and a table sums them up at the end (the exit code is the first failure's).

``jobs > 1`` runs that many versions side by side, each in its own process
(``python -m gmf.toolkit.matrix``) writing to a log that is shown whole when it ends. The
suite mostly waits (timeouts, peers, sockets), so two versions take little longer than one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from . import checkout, container, engine, image, pythons
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


def run(spec: str, args: list[str], seccomp: str = "auto", memlock: int | None = None, jobs: int = 1) -> int:
    """pytest ``args`` on each Python of ``spec`` (``3.13``, ``3.11,3.14``, ``all``), ``jobs`` at a time."""
    targets = pythons.select(spec)
    if jobs < 1:
        raise ToolkitError(f"--jobs {jobs}: give 1 or more")
    engine.client()  # no engine: one clear error before anything else
    outcomes: list[Outcome] = []
    if jobs > 1 and len(targets) > 1:
        outcomes = side_by_side(targets, args, seccomp, memlock, jobs)
    else:
        for target in targets:
            outcomes.append(run_one(target, args, seccomp, memlock))
            if outcomes[-1].code == 130:
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


def side_by_side(targets: list[Target], args: list[str], seccomp: str, memlock: int | None,
                 jobs: int) -> list[Outcome]:
    """Up to ``jobs`` versions at once, each a ``python -m gmf.toolkit.matrix`` process of its own
    session (Ctrl-C reaches this process only, which then stops them: each removes its container)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout.root()), os.environ.get("PYTHONPATH")]))}
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="gmf-matrix-") as tmp, container.sigterm_as_interrupt():
        pending = list(targets)
        running: dict[subprocess.Popen[bytes], tuple[Target, Path, float]] = {}

        def finish(proc: subprocess.Popen[bytes], code: int) -> None:
            target, log, started = running.pop(proc)
            sys.stdout.write(log.read_text(errors="replace"))
            outcomes[target.python] = _read_report(log.with_suffix(".json"), target, code, time.monotonic() - started)
            note(f"Python {target.python}: {outcomes[target.python].result} ({_duration(time.monotonic() - started)})")

        try:
            while pending or running:
                while pending and len(running) < jobs:
                    target = pending.pop(0)
                    log = Path(tmp, f"{target.suite}.log")
                    cmd = [sys.executable, "-m", "gmf.toolkit.matrix", "--report", str(log.with_suffix(".json")),
                           "--seccomp", seccomp, *(["--memlock", str(memlock)] if memlock is not None else []),
                           target.python, "--", *args]
                    with log.open("wb") as out:
                        proc = subprocess.Popen(cmd, cwd=checkout.root(), env=env, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)
                    running[proc] = (target, log, time.monotonic())
                    note(f"Python {target.python}: started in the background (its output comes when it ends)")
                for proc in [p for p in running if p.poll() is not None]:
                    finish(proc, int(proc.returncode))
                time.sleep(0.2)
        except KeyboardInterrupt:
            note("stopping: each version removes its container")
            for proc in running:
                proc.send_signal(signal.SIGTERM)
            for proc in list(running):
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                finish(proc, 130)
    return [outcomes[t.python] for t in targets if t.python in outcomes]


def _read_report(path: Path, target: Target, code: int, seconds: float) -> Outcome:
    try:
        data = json.loads(path.read_text())
        return Outcome(target, int(data["code"]), str(data["summary"]), float(data["build_seconds"]),
                       float(data["test_seconds"]))
    except (OSError, ValueError, KeyError):
        return Outcome(target, code if code else 1, "(the run ended without a report: see its output)", 0.0, seconds)


def main(argv: list[str] | None = None) -> int:
    """One version, as ``side_by_side`` runs it: ``python -m gmf.toolkit.matrix [--report F] V -- ARGS``."""
    parser = argparse.ArgumentParser(prog="python -m gmf.toolkit.matrix")
    parser.add_argument("--report", type=Path, help="write the outcome here as JSON")
    parser.add_argument("--seccomp", default="auto")
    parser.add_argument("--memlock", type=int)
    parser.add_argument("python", choices=pythons.versions())
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    args = opts.pytest_args[1:] if opts.pytest_args[:1] == ["--"] else opts.pytest_args
    try:
        outcome = run_one(pythons.select(opts.python)[0], args, opts.seccomp, opts.memlock)
    except ToolkitError as exc:
        note(f"error: {exc}")
        return 1
    if opts.report is not None:
        report = {k: v for k, v in asdict(outcome).items() if k != "target"}
        opts.report.write_text(json.dumps(report))
    return outcome.code


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


if __name__ == "__main__":
    sys.exit(main())
