"""GMF serving the web acceptance tests' servicers (tests/web/services.py): helloworld and
routeguide registered with the generated ``add_XServicer_to_server``, one worker, one runtime.

python -m tests.web.gmf_server --port 8080 --runtime uring --cors-origin http://127.0.0.1:9000

gRPC (HTTP/2), gRPC-Web and Connect (HTTP/1.1 and HTTP/2) on the same port. Short head and
body timeouts (1 s) so the slowloris tests of test_web_hostile.py take a second. Runs until
SIGTERM/SIGINT (graceful stop).
"""

from __future__ import annotations

import argparse

import helloworld_pb2_grpc  # importable: see tests/web/__init__.py
import route_guide_pb2_grpc

from gmf import GmfServer, Placement
from tests.web.services import RouteGuideServicer, WebGreeter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--cors-origin", action="append", default=[])
    parser.add_argument("--timeouts", type=float, default=1.0, help="handshake_timeout and http1_body_timeout")
    args = parser.parse_args()
    server = GmfServer(placement=Placement.fixed(0), runtime=args.runtime, cors_origins=args.cors_origin,
                       handshake_timeout=args.timeouts, http1_body_timeout=args.timeouts, grace=2.0)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(WebGreeter(), server)
    route_guide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuideServicer(), server)
    server.serve(f"{args.host}:{args.port}")


if __name__ == "__main__":
    main()
