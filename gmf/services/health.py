"""``grpc.health.v1.Health`` (Check and Watch) as an async servicer, plus the status the
application sets.

Status is per process: ``server.health.set(...)`` before ``serve()`` is inherited by every
worker (they are forked); a call made inside a worker (a handler, ``on_worker_start``) changes
that worker only. A worker that starts draining flips every status to NOT_SERVING and sends it
to its open Watch streams (which then end) before its connections get GOAWAY.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import grpc

from ..rpc.registry import MethodRegistry
from ._deps import require
from .host import ServiceHost

require("grpc_health", "grpcio-health-checking")

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

SERVICE_NAME = "grpc.health.v1.Health"
_Status = health_pb2.HealthCheckResponse.ServingStatus
UNKNOWN = _Status.Value("UNKNOWN")
SERVING = _Status.Value("SERVING")
NOT_SERVING = _Status.Value("NOT_SERVING")
SERVICE_UNKNOWN = _Status.Value("SERVICE_UNKNOWN")  # only ever sent on Watch

_current: Health | None = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Watcher:
    """One open Watch stream: woken on every change of its service's status."""

    __slots__ = ("loop", "changed", "gone")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.changed = asyncio.Event()
        self.gone: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        if _running_loop() is self.loop:
            self.changed.set()
        else:  # set() called from a handler thread
            self.loop.call_soon_threadsafe(self.changed.set)


class Health(health_pb2_grpc.HealthServicer):
    """Serving status per service name ("" = the whole server) and the Health servicer.

    Every service registered on the server, and "", is SERVING unless set otherwise; other
    names are unknown (Check: NOT_FOUND, Watch: SERVICE_UNKNOWN) until set.
    """

    def __init__(self, registry: MethodRegistry) -> None:
        self._registry = registry
        self._status: dict[str, int] = {}
        self._watchers: dict[str, set[_Watcher]] = {}
        self.shutting_down = False

    # -- the application's side ---------------------------------------------------
    def set(self, service: str, status: int | str) -> None:
        """Set ``service``'s status (SERVING, NOT_SERVING, UNKNOWN or their names) in this
        process; open Watch streams of that service get the change. Ignored once draining."""
        value = _Status.Value(status) if isinstance(status, str) else int(status)
        if value not in (UNKNOWN, SERVING, NOT_SERVING):
            raise ValueError(f"health status must be SERVING, NOT_SERVING or UNKNOWN, not {status!r}")
        if self.shutting_down:
            return
        self._status[service] = value
        for watcher in self._watchers.get(service, ()):
            watcher.wake()

    def get(self, service: str) -> int | None:
        """The status Check reports for ``service``; None when the service is unknown."""
        status = self._status.get(service)
        if status is None:
            if service != "" and service not in self._registry.service_names():
                return None
            status = SERVING
        return NOT_SERVING if self.shutting_down else status

    def enter_graceful_shutdown(self, timeout: float = 1.0) -> Awaitable[None]:
        """Everything NOT_SERVING from now on (at once); the result, when awaited, returns
        once every open Watch stream has queued that update and ended (or after ``timeout``)."""
        first = not self.shutting_down
        self.shutting_down = True
        watchers = [w for ws in self._watchers.values() for w in ws] if first else []
        for watcher in watchers:
            watcher.wake()
        return _all_gone(watchers, timeout)

    # -- the servicer ---------------------------------------------------------------
    async def Check(self, request: Any, context: Any) -> Any:
        status = self.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        service = request.service
        watcher = _Watcher(asyncio.get_running_loop())
        self._watchers.setdefault(service, set()).add(watcher)
        try:
            last = None
            while True:
                status = self.get(service)
                status = SERVICE_UNKNOWN if status is None else status
                if status != last:
                    last = status
                    yield health_pb2.HealthCheckResponse(status=status)
                if self.shutting_down:
                    return
                await watcher.changed.wait()
                watcher.changed.clear()
        finally:
            watchers = self._watchers.get(service)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[service]
            if not watcher.gone.done():
                watcher.gone.set_result(None)


async def _all_gone(watchers: list[_Watcher], timeout: float) -> None:
    if watchers:
        await asyncio.wait([w.gone for w in watchers], timeout=timeout)


class HealthHost(ServiceHost, Protocol):
    health: Health | None  # set by enable_health


def enable_health(server: HealthHost) -> Health:
    """Serve grpc.health.v1.Health on ``server``; returns the status object (also
    ``server.health`` and, inside workers, :func:`health_status`)."""
    global _current
    if server.health is not None:
        return server.health
    health = Health(server.registry)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_drain_callback(health.enter_graceful_shutdown)
    server.health = _current = health
    return health


def health_status() -> Health:
    """This process's health status (in a worker: that worker's copy)."""
    if _current is None:
        raise RuntimeError("health checking is not enabled: use GmfServer(health=True) or gmf.services.enable_health(server)")
    return _current
