"""gRPC-Web and Connect calls, on HTTP/1.1 and HTTP/2: from one request to a running ``Call``.

A connection hands every request that is not gRPC over HTTP/2 to :meth:`WebServing.begin`
(every request of an :class:`~gmf.rpc.http1.Http1Connection`; an HTTP/2 request of a
:class:`~gmf.rpc.connection.GrpcConnection` with another method or content type):

1. :func:`gmf.web.route.classify` says what the request is;
2. a CORS preflight is answered by the :class:`~gmf.web.cors.CorsPolicy`, a request that is no
   RPC by the connection's ``answer_http`` (the one place each connection answers those, with
   gmf.protocol.plain's text);
3. an RPC resolves its method as gRPC does (interceptors included) and becomes a
   :class:`~gmf.rpc.call.Call` (gRPC-Web binary: the body is gRPC's framing) or a
   :class:`WebCall`, whose ``feed`` first turns the wire's body (base64 text, Connect
   envelopes, a bare unary message or a GET's query, JSON) into gRPC-framed messages; either
   answers through a :class:`WebSink`: its
   :class:`~gmf.rpc.sink.CallSink`, which sends initial metadata, messages and the status
   through the protocol's :class:`~gmf.web.sink.ResponseEncoder` to an HTTP response writer
   (the HTTP/1.1 connection itself, or :class:`H2StreamWriter` over one HTTP/2 stream) with
   the CORS headers, and leaves the rest (flow control, back-pressure, the end of the call)
   to the connection's own CallSink.

The runner, the :class:`~gmf.rpc.context.ServicerContext` and the handlers are gRPC's,
unchanged. ``grpc-timeout`` (gRPC-Web) and ``connect-timeout-ms`` (Connect) set the call's
deadline as ``grpc-timeout`` does for gRPC. Connect JSON goes through protobuf's
``json_format`` with the request and response types of the method's descriptor.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..metrics import UNKNOWN_METHOD
from ..protocol import grpc as g
from ..protocol.hpack_codec import encode_headers
from ..web import connect, grpcweb
from ..web.cors import CorsPolicy, Preflight
from ..web.http1 import H1Limits
from ..web.route import Kind, Route, classify
from ..web.sink import Head, Out, OutWriter, ResponseEncoder
from . import runner
from .call import Call
from .context import ServicerContext
from .driver import StreamDriver
from .registry import Method
from .sink import CallSink
from .threads import HandlerThreads

if TYPE_CHECKING:
    from .connection import GrpcConnection
    from .server_state import ServerState

Header = tuple[bytes, bytes]

_NO_CORS = Preflight(403, [(b"content-length", b"0")])  # a preflight to a server without cors_origins
_NOT_FOUND = "Method not found!"  # what gRPC answers for an unknown method
_CACHED_PATHS = 10000  # per-path facts kept (with interceptors any path resolves: bound the caches)


class WebHost(Protocol):
    """What a connection provides for the web calls it carries: the connection's half of
    :class:`~gmf.rpc.sink.CallSink` (a :class:`WebSink` adds the response half), and these."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def executor(self) -> HandlerThreads: ...

    @property
    def max_receive_message_length(self) -> int: ...

    @property
    def max_send_message_length(self) -> int | None: ...

    @property
    def peer(self) -> str: ...

    def auth_context(self) -> dict[str, list[bytes]]: ...

    def release(self, stream_id: int, nbytes: int) -> None: ...

    def write_blocked(self, stream_id: int) -> bool: ...

    def call_finished(self, stream_id: int, code: int) -> None: ...

    @property
    def calls(self) -> dict[int, Call]: ...  # the calls in progress, by stream id

    def request_complete(self, call: Call) -> None:
        """The request half-closed: a unary-request handler starts now."""

    def rejected(self, path: str, code: int, method: str = UNKNOWN_METHOD) -> None:
        """An RPC answered with a status before any handler ran (counted, access-logged)."""

    def answer_http(self, stream_id: int, status: int, headers: list[Header] | tuple[Header, ...] = (),
                    method: bytes = b"POST") -> None:
        """Answer a request that is no RPC of any protocol served here (route's Kind.ANSWER)."""


