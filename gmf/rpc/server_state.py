"""Per-worker server state: options, resolved methods, open connections, drain."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .connection import GrpcConnection
from .registry import MethodCache, MethodRegistry

log = logging.getLogger("gmf")


@dataclass(frozen=True)
class ServerOptions:
    max_receive_message_length: int = 4 * 1024 * 1024
    max_send_message_length: int | None = None  # grpcio's default: unlimited
    max_concurrent_streams: int = 1000
    max_metadata_size: int = 64 * 1024
    max_connections: int = 10240
    compression: str | None = None  # "gzip" | "deflate" | None
    handshake_timeout: float = 10.0  # seconds a new connection has to send the HTTP/2 preface
    slow_handler_threshold: float | None = 1.0  # loop blocked this long -> one warning (None: off)


class ServerState:
    """Everything one worker's connections share (nothing is shared across workers)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: MethodRegistry, options: ServerOptions) -> None:
        self.loop = loop
        self.methods = MethodCache(registry)
        self.options = options
        self.max_receive_message_length = options.max_receive_message_length
        self.max_send_message_length = options.max_send_message_length
        self.max_concurrent_streams = options.max_concurrent_streams
        self.max_metadata_size = options.max_metadata_size
        self.compression = options.compression
        self.connections: set[GrpcConnection] = set()
        self.draining = False
        self.calls_finished = 0
        self.refused_connections = 0
        self._last_refusal_log = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._idle: asyncio.Event | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Threads for plain-def request-streaming handlers (created on first use)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gmf-handler")
        return self._executor

    def protocol_factory(self) -> asyncio.Protocol:
        """One protocol per accepted connection; over max_connections it is closed at once."""
        if len(self.connections) >= self.options.max_connections:
            return _Refused(self)
        return GrpcConnection(self)

    def connection_opened(self, conn: GrpcConnection) -> None:
        self.connections.add(conn)

    def connection_closed(self, conn: GrpcConnection) -> None:
        self.connections.discard(conn)
        if self._idle is not None and self.idle():
            self._idle.set()

    def refused(self) -> None:
        self.refused_connections += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= 1.0:
            self._last_refusal_log = now
            log.warning(
                "max_connections=%d reached: refusing new connections (%d refused so far)",
                self.options.max_connections,
                self.refused_connections,
            )

    def idle(self) -> bool:
        """Every connection is gone (each closes itself after GOAWAY once its calls finish)."""
        return not self.connections

    async def drain(self, grace: float | None) -> None:
        """GOAWAY every connection, wait for in-flight RPCs up to ``grace``, then cut them."""
        self.draining = True
        for conn in list(self.connections):
            conn.start_shutdown()
        self._idle = asyncio.Event()
        if self.idle():
            self._idle.set()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except asyncio.TimeoutError:
            active = sum(len(c.calls) for c in self.connections)
            log.warning("grace period over: cancelling %d in-flight RPC(s)", active)
            for conn in list(self.connections):
                conn.cancel_all()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn._close()
        await asyncio.sleep(0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class _Refused(asyncio.Protocol):
    """Protocol for a connection over the limit: counted, logged (rate-limited), closed."""

    def __init__(self, server: ServerState) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server.refused()
        transport.abort()  # type: ignore[attr-defined]
