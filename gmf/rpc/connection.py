"""The gRPC server connection: an ``asyncio.Protocol`` over the sans-IO HTTP/2 core.

It works with any runtime that provides asyncio transports (asyncio, uvloop, and GMF's
io_uring loop). Bytes in go to :class:`~gmf.protocol.h2conn.H2ServerConnection`; each event
that comes out has one handler here; a request becomes a :class:`~gmf.rpc.call.Call` that
the runner serves. The call answers through this connection's :class:`~gmf.rpc.sink.CallSink`
methods (the section "CallSink"), which turn gRPC metadata, messages and status into HTTP/2.
Outbound bytes produced while handling one read, or by handlers finishing in the same loop
iteration, are coalesced into a single ``transport.write``; a read that starts many calls
writes, and sends, the first half's answers before starting the second half
(``_start_split``), so that a single busy client gets answers, and sends its next requests,
while the rest of the read is served.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

from ..protocol import frames as fr
from ..protocol import grpc as g
from ..protocol import plain
from ..protocol.h2conn import H2ServerConnection

# The event classes by name, not as ``h2events.X``: compiled, ``type(event) is X`` then compares
# with a static type; through the module it was an attribute lookup per event (~5% of a bidi
# message's instructions).
from ..protocol.h2events import (
    ConnectionTerminated,
    DataReceived,
    GoAwayReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from . import eager, runner
from .base import ConnectionBase
from .call import Call
from .context import ServicerContext
from .driver import StreamDriver, step_all
from .peer import format_peer

SHUTDOWN_ACK_TIMEOUT = 1.0  # seconds a draining connection waits for its GOAWAY PING's ACK

if TYPE_CHECKING:
    from .server_state import ServerState

log = logging.getLogger("gmf")

# After a GOAWAY we close gracefully; a peer that does not read even that is cut after this.
_CLOSE_GRACE = 5.0
# Bytes a peer must take from us per outbound_stall_timeout while above max_outbound_buffer
# not to count as stalled (dribbling a few bytes of window does not keep the memory pinned).
_STALL_MIN_PROGRESS = 65535
# Response bytes of one stream buffered behind flow control before its writer waits.
_WRITE_HIGH_WATER: Final = 1 << 20
# A read that starts more calls than this answers in two halves (_start_split): a pipeline
# rather than ping-pong with a single busy client. Not reached with <= 16 streams a connection.
_SPLIT_OVER: Final = 16
# The start of the most common call (an async unary handler: runner.start's first case), bound
# once so that _start makes it without runner.start's Python frame.
_eager_start: Final = eager.start
_run_unary_async: Final = runner.run_unary_async
# Response DATA queued in one loop iteration beyond which it goes to the kernel at once
# (``send_message``): a handler streaming many messages without suspending (a server stream)
# gets them to the client as it makes them, not all after it is done, so the client reads
# while the worker writes. Measured (stream:1x4, 100 x 100-byte messages per call): the
# worker busy 95% of the time instead of 80%, 1.25x the messages/s; 8 KiB sends too often.
_SEND_EARLY: Final = 16384


class _RequestSummary:
    """The request header fields the server acts on, parsed from one header block."""

    __slots__ = ("method", "path", "path_str", "content_type", "timeout", "encoding", "accept", "size", "grpc")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        method = path = content_type = timeout = encoding = accept = None
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + 32  # RFC 9113 6.5.2 header list size
            if name[0] == 58:  # b":"
                if name == b":path":
                    path = value
                elif name == b":method":
                    method = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout = value
            elif name == b"grpc-encoding":
                encoding = value
            elif name == b"grpc-accept-encoding":
                accept = value
        self.method = method
        self.path = path
        self.path_str = path.decode("latin-1") if path is not None else ""
        self.content_type = content_type
        self.timeout = timeout
        self.encoding = encoding
        self.accept = accept
        self.size = size
        # A gRPC request: POST with application/grpc or application/grpc+CODEC (not grpc-web).
        self.grpc = (method == b"POST" and content_type is not None and content_type.startswith(b"application/grpc")
                     and content_type[16:20] != b"-web")


class GrpcConnection(ConnectionBase, asyncio.Protocol):
    """One client connection: gRPC over HTTP/2, and the :class:`CallSink` of its calls."""

    def __init__(self, server: ServerState) -> None:
        self._setup(server)
        self.h2 = H2ServerConnection(clock=self.loop.time, **server.h2_limits)
        self.closing = False
        # Unary-request calls whose request completed in the read being handled: started once
        # every request of the read is admitted (data_received), None outside a read.
        self._starting: list[Call] | None = None
        # Stream drivers whose parked handler got a request message in the read being handled:
        # stepped once every frame of the read is handled (resume), None outside a read.
        self._resuming: list[StreamDriver] | None = None
        options = server.options
        # One timer: the handshake deadline, then the idle watchdog (see _idle_check), then,
        # once closing after a GOAWAY, the cut of a peer that does not read it.
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_handshake = True
        self._idle_since = 0.0  # loop time when the last call finished (or the connection opened)
        # Outbound cap: response bytes held for a peer that does not take them.
        self.outbound_limit = options.max_outbound_buffer if options.max_outbound_buffer is not None else sys.maxsize
        self.outbound_full = False
        self._written = 0  # bytes handed to the transport, ever
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_mark = 0
        # The transport's "send what is queued now" (UringTransport.send_now), if it has one:
        # asyncio's and uvloop's transports send on write() already.
        self._send_now: Callable[[], None] | None = None

    # ------------------------------------------------------------------ transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._send_now = getattr(transport, "send_now", None)
        self.peer = format_peer(transport.get_extra_info("peername"))
        self.server.connection_opened(self)
        self.h2.initiate_connection()
        self._idle_since = self.loop.time()
        self._timer = self.loop.call_later(self.server.options.handshake_timeout, self._handshake_expired)
        if self.server.draining:
            self.start_shutdown()
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.metrics.bytes_received += len(data)
        # What the read's handlers send goes out in the flush that ends it: none scheduled meanwhile.
        self._flush_scheduled = True
        try:
            events = self.h2.receive_data(data)
            if self._awaiting_handshake and self.h2.handshake_done:
                self._handshake_complete()
            starting = self._starting = []
            resuming = self._resuming = []
            for event in events:  # one handler per event class, the frequent ones first
                if type(event) is DataReceived:
                    self._on_data(event)
                elif type(event) is RequestReceived:
                    self._on_request(event)
                elif type(event) is StreamEnded:
                    self._on_stream_ended(event)
                elif type(event) is WindowUpdated:
                    self._on_window_updated(event)
                elif type(event) is StreamReset:
                    self._on_stream_reset(event)
                elif type(event) is ConnectionTerminated:
                    self._on_terminated(event)
                elif type(event) is GoAwayReceived:
                    self._on_goaway(event)
            self._starting = self._resuming = None
            if starting:
                if len(starting) > _SPLIT_OVER:
                    self._start_split(starting)
                else:
                    self._start(starting)
            if resuming:
                step_all(self.loop, resuming)
        except Exception:  # a bug must cost one connection, never the worker
            self._starting = self._resuming = None
            log.exception("internal error on connection from %s", self.peer)
            self.h2.start_shutdown(fr.INTERNAL_ERROR)
            self._flush()
            self._abort()
            return
        self._flush()

    def eof_received(self) -> bool:
        for call in list(self.calls.values()):
            call.cancel()
        return False

    def _handshake_expired(self) -> None:
        """No HTTP/2 preface in time: a slow or silent client must not hold a connection slot."""
        self._timer = None
        log.info("closing connection from %s: no HTTP/2 preface within %.1fs", self.peer,
                 self.server.options.handshake_timeout)
        self._abort()

    def _handshake_complete(self) -> None:
        self._awaiting_handshake = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        idle = self.server.options.idle_timeout
        if idle is not None:
            self._timer = self.loop.call_at(self._idle_since + idle, self._idle_check)

    def _idle_check(self) -> None:
        """The idle watchdog. It is not re-armed per request: a call finishing only records the
        time (``_idle_since``), and this timer, when due, either closes a connection that has
        had no call in progress for ``idle_timeout`` or sleeps until it could be due again. So
        it fires at most once per ``idle_timeout`` on a busy connection. Idle covers clients that
        did the handshake and then send nothing, a partial frame, or a never-ending header block."""
        self._timer = None
        idle = self.server.options.idle_timeout
        if idle is None or self.closing or self.transport is None:
            return
        now = self.loop.time()
        due = now + idle if self.calls else self._idle_since + idle
        if due > now:
            self._timer = self.loop.call_at(due, self._idle_check)
            return
        log.info("closing connection from %s: idle for %.1fs", self.peer, idle)
        self.start_shutdown()  # GOAWAY(NO_ERROR); closes once flushed
        self._timer = self.loop.call_later(_CLOSE_GRACE, self._abort)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._stall_timer = None
        self._lost()

    def pause_writing(self) -> None:
        # The peer is not reading what we send: stop reading from it too, so a client that
        # floods requests, PINGs or SETTINGS without reading the answers cannot grow our
        # buffers without bound.
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.check_outbound()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        for call in self.calls.values():
            call.wake_writer()
        self.check_outbound()

    # ------------------------------------------------------------------ outbound cap
    def check_outbound(self) -> None:
        """Response data held for this peer (behind closed flow-control windows, or in the
        transport's buffer) against max_outbound_buffer (CVE-2019-9511/9517). Over it, streaming
        writes wait (Call.write), new streams are refused, and the stall timer runs."""
        transport = self.transport
        full = self._held() > self.outbound_limit
        if full == self.outbound_full:
            return
        self.outbound_full = full
        if full:
            timeout = self.server.options.outbound_stall_timeout
            if timeout is not None and self._stall_timer is None and transport is not None:
                self._stall_mark = self._delivered()
                self._stall_timer = self.loop.call_later(timeout, self._stall_check)
            return
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        for call in self.calls.values():
            call.wake_writer()

    def _held(self) -> int:
        """Response bytes this peer has not taken: behind its flow-control windows, or in the
        transport's buffer."""
        transport = self.transport
        return self.h2.buffered_bytes + (transport.get_write_buffer_size() if transport is not None else 0)

    def _delivered(self) -> int:
        """Bytes the peer's socket has taken from us (handed to the transport and gone out)."""
        transport = self.transport
        return self._written - (transport.get_write_buffer_size() if transport is not None else 0)

    def _stall_check(self) -> None:
        self._stall_timer = None
        if not self.outbound_full or self.transport is None:
            return
        delivered = self._delivered()
        timeout = cast(float, self.server.options.outbound_stall_timeout)
        if delivered - self._stall_mark >= _STALL_MIN_PROGRESS:  # slow, but reading
            self._stall_mark = delivered
            self._stall_timer = self.loop.call_later(timeout, self._stall_check)
            return
        log.warning("closing connection from %s: %d response bytes held for %.0fs while the peer takes none (< 64 KiB)",
                    self.peer, self._held(), timeout)
        for call in list(self.calls.values()):
            call.cancel()
        self.h2.start_shutdown(fr.ENHANCE_YOUR_CALM, b"peer does not read its responses")
        self.closing = True
        self._flush()
        self.close()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(_CLOSE_GRACE, self._abort)

    # ------------------------------------------------------------------ HTTP/2 events
    def _on_data(self, event: DataReceived) -> None:
        sid = event.stream_id
        call = self.calls.get(sid)
        if call is None:  # a call that has finished: the bytes still count for flow control
            self.h2.acknowledge_received_data(sid, event.flow_length)
            return
        credit = call.feed(event.data, event.flow_length, event.end_stream)
        if credit:
            self.h2.acknowledge_received_data(sid, credit)
        if event.end_stream:
            self.request_complete(call)

    def _on_stream_ended(self, event: StreamEnded) -> None:
        call = self.calls.get(event.stream_id)
        if call is not None:
            call.feed(b"", 0, True)
            self.request_complete(call)

    def _on_window_updated(self, event: WindowUpdated) -> None:
        call = self.calls.get(event.stream_id)
        if call is not None:
            call.wake_writer()

    def _on_stream_reset(self, event: StreamReset) -> None:
        call = self.calls.get(event.stream_id)
        if call is not None:
            call.cancel()

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        log.info("closing connection from %s: %s", self.peer, event.reason)
        self._flush()
        self.close()

    def _on_goaway(self, event: GoAwayReceived) -> None:
        self.closing = True
        self._maybe_close()

    def _on_request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        summary = cast(_RequestSummary | None, event.headers.summary)
        if summary is None:  # parsed once per distinct header block (the decoder caches blocks)
            summary = event.headers.summary = _RequestSummary(event.headers)
        timeout, encoding, accept = summary.timeout, summary.encoding, summary.accept
        h = self.h2
        if h.buffered_bytes > self.outbound_limit or self.outbound_full:  # the peer is not taking its responses
            h.reset_stream(sid, fr.REFUSED_STREAM)
            return
        if summary.size > self.server.max_header_list_size:
            message = f"Header list of {summary.size} bytes exceeds the limit of {self.server.max_header_list_size}"
            h.send_headers(sid, g.trailers(g.RESOURCE_EXHAUSTED, message, trailers_only=True), end_stream=True)
            self.rejected(summary.path_str, g.RESOURCE_EXHAUSTED)
            return
        # The HTTP/2 core let through well-formed requests only (RFC 9113 8.3: :method, and
        # :scheme and a non-empty :path unless CONNECT); gRPC is a POST of application/grpc*.
        if not summary.grpc:
            self._not_grpc(event, summary)
            return
        method = self.server.methods.resolve(summary.path_str, lambda: g.metadata_from_headers(event.headers))
        if method is None:
            h.send_headers(sid, g.trailers(g.UNIMPLEMENTED, "Method not found!", trailers_only=True), end_stream=True)
            self.rejected(summary.path_str, g.UNIMPLEMENTED)
            return
        enc: str | None = None
        if encoding is not None:
            enc = encoding.decode("latin-1")
            if enc not in g.SUPPORTED_ENCODINGS:
                h.send_headers(
                    sid,
                    g.trailers(g.UNIMPLEMENTED, f"Compression algorithm '{enc}' is not supported", trailers_only=True),
                    end_stream=True,
                )
                self.rejected(summary.path_str, g.UNIMPLEMENTED, method.path)
                return
        server = self.server
        if server.max_concurrent_rpcs is not None and server.active_rpcs >= server.max_concurrent_rpcs:
            h.send_headers(sid, g.trailers(g.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!", trailers_only=True),
                           end_stream=True)
            self.rejected(summary.path_str, g.RESOURCE_EXHAUSTED, method.path)
            return
        call = Call(self, sid, method, event.headers, enc)
        call.grpc = self
        call.context = ServicerContext(call)
        if accept is not None:
            call.accept_encoding = accept.decode("latin-1")
        if server.compression is not None and call.accept_encoding and server.compression in call.accept_encoding:
            call.send_encoding = server.compression
        self.calls[sid] = call
        server.active_rpcs += 1
        self.metrics.rpc_started(method.path)
        if server.access_log:
            call.started_at = self.loop.time()
        if timeout is not None:
            try:
                seconds = g.parse_timeout(timeout.decode("latin-1"))
            except ValueError as exc:
                call.fail(g.INTERNAL, str(exc))
                return
            call.deadline = self.loop.time() + seconds
            call.timer = self.loop.call_at(call.deadline, call.on_deadline)
        if method.request_streaming:
            runner.start(call)
        if event.end_stream:
            call.feed(b"", 0, True)
            self.request_complete(call)

    def _not_grpc(self, event: RequestReceived, summary: _RequestSummary) -> None:
        """Not a gRPC request: with the web protocols on, gmf.web.route decides what it is
        (gRPC-Web, Connect, a CORS preflight, or an HTTP answer); without, plain.not_grpc's
        405 or 415. Either way "none of the above" is :meth:`answer_http`."""
        web = self.server.web
        if web is not None:
            web.serve_h2(self, event)
        else:
            method = cast(bytes, summary.method)
            status, fields = plain.not_grpc(method)
            self.answer_http(event.stream_id, status, fields, method)

    def answer_http(self, stream_id: int, status: int, headers: list[g.Header] | tuple[g.Header, ...] = (),
                    method: bytes = b"POST") -> None:
        """Answer a request that is not an RPC: ``status`` with a short text/plain body saying
        this is a gRPC server (``gmf.protocol.plain``), the body sent as DATA under flow control.
        The one answer for every request no protocol takes ("none of the above")."""
        block, body = plain.answer(status, headers, method)
        h = self.h2
        h.send_headers(stream_id, block, end_stream=not body)
        if body:
            h.send_data(stream_id, body, end_stream=True)

    def request_complete(self, call: Call) -> None:
        """The client half-closed: a unary-request handler can start, once the rest of the read
        is handled. Async handlers start eagerly and plain defs inline may answer at once: were
        they started here, the output of the first requests of a read could fill the outbound
        cap and refuse the later ones, which a task per call (started after the read) admits."""
        if not call.method.request_streaming and call.task is None and not call.finished:
            starting = self._starting
            if starting is not None:
                starting.append(call)
            else:
                runner.start(call)

    @staticmethod
    def _start(calls: list[Call]) -> None:
        for call in calls:
            if call.task is None and not call.finished:  # not reset or failed later in the read
                method = call.method
                if method.is_async and not method.request_streaming and not method.response_streaming:
                    call.task = _eager_start(call.conn.loop, _run_unary_async(call))  # as runner.start does
                else:
                    runner.start(call)

    def _start_split(self, calls: list[Call]) -> None:
        """Start the many calls of one read in two halves, handing the first half's answers to
        the kernel in between (``_write_out``): a single client with many streams then reads
        them, and sends new requests, while the second half is served, so the next read is
        there when this one is done (measured at 1x100: the worker busy 99% of the time
        instead of 69%). The second half's answers go with the read's own flush."""
        half = len(calls) // 2
        self._start(calls[:half])
        self._write_out()
        self._start(calls[half:])

    # ------------------------------------------------------------------ CallSink (gmf.rpc.sink)
    def release(self, stream_id: int, nbytes: int) -> None:
        self.h2.acknowledge_received_data(stream_id, nbytes)
        if not self._flush_scheduled:
            self.schedule_flush()

    def resume(self, driver: StreamDriver) -> None:
        """Step the parked handler once the read being handled is (its response goes out
        with the read's output, in this loop iteration); outside a read, now."""
        resuming = self._resuming
        if resuming is not None:
            resuming.append(driver)
        else:
            driver.step()

    def send_headers(self, stream_id: int, metadata: list[g.Header] | None, encoding: str | None) -> None:
        self.h2.send_headers(stream_id, g.response_headers(metadata, encoding))
        if not self._flush_scheduled:
            self.schedule_flush()

    def send_message(self, stream_id: int, payload: bytes, compressed: bool) -> None:
        """Queue one response message; more than ``_SEND_EARLY`` bytes of them since the last
        write go out now, the rest with the loop iteration's flush."""
        h = self.h2
        h.send_data(stream_id, g.frame_message(payload, compressed))
        if not self._flush_scheduled:
            self.schedule_flush()
        elif h.queued_data() >= _SEND_EARLY:
            self._write_out()

    def send_status(self, stream_id: int, code: int, details: str, metadata: list[g.Header] | None,
                    trailers_only: bool) -> None:
        self.h2.send_headers(stream_id, g.trailers(code, details, metadata, trailers_only=trailers_only),
                             end_stream=True)
        if not self._flush_scheduled:
            self.schedule_flush()

    def send_unary(self, stream_id: int, payload: bytes) -> None:
        h = self.h2
        if not h.send_response(stream_id, g.RESPONSE_HEADERS, g.frame_message(payload), g.OK_TRAILERS):
            h.send_headers(stream_id, g.RESPONSE_HEADERS)
            h.send_data(stream_id, g.frame_message(payload))
            h.send_headers(stream_id, g.OK_TRAILERS, end_stream=True)
        if not self._flush_scheduled:
            self.schedule_flush()

    def write_blocked(self, stream_id: int) -> bool:
        """This stream is backed up, the socket is, or the whole connection holds more than
        max_outbound_buffer for the peer (``resume_writing``/``check_outbound``/a
        WINDOW_UPDATE wake the writer when that clears)."""
        h = self.h2
        buffered = h.buffered_bytes
        if not buffered:  # nothing held back anywhere: no stream can be over its mark
            return self.write_paused or self.outbound_full
        if buffered > self.outbound_limit:
            self.check_outbound()
        return h.pending_bytes(stream_id) > _WRITE_HIGH_WATER or self.write_paused or self.outbound_full

    def call_finished(self, stream_id: int, code: int) -> None:
        if self._call_ended(stream_id, code) is None:
            return
        if not self.calls:
            self._idle_since = self.loop.time()
            if self.closing:
                self.schedule_flush()

    # ------------------------------------------------------------------ output
    def _write(self) -> None:
        """Hand the queued output to the transport."""
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None:
            transport.write(data)
            n = len(data)
            self._written += n
            self.metrics.bytes_sent += n

    def _write_out(self) -> None:
        """Hand the queued output to the transport, and to the kernel now (``send_now``)."""
        self._write()
        send_now = self._send_now
        if send_now is not None:
            send_now()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write()
        h = self.h2
        if self.outbound_full or self.write_paused or h.buffered_bytes > self.outbound_limit:
            self.check_outbound()
        if self.closing:
            self._maybe_close()

    # ------------------------------------------------------------------ shutdown
    def start_shutdown(self) -> None:
        """Graceful: GOAWAY now, close once in-flight calls are done. New streams are still
        served until the client acknowledges the GOAWAY's PING (SHUTDOWN_ACK_TIMEOUT at most)."""
        self.closing = True
        self.h2.start_shutdown()
        self.loop.call_later(SHUTDOWN_ACK_TIMEOUT, self._finish_shutdown)
        self.schedule_flush()

    def _finish_shutdown(self) -> None:
        self.h2.finish_shutdown()
        self._flush()

    def _maybe_close(self) -> None:
        if self.h2.shutdown_pending and not self.h2.goaway_received:
            return  # the client may still open streams it sent before seeing our GOAWAY
        if not self.calls and not self.h2.has_data_to_send():
            self.close()
