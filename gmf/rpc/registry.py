"""Method registry: what grpcio-generated ``add_XServicer_to_server`` hands a server."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from .._native import mypyc_attr
from . import inline


class HandlerCallDetails:
    """What a ``grpc.GenericRpcHandler.service()`` is asked about."""

    __slots__ = ("method", "invocation_metadata")

    def __init__(self, method: str, invocation_metadata: tuple[tuple[str, Any], ...]) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata


class MethodRegistry:
    """Registered handlers by full path (``/pkg.Service/Method``), then generic handlers."""

    def __init__(self) -> None:
        self._registered: dict[str, grpc.RpcMethodHandler] = {}
        self._generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        for handler in handlers:
            if not hasattr(handler, "service"):
                raise TypeError(f"{handler!r} is not a grpc.GenericRpcHandler (it has no service() method)")
            self._generic.append(handler)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        for method, handler in method_handlers.items():
            self._registered[f"/{service_name}/{method}"] = handler

    def registered(self, path: str) -> grpc.RpcMethodHandler | None:
        """The handler registered for exactly this path (what generated code registers)."""
        return self._registered.get(path)

    def service_names(self) -> list[str]:
        """Every service registered so far: from registered paths and from generic handlers
        that name their service (``grpc.method_handlers_generic_handler`` does)."""
        names = {path.split("/")[1] for path in self._registered}
        for generic in self._generic:
            name = getattr(generic, "service_name", None)
            if callable(name):
                names.add(name())
        return sorted(names)

    def lookup(self, path: str, metadata: tuple[tuple[str, Any], ...] = ()) -> grpc.RpcMethodHandler | None:
        handler = self._registered.get(path)
        if handler is not None:
            return handler
        details = HandlerCallDetails(path, metadata)
        for generic in self._generic:
            found = generic.service(details)
            if found is not None:
                return found  # type: ignore[no-any-return]
        return None


@dataclass(frozen=True)
class MethodOptions:
    """The server options that decide how a method's handler runs (from ServerOptions)."""

    sync_handlers: str = "auto"  # plain-def unary handlers: "auto" (the placement rule), "threads", "inline"
    # Where grpcio's two servers answer differently, answer as grpc.aio ("aio") or grpc.server
    # ("sync") does: a handler exception's details, time_remaining() without a deadline.
    grpcio_flavor: str = "aio"


DEFAULT_OPTIONS = MethodOptions()


class Method:
    """A resolved RPC method: the grpcio handler plus what dispatch needs, computed once."""

    __slots__ = (
        "path",
        "handler",
        "func",
        "is_async",
        "request_streaming",
        "response_streaming",
        "deserialize",
        "serialize",
        "sync_mode",  # where a plain-def handler runs: "auto", "threads", "inline" (gmf.rpc.inline)
        "inline",  # a plain-def unary handler runs on the event loop now
        "quick_runs",  # quick thread runs in a row (the placement rule)
        "strikes",  # slow inline runs since strike_at (the placement rule)
        "strike_at",
        "sync_flavor",  # answer as grpc.server does where grpc.aio differs (grpcio_flavor="sync")
    )

    def __init__(self, path: str, handler: grpc.RpcMethodHandler, options: MethodOptions = DEFAULT_OPTIONS) -> None:
        self.path = path
        self.handler = handler
        self.request_streaming = bool(handler.request_streaming)
        self.response_streaming = bool(handler.response_streaming)
        kind = ("stream" if self.request_streaming else "unary") + "_" + ("stream" if self.response_streaming else "unary")
        func = getattr(handler, kind)
        if func is None:
            raise TypeError(f"{path}: handler has no {kind} behaviour")
        self.func = func
        self.is_async = inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
        self.deserialize = handler.request_deserializer or _identity
        self.serialize = handler.response_serializer or _identity
        unary = not self.request_streaming and not self.response_streaming
        self.sync_mode = inline.sync_mode(func, options.sync_handlers) if unary else "threads"
        self.inline = not self.is_async and self.sync_mode == "inline"
        self.quick_runs = self.strikes = 0
        self.strike_at = 0.0
        self.sync_flavor = options.grpcio_flavor == "sync"


def _identity(value: Any) -> Any:
    return value


@mypyc_attr(allow_interpreted_subclasses=True)  # InterceptedMethods (gmf/rpc/interceptors.py)
class MethodCache:
    """Per-worker cache of resolved methods. Registered paths resolve once; generic handlers
    may decide per call from the metadata, so they are asked every time, but the Method of a
    handler they return again is reused (it keeps its placement, gmf.rpc.threads)."""

    _MAX_CHOSEN = 4096  # Methods kept for handlers generic handlers chose (a bound: paths are the client's)

    def __init__(self, registry: MethodRegistry, options: MethodOptions = DEFAULT_OPTIONS) -> None:
        self._registry = registry
        self._options = options
        self._cache: dict[str, Method] = {}
        self._chosen: dict[str, Method] = {}

    def resolve(self, path: str, metadata_factory: Any) -> Method | None:
        method = self._cache.get(path)
        if method is not None:
            return method
        registered = self._registry.registered(path)
        if registered is not None:
            method = self._cache[path] = Method(path, registered, self._options)
            return method
        handler = self._registry.lookup(path, metadata_factory())
        return self.method_for(path, handler) if handler is not None else None

    def method_for(self, path: str, handler: grpc.RpcMethodHandler) -> Method:
        """The Method of a handler that a generic handler or an interceptor chain chose."""
        method = self._cache.get(path)
        if method is not None and method.handler is handler:
            return method
        if handler is self._registry.registered(path):
            method = self._cache[path] = Method(path, handler, self._options)
            return method
        method = self._chosen.get(path)
        if method is not None and method.handler is handler:
            return method
        method = Method(path, handler, self._options)
        if len(self._chosen) < self._MAX_CHOSEN:
            self._chosen[path] = method
        return method
