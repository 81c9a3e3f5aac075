"""One RPC: request messages in, response messages and a status out.

The connection that parsed the request drives a ``Call`` (``feed``, ``cancel``, ``wake_writer``,
``on_deadline``); the call writes its response only through its :class:`~gmf.rpc.sink.CallSink`
(``self.conn``), in gRPC's terms: it never sees frames or flow-control windows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._native import mypyc_attr
from ..protocol import grpc as g
from ..protocol.hpack_codec import Header
from .driver import ReadWait, StreamDriver, running_task
from .registry import Method
from .sink import CallSink

if TYPE_CHECKING:
    from .connection import GrpcConnection

log = logging.getLogger("gmf")

# Complete-but-unread request bytes a call may hold before we stop returning flow-control
# credit to the client (backpressure for slow request-stream consumers).
_QUEUE_LIMIT: Final = 1 << 20

_EOF = object()
# Read request messages a call's queue keeps before dropping them (Call._take): amortized, a
# long queue costs O(1) per message read.
_COMPACT_AT: Final = 64
# Bound once (compiled: a C static, not the asyncio module's attribute looked up per message).
_Future: Final = asyncio.Future


def _wake(waiter: asyncio.Future[None] | ReadWait | None) -> None:
    if isinstance(waiter, ReadWait):  # compiled: native calls, not method lookups (per request message)
        waiter.set_result(None)
    elif waiter is not None and not waiter.done():
        waiter.set_result(None)


@mypyc_attr(allow_interpreted_subclasses=True)  # WebCall (gmf/rpc/web.py)
class Call:
    __slots__ = (
        "conn",
        "grpc",  # ``conn`` when it is the gRPC-over-HTTP/2 connection, typed as such (see __init__)
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
        "read_at",  # the index of the next unread message in messages
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
        "driver",  # the StreamDriver of a request-streaming async handler's task (gmf/rpc/driver.py)
        "started_at",  # loop time the RPC started; set only when the access log is on
    )
    started_at: float

    def __init__(self, conn: CallSink, stream_id: int, method: Method, headers: list[Header], encoding: str | None) -> None:
        self.conn = conn
        # The same sink as ``conn`` when the connection says so (GrpcConnection._on_request),
        # else None. Compiled, a call through the CallSink protocol is a Python-level call by
        # name; through this one a direct C call: what a streamed message uses it for
        # (send_message, write_blocked, resume). The web sinks and the test fakes are ``conn``.
        self.grpc: GrpcConnection | None = None
        self.stream_id = stream_id
        self.method = method
        self.path = method.path
        self.request_headers = headers
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.encoding = encoding
        self.accept_encoding: str | None = None
        self.send_encoding: str | None = None
        self.decoder = g.MessageDecoder(conn.max_receive_message_length)
        # Complete request messages (decompressed); those before ``read_at`` are read (see
        # _queue and _take). A list and an index, not a deque: compiled, queueing, taking and
        # "any unread?" are native (a deque's are method calls, per request message).
        self.messages: list[bytes] = []
        self.read_at = 0
        self.ended = False
        self.waiter: asyncio.Future[None] | ReadWait | None = None
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
        self.driver: StreamDriver | None = None

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> g.Metadata:
        if self._metadata is None:
            self._metadata = g.metadata_from_headers(self.request_headers)
        return self._metadata

    # ------------------------------------------------------------------ request side
    def feed(self, data: bytes, flow_length: int, end_stream: bool) -> int:
        """Request bytes of this call arrived (called by the connection). Returns how many of
        the ``flow_length`` flow-controlled bytes the connection may credit to the peer now:
        all of them unless the handler is far behind reading; those held back are released
        through ``conn.release`` as it catches up."""
        if self.finished:
            return flow_length
        complete = 0
        single = self.decoder.feed_one(data) if data else None
        if single is not None:  # one whole uncompressed message: no list of tuples for it
            self._queue(single)
            complete = len(single)
        elif data:
            try:
                decoded = self.decoder.feed(data)
            except g.GrpcError as exc:
                self.fail(exc.code, exc.message)
                return 0
            for compressed, payload in decoded:
                if compressed:
                    if self.encoding is None or self.encoding == "identity":
                        self.fail(g.INTERNAL, "Compressed message received without grpc-encoding")
                        return 0
                    try:
                        payload = g.decompress(self.encoding, payload, self.conn.max_receive_message_length)
                    except g.GrpcError as exc:
                        self.fail(exc.code, exc.message)
                        return 0
                self._queue(payload)
                complete += len(payload)
        # Flow control: credit what arrived unless the reader is far behind.
        credit = flow_length
        if self.queued_bytes >= _QUEUE_LIMIT:
            self.deferred_ack += flow_length
            credit = 0
        self.queued_bytes += complete
        if end_stream:
            self.ended = True
            if self.decoder.buffered:
                self.fail(g.INTERNAL, "Incomplete message at end of stream")
                return credit
        if self.read_at < len(self.messages) or self.ended:  # has_message(), inlined: per message (as in RequestIterator)
            self.wake_reader()
            driver = self.driver
            if driver is not None and driver.parked:  # the handler waits for this: the connection steps it
                grpc = self.grpc
                if grpc is not None:
                    grpc.resume(driver)
                else:
                    self.conn.resume(driver)
        return credit

    def has_message(self) -> bool:
        """A request message is queued, not yet read. The per-message paths (feed,
        RequestIterator.__anext__) inline it: calling it there measured 112 more instructions
        per bidi echo message (a vtable call each)."""
        return self.read_at < len(self.messages)

    def _queue(self, payload: bytes) -> None:
        messages = self.messages
        if self.read_at and self.read_at == len(messages):  # all read ([b""], see _take): the first slot again
            messages[0] = payload
            self.read_at = 0
        else:
            messages.append(payload)

    def _take(self) -> bytes:
        """The next unread message. When it was the only one, the list keeps its slot (an empty
        bytes in place of the message, ``read_at`` past it) for _queue to fill: a list emptied
        and filled again per message frees and allocates its array each time, measured at 530
        instructions per message of a bidi echo."""
        messages = self.messages
        at = self.read_at
        payload = messages[at]
        at += 1
        n = len(messages)
        if at == n:
            if n == 1:
                messages[0] = b""
            else:
                messages.clear()
                at = 0
        elif at >= _COMPACT_AT and at * 2 >= n:  # a reader behind a long queue: drop what it read
            del messages[:at]
            at = 0
        self.read_at = at
        self.queued_bytes -= len(payload)
        if self.deferred_ack and self.queued_bytes < _QUEUE_LIMIT:
            self.conn.release(self.stream_id, self.deferred_ack)
            self.deferred_ack = 0
        return payload

    def read_waiter(self) -> asyncio.Future[None] | ReadWait:
        """A new read waiter (``self.waiter``, which the next request message wakes): the
        driver's reusable ReadWait when the call's own task, stepped by its driver, waits
        (gmf/rpc/driver.py); otherwise a Future that whichever task waits can wait on (what
        loop.create_future() makes on every loop GMF runs on, without a Python call)."""
        driver = self.driver
        waiter: asyncio.Future[None] | ReadWait
        if driver is not None:  # the driver's loop: a native read (``conn`` is a protocol, read generically)
            loop = driver.loop
            waiter = driver.read_wait.arm() if running_task(loop) is driver.task else _Future(loop=loop)
        else:
            waiter = _Future(loop=self.conn.loop)
        self.waiter = waiter
        return waiter

    async def wait_readable(self) -> None:
        """Until a request message is queued, the client half-closed, or the call finished."""
        while not self.has_message() and not self.ended and not self.finished:
            await self.read_waiter()

    async def read_raw(self) -> Any:
        """Next serialized request message, or ``_EOF``."""
        if not self.has_message():
            await self.wait_readable()
            if not self.has_message():
                return _EOF
        return self._take()

    def single_request(self) -> Any:
        """The one request of a unary-request call (the stream has ended)."""
        return self.deserialize(self.single_payload())

    def single_payload(self) -> bytes:
        """The serialized request of a unary-request call (on the loop; a handler thread
        deserializes it)."""
        if len(self.messages) - self.read_at != 1:
            raise g.GrpcError(
                g.INTERNAL,
                "Expected exactly one request message" if self.has_message() else "Missing request message",
            )
        return self._take()

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
        self.conn.send_headers(self.stream_id, metadata, self.send_encoding)

    def send_response(self, message: Any) -> None:
        """Serialize and queue one response message (``send_encoded`` after ``encode``, in one
        call on the hot path)."""
        if self.finished:
            return
        payload, compressed = self.encode(message)
        grpc = self.grpc
        if grpc is not None and self.headers_sent:
            grpc.send_message(self.stream_id, payload, compressed)
            return
        conn = self.conn
        if not self.headers_sent:
            self.headers_sent = True
            conn.send_headers(self.stream_id, None, self.send_encoding)
        conn.send_message(self.stream_id, payload, compressed)

    def encode(self, message: Any) -> tuple[bytes, bool]:
        """One response message as it goes on the wire: (payload, compressed). Touches no
        connection state, so a handler thread encodes its own messages."""
        try:
            payload = self.method.serialize(message)
        except Exception as exc:
            log.error("could not serialize response of %s: %r", self.path, exc)
            raise g.GrpcError(g.INTERNAL, "Failed to serialize response!") from None
        grpc = self.grpc  # typed: a native read (``conn`` is a protocol, read generically)
        limit = grpc.max_send_message_length if grpc is not None else self.conn.max_send_message_length
        if limit is not None and len(payload) > limit:
            raise g.GrpcError(g.RESOURCE_EXHAUSTED, f"Sent message larger than max ({len(payload)} vs. {limit})")
        compressed = False
        if self.send_encoding is not None and self.compress_next:
            payload = g.compress(self.send_encoding, payload)
            compressed = True
        self.compress_next = True
        return payload, compressed

    def send_encoded(self, payload: bytes, compressed: bool) -> None:
        """Queue one encoded response message (headers first if none were sent)."""
        if self.finished:
            return
        conn = self.conn
        if not self.headers_sent:
            self.headers_sent = True
            conn.send_headers(self.stream_id, None, self.send_encoding)
        conn.send_message(self.stream_id, payload, compressed)

    def finish_unary(self, message: Any) -> bool:
        """End a unary call with ``message`` and status OK in one go (``conn.send_unary``)
        when the handler set nothing else: no code, details, trailing metadata or compression,
        no headers sent yet. Returns False, having done nothing, otherwise."""
        if (self.finished or self.headers_sent or self.code is not None or self.details is not None
                or self.trailing_metadata is not None or self.send_encoding is not None):
            return False
        try:
            payload = self.method.serialize(message)
        except Exception as exc:
            log.error("could not serialize response of %s: %r", self.path, exc)
            raise g.GrpcError(g.INTERNAL, "Failed to serialize response!") from None
        conn = self.conn
        limit = conn.max_send_message_length
        if limit is not None and len(payload) > limit:
            raise g.GrpcError(g.RESOURCE_EXHAUSTED, f"Sent message larger than max ({len(payload)} vs. {limit})")
        self.finished = self.headers_sent = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn.send_unary(self.stream_id, payload)
        self._ended(g.OK)
        return True

    async def write(self, message: Any) -> None:
        """Send one message of a response stream, waiting when the peer is not reading."""
        if self.queue_message(message):
            await self.wait_writable()

    def queue_message(self, message: Any) -> bool:
        """``write`` without its wait: sends the message, and says whether the writer must
        ``await wait_writable()`` before the next (a coroutine less per message)."""
        if self.finished:
            raise asyncio.InvalidStateError("the RPC has finished")
        self.send_response(message)
        if self.finished:
            return False
        grpc = self.grpc
        if grpc is not None:
            return grpc.write_blocked(self.stream_id)
        return self.conn.write_blocked(self.stream_id)

    async def wait_writable(self) -> None:
        """Wait while the peer is not taking what we send (the connection wakes us when it
        does), or until the call finishes."""
        conn = self.conn
        while not self.finished and conn.write_blocked(self.stream_id):
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
        if not self.cancelled:
            self.conn.send_status(self.stream_id, code, details, metadata, not self.headers_sent)
        self._ended(code)

    def _ended(self, code: int) -> None:
        """The call has finished with ``code``: wake whoever waits, tell the connection, run
        the done callbacks."""
        if self.write_waiter is not None:
            self.wake_writer()
        if self.waiter is not None:
            self.wake_reader()
        driver, self.driver = self.driver, None
        if driver is not None:
            driver.release()
        self.conn.call_finished(self.stream_id, code)
        # The context refers to its call, not the reverse, from here on: no reference cycle is
        # left for the garbage collector (a finished call is freed by reference counting).
        context, self.context = self.context, None
        callbacks, self.done_callbacks = self.done_callbacks, None
        if callbacks:
            for callback in callbacks:
                try:
                    callback(context)
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
