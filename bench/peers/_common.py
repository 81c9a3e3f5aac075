"""Shared bits of the peer servers: CLI shape and import path of the generated helloworld code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELLOWORLD = ROOT / "examples" / "helloworld"


def add_helloworld_to_path() -> None:
    """Make the committed ``helloworld_pb2`` / ``helloworld_pb2_grpc`` importable."""
    path = str(HELLOWORLD)
    if path not in sys.path:
        sys.path.insert(0, path)


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=50051, help="TCP port to listen on (default 50051)")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    return parser.parse_args(argv)


def ready(name: str, host: str, port: int) -> None:
    print(f"{name} listening on {host}:{port}", flush=True)
