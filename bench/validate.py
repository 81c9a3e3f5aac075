"""Check a benchmark server with a real grpcio client (run as a script, in its own process).

HTTP status 200 from h2load does not prove gRPC success (grpc-status is in the trailers),
so the harness calls SayHello once per fresh channel before loading a server and checks
both the status and the reply; a streambench server (``--service streambench``) gets a
ServerStream and a BidiEcho call per channel instead.  It runs in a child process:
grpcio's C-core threads must not live in the harness, which starts (forks) servers.

    python -m bench.validate --port 50051 [--calls 4] [--service greeter|streambench]

Exit status 0 when every call returned OK with the expected answer ("Hello world!"; three
chunks of 10 bytes; the two chunks sent, echoed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench import ROOT, add_helloworld_to_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--calls", type=int, default=4, help="calls, each on a new channel/connection")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--service", choices=("greeter", "streambench"), default="greeter")
    args = parser.parse_args(argv)
    if args.service == "streambench":
        return check_streambench(args)
    add_helloworld_to_path()
    import grpc
    import helloworld_pb2  # type: ignore[import-not-found]
    import helloworld_pb2_grpc  # type: ignore[import-not-found]

    for i in range(args.calls):
        # A new channel per call means a new TCP connection: with SO_REUSEPORT that
        # reaches (probably) more than one worker.
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"{args.host}:{args.port}", options=options) as channel:
            stub = helloworld_pb2_grpc.GreeterStub(channel)
            try:
                reply, call = stub.SayHello.with_call(
                    helloworld_pb2.HelloRequest(name="world"), timeout=args.timeout
                )
            except grpc.RpcError as exc:
                print(f"call {i}: RPC failed: {exc.code()} {exc.details()}", file=sys.stderr)
                return 1
            if call.code() != grpc.StatusCode.OK or reply.message != "Hello world!":
                print(f"call {i}: unexpected reply {call.code()} {reply.message!r}", file=sys.stderr)
                return 1
    print(f"ok: {args.calls} call(s) answered 'Hello world!' with status OK")
    return 0


def check_streambench(args: Any) -> int:
    sys.path.insert(0, str(ROOT / "examples" / "streambench"))
    import grpc
    import streambench_pb2 as sb  # type: ignore[import-not-found]
    import streambench_pb2_grpc  # type: ignore[import-not-found]

    for i in range(args.calls):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"{args.host}:{args.port}", options=options) as channel:
            stub = streambench_pb2_grpc.StreamBenchStub(channel)
            try:
                chunks = [c.body for c in stub.ServerStream(sb.StreamRequest(count=3, size=10), timeout=args.timeout)]
                sent = [sb.Chunk(body=b"a" * 7), sb.Chunk(body=b"b" * 9)]
                echoed = [c.body for c in stub.BidiEcho(iter(sent), timeout=args.timeout)]
            except grpc.RpcError as exc:
                print(f"call {i}: RPC failed: {exc.code()} {exc.details()}", file=sys.stderr)
                return 1
            if chunks != [bytes(10)] * 3 or echoed != [c.body for c in sent]:
                print(f"call {i}: unexpected replies {chunks!r} {echoed!r}", file=sys.stderr)
                return 1
    print(f"ok: {args.calls} x (ServerStream, BidiEcho) answered as asked with status OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
