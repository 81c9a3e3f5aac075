"""The StreamBench servicer (proto/streambench/streambench.proto), shared by GMF's server
(server.py here) and grpcio's (bench/peers/grpcio_aio_stream_server.py): the same handler
code on both, so a benchmark compares the runtimes and nothing else."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
import streambench_pb2 as pb  # noqa: E402
import streambench_pb2_grpc  # noqa: E402

MAX_COUNT = 1_000_000  # the limits the proto states; grpc-go's peer enforces the same
MAX_SIZE = 1 << 20


class StreamBench(streambench_pb2_grpc.StreamBenchServicer):
    async def ServerStream(self, request: pb.StreamRequest, context) -> AsyncIterator[pb.Chunk]:
        if not 0 <= request.count <= MAX_COUNT or not 0 <= request.size <= MAX_SIZE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"count must be in [0, {MAX_COUNT}] and size in [0, {MAX_SIZE}]",
            )
        chunk = pb.Chunk(body=bytes(request.size))
        for _ in range(request.count):
            yield chunk

    async def BidiEcho(self, request_iterator: AsyncIterator[pb.Chunk], context) -> AsyncIterator[pb.Chunk]:
        async for chunk in request_iterator:
            yield chunk


def add_to_server(server) -> None:
    streambench_pb2_grpc.add_StreamBenchServicer_to_server(StreamBench(), server)
