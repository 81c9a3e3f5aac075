"""``ServicerContext`` with the grpc.aio methods handlers use.

Methods that are coroutines in grpc.aio (abort, send_initial_metadata, write, read) work both
with ``await`` (async handlers) and without (plain ``def`` handlers): the work happens at call
time and the returned object is awaitable.
"""

from __future__ import annotations

import asyncio
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
_ENCODINGS = {grpc.Compression.Gzip: "gzip", grpc.Compression.Deflate: "deflate"}


def encoding_name(compression: grpc.Compression | None) -> str | None:
    """grpc.Compression -> the grpc-encoding name ("gzip", "deflate"), None for no compression."""
    return _ENCODINGS.get(compression) if compression is not None else None


class ServicerContext:
    """The context passed to every handler (grpc.aio.ServicerContext-compatible)."""

    __slots__ = ("_call",)

    def __init__(self, call: Call) -> None:
        self._call = call

    # -- status -------------------------------------------------------------
    def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, Any]] = ()) -> NoReturn:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a non-OK status code")
        md = g.metadata_to_headers(trailing_metadata) if trailing_metadata else self._call.trailing_metadata
        raise AbortError(status_value(code), details, md)

    def abort_with_status(self, status: Any) -> NoReturn:
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
    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._call.metadata

    def send_initial_metadata(self, initial_metadata: Sequence[tuple[str, Any]]) -> _Done:
        self._call.send_initial_metadata(g.metadata_to_headers(initial_metadata))
        return _DONE

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, Any]]) -> None:
        self._call.trailing_metadata = g.metadata_to_headers(trailing_metadata)

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
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
        deadline = self._call.deadline
        if deadline is None:
            return None
        return max(0.0, deadline - self._call.conn.loop.time())

    def cancelled(self) -> bool:
        return self._call.cancelled or self._call.deadline_hit

    def done(self) -> bool:
        return self._call.finished

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        call = self._call
        if call.finished:
            call.conn.loop.call_soon(callback, self)
            return
        if call.done_callbacks is None:
            call.done_callbacks = []
        call.done_callbacks.append(callback)

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
