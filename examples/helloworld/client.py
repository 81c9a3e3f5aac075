"""helloworld client on grpcio: `python examples/helloworld/client.py [--target HOST:PORT] [--name NAME]`."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="GMF helloworld client (grpcio)")
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--name", default="world")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with grpc.insecure_channel(args.target) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)
        try:
            reply = stub.SayHello(helloworld_pb2.HelloRequest(name=args.name), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"RPC failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
            raise SystemExit(1) from None
    print(f"Greeter client received: {reply.message}")


if __name__ == "__main__":
    main()
