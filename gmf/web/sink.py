"""The one response shape every web protocol produces, and the writer it goes to.

A Call answers through three operations whatever the protocol: initial metadata, one message
(already serialized in the request's codec), the final status with trailing metadata. Each
protocol's :class:`ResponseEncoder` turns them into :class:`Out` parts: an HTTP head, body
bytes, and whether the response ends. The encoder decides when the head goes out: gRPC-Web
and Connect streaming send it at ``start`` (status 200), Connect unary holds everything until
``finish`` because the HTTP status and the ``trailer-`` headers depend on the outcome.

An :class:`HttpResponseWriter` is the HTTP side: :class:`gmf.web.http1.H1ServerConnection`
is one (``send_head`` / ``send_body`` / ``end_response``). A server hands a call an
:class:`OutWriter` (one ``Out`` at a time, one flush): :class:`gmf.rpc.http1.Http1Connection`
over the HTTP/1.1 connection, :class:`gmf.rpc.web.H2StreamWriter` over one HTTP/2 stream (head
-> HEADERS with ``:status``, body -> DATA, end -> END_STREAM). :func:`write_out` is the glue::

    encoder = grpcweb.GrpcWebResponse(text=False)          # chosen by gmf.web.route.classify
    write_out(writer, encoder.start(initial_metadata), now)
    write_out(writer, encoder.message(payload), now)
    write_out(writer, encoder.finish(code, details, trailing_metadata), now)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Header = tuple[bytes, bytes]


@dataclass(slots=True)
class Head:
    status: int
    headers: list[Header]
    content_length: int | None = None  # None: streamed (chunked on HTTP/1.1)


@dataclass(slots=True)
class Out:
    head: Head | None = None
    body: bytes = b""
    end: bool = False


NOTHING = Out()


class ResponseEncoder(Protocol):
    """What a Call writes to (gRPC-Web binary/text, Connect unary, Connect streaming)."""

    @property
    def head_sent(self) -> bool: ...

    def start(self, metadata: list[Header]) -> Out:
        """Initial metadata (already encoded as header fields by ``gmf.protocol.grpc``)."""
        ...

    def message(self, payload: bytes) -> Out:
        """One response message, serialized in the request's codec."""
        ...

    def finish(self, code: int, message: str, metadata: list[Header]) -> Out:
        """The status (``gmf.protocol.grpc`` codes) and trailing metadata; the response ends."""
        ...


class HttpResponseWriter(Protocol):
    def send_head(self, status: int, headers: list[Header], content_length: int | None = None) -> None: ...

    def send_body(self, data: bytes) -> None: ...

    def end_response(self, now: float) -> None: ...


class OutWriter(Protocol):
    """What a connection offers a call's response: one :class:`Out` at a time, written as
    :func:`write_out` does (``extra_headers`` join the head), with the connection's clock and
    one flush (gmf.rpc.http1.Http1Connection, gmf.rpc.web.H2StreamWriter)."""

    def write(self, out: Out, extra_headers: list[Header]) -> None: ...


def write_out(writer: HttpResponseWriter, out: Out, now: float, extra_headers: list[Header] | None = None) -> None:
    """Send one :class:`Out` to an HTTP writer; ``extra_headers`` (CORS) join the head."""
    if out.head is not None:
        headers = out.head.headers + extra_headers if extra_headers else out.head.headers
        writer.send_head(out.head.status, headers, out.head.content_length)
    if out.body:
        writer.send_body(out.body)
    if out.end:
        writer.end_response(now)
