"""The streaming benchmark service served by GMF: `python examples/streambench/server.py [--port N]`
(the options of every example: --workers, --cpu, --runtime, ...), or
`gmf serve examples.streambench.server:create_server --bind 0.0.0.0:50051` (from the repo root).

ServerStream sends `count` chunks of `size` bytes; BidiEcho sends each chunk back. The
same servicer runs on grpcio (bench/peers/grpcio_aio_stream_server.py) and the same methods
on grpc-go (bench/peers/go/streambench), for the streaming rows of the benchmark."""

from __future__ import annotations

import os
import sys

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

from _common import server_from_args  # noqa: E402
from streambench_service import add_to_server  # noqa: E402

from gmf import GmfServer  # noqa: E402


def create_server(server: GmfServer | None = None) -> GmfServer:
    """The factory `gmf serve` calls (with no arguments): a GmfServer serving StreamBench."""
    server = server or GmfServer()
    add_to_server(server)
    return server


def main() -> None:
    server, address = server_from_args("GMF streaming benchmark server")
    create_server(server).serve(address)


if __name__ == "__main__":
    main()
