"""Shared bits of the peer servers: CLI shape and import path of the generated helloworld code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HELLOWORLD = ROOT / "examples" / "helloworld"
STREAMBENCH = ROOT / "examples" / "streambench"


def _add_to_path(directory: Path) -> None:
    path = str(directory)
    if path not in sys.path:
        sys.path.insert(0, path)


def add_helloworld_to_path() -> None:
    """Make the committed ``helloworld_pb2`` / ``helloworld_pb2_grpc`` importable."""
    _add_to_path(HELLOWORLD)


def add_streambench_to_path() -> None:
    """Make ``streambench_pb2`` / ``streambench_pb2_grpc`` and the shared servicer importable."""
    _add_to_path(STREAMBENCH)


def parse_args(description: str, argv: list[str] | None = None, block: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=50051, help="TCP port to listen on (default 50051)")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    if block:
        parser.add_argument("--block-ms", type=float, default=0.0, help="the handler sleeps this long (ms)")
    return parser.parse_args(argv)


def ready(name: str, host: str, port: int) -> None:
    print(f"{name} listening on {host}:{port}", flush=True)


def serve_aio(name: str, host: str, port: int, add: Callable[[Any], None]) -> None:
    """Run a ``grpc.aio`` server with the servicers ``add(server)`` registers until SIGINT/SIGTERM."""
    import asyncio
    import signal

    import grpc

    async def serve() -> None:
        server = grpc.aio.server()
        add(server)
        server.add_insecure_port(f"{host}:{port}")
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready(name, host, port)
        await stop.wait()
        await server.stop(grace=1.0)

    asyncio.run(serve())
