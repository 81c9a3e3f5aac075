"""Shared command-line options for the example servers."""

from __future__ import annotations

import argparse

from gmf import GmfServer, Placement


def server_from_args(description: str, default_port: int = 50051) -> tuple[GmfServer, str]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=default_port, help=f"port (default {default_port})")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU)")
    parser.add_argument("--cpu", type=int, default=None, help="run one worker pinned to this CPU")
    parser.add_argument("--runtime", default="auto", choices=["auto", "uring", "uvloop", "asyncio"])
    parser.add_argument("--max-connections", type=int, default=10240, help="per worker")
    args = parser.parse_args()
    placement = Placement.fixed(args.cpu) if args.cpu is not None else None
    server = GmfServer(
        workers=args.workers, placement=placement, runtime=args.runtime, max_connections=args.max_connections,
        health=True, reflection=True,  # grpc.health.v1 and `grpcurl -plaintext HOST:PORT list` work
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    return server, f"{host}:{args.port}"
