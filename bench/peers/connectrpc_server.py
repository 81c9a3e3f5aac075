"""Peer server: ``connectrpc`` (Connect, gRPC-Web and gRPC on ASGI) serving helloworld.Greeter
on uvicorn, the ASGI server its documentation shows, in one process.

python bench/peers/connectrpc_server.py --port 8080

uvicorn picks httptools and uvloop when they are installed (both are, with the [dev] extra):
that is its fastest configuration, so the comparison is against the peer at its best. Serves
``POST /helloworld.Greeter/SayHello`` as Connect (application/json, application/proto) and
gRPC-Web (application/grpc-web+proto) over HTTP/1.1 keep-alive.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn  # noqa: E402
from _common import parse_args, ready  # noqa: E402
from connect_gen import helloworld_pb2  # noqa: E402
from connect_gen.helloworld_connect import GreeterASGIApplication  # noqa: E402


class Greeter:
    async def say_hello(self, request, ctx):
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


app = GreeterASGIApplication(Greeter())


def main() -> None:
    args = parse_args("connectrpc helloworld server on uvicorn")
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    config.load()  # resolves loop/http implementations so the ready line can name them
    ready(f"connectrpc-uvicorn ({config.http_protocol_class.__name__}, loop={config.loop})", args.host, args.port)
    server.run()


if __name__ == "__main__":
    main()
