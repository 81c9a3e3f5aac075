"""One RPC on one HTTP/2 stream: request messages in, response messages and status out."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol import grpc as g
from ..protocol.hpack_codec import Header
from .registry import Method

if TYPE_CHECKING:
    from .connection import GrpcConnection

log = logging.getLogger("gmf")

# Complete-but-unread request bytes a call may hold before we stop returning flow-control
# credit to the client (backpressure for slow request-stream consumers).
_QUEUE_LIMIT = 1 << 20
# Response bytes buffered behind flow control before a writer waits.
_WRITE_HIGH_WATER = 1 << 20

_EOF = object()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Call:
    __slots__ = (
        "conn",
        "stream_id",
        "method",
        "path",
        "request_headers",
        "deadline",
        "timer",
        "encoding",
        "accept_encoding",
        "send_encoding",
        "decoder",
        "messages",
        "ended",
        "waiter",
        "queued_bytes",
        "deferred_ack",
        "headers_sent",
        "finished",
        "cancelled",
        "task",
        "code",
        "details",
        "trailing_metadata",
        "done_callbacks",
        "compress_next",
        "context",
        "_metadata",
        "write_waiter",
        "deadline_hit",
        "started_at",  # loop time the RPC started; set only when the access log is on
    )
    started_at: float

    def __init__(self, conn: GrpcConnection, stream_id: int, method: Method, headers: list[Header], encoding: str | None) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.method = method
        self.path = method.path
        self.request_headers = headers
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.encoding = encoding
        self.accept_encoding: str | None = None
        self.send_encoding: str | None = None
        self.decoder = g.MessageDecoder(conn.server.max_receive_message_length)
        self.messages: deque[tuple[bytes, int]] = deque()
        self.ended = False
        self.waiter: asyncio.Future[None] | None = None
        self.queued_bytes = 0
        self.deferred_ack = 0
        self.headers_sent = False
        self.finished = False
        self.cancelled = False
        self.task: asyncio.Task[None] | None = None
        self.code: int | None = None
        self.details: str | None = None
        self.trailing_metadata: list[Header] | None = None
        self.done_callbacks: list[Callable[[Any], None]] | None = None
        self.compress_next = True
        self.context: Any = None
        self._metadata: g.Metadata | None = None
        self.write_waiter: asyncio.Future[None] | None = None
        self.deadline_hit = False

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> g.Metadata:
        if self._metadata is None:
            self._metadata = g.metadata_from_headers(self.request_headers)
        return self._metadata

    # ------------------------------------------------------------------ request side
    def feed(self, data: bytes, flow_length: int, end_stream: bool) -> None:
        """DATA for this stream arrived (called by the connection)."""
        if self.finished:
            self.conn.h2.acknowledge_received_data(self.stream_id, flow_length)
            return
        try:
            decoded = self.decoder.feed(data) if data else ()
        except g.GrpcError as exc:
            self.fail(exc.code, exc.message)
            return
        complete = 0
        for compressed, payload in decoded:
            if compressed:
                if self.encoding is None or self.encoding == "identity":
                    self.fail(g.INTERNAL, "Compressed message received without grpc-encoding")
                    return
                try:
                    payload = g.decompress(self.encoding, payload, self.conn.server.max_receive_message_length)
                except g.GrpcError as exc:
                    self.fail(exc.code, exc.message)
                    return
            self.messages.append((payload, len(payload)))
            complete += len(payload)
        # Flow control: credit what arrived unless the reader is far behind.
        if self.queued_bytes < _QUEUE_LIMIT:
            self.conn.h2.acknowledge_received_data(self.stream_id, flow_length)
        else:
            self.deferred_ack += flow_length
        self.queued_bytes += complete
        if end_stream:
            self.ended = True
            if self.decoder.buffered:
                self.fail(g.INTERNAL, "Incomplete message at end of stream")
                return
        if self.messages or self.ended:
            self.wake_reader()

    def _take(self) -> bytes:
        payload, size = self.messages.popleft()
        self.queued_bytes -= size
        if self.deferred_ack and self.queued_bytes < _QUEUE_LIMIT:
            self.conn.h2.acknowledge_received_data(self.stream_id, self.deferred_ack)
            self.deferred_ack = 0
            self.conn.schedule_flush()
        return payload

    async def wait_readable(self) -> None:
        """Until a request message is queued, the client half-closed, or the call finished."""
        while not self.messages and not self.ended and not self.finished:
            self.waiter = self.conn.loop.create_future()
            await self.waiter

    async def read_raw(self) -> Any:
        """Next serialized request message, or ``_EOF``."""
        if not self.messages:
            await self.wait_readable()
            if not self.messages:
                return _EOF
        return self._take()

    def single_request(self) -> Any:
        """The one request of a unary-request call (the stream has ended)."""
        if len(self.messages) != 1:
            raise g.GrpcError(
                g.INTERNAL,
                "Expected exactly one request message" if self.messages else "Missing request message",
            )
        return self.deserialize(self._take())

    def deserialize(self, payload: bytes) -> Any:
        try:
            return self.method.deserialize(payload)
        except Exception as exc:
            log.debug("could not deserialize request of %s: %r", self.path, exc)
            raise g.GrpcError(g.INTERNAL, "Exception deserializing request!") from None

    # ------------------------------------------------------------------ response side
    def send_initial_metadata(self, metadata: list[Header] | None = None) -> None:
        if self.headers_sent:
            raise RuntimeError("initial metadata was already sent")
        if self.finished:
            return
        self.headers_sent = True
        self.conn.h2.send_headers(self.stream_id, g.response_headers(metadata, self.send_encoding))
        self.conn.schedule_flush()

    def send_response(self, message: Any) -> None:
        """Serialize and queue one response message."""
        if self.finished:
            return
        try:
            payload = self.method.serialize(message)
        except Exception as exc:
            log.error("could not serialize response of %s: %r", self.path, exc)
            raise g.GrpcError(g.INTERNAL, "Failed to serialize response!") from None
        limit = self.conn.server.max_send_message_length
        if limit is not None and len(payload) > limit:
            raise g.GrpcError(g.RESOURCE_EXHAUSTED, f"Sent message larger than max ({len(payload)} vs. {limit})")
        compressed = False
        if self.send_encoding is not None and self.compress_next:
            payload = g.compress(self.send_encoding, payload)
            compressed = True
        self.compress_next = True
        if not self.headers_sent:
            self.headers_sent = True
            self.conn.h2.send_headers(self.stream_id, g.response_headers(None, self.send_encoding))
        self.conn.h2.send_data(self.stream_id, g.frame_message(payload, compressed))
        self.conn.schedule_flush()

    async def write(self, message: Any) -> None:
        """Send one message of a response stream, waiting when the peer is not reading."""
        if self.finished:
            raise asyncio.InvalidStateError("the RPC has finished")
        self.send_response(message)
        conn = self.conn
        if conn.h2.buffered_bytes > conn.outbound_limit:
            conn.check_outbound()
        # Wait while this stream is backed up, the socket is, or the whole connection holds more
        # than max_outbound_buffer for the peer (the connection wakes us when that clears).
        while not self.finished and (conn.h2.pending_bytes(self.stream_id) > _WRITE_HIGH_WATER or conn.write_paused
                                     or conn.outbound_full):
            self.write_waiter = conn.loop.create_future()
            await self.write_waiter

    def wake_writer(self) -> None:
        waiter, self.write_waiter = self.write_waiter, None
        _wake(waiter)

    def wake_reader(self) -> None:
        waiter, self.waiter = self.waiter, None
        _wake(waiter)

    def finish(self, code: int, details: str = "", metadata: list[Header] | None = None) -> None:
        """End the RPC with a status (trailers, or a trailers-only response)."""
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn = self.conn
        if not self.cancelled:
            block = g.trailers(code, details, metadata, trailers_only=not self.headers_sent)
            conn.h2.send_headers(self.stream_id, block, end_stream=True)
            conn.schedule_flush()
        self.wake_writer()
        self.wake_reader()
        conn.call_finished(self, code)
        if self.done_callbacks:
            for callback in self.done_callbacks:
                try:
                    callback(self.context)
                except Exception:
                    log.exception("done callback of %s failed", self.path)

    def fail(self, code: int, details: str) -> None:
        """A protocol-level failure of this call: answer with a status and stop the handler."""
        self.finish(code, details)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def cancel(self) -> None:
        """The client reset the stream or went away: no reply is possible."""
        if self.finished:
            return
        self.cancelled = True
        self.finish(g.CANCELLED, "Cancelled")
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def on_deadline(self) -> None:
        self.timer = None
        if not self.finished:
            self.deadline_hit = True
            self.fail(g.DEADLINE_EXCEEDED, "Deadline Exceeded")
