"""Server interceptors: ``grpc.aio.ServerInterceptor`` and ``grpc.ServerInterceptor``.

A server without interceptors never reaches this module. With interceptors, the per-worker
method cache is an :class:`InterceptedMethods`: every path resolves to a small request-streaming
placeholder method, so the connection starts it at once as a task; that task runs the chain
(per call, so interceptors can decide from the metadata), then serves the call with the handler
the chain returned (the registered one, a wrapped one, one that aborts) or UNIMPLEMENTED (None).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import grpc

from ..protocol import grpc as g
from .context import ServicerContext
from .registry import DEFAULT_OPTIONS, HandlerCallDetails, Method, MethodCache, MethodOptions, MethodRegistry
from .runner import RequestIterator, serve


def check_interceptors(interceptors: Iterable[Any]) -> tuple[Any, ...]:
    """Validate what ``GmfServer(interceptors=...)`` got; returns them as a tuple."""
    checked = tuple(interceptors)
    for interceptor in checked:
        if not callable(getattr(interceptor, "intercept_service", None)):
            raise TypeError(
                f"{interceptor!r} is not a server interceptor: it needs intercept_service(continuation, "
                "handler_call_details) (grpc.aio.ServerInterceptor or grpc.ServerInterceptor)"
            )
    return checked


class InterceptorChain:
    """Runs the interceptors in order; the last continuation looks the handler up."""

    def __init__(self, interceptors: Sequence[Any], registry: MethodRegistry) -> None:
        self._registry = registry
        self._steps = tuple(
            (i, isinstance(i, grpc.aio.ServerInterceptor) or inspect.iscoroutinefunction(i.intercept_service))
            for i in interceptors
        )

    async def resolve(self, details: HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return await self._next(0, details)

    async def _next(self, index: int, details: Any) -> grpc.RpcMethodHandler | None:
        if index == len(self._steps):
            return self._registry.lookup(details.method, details.invocation_metadata)
        interceptor, is_async = self._steps[index]
        if is_async:  # grpc.aio style: async continuation
            result = interceptor.intercept_service(functools.partial(self._next, index + 1), details)
            return await result if inspect.isawaitable(result) else result  # type: ignore[no-any-return]
        # grpc.ServerInterceptor: its continuation is a plain function
        return interceptor.intercept_service(functools.partial(self._next_now, index + 1), details)  # type: ignore[no-any-return]

    def _next_now(self, index: int, details: Any) -> grpc.RpcMethodHandler | None:
        """The rest of the chain, run to completion without the event loop (for a sync
        continuation). Async interceptors below only await their continuation, which does not
        suspend; one that waits for I/O there cannot be run from a sync continuation."""
        coro = self._next(index, details)
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        coro.close()
        raise RuntimeError(
            "an async interceptor below a sync grpc.ServerInterceptor waited for I/O: list the sync "
            "interceptors after the async ones"
        )


class InterceptedMethods(MethodCache):
    """The method cache of a server with interceptors (see the module docstring)."""

    def __init__(self, registry: MethodRegistry, interceptors: Sequence[Any],
                 options: MethodOptions = DEFAULT_OPTIONS) -> None:
        super().__init__(registry, options)
        self._chain = InterceptorChain(interceptors, registry)
        self._placeholders: dict[str, Method] = {}

    def resolve(self, path: str, metadata_factory: Any) -> Method:
        method = self._placeholders.get(path)
        if method is None:
            method = Method(path, grpc.stream_unary_rpc_method_handler(self._serve))
            if self._registry.registered(path) is not None:  # unknown paths are not cached
                self._placeholders[path] = method
        return method

    async def _serve(self, requests: RequestIterator, context: ServicerContext) -> None:
        call = context._call
        details = HandlerCallDetails(call.path, call.metadata)
        handler = await self._chain.resolve(details)
        if handler is None:
            raise g.GrpcError(g.UNIMPLEMENTED, "Method not found!")
        call.method = method = self.method_for(call.path, handler)
        if not method.request_streaming:  # a unary-request handler starts with the first message
            # (or the end of the stream), so a handler that aborts answers a request stream too
            await call.wait_readable()
            if call.finished:
                return
        await serve(call)  # finishes the call; the placeholder's own reply is then a no-op
