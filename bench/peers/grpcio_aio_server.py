"""Peer server: grpcio's ``grpc.aio`` server serving helloworld.Greeter (the baseline).

python bench/peers/grpcio_aio_server.py --port 50051
"""

from __future__ import annotations

from _common import add_helloworld_to_path, parse_args, serve_aio

add_helloworld_to_path()
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):  # noqa: N802 - generated name
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


def main() -> None:
    args = parse_args("grpcio grpc.aio helloworld server")
    serve_aio(
        "grpcio-aio", args.host, args.port,
        lambda server: helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server),
    )


if __name__ == "__main__":
    main()
