"""GMF serving helloworld.Greeter with a plain ``def`` handler, the way a grpcio service moving to
GMF has it (``gmf.server(...)``, GMF's defaults): the sync-handler rows of the benchmark.

python bench/peers/gmf_sync_server.py --port 50051 [--cpu C] [--block-ms 5] [--sync-handlers auto|threads|inline]

``--block-ms`` makes the handler block that long (``time.sleep``: a database call); ``--cpu``
runs one worker pinned there, else one worker per CPU.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from _common import ROOT, add_helloworld_to_path, ready

sys.path.insert(0, str(ROOT))
add_helloworld_to_path()
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402

import gmf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--cpu", type=int, default=None, help="one worker pinned to this CPU")
    parser.add_argument("--block-ms", type=float, default=0.0, help="the handler sleeps this long")
    parser.add_argument("--sync-handlers", default="auto", choices=["auto", "threads", "inline"])
    args = parser.parse_args()
    block = args.block_ms / 1000.0

    class Greeter(helloworld_pb2_grpc.GreeterServicer):
        def SayHello(self, request, context):  # noqa: N802 - generated name
            if block:
                time.sleep(block)
            return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")

    options = {"placement": gmf.Placement.fixed(args.cpu)} if args.cpu is not None else {}
    server = gmf.server(sync_handlers=args.sync_handlers, **options)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop(1.0))
    ready(f"gmf-sync (sync_handlers={args.sync_handlers}, block {args.block_ms:g} ms)", args.host, args.port)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