class Body(Protocol):
    def decode(self, data: bytes, end: bool) -> bytes:
        """Request body bytes -> gRPC length-prefixed messages (uncompressed); GrpcError when bad."""
        ...


class Base64Body:
    """gRPC-Web text: the body is base64 (separately padded chunks allowed) of gRPC framing."""

    __slots__ = ("_stream",)

    def __init__(self) -> None:
        self._stream = grpcweb.Base64Stream()

    def decode(self, data: bytes, end: bool) -> bytes:
        out = self._stream.feed(data) if data else b""
        if end:
            self._stream.end()
        return out


class FramedBody:
    """Connect streaming bodies: enveloped messages, decompressed and checked by the protocol's
    decoder (gmf.web), framed again for the call; JSON messages become protobuf."""

    __slots__ = ("_decoder", "_json")

    def __init__(self, decoder: connect.ConnectStreamDecoder, json_in: connect.JsonCodec | None) -> None:
        self._decoder = decoder
        self._json = json_in

    def decode(self, data: bytes, end: bool) -> bytes:
        payloads = self._decoder.feed(data) if data else []
        if end:
            self._decoder.end()
        if not payloads:
            return b""
        if self._json is not None:
            payloads = [self._json.decode(p).SerializeToString() for p in payloads]
        return b"".join([g.frame_message(p) for p in payloads])


class UnaryBody:
    """A Connect unary request: the whole body (or a GET's query message) is one bare message,
    decompressed and, for JSON, turned into protobuf at the end."""

    __slots__ = ("_parts", "_size", "_max", "_encoding", "_json")

    def __init__(self, max_length: int, encoding: str | None, json_in: connect.JsonCodec | None,
                 message: bytes | None = None) -> None:
        self._parts: list[bytes] = [] if message is None else [message]
        self._size = 0
        self._max = max_length
        self._encoding = encoding
        self._json = json_in

    def decode(self, data: bytes, end: bool) -> bytes:
        if data:
            self._size += len(data)
            if self._size > self._max:
                raise g.GrpcError(g.RESOURCE_EXHAUSTED, f"message size {self._size} is larger than configured max {self._max}")
            self._parts.append(data)
        if not end:
            return b""
        parts = self._parts
        payload = connect.decode_unary_body(parts[0] if len(parts) == 1 else b"".join(parts), self._encoding, self._max)
        if self._json is not None:
            payload = self._json.decode(payload).SerializeToString()
        return g.frame_message(payload)


class WebCall(Call):
    """A gRPC-Web or Connect call: its body goes through the protocol's :class:`Body` first."""

    __slots__ = ("body",)

    def __init__(self, sink: CallSink, stream_id: int, method: Method, headers: list[Header], body: Body,
                 encoding: str | None = None) -> None:
        super().__init__(sink, stream_id, method, headers, encoding)
        self.body = body

    def feed(self, data: bytes, flow_length: int, end_stream: bool) -> int:
        if self.finished:
            return flow_length
        try:
            framed = self.body.decode(data, end_stream)
        except g.GrpcError as exc:
            self.fail(exc.code, exc.message)
            return flow_length
        return Call.feed(self, framed, flow_length, end_stream)


