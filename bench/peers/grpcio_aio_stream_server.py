"""Peer server: grpcio's ``grpc.aio`` server serving streambench.StreamBench, with the very
servicer GMF's examples/streambench/server.py serves (the streaming baseline).

python bench/peers/grpcio_aio_stream_server.py --port 50051
"""

from __future__ import annotations

from _common import add_streambench_to_path, parse_args, serve_aio

add_streambench_to_path()
from streambench_service import add_to_server  # noqa: E402


def main() -> None:
    args = parse_args("grpcio grpc.aio streaming benchmark server")
    serve_aio("grpcio-aio-stream", args.host, args.port, add_to_server)


if __name__ == "__main__":
    main()
