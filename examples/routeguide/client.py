"""Route guide client on grpcio exercising all four RPC kinds."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
import route_guide_pb2 as pb  # noqa: E402
import route_guide_pb2_grpc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="GMF route guide client (grpcio)")
    parser.add_argument("--target", default="127.0.0.1:50051")
    args = parser.parse_args()
    with grpc.insecure_channel(args.target) as channel:
        stub = route_guide_pb2_grpc.RouteGuideStub(channel)
        feature = stub.GetFeature(pb.Point(latitude=10_000_000, longitude=0), timeout=10)
        print(f"GetFeature: {feature.name!r}")
        rect = pb.Rectangle(lo=pb.Point(latitude=0, longitude=0), hi=pb.Point(latitude=30_000_000, longitude=30_000_000))
        names = [f.name for f in stub.ListFeatures(rect, timeout=10)]
        print(f"ListFeatures: {len(names)} features")
        points = [pb.Point(latitude=i * 10_000_000, longitude=i * 10_000_000) for i in range(5)]
        summary = stub.RecordRoute(iter(points), timeout=10)
        print(f"RecordRoute: {summary.point_count} points, {summary.feature_count} features, {summary.distance} m")
        notes = [pb.RouteNote(location=pb.Point(latitude=1, longitude=1), message=f"note {i}") for i in range(3)]
        replies = [n.message for n in stub.RouteChat(iter(notes), timeout=10)]
        print(f"RouteChat: {replies}")


if __name__ == "__main__":
    main()
