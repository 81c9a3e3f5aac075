"""What a call may use of the connection that carries it: :class:`CallSink`.

The RPC layer reads one way. The connection parses its wire, makes a
:class:`~gmf.rpc.call.Call` per request and drives it (``feed``, ``cancel``, ``wake_writer``,
``on_deadline``); the runner runs the handler; the call, its runner and its
:class:`~gmf.rpc.context.ServicerContext` reach back only through this interface, in gRPC's
terms (metadata, messages, a status), never in the wire's (frames, flow-control windows).

Two implementations: :class:`~gmf.rpc.connection.GrpcConnection`, gRPC over HTTP/2 (initial
metadata -> a HEADERS frame, each message -> a length-prefixed DATA frame, the status ->
trailers), and :class:`~gmf.rpc.web.WebSink`, one per gRPC-Web or Connect call over HTTP/1.1
or HTTP/2 (the protocol's encoder writes the response; flow control, back-pressure and the end
of the call are its connection's). The call, the runner, the context and the handlers are the
same for both. Requests reach a call as gRPC length-prefixed messages (``Call.feed``): a wire
without that envelope (Connect's unary calls, base64, JSON) is turned into it first
(:class:`~gmf.rpc.web.WebCall`).

Every method is called on the event loop's thread: a handler running in one of the worker's
threads hands what it sends to the loop through ``executor.to_loop`` (gmf.rpc.runner). ``stream_id`` is the
call's id on its connection (the HTTP/2 stream id; HTTP/1.1: the request's number), as given to
``Call``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..protocol.hpack_codec import Header
from .driver import StreamDriver
from .threads import HandlerThreads


class CallSink(Protocol):
    # -- what the worker and the connection provide -----------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def executor(self) -> HandlerThreads: ...  # the worker's threads for plain-def handlers

    @property
    def max_receive_message_length(self) -> int: ...  # bytes of one decoded request message

    @property
    def max_send_message_length(self) -> int | None: ...  # bytes of one response message; None: no limit

    @property
    def peer(self) -> str: ...  # grpcio's format: "ipv4:127.0.0.1:5000"

    def auth_context(self) -> dict[str, list[bytes]]: ...  # grpcio's keys and values

    # -- request side --------------------------------------------------------------------
    def release(self, stream_id: int, nbytes: int) -> None:
        """The call consumed ``nbytes`` request bytes it held back: the peer may send more.
        (What ``Call.feed`` returns is credited by the connection itself.)"""

    def resume(self, driver: StreamDriver) -> None:
        """A request message came for a handler parked in its read (``Call.feed``): step it
        (``driver.step()``), at once or once the read being handled is done, or leave it to
        its task (``driver.release()``)."""

    # -- response side -------------------------------------------------------------------
    def send_headers(self, stream_id: int, metadata: list[Header] | None, encoding: str | None) -> None:
        """The response's initial metadata, and the grpc-encoding its messages use."""

    def send_message(self, stream_id: int, payload: bytes, compressed: bool) -> None:
        """One serialized response message (already compressed when ``compressed``)."""

    def send_status(self, stream_id: int, code: int, details: str, metadata: list[Header] | None,
                    trailers_only: bool) -> None:
        """The status and trailing metadata that end the response; ``trailers_only``: no
        initial metadata was sent."""

    def send_unary(self, stream_id: int, payload: bytes) -> None:
        """A whole OK unary response: exactly ``send_headers(stream_id, None, None)``,
        ``send_message(stream_id, payload, False)``, ``send_status(stream_id, OK, "", None,
        False)``, in one call (the common answer; a wire may encode it at once)."""

    def write_blocked(self, stream_id: int) -> bool:
        """The peer is not taking this call's output (or the connection's) fast enough: a
        streaming writer waits until the connection calls ``Call.wake_writer``."""

    def call_finished(self, stream_id: int, code: int) -> None:
        """The call ended with ``code`` (sent, or not sendable because the peer cancelled)."""
