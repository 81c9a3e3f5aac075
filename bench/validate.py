"""Check a helloworld server with a real grpcio client (run as a script, in its own process).

HTTP status 200 from h2load does not prove gRPC success (grpc-status is in the trailers),
so the harness calls SayHello once per fresh channel before loading a server and checks
both the status and the reply.  It runs in a child process: grpcio's C-core threads must
not live in the harness, which starts (forks) servers.

    python -m bench.validate --port 50051 [--calls 4]

Exit status 0 when every call returned OK with message "Hello world!".
"""

from __future__ import annotations

import argparse
import sys

from bench import add_helloworld_to_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--calls", type=int, default=4, help="calls, each on a new channel/connection")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
