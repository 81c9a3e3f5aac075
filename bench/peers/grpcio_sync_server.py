"""Peer server: grpcio's synchronous (thread pool) server serving helloworld.Greeter.

python bench/peers/grpcio_sync_server.py --port 50051 [--block-ms 5]

``--block-ms`` makes the handler block that long (``time.sleep``: a database call).
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent import futures

import grpc
from _common import add_helloworld_to_path, parse_args, ready

add_helloworld_to_path()
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402

THREADS = 10  # grpcio's helloworld example uses a pool of 10


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def __init__(self, block_s: float) -> None:
        self.block_s = block_s

    def SayHello(self, request, context):  # noqa: N802 - generated name
        if self.block_s:
            time.sleep(self.block_s)
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


def main() -> None:
    args = parse_args("grpcio synchronous helloworld server", block=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=THREADS))
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(args.block_ms / 1000.0), server)
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ready("grpcio-sync", args.host, args.port)
    while not stop.wait(0.5):
        pass
    server.stop(grace=1.0).wait()


if __name__ == "__main__":
    main()
