"""Per-worker server state: options, resolved methods, open connections, drain."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from ..logs import log_access
from ..metrics import UNKNOWN_METHOD, WorkerMetrics
from .interceptors import InterceptedMethods
from .registry import MethodCache, MethodOptions, MethodRegistry
from .threads import HandlerThreads
from .web import WebServing

log = logging.getLogger("gmf")


class H2Limits(TypedDict):
    """The limits ``H2ServerConnection`` enforces itself (its keyword arguments)."""

    max_concurrent_streams: int
    max_header_list_size: int
    keepalive_min_ping_interval: float
    max_ping_strikes: int
    max_unproductive_frames: int
    max_pending_control_frames: int


@dataclass(frozen=True)
class ServerOptions:
    max_receive_message_length: int = 4 * 1024 * 1024
    max_send_message_length: int | None = None  # grpcio's default: unlimited
    max_concurrent_streams: int = 100  # per connection, advertised in SETTINGS
    max_header_list_size: int = 64 * 1024  # advertised; over it a call gets RESOURCE_EXHAUSTED
    max_connections: int = 10240
    compression: str | None = None  # "gzip" | "deflate" | None
    handshake_timeout: float = 10.0  # seconds a new connection has to send the HTTP/2 preface
    access_log: bool = False  # one "gmf.access" log line per finished RPC
    interceptors: tuple[Any, ...] = ()  # grpc.aio.ServerInterceptor / grpc.ServerInterceptor, in order
    # HTTP/2 abuse limits (docs/security.md, "HTTP/2 frame level")
    keepalive_min_ping_interval: float = 300.0  # seconds; sooner PINGs are strikes (0: off)
    max_ping_strikes: int = 2  # more -> GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
    max_unproductive_frames: int = 1000  # frames without useful work between responses
    max_pending_control_frames: int = 10000  # control responses waiting for the socket
    # Seconds a connection may stay open with no RPC in progress before GOAWAY(NO_ERROR); None: never.
    idle_timeout: float | None = 300.0
    # Response bytes a connection may hold because its peer is not reading (flow-control windows
    # closed, or the socket not drained): above it streaming writes wait and new streams are
    # refused. None: no cap.
    max_outbound_buffer: int | None = 16 * 1024 * 1024
    # Seconds a connection may stay above max_outbound_buffer without the peer taking data
    # before GOAWAY(ENHANCE_YOUR_CALM) and close; None: never.
    outbound_stall_timeout: float | None = 30.0
    slow_handler_threshold: float | None = 1.0  # loop blocked this long -> one warning (None: off)
    # Plain-def handlers: threads per worker, and where unary ones run ("auto": the placement
    # rule of gmf.rpc.threads; "threads"; "inline": on the event loop, never blocking).
    handler_threads: int = 10
    sync_handlers: str = "auto"
    max_concurrent_rpcs: int | None = None  # per worker; more get RESOURCE_EXHAUSTED (grpcio's maximum_concurrent_rpcs)
    grpcio_flavor: str = "aio"  # answer as grpc.aio ("aio") or grpc.server ("sync") where they differ
    # gRPC-Web and Connect beside gRPC (docs/web.md): HTTP/1.1 connections (chosen by ALPN or the
    # first bytes) and non-gRPC content types on HTTP/2. False: gRPC over HTTP/2 only.
    web: bool = True
    cors_origins: tuple[str, ...] = ()  # origins browsers may call from ("*": any); none: no CORS
    http1_body_timeout: float = 30.0  # seconds an HTTP/1.1 request body may take after its head
    # A worker passes a new connection to another that serves fewer (gmf.balance); False: each
    # keeps what the kernel's SO_REUSEPORT hash gives it.
    balance_connections: bool = True

    def method_options(self) -> MethodOptions:
        return MethodOptions(sync_handlers=self.sync_handlers, grpcio_flavor=self.grpcio_flavor)

    def h2_limits(self) -> H2Limits:
        return H2Limits(
            max_concurrent_streams=self.max_concurrent_streams,
            max_header_list_size=self.max_header_list_size,
            keepalive_min_ping_interval=self.keepalive_min_ping_interval,
            max_ping_strikes=self.max_ping_strikes,
            max_unproductive_frames=self.max_unproductive_frames,
            max_pending_control_frames=self.max_pending_control_frames,
        )


# How long drain callbacks (e.g. health's NOT_SERVING to open Watch streams) may take.
DRAIN_CALLBACK_TIMEOUT = 2.0


class OpenConnection(Protocol):
    """What the worker's state does with each open connection (drain, counts)."""

    @property
    def calls(self) -> Sized: ...  # the RPCs in progress

    def start_shutdown(self) -> None: ...  # graceful GOAWAY; closes once its calls are done

    def cancel_all(self) -> None: ...  # end every call with UNAVAILABLE

    def close(self) -> None: ...