class WebSink:
    """The CallSink of one web call: the response through the protocol's encoder to the
    connection's HTTP writer; everything else is the connection's (``host``)."""

    __slots__ = ("host", "writer", "encoder", "cors", "json_out", "loop", "peer",
                 "max_receive_message_length", "max_send_message_length")

    def __init__(self, host: WebHost, writer: OutWriter, encoder: ResponseEncoder, cors: list[Header],
                 json_out: connect.JsonCodec | None, response_class: type | None) -> None:
        self.host = host
        self.writer = writer
        self.encoder = encoder
        self.cors = cors
        self.json_out = (json_out, response_class) if json_out is not None and response_class is not None else None
        self.loop = host.loop
        self.peer = host.peer
        self.max_receive_message_length = host.max_receive_message_length
        self.max_send_message_length = host.max_send_message_length

    @property
    def executor(self) -> HandlerThreads:
        return self.host.executor

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.host.auth_context()

    def release(self, stream_id: int, nbytes: int) -> None:
        self.host.release(stream_id, nbytes)

    def resume(self, driver: StreamDriver) -> None:
        driver.release()  # through the task: requests arrive in the middle of the connection's parsing

    def write_blocked(self, stream_id: int) -> bool:
        return self.host.write_blocked(stream_id)

    def call_finished(self, stream_id: int, code: int) -> None:
        self.host.call_finished(stream_id, code)

    def send_headers(self, stream_id: int, metadata: list[Header] | None, encoding: str | None) -> None:
        if metadata is None:
            return  # implied by the first message (Call.send_response): the encoder sends the head then
        self.writer.write(self.encoder.start(metadata), self.cors)

    def send_message(self, stream_id: int, payload: bytes, compressed: bool) -> None:
        if self.json_out is not None:
            codec, cls = self.json_out
            payload = codec.encode(cls.FromString(payload))  # type: ignore[attr-defined]
        self.writer.write(self.encoder.message(payload), self.cors)

    def send_status(self, stream_id: int, code: int, details: str, metadata: list[Header] | None,
                    trailers_only: bool) -> None:
        self.writer.write(self.encoder.finish(code, details, metadata or []), self.cors)

    def send_unary(self, stream_id: int, payload: bytes) -> None:
        """A whole OK unary response, as the CallSink protocol defines it (the three steps)."""
        self.send_headers(stream_id, None, None)
        self.send_message(stream_id, payload, False)
        self.send_status(stream_id, g.OK, "", None, False)


