"""Route guide: all four RPC kinds on GMF. `python examples/routeguide/server.py [--port N]`.

- GetFeature (unary-unary), ListFeatures (unary-stream, an async generator),
- RecordRoute (stream-unary, an async request iterator), RouteChat (stream-stream).
Servicer state (the notes of RouteChat) is per worker: workers share nothing.
"""

from __future__ import annotations

import math
import os
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

import route_guide_pb2 as pb  # noqa: E402
import route_guide_pb2_grpc  # noqa: E402


def make_features() -> list[pb.Feature]:
    """A small deterministic feature database (a grid of named points)."""
    features = []
    for lat in range(0, 10):
        for lng in range(0, 10):
            name = f"Feature {lat}/{lng}" if (lat + lng) % 3 else ""
            features.append(pb.Feature(name=name, location=pb.Point(latitude=lat * 10_000_000, longitude=lng * 10_000_000)))
    return features


def _distance(a: pb.Point, b: pb.Point) -> int:
    """Great-circle distance in metres (haversine), coordinates in E7 degrees."""
    factor = 1e7
    lat1, lat2 = math.radians(a.latitude / factor), math.radians(b.latitude / factor)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude / factor) - math.radians(a.longitude / factor)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return int(6371000 * 2 * math.atan2(math.sqrt(h), math.sqrt(1 - h)))


class RouteGuideServicer(route_guide_pb2_grpc.RouteGuideServicer):
    def __init__(self) -> None:
        self.db = make_features()
        self.notes: dict[tuple[int, int], list[pb.RouteNote]] = {}

    def _feature_at(self, point: pb.Point) -> pb.Feature:
        for feature in self.db:
            if feature.location == point:
                return feature
        return pb.Feature(name="", location=point)

    async def GetFeature(self, request, context):
        return self._feature_at(request)

    async def ListFeatures(self, request, context):
        lo_lat, hi_lat = sorted((request.lo.latitude, request.hi.latitude))
        lo_lng, hi_lng = sorted((request.lo.longitude, request.hi.longitude))
        for feature in self.db:
            if feature.name and lo_lat <= feature.location.latitude <= hi_lat and lo_lng <= feature.location.longitude <= hi_lng:
                yield feature

    async def RecordRoute(self, request_iterator, context):
        start = time.monotonic()
        count = features = distance = 0
        previous = None
        async for point in request_iterator:
            count += 1
            if self._feature_at(point).name:
                features += 1
            if previous is not None:
                distance += _distance(previous, point)
            previous = point
        return pb.RouteSummary(
            point_count=count, feature_count=features, distance=distance, elapsed_time=int(time.monotonic() - start)
        )

    async def RouteChat(self, request_iterator, context):
        async for note in request_iterator:
            key = (note.location.latitude, note.location.longitude)
            for previous in self.notes.get(key, []):
                yield previous
            self.notes.setdefault(key, []).append(note)


def main() -> None:
    from _common import server_from_args

    server, address = server_from_args("GMF route guide server")
    route_guide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuideServicer(), server)
    server.serve(address)


if __name__ == "__main__":
    main()
