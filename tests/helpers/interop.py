"""grpc.testing.TestService, the servicer of gRPC's interop test cases
(doc/interop-test-descriptions.md in grpc/grpc: the "server features" EmptyCall, UnaryCall,
StreamingInputCall, StreamingOutputCall, FullDuplexCall, HalfDuplexCall, CompressedRequest,
CompressedResponse, Echo Status, Echo Metadata, interval_us). UnimplementedCall is left to the
generated base class, as the interop servers do: it sets UNIMPLEMENTED and raises.

The same servicer runs on GMF (the test server of ``apps.build_server``) and on grpcio's own
``grpc.aio`` server (``python -m tests.helpers.interop PORT``), so each case's outcome can be
compared with grpcio's.
"""

from __future__ import annotations

import asyncio

import empty_pb2  # importable: tests/helpers/__init__.py put the generated code on sys.path
import grpc
import messages_pb2
import test_pb2  # noqa: F401 - the services' descriptors (test_pb2_grpc imports only the messages'): for reflection
import test_pb2_grpc

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


def request_compressed(context) -> bool | None:
    """Whether the call's request messages came compressed: on GMF, from the request's
    ``grpc-encoding`` (the call's ``encoding``); None where the server does not say (grpcio's
    servicer context has no such accessor, which is why grpcio's own interop server does not
    implement CompressedRequest either). Like the C++ interop server's context inspector, a
    test-only look inside the server."""
    call = getattr(context, "_call", None)
    if call is None or not hasattr(call, "encoding"):
        return None
    return call.encoding not in (None, "identity")


async def _echo_metadata(context) -> None:
    """Echo Metadata: the initial key back as initial metadata, the trailing one as trailers."""
    metadata = dict(context.invocation_metadata())
    if ECHO_INITIAL in metadata:
        await context.send_initial_metadata(((ECHO_INITIAL, metadata[ECHO_INITIAL]),))
    if ECHO_TRAILING in metadata:
        context.set_trailing_metadata(((ECHO_TRAILING, metadata[ECHO_TRAILING]),))


async def _check_compression(expect, context) -> None:
    """CompressedRequest: expect_compressed set, but the request was not: INVALID_ARGUMENT."""
    if expect is None:
        return
    compressed = request_compressed(context)
    if compressed is not None and expect.value != compressed:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"expected a {'' if expect.value else 'un'}compressed request")


async def _echo_status(status, context) -> None:
    """Echo Status: end the call with the status the client asked for."""
    if status is not None and status.code:
        await context.abort(_STATUS.get(status.code, grpc.StatusCode.UNKNOWN), status.message)


_STATUS = {c.value[0]: c for c in grpc.StatusCode}


def _payload(size: int) -> messages_pb2.Payload:
    if size < 0:
        raise ValueError("negative payload size")
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=b"\x00" * size)


class InteropService(test_pb2_grpc.TestServiceServicer):
    async def EmptyCall(self, request, context):
        await _echo_metadata(context)
        return empty_pb2.Empty()

    async def UnaryCall(self, request, context):
        await _echo_metadata(context)
        if request.HasField("expect_compressed"):
            await _check_compression(request.expect_compressed, context)
        if request.HasField("response_status"):
            await _echo_status(request.response_status, context)
        if request.response_type != messages_pb2.COMPRESSABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported response type")
        if request.response_compressed.value:
            context.set_compression(grpc.Compression.Gzip)
        return messages_pb2.SimpleResponse(payload=_payload(request.response_size))

    async def CacheableUnaryCall(self, request, context):
        return await self.UnaryCall(request, context)

    async def StreamingInputCall(self, request_iterator, context):
        total = 0
        async for request in request_iterator:
            if request.HasField("expect_compressed"):
                await _check_compression(request.expect_compressed, context)
            total += len(request.payload.body)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    async def _respond(self, request, context, compressing: list[bool]) -> None:
        """One response per ResponseParameters; CompressedResponse per message (the call's
        compression is set before its first message, then switched off message by message)."""
        if not compressing[0] and any(p.compressed.value for p in request.response_parameters):
            context.set_compression(grpc.Compression.Gzip)
            compressing[0] = True
        for parameters in request.response_parameters:
            if parameters.interval_us:
                await asyncio.sleep(parameters.interval_us / 1e6)
            if compressing[0] and not parameters.compressed.value:
                context.disable_next_message_compression()
            await context.write(messages_pb2.StreamingOutputCallResponse(payload=_payload(parameters.size)))

    async def StreamingOutputCall(self, request, context):
        await _echo_status(request.response_status if request.HasField("response_status") else None, context)
        await self._respond(request, context, [False])

    async def FullDuplexCall(self, request_iterator, context):
        await _echo_metadata(context)
        compressing = [False]
        async for request in request_iterator:
            if request.HasField("response_status"):
                await _echo_status(request.response_status, context)
            await self._respond(request, context, compressing)

    async def HalfDuplexCall(self, request_iterator, context):
        requests = [request async for request in request_iterator]
        compressing = [False]
        for request in requests:
            await self._respond(request, context, compressing)


def add_to_server(server) -> None:
    test_pb2_grpc.add_TestServiceServicer_to_server(InteropService(), server)


async def _serve_grpcio(port: int) -> None:
    server = grpc.aio.server()
    add_to_server(server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"PORT {bound}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":  # grpcio's own server with the same servicer, for comparisons
    import sys

    asyncio.run(_serve_grpcio(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
