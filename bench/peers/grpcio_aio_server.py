"""Peer server: grpcio's ``grpc.aio`` server serving helloworld.Greeter (the baseline).

python bench/peers/grpcio_aio_server.py --port 50051
"""

from __future__ import annotations

import asyncio
import signal

import grpc
from _common import add_helloworld_to_path, parse_args, ready

add_helloworld_to_path()
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):  # noqa: N802 - generated name
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server()
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready("grpcio-aio", host, port)
    await stop.wait()
    await server.stop(grace=1.0)


def main() -> None:
    args = parse_args("grpcio grpc.aio helloworld server")
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
