"""The helloworld Greeter served by GMF: `python examples/helloworld/server.py [--port N]`,
or `gmf serve examples.helloworld.server:create_server --bind 0.0.0.0:50051` (from the repo root)."""

from __future__ import annotations

import os
import sys

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402
from _common import server_from_args  # noqa: E402

from gmf import GmfServer  # noqa: E402


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


def create_server(server: GmfServer | None = None) -> GmfServer:
    """The factory `gmf serve` calls (with no arguments): a GmfServer serving the Greeter, with
    health checking and reflection as the script serves them (`grpcurl ... list` works)."""
    server = server or GmfServer(health=True, reflection=True)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    return server


def main() -> None:
    server, address = server_from_args("GMF helloworld server")
    create_server(server).serve(address)


if __name__ == "__main__":
    main()
