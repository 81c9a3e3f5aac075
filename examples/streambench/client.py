"""streambench client on grpcio: `python examples/streambench/client.py [--target HOST:PORT] [--count N] [--size B]`.

Calls ServerStream (N chunks of B bytes) and BidiEcho (N chunks sent, N echoed) once each and
prints what came back. For load, use the Go client: bench/peers/go/README.md (streamload)."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
import streambench_pb2 as pb  # noqa: E402
import streambench_pb2_grpc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="GMF streambench client (grpcio)")
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with grpc.insecure_channel(args.target) as channel:
        stub = streambench_pb2_grpc.StreamBenchStub(channel)
        try:
            chunks = list(stub.ServerStream(pb.StreamRequest(count=args.count, size=args.size), timeout=args.timeout))
            sent = (pb.Chunk(body=bytes([i % 256]) * args.size) for i in range(args.count))
            echoed = list(stub.BidiEcho(sent, timeout=args.timeout))
        except grpc.RpcError as exc:
            print(f"RPC failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
            raise SystemExit(1) from None
    print(f"ServerStream: {len(chunks)} chunks, {sum(len(c.body) for c in chunks)} bytes")
    print(f"BidiEcho: {len(echoed)} chunks echoed, {sum(len(c.body) for c in echoed)} bytes")


if __name__ == "__main__":
    main()
