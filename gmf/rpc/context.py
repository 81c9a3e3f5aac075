"""``ServicerContext``: grpc.aio's and grpc's (sync) ServicerContext in one.

Methods that are coroutines in grpc.aio (abort, send_initial_metadata, write, read) work both
with ``await`` (async handlers) and without (plain ``def`` handlers): the work happens at call
time and the returned object is awaitable. A plain-def handler runs in one of the worker's
handler threads: what it asks of the connection (initial metadata, cancel, callbacks) is handed
to the event loop in order; the rest only reads or sets the call's own fields.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, NoReturn

import grpc

from ..protocol import grpc as g
from .call import _EOF, Call
from .peer import peer_identity_key


class AbortError(Exception):
    """Raised by ``context.abort()``; ends the RPC with the given status."""

    def __init__(self, code: int, details: str, trailing_metadata: list[g.Header] | None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


class _Done:
    """An already-completed awaitable, so sync and async handlers can call the same method."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover


_DONE = _Done()


def status_value(code: Any) -> int:
    """grpc.StatusCode (or a plain int) -> the integer status code."""
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    return int(code)


_CODES = {c.value[0]: c for c in grpc.StatusCode}
_NO_DEADLINE = float(2**63)  # seconds: what grpc.server takes for the deadline of a call without one
_ENCODINGS = {grpc.Compression.Gzip: "gzip", grpc.Compression.Deflate: "deflate"}


def encoding_name(compression: grpc.Compression | None) -> str | None:
    """grpc.Compression -> the grpc-encoding name ("gzip", "deflate"), None for no compression."""
    return _ENCODINGS.get(compression) if compression is not None else None


class ServicerContext:
    """The context passed to every handler (grpc.aio.ServicerContext-compatible)."""

    __slots__ = ("_call", "_headers_posted")

    def __init__(self, call: Call) -> None:
        self._call = call
        self._headers_posted = False  # a handler thread handed initial metadata to the loop

    # -- status -------------------------------------------------------------
    def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, Any]] = ()) -> NoReturn:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a non-OK status code")
        md = g.metadata_to_headers(trailing_metadata) if trailing_metadata else self._call.trailing_metadata
        raise AbortError(status_value(code), details, md)

    def abort_with_status(self, status: Any) -> NoReturn:
        """A ``grpc.Status`` (e.g. grpcio-status' ``rpc_status.to_status(...)``, whose trailing
        metadata carries ``grpc-status-details-bin``)."""
        self.abort(status.code, status.details, status.trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._call.code = status_value(code)

    def set_details(self, details: str) -> None:
        self._call.details = details

    def code(self) -> grpc.StatusCode | None:
        return _CODES.get(self._call.code) if self._call.code is not None else None

    def details(self) -> str | None:
        return self._call.details

    # -- metadata -----------------------------------------------------------
    def invocation_metadata(self) -> g.Metadata:
        """The client's metadata: ``(key, value)`` pairs with ``.key`` and ``.value``, as grpcio's."""
        return self._call.metadata

    def send_initial_metadata(self, initial_metadata: Sequence[tuple[str, Any]]) -> _Done:
        call = self._call
        headers = g.metadata_to_headers(initial_metadata)
        pool = call.conn.executor
        if pool.on_loop():
            call.send_initial_metadata(headers)
        else:
            if call.headers_sent or self._headers_posted:
                raise RuntimeError("initial metadata was already sent")
            self._headers_posted = True
            pool.to_loop(_send_headers_from_thread, call, headers)
        return _DONE

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, Any]]) -> None:
        self._call.trailing_metadata = g.metadata_to_headers(trailing_metadata)

    def trailing_metadata(self) -> g.Metadata:
        return g.metadata_from_headers(self._call.trailing_metadata or ())

    # -- streams ------------------------------------------------------------
    async def read(self) -> Any:
        """Next request message of a request stream, or ``grpc.aio.EOF``."""
        raw = await self._call.read_raw()
        if raw is _EOF:
            return grpc.aio.EOF
        return self._call.deserialize(raw)

    async def write(self, message: Any) -> None:
        await self._call.write(message)

    # -- lifetime -----------------------------------------------------------
    def time_remaining(self) -> float | None:
        """Seconds left before the deadline. Without one: None (grpc.aio), or what grpc.server
        gives with ``grpcio_flavor="sync"``: C-core's infinite deadline minus the time, ~9.2e18."""
        call = self._call
        deadline = call.deadline
        if deadline is None:
            return _NO_DEADLINE - time.time() if call.method.sync_flavor else None
        return max(0.0, deadline - call.conn.loop.time())

    def cancelled(self) -> bool:
        return self._call.cancelled or self._call.deadline_hit

    def done(self) -> bool:
        return self._call.finished

    def is_active(self) -> bool:
        """grpc's: False once the RPC has ended (client cancel, deadline, a status sent, the
        server's shutdown after its grace period). Long-running plain-def handlers poll it."""
        return not self._call.finished

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """grpc.aio's: ``callback(context)`` when the RPC ends (on the event loop)."""
        call = self._call
        pool = call.conn.executor
        if pool.on_loop():
            _add_done_callback(call, self, callback)
        else:
            pool.to_loop(_add_done_callback, call, self, callback)

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        """grpc's: ``callback()`` when the RPC ends (on the event loop); False, and never
        called, when it has ended already."""
        if self._call.finished:
            return False
        self.add_done_callback(lambda _context: callback())
        return True

    def cancel(self) -> None:
        """grpc's: end the RPC now with CANCELLED (no effect once it has ended)."""
        call = self._call
        pool = call.conn.executor
        if pool.on_loop():
            call.fail(g.CANCELLED, "Cancelled")
        else:
            pool.to_loop(call.fail, g.CANCELLED, "Cancelled")

    # -- peer -----------------------------------------------------------------
    def peer(self) -> str:
        return self._call.conn.peer

    def peer_identities(self) -> list[bytes] | None:
        """The client certificate's subjectAltNames (else its common name); None without one."""
        auth = self.auth_context()
        key = peer_identity_key(auth)
        return auth[key] if key else None

    def peer_identity_key(self) -> str | None:
        return peer_identity_key(self.auth_context())

    def auth_context(self) -> dict[str, list[bytes]]:
        """grpcio's keys: transport_security_type, x509_common_name, x509_pem_cert, ..."""
        return self._call.conn.auth_context()

    # -- compression ----------------------------------------------------------
    def set_compression(self, compression: grpc.Compression) -> None:
        name = encoding_name(compression)
        call = self._call
        if call.headers_sent:
            raise RuntimeError("set_compression() must be called before the first response message")
        accepted = call.accept_encoding or ""
        call.send_encoding = name if name and name in [e.strip() for e in accepted.split(",")] else None

    def disable_next_message_compression(self) -> None:
        self._call.compress_next = False

    # for handlers that want the loop-level view
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._call.conn.loop


def _send_headers_from_thread(call: Call, headers: list[g.Header]) -> None:
    if not call.headers_sent:
        call.send_initial_metadata(headers)


def _add_done_callback(call: Call, context: ServicerContext, callback: Callable[[Any], None]) -> None:
    if call.finished:  # the call has let go of its context by now (Call._ended): pass ours
        call.conn.loop.call_soon(callback, context)
        return
    if call.done_callbacks is None:
        call.done_callbacks = []
    call.done_callbacks.append(callback)
