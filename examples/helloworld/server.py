"""The helloworld Greeter served by GMF: `python examples/helloworld/server.py [--port N]`."""

from __future__ import annotations

import os
import sys

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402
from _common import server_from_args  # noqa: E402


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


def main() -> None:
    server, address = server_from_args("GMF helloworld server")
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    server.serve(address)


if __name__ == "__main__":
    main()
