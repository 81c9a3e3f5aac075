"""What the hot path writes for a fixed set of inputs, as digests: run once per build and compare.

    python -m tests.helpers.transcript [--examples N]        # one JSON line on stdout
    python -m tests.helpers.transcript --examples N --draw S.pickle   # then, once per build:
    GMF_PURE_PYTHON=1 python -m tests.helpers.transcript --scenarios S.pickle

- ``fuzz``: the sha256 of all the scenarios (first), then of the server's bytes for each of
  the fuzz target's scenarios (tests/fuzzing: random and mutated frames into
  ``H2ServerConnection``, every invariant checked);
- ``rpc``: the sha256 of everything a real ``GrpcConnection`` (the worker's ``Acceptor``,
  the example services, bench/cost.py's client bytes) writes for unary, plain-def unary,
  server-streaming and bidi calls.

``build`` is ``gmf._native.build()``; which build runs is chosen the usual way
(``GMF_PURE_PYTHON=1`` for the pure one). tests/test_native.py runs this under both builds
and requires the same digests.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import gmf
from gmf import _native

RPC_KINDS = ("unary", "unary-sync", "stream", "bidi")


def draw_scenarios(examples: int) -> list[Any]:
    """The fuzz target's first ``examples`` scenarios (derandomized). Drawn in one process and
    handed to both builds' runs: hypothesis mixes in constants it finds in the source of the
    loaded modules, and compiled modules have none, so the two builds would draw different
    examples from the same seed."""
    from hypothesis import HealthCheck, given, settings

    from tests.fuzzing.h2_strategies import scenarios

    drawn: list[Any] = []

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(scenarios())
    def collect(scenario: Any) -> None:
        drawn.append(scenario)

    collect()
    return drawn


def fuzz_digests(drawn: list[Any]) -> list[str]:
    from tests.fuzzing.h2_target import run_scenario

    inputs = hashlib.sha256(repr(drawn).encode()).hexdigest()
    return [inputs, *(run_scenario(scenario, statistics=False) for scenario in drawn)]


def rpc_digests(reads: int) -> dict[str, str]:
    from bench.cost import CountingTransport, Workload

    class HashingTransport(CountingTransport):
        def __init__(self) -> None:
            super().__init__()
            self.digest = hashlib.sha256()

        def write(self, data: Any) -> None:
            super().write(data)
            self.digest.update(data)

    out: dict[str, str] = {}
    for kind in RPC_KINDS:
        work = Workload(kind, batch=8, timeout=kind == "unary", size=100)
        transport = work.transport = HashingTransport()
        work.start()
        work.run(reads)
        work.stop()
        out[kind] = f"{transport.digest.hexdigest()} ({transport.written} bytes in {transport.writes} writes)"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.transcript", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="fuzz scenarios")
    parser.add_argument("--scenarios", type=Path, help="a pickle of scenarios to run (else drawn here): see --draw")
    parser.add_argument("--draw", type=Path, help="only draw --examples scenarios into this pickle")
    parser.add_argument("--reads", type=int, default=20, help="client reads per RPC kind")
    args = parser.parse_args(argv)
    if args.draw:
        args.draw.write_bytes(pickle.dumps(draw_scenarios(args.examples)))
        return 0
    drawn = pickle.loads(args.scenarios.read_bytes()) if args.scenarios else draw_scenarios(args.examples)
    line: dict[str, Any] = {"fuzz": fuzz_digests(drawn), "rpc": rpc_digests(args.reads)}
    line["build"] = _native.build()
    line["files"] = {name: importlib.import_module(name).__file__ for name in _native.MODULES}
    line["version"] = gmf.__version__
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
