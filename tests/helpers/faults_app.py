"""Faulty handlers of every kind, async and plain def, for tests/rpc/test_faults.py and the
watchdog test. Registered by tests/helpers/apps.py as ``gmftest.FaultService`` (async) and
``gmftest.SyncFaultService`` (plain def); the request's ``action`` picks the fault:

- ``raise``: an exception (after two replies for response streams)
- ``hang``: never returns (async: waits forever; plain def: sleeps ``sleep_seconds`` in its thread)
- ``block_loop``: ``time.sleep(sleep_seconds)`` inside an async handler, blocking the event loop
- ``stats``: "open=N active=N cancelled=N finished_late=N" for this worker (open = calls open
  besides this one, active = faulty handlers still running)
"""

from __future__ import annotations

import asyncio
import time

import gmftest_pb2
import grpc

STATS = {"active": 0, "cancelled": 0, "finished_late": 0}


def _open_calls(context) -> int:
    server = context._call.conn.server  # GMF's ServicerContext -> its worker's state
    return sum(len(conn.calls) for conn in server.connections) - 1


def _stats(context) -> gmftest_pb2.EchoReply:
    return gmftest_pb2.EchoReply(message=f"open={_open_calls(context)} active={STATS['active']} "
                                         f"cancelled={STATS['cancelled']} finished_late={STATS['finished_late']}")


class _Running:
    """Counts a faulty handler while it runs, and how it ended."""

    def __init__(self, context) -> None:
        self.context = context

    def __enter__(self) -> None:
        STATS["active"] += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        STATS["active"] -= 1
        if exc_type is asyncio.CancelledError:
            STATS["cancelled"] += 1
        elif self.context.done():
            STATS["finished_late"] += 1  # a plain-def handler abandoned by its call, done now


async def _async_fault(request, context, kind: str) -> None:
    with _Running(context):
        if request.action == "raise":
            raise RuntimeError(f"fault in async {kind}")
        if request.action == "hang":
            await asyncio.get_running_loop().create_future()
        if request.action == "block_loop":
            time.sleep(request.sleep_seconds)


def _sync_fault(request, context, kind: str) -> None:
    with _Running(context):
        if request.action == "raise":
            raise RuntimeError(f"fault in sync {kind}")
        if request.action in ("hang", "block_loop"):
            time.sleep(request.sleep_seconds)


_REPLY = gmftest_pb2.EchoReply


async def a_unary(request, context):
    if request.action == "stats":
        return _stats(context)
    await _async_fault(request, context, "unary")
    return _REPLY(message="ok")


async def a_server_stream(request, context):
    yield _REPLY(index=0)
    yield _REPLY(index=1)
    await _async_fault(request, context, "server_stream")


async def a_client_stream(request_iterator, context):
    async for request in request_iterator:
        await _async_fault(request, context, "client_stream")
    return _REPLY(message="ok")


async def a_bidi(request_iterator, context):
    async for request in request_iterator:
        yield _REPLY(message=request.message)
        await _async_fault(request, context, "bidi")


def s_unary(request, context):
    _sync_fault(request, context, "unary")
    return _REPLY(message="ok")


def s_server_stream(request, context):
    yield _REPLY(index=0)
    yield _REPLY(index=1)
    _sync_fault(request, context, "server_stream")


def s_client_stream(request_iterator, context):
    for request in request_iterator:
        _sync_fault(request, context, "client_stream")
    return _REPLY(message="ok")


def s_bidi(request_iterator, context):
    for request in request_iterator:
        yield _REPLY(message=request.message)
        _sync_fault(request, context, "bidi")


def fault_handlers() -> tuple[grpc.GenericRpcHandler, ...]:
    des = gmftest_pb2.EchoRequest.FromString
    ser = gmftest_pb2.EchoReply.SerializeToString

    def service(name: str, unary, server_stream, client_stream, bidi) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(name, {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, des, ser),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, des, ser),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, des, ser),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi, des, ser),
        })

    return (service("gmftest.FaultService", a_unary, a_server_stream, a_client_stream, a_bidi),
            service("gmftest.SyncFaultService", s_unary, s_server_stream, s_client_stream, s_bidi))
