"""What the HTTP/2 and HTTP/1.1 connections share: the connection's side of their calls'
:class:`~gmf.rpc.sink.CallSink` (the worker's threads, the TLS identity, starting a handler when
the request is complete) and stopping (ending their calls, closing their transport gracefully
or at once: the worker's drain reaches them through these)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .._native import mypyc_attr
from ..logs import log_access
from ..metrics import UNKNOWN_METHOD, WorkerMetrics
from ..protocol import grpc as g
from . import runner
from .call import Call
from .peer import auth_context
from .threads import HandlerThreads

if TYPE_CHECKING:
    from .server_state import ServerState


@mypyc_attr(allow_interpreted_subclasses=True)  # Http1Connection (gmf/rpc/http1.py) is pure
class ConnectionBase:
    """A mixin of :class:`~gmf.rpc.connection.GrpcConnection` and
    :class:`~gmf.rpc.http1.Http1Connection` (each sets the attributes below with ``_setup``
    and has its own ``_flush``)."""

    server: ServerState
    metrics: WorkerMetrics
    loop: asyncio.AbstractEventLoop
    max_receive_message_length: int
    max_send_message_length: int | None
    transport: asyncio.Transport | None
    calls: dict[int, Call]
    peer: str
    write_paused: bool  # the transport does not take our output (pause_writing)
    _flush_scheduled: bool

    def _setup(self, server: ServerState) -> None:
        """The attributes above, for a new connection of ``server``."""
        self.server = server
        self.metrics = server.metrics
        self.loop = server.loop
        self.max_receive_message_length = server.max_receive_message_length
        self.max_send_message_length = server.max_send_message_length
        self.transport = None
        self.calls = {}
        self.peer = "unknown"
        self.write_paused = False
        self._flush_scheduled = False

    def _flush(self) -> None:
        raise NotImplementedError

    def schedule_flush(self) -> None:
        """Write what is queued at the end of this loop iteration (once, however much is queued)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _call_ended(self, stream_id: int, code: int) -> Call | None:
        """The call on ``stream_id`` ended with ``code`` (``call_finished``): no longer in
        progress, counted, access-logged. None: it had ended already."""
        call = self.calls.pop(stream_id, None)
        if call is None:
            return None
        server = self.server
        server.active_rpcs -= 1
        self.metrics.rpc_finished(call.path, code)
        if server.access_log:
            log_access(call.path, code, self.loop.time() - call.started_at, self.peer)
        return call

    def rejected(self, path: str, code: int, method: str = UNKNOWN_METHOD) -> None:
        """An RPC answered with a status before any handler ran (counted, access-logged)."""
        self.server.rejected(path, code, self.peer, method)

    # -- CallSink, the connection's side ------------------------------------------------
    @property
    def executor(self) -> HandlerThreads:
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
            call.fail(g.UNAVAILABLE, "Cancelling all calls")  # grpcio's words, both servers
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
