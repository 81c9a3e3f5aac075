"""The soak server: helloworld's Greeter plus two streaming methods, served by GMF.

    PYTHONPATH=. python soak/server.py --port P [--workers 2]

- ``/soak.Stream/Count`` (unary-stream): HelloRequest(name="N") -> N HelloReply messages.
- ``/soak.Stream/Echo`` (stream-stream): one HelloReply per HelloRequest, same name.
The helloworld messages are reused, so the client needs no other generated code.
"""

from __future__ import annotations

import argparse

from bench import add_helloworld_to_path

add_helloworld_to_path()

import grpc  # noqa: E402
import helloworld_pb2 as pb  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402

from gmf import GmfServer  # noqa: E402

STREAM_SERVICE = "soak.Stream"


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):
        return pb.HelloReply(message=f"Hello {request.name}!")


async def count(request, context):
    for i in range(int(request.name or 0)):
        yield pb.HelloReply(message=str(i))


async def echo(request_iterator, context):
    async for request in request_iterator:
        yield pb.HelloReply(message=request.name)


def stream_handlers() -> grpc.GenericRpcHandler:
    des, ser = pb.HelloRequest.FromString, pb.HelloReply.SerializeToString
    return grpc.method_handlers_generic_handler(STREAM_SERVICE, {
        "Count": grpc.unary_stream_rpc_method_handler(count, des, ser),
        "Echo": grpc.stream_stream_rpc_method_handler(echo, des, ser),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runtime", default="auto")
    args = parser.parse_args()
    server = GmfServer(workers=args.workers, runtime=args.runtime, grace=2.0)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    server.add_generic_rpc_handlers((stream_handlers(),))
    server.serve(f"127.0.0.1:{args.port}")


if __name__ == "__main__":
    main()
