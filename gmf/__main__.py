"""``python -m gmf``: version and runtime information; ``serve`` runs a server (gmf/cli.py);
``stats`` prints a running server's counters (gmf/exporter.py)."""

from __future__ import annotations

import argparse
import sys

from . import __version__, _native
from . import runtime as rt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stats"]:  # its own options: see gmf/exporter.py
        from .exporter import stats_main

        return stats_main(argv[1:])
    if argv[:1] == ["serve"]:  # its own options: see gmf/cli.py
        from .cli import serve

        return serve(argv[1:])
    parser = argparse.ArgumentParser(prog="gmf", description="GMF for Python: process-per-core gRPC server runtime")
    parser.add_argument("--version", action="version", version=f"gmf {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("runtime", help="print the runtime 'auto' selects here and why, and which build of the hot path runs")
    sub.add_parser("stats", help="print a running server's counters (read from its metrics_port)")
    sub.add_parser("serve", help="serve a GmfServer: gmf serve MODULE:ATTR [options] (see gmf serve --help)")
    args = parser.parse_args(argv)
    if args.command == "runtime":
        try:
            choice = rt.resolve("auto")
        except (ValueError, RuntimeError) as exc:
            print(f"gmf: error: {exc}", file=sys.stderr)
            return 1
        print(f"{choice.name}: {choice.reason}")
        print(f"hot path: {_native.build()['reason']}")  # the mypyc build or the pure one (gmf/_native.py)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
