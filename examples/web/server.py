"""The RPC server of the browser example: helloworld and routeguide on GMF, which answers the
page's Connect and gRPC-Web calls (and gRPC) on one port.

python examples/web/server.py --port 8080 --cors-origin http://127.0.0.1:8000

``--cors-origin`` is the page's origin (where its files are served from): GMF answers the
browser's CORS preflight for it and adds the headers a cross-origin page needs to read the
replies. Without it only pages from the server's own origin (and curl) can call.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(EXAMPLES, "helloworld"), os.path.join(EXAMPLES, "routeguide"), EXAMPLES,
                os.path.dirname(EXAMPLES)]

import helloworld_pb2_grpc  # noqa: E402
import route_guide_pb2_grpc  # noqa: E402
from helloworld.server import Greeter  # noqa: E402
from routeguide.server import RouteGuideServicer  # noqa: E402

from gmf import GmfServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--cors-origin", action="append", default=[], help="an origin pages may call from")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU)")
    args = parser.parse_args()
    server = GmfServer(workers=args.workers, cors_origins=args.cors_origin)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    route_guide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuideServicer(), server)
    server.serve(f"{args.host}:{args.port}")


if __name__ == "__main__":
    main()
