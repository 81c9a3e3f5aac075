"""The HTTP/1.1 server connection: an ``asyncio.Protocol`` over :class:`gmf.web.http1.H1ServerConnection`.

It serves gRPC-Web and Connect (every request goes to :meth:`gmf.rpc.web.WebServing.begin`)
on any runtime that provides asyncio transports, as :class:`~gmf.rpc.connection.GrpcConnection`
does for HTTP/2. It is the HTTP response writer of its calls (``send_head`` / ``send_body`` /
``end_response``) and their connection-side CallSink (``release``, ``write_blocked``,
``call_finished``). One request at a time: pipelined requests wait in the sans-IO
connection until the response before them has ended.

- Bytes in: ``receive_data(chunk, loop.time())``; each event has one branch in ``_handle``.
- Bytes out: everything produced in one loop iteration goes in one ``transport.write``.
- Timeouts: one timer at the sans-IO connection's ``deadline`` (slow head -> 408 after
  ``handshake_timeout``, slow body -> 408 after ``http1_body_timeout``, idle keep-alive ->
  closed after ``idle_timeout``), re-armed only when the deadline moves earlier.
- Back-pressure: reading stops while pipelined input is over its bound, while a call holds
  back request messages its handler has not read, and while the transport does not take
  our output (the call's streaming writes wait then too).
- Drain: an idle connection is closed at once; a busy one answers with ``connection: close``
  and closes after that response.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, cast

from ..protocol import plain
from ..web.http1 import Body, Closed, EndOfRequest, H1Event, H1ServerConnection, Rejected, Request
from ..web.sink import NOTHING, Head, Out
from .base import ConnectionBase
from .call import Call
from .peer import format_peer

if TYPE_CHECKING:
    from .server_state import ServerState
    from .web import WebServing

log = logging.getLogger("gmf")

Header = tuple[bytes, bytes]
_CLOSE = (b"connection", b"close")


class Http1Connection(ConnectionBase, asyncio.Protocol):
    """One HTTP/1.1 client connection (see the module docstring)."""

    # It is its calls' gmf.web.sink.OutWriter (write) and their WebHost (gmf.rpc.web).

    def __init__(self, server: ServerState, web: WebServing) -> None:
        self._setup(server)
        self.web = web
        self.h1 = H1ServerConnection(web.limits, now=self.loop.time())
        self.draining = False
        self._request: Call | None = None  # the call whose request body is still arriving
        self._request_open = False  # a request head arrived and its end has not
        self._next_id = 1
        self._processing = False  # inside _run: a response ending there continues in its loop
        self._ended = False  # a response ended since the last look at pipelined input
        self._answer_then_close = False  # the peer half-closed after a complete request
        self._held = False  # a call holds back request messages its handler has not read
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    # ------------------------------------------------------------------ transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = format_peer(transport.get_extra_info("peername"))
        self.server.connection_opened(self)
        if self.server.draining:
            self.draining = True
        self._after()

    def data_received(self, data: bytes) -> None:
        self.metrics.bytes_received += len(data)
        try:
            self._run(self.h1.receive_data(data, self.loop.time()))
        except Exception:  # a bug must cost one connection, never the worker
            log.exception("internal error on HTTP/1.1 connection from %s", self.peer)
            self._abort()

    def eof_received(self) -> bool:
        self._run(self.h1.receive_data(b"", self.loop.time()))
        return self._answer_then_close and bool(self.calls)  # keep the transport open to answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._request = None
        self._lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()
        for call in list(self.calls.values()):
            call.wake_writer()

    # ------------------------------------------------------------------ input
    def _run(self, events: list[H1Event]) -> None:
        """Handle events, then the pipelined requests each ended response lets through."""
        self._processing = True
        try:
            while True:
                for event in events:
                    self._handle(event)
                if not self._ended or self.calls:
                    break
                self._ended = False
                events = self.h1.next_events(self.loop.time())
                if not events:
                    break
        finally:
            self._processing = False
        self._after()

    def _handle(self, event: H1Event) -> None:
        if type(event) is Body:
            call = self._request
            if call is not None and not call.finished:
                n = len(event.data)
                if call.feed(event.data, n, False) < n and not call.finished:
                    self._held = True  # released by release() once the handler catches up
        elif type(event) is Request:
            sid = self._next_id
            self._next_id += 1
            self._request_open = True
            self._request = self.web.begin(self, self, sid, event.method, event.target, event.headers, http2=False)
        elif type(event) is EndOfRequest:
            call, self._request = self._request, None
            self._request_open = False
            if call is not None:
                call.feed(b"", 0, True)
                self.request_complete(call)
        elif type(event) is Rejected:  # bad input or a slow peer: the answer is queued, then close
            self._request = None
            for call in list(self.calls.values()):
                call.cancel()
        elif type(event) is Closed:  # the peer closed its side, or the keep-alive idle timeout
            if self.calls and not self._request_open:
                self._answer_then_close = True  # a complete request: answer it, then close
            else:
                self._request = None
                for call in list(self.calls.values()):
                    call.cancel()

    def _after(self) -> None:
        """After every entry: write what is queued, close when done, (un)pause, re-arm."""
        self._flush()
        if self.transport is not None:
            self._update_reading()
            self._arm()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pause = self._held or self.write_paused or self.h1.reading_paused
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # ------------------------------------------------------------------ timeouts
    def _arm(self) -> None:
        deadline = self.h1.deadline
        if deadline is None or deadline >= self._timer_at:
            return  # an armed timer fires first and looks again
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self.transport is None:
            return
        events = self.h1.check_deadline(self.loop.time())
        if events:
            log.info("HTTP/1.1 connection from %s: %s", self.peer, getattr(events[0], "reason", events[0]))
        self._run(events)

    # ------------------------------------------------------------------ response writer (gmf.web.sink.OutWriter)
    def write(self, out: Out, extra_headers: list[Header]) -> None:
        if out is NOTHING:
            return  # the encoder holds it (a unary response goes out whole at its end)
        h1 = self.h1
        head = out.head
        if head is not None:
            headers = head.headers + extra_headers if extra_headers else head.headers
            h1.send_head(head.status, [*headers, _CLOSE] if self.draining else headers, head.content_length)
        if out.body:
            h1.send_body(out.body)
        if out.end:
            h1.end_response(self.loop.time())
            self._ended = True
            if not self._processing:
                self._flush()  # a handler finished: its whole response goes out now, in one write
        elif not self._processing:
            self.schedule_flush()
        # inside _run the write happens at its end

    def answer_http(self, stream_id: int, status: int, headers: list[Header] | tuple[Header, ...] = (),
                    method: bytes = b"POST") -> None:
        """Answer a request that is not an RPC, as the HTTP/2 connection does: ``status`` with
        gmf.protocol.plain's text (HEAD: its length only; 204: no content and no framing)."""
        fields, length, body = plain.content(status, method)
        self.write(Out(Head(status, [*fields, *headers], length), body, True), [])

    # ------------------------------------------------------------------ CallSink (connection side)
    def release(self, stream_id: int, nbytes: int) -> None:
        if self._held:
            self._held = False
            self._update_reading()

    def write_blocked(self, stream_id: int) -> bool:
        return self.write_paused

    def call_finished(self, stream_id: int, code: int) -> None:
        if self._call_ended(stream_id, code) is None:
            return
        if self._processing or self.transport is None:
            return  # _run goes on with what follows
        if self._held:
            self._held = False
            self._update_reading()
        if self.h1.has_input:
            self._run([])  # the next pipelined request
        else:
            self._maybe_close()  # (the response went out already) the close after a last response

    # ------------------------------------------------------------------ output
    def _flush(self) -> None:
        self._flush_scheduled = False
        transport = self.transport
        if transport is None:
            return
        data = self.h1.data_to_send()
        if data:
            transport.write(data)
            self.metrics.bytes_sent += len(data)
        self._maybe_close()

    def _maybe_close(self) -> None:
        transport = self.transport
        if (transport is not None and not self.calls
                and (self.h1.closing or self._answer_then_close or (self.draining and not self._request_open))):
            transport.close()  # after what was written

    # ------------------------------------------------------------------ shutdown (OpenConnection)
    def start_shutdown(self) -> None:
        """Drain: close now when idle, else after the response in progress (connection: close)."""
        self.draining = True
        self.schedule_flush()

