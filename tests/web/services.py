"""The servicers the web acceptance tests call, written once in grpcio style.

GMF serves them as they are (``add_GreeterServicer_to_server``, tests/web/gmf_server.py). The ``connectrpc``
peer serves the same objects through :func:`connect_service`, an adapter from grpcio-style
handlers to connectrpc's generated service protocol, so both servers run the same behaviour:

- ``Greeter.SayHello``: ``name=""`` -> INVALID_ARGUMENT "name is required"; ``name="slow"``
  sleeps 5 s (deadline tests); otherwise "Hello NAME!";
- ``RouteGuide``: the example's servicer (examples/routeguide/server.py): ``GetFeature`` (marked
  NO_SIDE_EFFECTS, so Connect GET works), ``ListFeatures`` (server streaming), ...
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from typing import Any

import grpc
import helloworld_pb2  # importable: see tests/web/__init__.py
import helloworld_pb2_grpc
from routeguide.server import RouteGuideServicer  # noqa: F401  (re-exported)

SLOW_SECONDS = 5.0


class WebGreeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):  # noqa: N802 - generated name
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is required")
        if request.name == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


# ---------------------------------------------------------------------------- connectrpc adapter
class _Abort(Exception):
    pass


class _Context:
    """The part of ``grpc.aio.ServicerContext`` the servicers above use, over connectrpc's."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._start = time.monotonic()
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise _connect_error(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def time_remaining(self) -> float | None:
        ms = self._ctx.timeout_ms()
        return None if ms is None else max(0.0, ms / 1000.0 - (time.monotonic() - self._start))

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._ctx.request_headers().items())

    def check(self) -> None:
        if self.code is not None and self.code != grpc.StatusCode.OK:
            raise _connect_error(self.code, self.details)


def _connect_error(code: grpc.StatusCode, details: str) -> Exception:
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError

    name = "CANCELED" if code == grpc.StatusCode.CANCELLED else code.name
    return ConnectError(Code[name], details)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def connect_service(servicer: Any) -> Any:
    """An object with connectrpc's snake_case methods calling ``servicer``'s grpcio ones."""

    class Adapter:
        pass

    adapter = Adapter()
    for name, method in inspect.getmembers(servicer, callable):
        if not name[:1].isupper():
            continue
        if inspect.isasyncgenfunction(method):
            def stream(request: Any, ctx: Any, _m: Any = method) -> Any:
                async def gen() -> Any:
                    context = _Context(ctx)
                    async for item in _m(request, context):
                        yield item
                    context.check()
                return gen()
            setattr(adapter, _snake(name), stream)
        else:
            async def unary(request: Any, ctx: Any, _m: Any = method) -> Any:
                context = _Context(ctx)
                result = _m(request, context)
                if inspect.isawaitable(result):
                    result = await result
                context.check()
                return result
            setattr(adapter, _snake(name), unary)
    return adapter
