"""``invoke fuzz``: the HTTP/2 fuzz target of tests/fuzzing/test_fuzz_h2.py, run longer.

python -m tests.fuzzing --examples 20000          # a fixed number of examples
python -m tests.fuzzing --minutes 30              # as many as fit in the time
python -m tests.fuzzing --seed 1234 --examples 500   # replay one batch exactly

Examples run in batches of ``--batch`` with consecutive seeds, so any failure is replayed by
its batch's seed; the report also shows the shrunk failing scenario and a
``@reproduce_failure`` blob. The strategies and invariants are this package's
``h2_strategies`` and ``h2_target`` (they need the ``hypothesis`` package of the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from typing import Any

PROGRESS_EVERY_S = 5.0


class _Progress:
    def __init__(self, total: int | None, deadline: float | None) -> None:
        self.total = total
        self.deadline = deadline
        self.count = 0
        self.start = time.monotonic()
        self.last = self.start

    def tick(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            print(f"fuzz: {self.line()}", flush=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        of = f"/{self.total}" if self.total else ""
        return f"{self.count}{of} examples in {elapsed:.0f}s ({self.count / max(elapsed, 1e-9):.0f}/s)"

    def done(self) -> bool:
        if self.total is not None and self.count >= self.total:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline


def run(examples: int | None = None, minutes: float | None = None, seed: int | None = None, batch: int = 500) -> int:
    """Run the fuzz target; 0 if every example held every invariant, 1 on the first failure."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    from .h2_strategies import scenarios  # hypothesis is imported only when the fuzzer runs
    from .h2_target import run_scenario

    if examples is None and minutes is None:
        examples = 10_000
    deadline = time.monotonic() + minutes * 60 if minutes is not None else None
    progress = _Progress(examples, deadline)
    base = seed if seed is not None else random.randrange(1 << 30)
    print(f"fuzz: H2ServerConnection, {examples or 'unlimited'} examples"
          f"{f' or {minutes:g} min' if minutes else ''}, batches of {batch} from seed {base}", flush=True)
    index = 0
    while not progress.done():
        remaining = examples - progress.count if examples is not None else batch
        size = max(1, min(batch, remaining))
        batch_seed = base + index
        index += 1

        @hseed(batch_seed)
        @settings(max_examples=size, database=None, deadline=None, print_blob=True,
                  suppress_health_check=list(HealthCheck))
        @given(scenarios(max_frames=48))
        def check(scenario: Any) -> None:
            progress.tick()
            run_scenario(scenario)

        try:
            check()
        except Exception as exc:  # an invariant broke: hypothesis attached the shrunk example as notes
            print("".join(traceback.format_exception(exc)), flush=True)
            print(f"fuzz: FAILED after {progress.line()}: {type(exc).__name__}: {exc}", flush=True)
            print(f"fuzz: replay with: invoke fuzz --seed {batch_seed} --examples {size} --batch {size}", flush=True)
            return 1
    print(f"fuzz: OK, {progress.line()}, every invariant held", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzzing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=None, help="number of examples (default 10000)")
    parser.add_argument("--minutes", type=float, default=None, help="run for this long instead")
    parser.add_argument("--seed", type=int, default=None, help="first batch seed (default random)")
    parser.add_argument("--batch", type=int, default=500, help="examples per seed")
    args = parser.parse_args(argv)
    return run(args.examples, args.minutes, args.seed, args.batch)


if __name__ == "__main__":
    sys.exit(main())