class H2StreamWriter:
    """An HTTP response on one HTTP/2 stream: head -> HEADERS with ``:status``, body -> DATA,
    end -> END_STREAM (the HTTP/2 core's flow control and the connection's flush apply)."""

    __slots__ = ("conn", "stream_id")

    def __init__(self, conn: GrpcConnection, stream_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id

    def write(self, out: Out, extra_headers: list[Header]) -> None:
        h2, sid = self.conn.h2, self.stream_id
        if out.head is not None:
            fields = [(b":status", b"%d" % out.head.status), *out.head.headers, *extra_headers]
            if out.head.content_length is not None:
                fields.append((b"content-length", b"%d" % out.head.content_length))
            h2.send_headers(sid, encode_headers(fields))
        if out.body or out.end:
            h2.send_data(sid, out.body, end_stream=out.end)
        self.conn.schedule_flush()


def _empty(status: int, headers: list[Header]) -> Out:
    """A response without a body (no framing header at all for 204, RFC 9110 8.6)."""
    return Out(Head(status, headers, None if status == 204 else 0), b"", True)


class Answer(NamedTuple):
    """An RPC request answered before any handler: the response, and its status code."""

    out: Out
    code: int


def _http(answer: connect.HttpAnswer, code: int | None = None) -> Answer:
    out = Out(Head(answer.status, answer.headers, len(answer.body)), answer.body, True)
    return Answer(out, connect.code_from_http(answer.status) if code is None else code)


JsonCodecs = tuple[connect.JsonCodec, connect.JsonCodec, type]  # request, response, response class


class WebServing:
    """One worker's gRPC-Web and Connect serving: CORS, the HTTP/1.1 limits, what is known per
    method path, and :meth:`begin` for each request."""

    def __init__(self, state: ServerState) -> None:
        options = state.options
        self.state = state
        self.cors = CorsPolicy(options.cors_origins) if options.cors_origins else None
        idle = options.idle_timeout
        self.limits = H1Limits(
            max_body=options.max_receive_message_length + 1024,  # one message plus its framing
            header_timeout=options.handshake_timeout,
            body_timeout=options.http1_body_timeout,
            idle_timeout=idle if idle is not None else math.inf,
        )
        self._intercepted = bool(options.interceptors)
        self._json: dict[str, JsonCodecs | None] = {}
        self._get: dict[str, bool] = {}
        self._shapes: dict[str, tuple[bool, bool]] = {}

    # ------------------------------------------------------------------ per request
    def begin(self, host: WebHost, writer: OutWriter, stream_id: int, method: bytes, target: bytes,
              headers: list[Header], *, http2: bool) -> Call | None:
        """One request: answered now (None), or its call, started as gRPC starts one (a
        request-streaming handler runs at once; the others when ``host.request_complete``)."""
        origin = None
        for name, value in headers:
            if name == b"origin":
                origin = value
                break
        cors = self.cors.response_headers(origin) if self.cors is not None and origin is not None else []
        route = classify(method, target, headers, http2=http2)
        kind = route.kind
        loop = host.loop
        if kind is Kind.PREFLIGHT:
            pre = self.cors.preflight(headers) if self.cors is not None else _NO_CORS
            writer.write(_empty(pre.status, [h for h in pre.headers if h[0] != b"content-length"]), [])
            return None
        if kind is Kind.ANSWER or kind is Kind.GRPC:  # GRPC: only the HTTP/2 connection serves it
            host.answer_http(stream_id, route.status or 415, route.headers + cors, method)
            return None
        state = self.state
        found = state.methods.resolve(route.path, lambda: g.metadata_from_headers(headers))
        plan = self._plan(route, headers, found)
        if isinstance(plan, Answer):
            writer.write(plan.out, cors)
            host.rejected(route.path, plan.code, found.path if found is not None else UNKNOWN_METHOD)
            return None
        assert found is not None
        encoder, body, encoding, timeout, json_out = plan
        if state.max_concurrent_rpcs is not None and state.active_rpcs >= state.max_concurrent_rpcs:
            writer.write(encoder.finish(g.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!", []), cors)
            host.rejected(route.path, g.RESOURCE_EXHAUSTED, found.path)
            return None
        sink = WebSink(host, writer, encoder, cors, json_out[1] if json_out else None, json_out[2] if json_out else None)
        call = (Call(sink, stream_id, found, headers, encoding) if body is None
                else WebCall(sink, stream_id, found, headers, body, encoding))
        call.context = ServicerContext(call)
        host.calls[stream_id] = call
        state.active_rpcs += 1  # one less in the connection's call_finished
        state.metrics.rpc_started(found.path)
        if state.access_log:
            call.started_at = loop.time()
        if timeout is not None:
            call.deadline = loop.time() + timeout
            call.timer = loop.call_at(call.deadline, call.on_deadline)
        if found.request_streaming:
            runner.start(call)
        return call

    def serve_h2(self, conn: GrpcConnection, event: Any) -> None:
        """An HTTP/2 request that is not gRPC (``GrpcConnection._not_grpc``)."""
        headers = event.headers
        summary = headers.summary
        sid = event.stream_id
        call = self.begin(conn, H2StreamWriter(conn, sid), sid, summary.method, summary.path, headers, http2=True)
        if call is not None and event.end_stream:
            call.feed(b"", 0, True)
            conn.request_complete(call)

    def _plan(self, route: Route, headers: list[Header], found: Method | None
              ) -> Answer | tuple[ResponseEncoder, Body | None, str | None, float | None, JsonCodecs | None]:
        """The encoder, body decoder (None: gRPC framing as it is), grpc-encoding, deadline and
        JSON codecs of an RPC, or its answer now."""
        max_length = self.state.max_receive_message_length
        if route.kind is Kind.GRPC_WEB:
            fmt = route.grpc_web
            assert fmt is not None
            shape = self._shape(route.path, found, headers)
            web_encoder = grpcweb.GrpcWebResponse(fmt, unary=shape is not None and not shape[1])
            if found is None:
                return Answer(web_encoder.finish(g.UNIMPLEMENTED, _NOT_FOUND, []), g.UNIMPLEMENTED)
            timeout: float | None = None
            encoding: str | None = None
            for name, value in headers:
                if name == b"grpc-timeout":
                    try:
                        timeout = g.parse_timeout(value.decode("latin-1"))
                    except ValueError as exc:
                        return Answer(web_encoder.finish(g.INTERNAL, str(exc), []), g.INTERNAL)
                elif name == b"grpc-encoding":
                    encoding = value.decode("latin-1")
            # The body is gRPC's framing (base64 in -text): the call's own decoder reads it, with the
            # same answers as gRPC's (framing, size limit, grpc-encoding).
            return web_encoder, Base64Body() if fmt.text else None, encoding, timeout, None
        try:
            if route.kind is Kind.CONNECT_GET:
                allowed = found is not None and self._allows_get(route.path)
                call = connect.parse_get_request(route.query, headers, allowed=allowed)
            else:
                call = connect.parse_post_request(headers)
        except g.GrpcError as exc:
            return _http(connect.error_answer(exc), exc.code)
        if isinstance(call, connect.HttpAnswer):
            return _http(call)
        encoder: ResponseEncoder = (connect.ConnectStreamResponse(call) if call.streaming
                                    else connect.ConnectUnaryResponse(call))
        if found is None:
            return Answer(encoder.finish(g.UNIMPLEMENTED, _NOT_FOUND, []), g.UNIMPLEMENTED)
        shape = self._shape(route.path, found, headers)
        if shape is not None and (shape[0] or shape[1]) != call.streaming:
            return _http(connect.HttpAnswer(415))  # a unary codec for a streaming method, or the reverse
        json = None
        if call.codec == "json":
            json = self._json_codecs(route.path)
            if json is None:  # no protobuf descriptor for this method's messages: no JSON mapping
                return _http(connect.HttpAnswer(415, [(b"accept-post", b"application/proto, application/connect+proto")]))
        json_in = json[0] if json else None
        body: Body = (FramedBody(connect.ConnectStreamDecoder(call, max_length), json_in) if call.streaming
                      else UnaryBody(max_length, call.request_encoding, json_in, call.message))
        return encoder, body, None, call.timeout, json

    # ------------------------------------------------------------------ per method path
    def _shape(self, path: str, found: Method | None, headers: list[Header]) -> tuple[bool, bool] | None:
        """(request streaming, response streaming) of the handler a path reaches: the resolved
        method's, or with interceptors (whose chain resolves per call) the registered handler's."""
        if found is None:
            return None
        if not self._intercepted:
            return found.request_streaming, found.response_streaming
        shape = self._shapes.get(path)
        if shape is None:
            handler = self.state.registry.lookup(path, g.metadata_from_headers(headers))
            if handler is None:
                return found.request_streaming, found.response_streaming
            shape = (bool(handler.request_streaming), bool(handler.response_streaming))
            if self.state.registry.registered(path) is not None:
                self._shapes[path] = shape
        return shape

    def _allows_get(self, path: str) -> bool:
        allowed = self._get.get(path)
        if allowed is None:
            allowed = connect.method_allows_get(path)
            if len(self._get) < _CACHED_PATHS:
                self._get[path] = allowed
        return allowed

    def _json_codecs(self, path: str) -> JsonCodecs | None:
        """JSON codecs of the request and response types, from the method's descriptor."""
        if path in self._json:
            return self._json[path]
        codecs = None
        classes = _message_classes(path)
        if classes is not None:
            request_class, response_class = classes
            codecs = (connect.JsonCodec(request_class), connect.JsonCodec(response_class), response_class)
        if len(self._json) < _CACHED_PATHS:
            self._json[path] = codecs
        return codecs


def _message_classes(path: str) -> tuple[type, type] | None:
    """The request and response message classes of ``/pkg.Service/Method`` (its descriptor in
    protobuf's default pool, where generated code puts it)."""
    from google.protobuf import descriptor_pool, message_factory

    try:
        method = descriptor_pool.Default().FindMethodByName(path.lstrip("/").replace("/", "."))
        return message_factory.GetMessageClass(method.input_type), message_factory.GetMessageClass(method.output_type)
    except (KeyError, TypeError):
        return None

