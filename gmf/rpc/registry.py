"""Method registry: what grpcio-generated ``add_XServicer_to_server`` hands a server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc


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
    )

    def __init__(self, path: str, handler: grpc.RpcMethodHandler) -> None:
        import inspect

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


def _identity(value: Any) -> Any:
    return value


class MethodCache:
    """Per-worker cache of resolved methods (registered paths only: generic handlers may
    decide per call from metadata, so they are asked every time)."""

    def __init__(self, registry: MethodRegistry) -> None:
        self._registry = registry
        self._cache: dict[str, Method] = {}

    def resolve(self, path: str, metadata_factory: Any) -> Method | None:
        method = self._cache.get(path)
        if method is not None:
            return method
        registered = self._registry.registered(path)
        if registered is not None:
            method = self._cache[path] = Method(path, registered)
            return method
        handler = self._registry.lookup(path, metadata_factory())
        return Method(path, handler) if handler is not None else None

    def method_for(self, path: str, handler: grpc.RpcMethodHandler) -> Method:
        """The Method of a handler an interceptor chain chose (cached when it is the registered one)."""
        method = self._cache.get(path)
        if method is not None and method.handler is handler:
            return method
        if handler is self._registry.registered(path):
            method = self._cache[path] = Method(path, handler)
            return method
        return Method(path, handler)
