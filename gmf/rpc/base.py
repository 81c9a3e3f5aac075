"""What the HTTP/2 and HTTP/1.1 connections share: the connection's side of their calls'
:class:`~gmf.rpc.sink.CallSink` (the worker's threads, the TLS identity, starting a handler when
the request is complete) and stopping (ending their calls, closing their transport gracefully
or at once: the worker's drain reaches them through these)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from ..metrics import UNKNOWN_METHOD
from ..protocol import grpc as g
from . import runner
from .call import Call
from .peer import auth_context

if TYPE_CHECKING:
    from .server_state import ServerState


class ConnectionBase:
    """A mixin of :class:`~gmf.rpc.connection.GrpcConnection` and
    :class:`~gmf.rpc.http1.Http1Connection` (the attributes below are theirs, and ``_flush``)."""

    server: ServerState
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    calls: dict[int, Call]
    peer: str
    _flush_scheduled: bool

    def _flush(self) -> None:
        raise NotImplementedError

    def schedule_flush(self) -> None:
        """Write what is queued at the end of this loop iteration (once, however much is queued)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def rejected(self, path: str, code: int, method: str = UNKNOWN_METHOD) -> None:
        """An RPC answered with a status before any handler ran (counted, access-logged)."""
        self.server.rejected(path, code, self.peer, method)

    # -- CallSink, the connection's side ------------------------------------------------
    @property
    def executor(self) -> Executor:
        return self.server.executor

    def auth_context(self) -> dict[str, list[bytes]]:
        """grpcio's ``auth_context()`` of this connection (from the TLS peer certificate)."""
        transport = self.transport
        return auth_context(transport.get_extra_info("ssl_object") if transport is not None else None)

    def request_complete(self, call: Call) -> None:
        """The client half-closed: a unary-request handler can start now."""
        if not call.method.request_streaming and call.task is None and not call.finished:
            runner.start(call)

    # -- stopping -----------------------------------------------------------------------
    def _lost(self) -> None:
        """The transport is gone (``connection_lost``): no call can answer any more."""
        for call in list(self.calls.values()):
            call.cancel()
        self.calls.clear()
        self.server.connection_closed(self)  # type: ignore[arg-type]  # both are OpenConnections
        self.transport = None

    def cancel_all(self) -> None:
        """The drain's grace is over: every call ends with UNAVAILABLE."""
        for call in list(self.calls.values()):
            call.fail(g.UNAVAILABLE, "Server shutting down")
        self.schedule_flush()

    def close(self) -> None:
        """After what was written."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()
