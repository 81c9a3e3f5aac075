"""A test driver for gmf.web's codecs, so real clients check them before they are in GMF.

python -m tests.web.codec_server --port 8080 --cors-origin http://127.0.0.1:9000

This is NOT GMF's server and not how phase 2 integrates (that goes through the accept point and
the Call layer, see docs/web.md): it is a plain asyncio-streams loop, one request at a time per
connection, that drives ``H1ServerConnection``, ``route.classify``, the gRPC-Web and Connect
decoders/encoders and ``CorsPolicy`` exactly as their docstrings say, and calls the servicers of
tests/web/services.py through what ``add_XServicer_to_server`` registers (grpcio's handlers).
``tests/web/test_web_clients.py`` runs the whole real-client suite against it ("codecs"), which
is how the codecs are known to interoperate with Chromium, curl and connectrpc's client; phase 2
replaces it with GMF in ``SERVERS``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

import grpc
import helloworld_pb2_grpc  # importable: see tests/web/__init__.py
import route_guide_pb2_grpc

from gmf.protocol import grpc as g
from gmf.rpc.registry import MethodRegistry
from gmf.web import connect, grpcweb
from gmf.web.cors import CorsPolicy
from gmf.web.http1 import Body, Closed, EndOfRequest, H1Limits, H1ServerConnection, Rejected, Request
from gmf.web.route import Kind, Route, classify
from gmf.web.sink import Out, ResponseEncoder, write_out
from tests.web.services import RouteGuideServicer, WebGreeter

MAX_MESSAGE = 4 * 1024 * 1024


class Context:
    """The grpc.aio.ServicerContext subset tests/web/services.py uses."""

    def __init__(self, metadata: g.Metadata, deadline: float | None) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self.code = g.OK
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise g.GrpcError(code.value[0], details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code.value[0]

    def set_details(self, details: str) -> None:
        self.details = details

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def invocation_metadata(self) -> g.Metadata:
        return self._metadata


class Connection:
    def __init__(self, registry: MethodRegistry, cors: CorsPolicy | None, writer: asyncio.StreamWriter,
                 limits: H1Limits) -> None:
        self.registry = registry
        self.cors = cors
        self.writer = writer
        self.h1 = H1ServerConnection(limits, now=asyncio.get_running_loop().time())

    def flush(self) -> None:
        data = self.h1.data_to_send()
        if data:
            self.writer.write(data)

    async def serve(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        request: Request | None = None
        body: list[bytes] = []
        events: list[Any] = []
        while not self.h1.closing:
            if not events:
                deadline = self.h1.deadline
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except TimeoutError:
                    events = self.h1.check_deadline(loop.time())
                    continue
                events = self.h1.receive_data(data, loop.time())
                if not events:
                    continue
            event, events = events[0], events[1:]
            if isinstance(event, Request):
                request, body = event, []
            elif isinstance(event, Body):
                body.append(event.data)
            elif isinstance(event, EndOfRequest) and request is not None:
                await self.answer(request, b"".join(body))
                request = None
                events += self.h1.next_events(loop.time())
            elif isinstance(event, (Rejected, Closed)):
                break
            self.flush()
            await self.writer.drain()
        self.flush()

    def send(self, out: Out, origin: bytes | None) -> None:
        extra = self.cors.response_headers(origin) if self.cors else []
        write_out(self.h1, out, asyncio.get_running_loop().time(), extra)
        self.flush()

    def plain(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, origin: bytes | None) -> None:
        extra = self.cors.response_headers(origin) if self.cors else []
        self.h1.respond(status, headers + extra, body, asyncio.get_running_loop().time())

    async def answer(self, req: Request, body: bytes) -> None:
        headers = req.headers
        origin = next((v for k, v in headers if k == b"origin"), None)
        route = classify(req.method, req.target, headers)
        if route.kind is Kind.PREFLIGHT:
            pre = self.cors.preflight(headers) if self.cors else None
            if pre is None:
                self.plain(403, [], b"", None)
            else:
                self.h1.respond(pre.status, pre.headers, b"", asyncio.get_running_loop().time())
            return
        if route.kind is Kind.ANSWER:
            self.plain(route.status, route.headers, b"", origin)
            return
        handler = self.registry.lookup(route.path)
        try:
            await self.rpc(route, handler, headers, body, origin)
        except _Plain as answer:
            self.plain(answer.status, answer.headers, answer.body, origin)

    async def rpc(self, route: Route, handler: Any, headers: list[tuple[bytes, bytes]], body: bytes,
                  origin: bytes | None) -> None:
        encoder: ResponseEncoder | None = None
        deadline: float | None = None
        messages: list[Any] = []
        codec: connect.MessageCodec | None = None
        try:
            if route.kind is Kind.GRPC_WEB:
                assert route.grpc_web is not None
                encoder = grpcweb.GrpcWebResponse(route.grpc_web, unary=handler is not None and not handler.response_streaming)
                if handler is None:
                    raise g.GrpcError(g.UNIMPLEMENTED, f"Method not found: {route.path}")
                timeout = next((v for k, v in headers if k == b"grpc-timeout"), None)
                if timeout is not None:
                    deadline = time.monotonic() + g.parse_timeout(timeout.decode("latin-1"))
                encoding = next((v.decode("latin-1") for k, v in headers if k == b"grpc-encoding"), None)
                decoder = grpcweb.GrpcWebRequestDecoder(route.grpc_web, MAX_MESSAGE, encoding)
                payloads = decoder.feed(body)
                decoder.end()
                codec = connect.ProtoCodec(handler.request_deserializer, handler.response_serializer)
                messages = [codec.decode(p) for p in payloads]
            else:
                if route.kind is Kind.CONNECT_GET:
                    call = connect.parse_get_request(route.query, headers, allowed=connect.method_allows_get(route.path))
                else:
                    call = connect.parse_post_request(headers)
                if isinstance(call, connect.HttpAnswer):
                    raise _Plain(call.status, call.headers, call.body)
                encoder = connect.ConnectStreamResponse(call) if call.streaming else connect.ConnectUnaryResponse(call)
                if handler is None:
                    raise g.GrpcError(g.UNIMPLEMENTED, f"{route.path} is not implemented")
                streaming_method = handler.request_streaming or handler.response_streaming
                if streaming_method != call.streaming:
                    raise _Plain(415, [], b"")
                cls = connect.message_class_of(handler.request_deserializer)
                assert cls is not None
                codec = (connect.JsonCodec(cls) if call.codec == "json"
                         else connect.ProtoCodec(handler.request_deserializer, handler.response_serializer))
                if call.timeout is not None:
                    deadline = time.monotonic() + call.timeout
                if call.streaming:
                    stream = connect.ConnectStreamDecoder(call, MAX_MESSAGE)
                    payloads = stream.feed(body)
                    stream.end()
                else:
                    raw = call.message if call.message is not None else body
                    payloads = [connect.decode_unary_body(raw, call.request_encoding, MAX_MESSAGE)]
                messages = [codec.decode(p) for p in payloads]
        except g.GrpcError as exc:
            if encoder is None:  # no call shape yet: a Connect unary error answer
                answer = connect.error_answer(exc)
                raise _Plain(answer.status, answer.headers, answer.body) from None
            self.send(encoder.finish(exc.code, exc.message, []), origin)
            return

        assert codec is not None
        encode = codec.encode
        assert encoder is not None
        context = Context(g.metadata_from_headers(headers), deadline)
        try:
            await asyncio.wait_for(self.run(handler, messages, context, encoder, encode, origin),
                                   None if deadline is None else max(0.0, deadline - time.monotonic()))
            code, details = context.code, context.details
        except TimeoutError:
            code, details = g.DEADLINE_EXCEEDED, "Deadline Exceeded"
        except g.GrpcError as exc:
            code, details = exc.code, exc.message
        except Exception as exc:  # noqa: BLE001 - a handler bug is UNKNOWN, as in grpcio
            code, details = g.UNKNOWN, f"Unexpected error in the handler: {exc!r}"
        self.send(encoder.finish(code, details, []), origin)

    async def run(self, handler: Any, messages: list[Any], context: Context, encoder: ResponseEncoder,
                  encode: Any, origin: bytes | None) -> None:
        async def requests() -> AsyncIterator[Any]:
            for m in messages:
                yield m

        if handler.request_streaming:
            arg: Any = requests()
            func = handler.stream_stream if handler.response_streaming else handler.stream_unary
        else:
            if len(messages) != 1:
                raise g.GrpcError(g.INTERNAL, "Expected exactly one request message")
            arg = messages[0]
            func = handler.unary_stream if handler.response_streaming else handler.unary_unary
        if handler.response_streaming:
            async for reply in func(arg, context):
                self.send(encoder.message(encode(reply)), origin)
                await self.writer.drain()
        else:
            reply = await func(arg, context)
            if context.code == g.OK:
                self.send(encoder.message(encode(reply)), origin)


class _Plain(Exception):
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(status)
        self.status, self.headers, self.body = status, headers, body


async def main_async(host: str, port: int, cors_origins: list[str], limits: H1Limits) -> None:
    registry = MethodRegistry()
    helloworld_pb2_grpc.add_GreeterServicer_to_server(WebGreeter(), registry)
    route_guide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuideServicer(), registry)
    cors = CorsPolicy(cors_origins) if cors_origins else None

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await Connection(registry, cors, writer, limits).serve(reader)
        except ConnectionError:
            pass
        except Exception:
            traceback.print_exc()
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, host, port)
    print(f"gmf.web codec driver listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cors-origin", action="append", default=[])
    parser.add_argument("--header-timeout", type=float, default=H1Limits().header_timeout)
    parser.add_argument("--body-timeout", type=float, default=H1Limits().body_timeout)
    args = parser.parse_args()
    limits = H1Limits(header_timeout=args.header_timeout, body_timeout=args.body_timeout)
    asyncio.run(main_async(args.host, args.port, args.cors_origin, limits))


if __name__ == "__main__":
    main()