class ServerState:
    """Everything one worker's connections share (nothing is shared across workers)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        registry: MethodRegistry,
        options: ServerOptions,
        on_drain: Sequence[Callable[[], Any]] = (),
    ) -> None:
        self.loop = loop
        # With interceptors every call runs the chain (see interceptors.py); without, nothing changes.
        method_options = options.method_options()
        self.methods = (InterceptedMethods(registry, options.interceptors, method_options) if options.interceptors
                        else MethodCache(registry, method_options))
        self.registry = registry
        self.on_drain = tuple(on_drain)
        self.options = options
        self.max_receive_message_length = options.max_receive_message_length
        self.max_send_message_length = options.max_send_message_length
        self.max_header_list_size = options.max_header_list_size
        self.max_concurrent_rpcs = options.max_concurrent_rpcs
        self.active_rpcs = 0  # calls in progress on every connection of this worker
        self.h2_limits = options.h2_limits()
        self.compression = options.compression
        self.connections: set[OpenConnection] = set()
        self.connections_changed: Callable[[], None] | None = None  # the worker's balance count (gmf.balance)
        self.draining = False
        self.metrics = WorkerMetrics()
        self.access_log = options.access_log
        self.executor = HandlerThreads(loop, options.handler_threads)  # threads start on first use
        self._idle: asyncio.Event | None = None
        self.web = WebServing(self) if options.web else None  # gRPC-Web and Connect (docs/web.md)

    def connection_opened(self, conn: OpenConnection) -> None:
        self.connections.add(conn)
        self.metrics.accepted += 1

    def connection_closed(self, conn: OpenConnection) -> None:
        self.connections.discard(conn)
        if self.connections_changed is not None:
            self.connections_changed()
        if self._idle is not None and self.idle():
            self._idle.set()

    def rejected(self, path: str, code: int, peer: str, method: str = UNKNOWN_METHOD) -> None:
        """An RPC answered with a status before any handler: counted (unregistered paths
        under one label) and access-logged like the others."""
        self.metrics.rpc_started(method)
        self.metrics.rpc_finished(method, code)
        if self.access_log:
            log_access(path if path.isprintable() else repr(path), code, 0.0, peer)

    def idle(self) -> bool:
        """Every connection is gone (each closes itself after GOAWAY once its calls finish)."""
        return not self.connections

    async def drain(self, grace: float | None) -> None:
        """Run the drain callbacks, GOAWAY every connection, wait for in-flight RPCs up to
        ``grace``, then cut them."""
        self.draining = True
        await self._run_drain_callbacks(grace)
        for conn in list(self.connections):
            conn.start_shutdown()
        self._idle = asyncio.Event()
        if self.idle():
            self._idle.set()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            active = sum(len(c.calls) for c in self.connections)
            log.warning("grace period over: cancelling %d in-flight RPC(s)", active)
            for conn in list(self.connections):
                conn.cancel_all()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)
        self.executor.shutdown(wait=False, cancel_futures=True)  # a handler still running is abandoned


    async def _run_drain_callbacks(self, grace: float | None) -> None:
        """Callbacks (sync or async) that must act before GOAWAY, e.g. health -> NOT_SERVING."""
        timeout = DRAIN_CALLBACK_TIMEOUT if grace is None else min(grace, DRAIN_CALLBACK_TIMEOUT)
        for callback in self.on_drain:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, timeout)
            except TimeoutError:
                log.info("drain callback %r did not finish within %.1fs", callback, timeout)
            except Exception:
                log.exception("drain callback %r failed", callback)
