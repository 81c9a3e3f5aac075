"""Dispatch to a handler: path -> grpcio method handler -> deserialize, await servicer, serialize."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import helloworld_pb2
import helloworld_pb2_grpc
import pytest
from conftest import PATH, Wire

pytestmark = pytest.mark.benchmark(group="dispatch")


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):  # noqa: N802
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


class CapturingServer:
    """Stands in for a server: keeps what ``add_GreeterServicer_to_server`` registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (the handler) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("handler suspended")


def test_dispatch_grpcio_handler(benchmark, wire: Wire) -> None:
    server = CapturingServer()
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    table = server.handlers
    path = PATH.decode()
    payload = wire.message

    def dispatch() -> bytes:
        handler = table[path]
        request = handler.request_deserializer(payload)
        reply = run_coroutine(handler.unary_unary(request, None))
        return handler.response_serializer(reply)

    assert benchmark(dispatch) == helloworld_pb2.HelloReply(message="Hello world!").SerializeToString()


def test_gmf_dispatch(benchmark, wire: Wire) -> None:
    registry_mod = pytest.importorskip("gmf.rpc.registry")
    registry = registry_mod.MethodRegistry()
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), registry)
    cache = registry_mod.MethodCache(registry)
    path = PATH.decode()
    payload = wire.message

    def dispatch() -> bytes:
        method = cache.resolve(path, tuple)
        request = method.deserialize(payload)
        reply = run_coroutine(method.func(request, None))
        return method.serialize(reply)

    assert benchmark(dispatch) == helloworld_pb2.HelloReply(message="Hello world!").SerializeToString()
