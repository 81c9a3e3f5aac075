"""Servicers used by the protocol tests. Every behaviour is chosen by the request, so real
clients (grpcio, grpcurl, h2load, grpc-js) drive each status path."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import os
import time

import gmftest_pb2  # importable: tests/helpers/__init__.py put the generated code on sys.path
import gmftest_pb2_grpc
import grpc
import helloworld_pb2
import helloworld_pb2_grpc

from tests.helpers import interop, poll

# Per-worker record of handlers that saw their cancellation (tests use one worker).
CANCELLED: dict[str, str] = {}
# Per-worker count of handler starts by request message ("count_start", "sleep"; read by "started").
STARTED: dict[str, int] = {}


def _metadata_strings(context) -> list[str]:
    out = []
    for key, value in context.invocation_metadata():
        if isinstance(value, bytes):
            value = "bin:" + value.hex()
        out.append(f"{key}={value}")
    return out


def _status(code: int) -> grpc.StatusCode:
    return {c.value[0]: c for c in grpc.StatusCode}[code]


class TestService(gmftest_pb2_grpc.TestServiceServicer):
    async def Unary(self, request, context):
        action = request.action
        if action == "abort":
            await context.abort(_status(request.code), request.details)
        if action == "raise":
            raise ValueError(request.details or "boom")
        if action == "set_code":
            context.set_code(_status(request.code))
            context.set_details(request.details)
            return gmftest_pb2.EchoReply(message="ignored")
        if action == "sleep":
            STARTED[request.message] = STARTED.get(request.message, 0) + 1  # "started" tells a test it runs
            try:
                await asyncio.sleep(request.sleep_seconds)
            except asyncio.CancelledError:
                CANCELLED[request.message] = "cancelled" if context.cancelled() else "cancelled-but-context-not"
                raise
        if action == "was_cancelled":
            for _ in range(100):
                if request.message in CANCELLED:
                    break
                await asyncio.sleep(0.02)
            return gmftest_pb2.EchoReply(message=CANCELLED.get(request.message, "no"))
        if action == "count_start":  # a handler that really ran (rapid-reset tests)
            STARTED[request.message] = STARTED.get(request.message, 0) + 1
            await asyncio.sleep(request.sleep_seconds)
        if action == "started":
            return gmftest_pb2.EchoReply(message=str(STARTED.get(request.message, 0)))
        if action == "big":
            return gmftest_pb2.EchoReply(payload=b"x" * request.count)
        if action == "metadata":
            await context.send_initial_metadata((("initial-key", "initial-value"), ("initial-bin", b"\x00\x01\xff")))
            context.set_trailing_metadata((("trailing-key", "trailing-value"), ("trailing-bin", b"\xfe\x00")))
        if action == "details_bin":
            context.set_trailing_metadata((("grpc-status-details-bin", request.payload),))
            await context.abort(_status(request.code), request.details)
        if action == "compress":
            context.set_compression(grpc.Compression.Gzip)
        if action == "time_remaining":
            remaining = context.time_remaining()
            return gmftest_pb2.EchoReply(message="none" if remaining is None else f"{remaining:.3f}")
        if action == "pid":
            return gmftest_pb2.EchoReply(message=str(os.getpid()))
        if action == "gc":  # the worker's GC policy (gmf.worker.tune_gc)
            return gmftest_pb2.EchoReply(message=json.dumps({"threshold": gc.get_threshold(),
                                                             "frozen": gc.get_freeze_count()}))
        if action == "asyncio":  # a task from the first line (eager start), the same one after a suspension
            first = asyncio.current_task()
            async with asyncio.timeout(5):
                await asyncio.sleep(0)
            return gmftest_pb2.EchoReply(message=json.dumps({
                "task": first is not None, "same": first is asyncio.current_task(),
            }))
        if action == "peer":
            return gmftest_pb2.EchoReply(message=context.peer())
        if action == "set_health":  # this worker's status of service `message`
            from gmf.services import health_status

            health_status().set(request.message, request.code)
            return gmftest_pb2.EchoReply(message="ok")
        if action == "auth_context":
            return gmftest_pb2.EchoReply(message=json.dumps({
                "auth_context": {k: [v.decode("latin-1") for v in vs] for k, vs in context.auth_context().items()},
                "peer_identities": [v.decode() for v in context.peer_identities() or []] or None,
                "peer_identity_key": context.peer_identity_key(),
            }))
        if action == "done_callback":
            context.add_done_callback(lambda ctx: CANCELLED.__setitem__(request.message, "done-callback"))
        return gmftest_pb2.EchoReply(message=request.message, payload=request.payload, metadata=_metadata_strings(context))

    async def ServerStream(self, request, context):
        for i in range(request.count):
            if request.action == "abort" and i == request.count // 2:
                await context.abort(_status(request.code), request.details)
            if request.action == "busy":  # holds the loop before the last message, as CPU-bound work does
                if i == request.count - 1:
                    time.sleep(request.sleep_seconds)
            elif request.sleep_seconds:
                await asyncio.sleep(request.sleep_seconds)
            yield gmftest_pb2.EchoReply(message=request.message, payload=request.payload, index=i)

    async def ClientStream(self, request_iterator, context):
        count = 0
        messages = []
        size = 0
        async for request in request_iterator:
            count += 1
            messages.append(request.message)
            size += len(request.payload)
        return gmftest_pb2.EchoReply(message=",".join(messages), index=count, payload=str(size).encode())

    async def Bidi(self, request_iterator, context):
        if any(k == "use-context-write" for k, _ in context.invocation_metadata()):
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    return
                await context.write(gmftest_pb2.EchoReply(message=request.message.upper()))
        i = 0
        async for request in request_iterator:
            yield gmftest_pb2.EchoReply(message=request.message, index=i)
            i += 1


# -- plain-def handlers, registered through add_generic_rpc_handlers ------------------------
def _sync_unary(request, context):
    if request.action == "abort":
        context.abort(_status(request.code), request.details)
    if request.action == "raise":
        raise RuntimeError("sync boom")
    if request.action == "sleep":
        time.sleep(request.sleep_seconds)
    return gmftest_pb2.EchoReply(message="sync:" + request.message)


def _sync_server_stream(request, context):
    for i in range(request.count):
        yield gmftest_pb2.EchoReply(message="sync", index=i)


def _sync_client_stream(request_iterator, context):
    return gmftest_pb2.EchoReply(message="sync:" + ",".join(r.message for r in request_iterator))


def _sync_bidi(request_iterator, context):
    for request in request_iterator:
        yield gmftest_pb2.EchoReply(message="sync:" + request.message)


def sync_handlers() -> grpc.GenericRpcHandler:
    des = gmftest_pb2.EchoRequest.FromString
    ser = gmftest_pb2.EchoReply.SerializeToString
    return grpc.method_handlers_generic_handler(
        "gmftest.SyncService",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_sync_unary, des, ser),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_sync_server_stream, des, ser),
            "ClientStream": grpc.stream_unary_rpc_method_handler(_sync_client_stream, des, ser),
            "Bidi": grpc.stream_stream_rpc_method_handler(_sync_bidi, des, ser),
        },
    )


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    async def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


# -- interceptors, chosen by name with the server option "interceptors" ----------------------
_PUBLIC = ("/grpc.health.", "/grpc.reflection.")  # the auth interceptors let these through


def _header(details, key: str) -> str | None:
    return next((m.value for m in details.invocation_metadata if m.key == key), None)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """grpc.aio style: no "authorization: Bearer good" -> UNAUTHENTICATED (async abort)."""

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(_PUBLIC) or _header(handler_call_details, "authorization") == "Bearer good":
            return await continuation(handler_call_details)

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or bad bearer token")

        return grpc.unary_unary_rpc_method_handler(deny)


class SyncApiKeyInterceptor(grpc.ServerInterceptor):
    """grpc.ServerInterceptor style: no "x-api-key: k" -> UNAUTHENTICATED (sync abort)."""

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(_PUBLIC) or _header(handler_call_details, "x-api-key") == "k":
            return continuation(handler_call_details)
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing api key"))


class WrapInterceptor(grpc.aio.ServerInterceptor):
    """Wraps unary and server-streaming handlers: the client sees the method and the call count
    of this worker in the trailing metadata."""

    calls = 0

    async def intercept_service(self, continuation, handler_call_details):
        if _header(handler_call_details, "x-wrap-raise"):
            raise RuntimeError("interceptor failed")
        if _header(handler_call_details, "x-wrap-await"):  # real waiting, e.g. a token lookup
            await asyncio.sleep(0.001)
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method

        def mark(context):
            WrapInterceptor.calls += 1
            context.set_trailing_metadata((("x-wrapped", method), ("x-calls", str(WrapInterceptor.calls))))

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request, context):
                mark(context)
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result

            return handler._replace(unary_unary=unary)
        inner_stream = handler.unary_stream

        async def stream(request, context):
            mark(context)
            result = inner_stream(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            else:
                for item in result:
                    yield item

        return handler._replace(unary_stream=stream)


INTERCEPTORS = {"auth": AuthInterceptor, "sync_auth": SyncApiKeyInterceptor, "wrap": WrapInterceptor}


def build_server(**kwargs):
    """The test server: helloworld, route guide, the test services (gmftest's and the interop
    grpc.testing.TestService), and sync handlers, with
    GMF's health and reflection. Options: "interceptors": names from INTERCEPTORS, in order;
    "stock_services": grpcio's own health and reflection servicers instead of GMF's;
    "health_preset": {service: status} set before the workers are forked."""
    import route_guide_pb2_grpc
    from routeguide.server import RouteGuideServicer

    from gmf import GmfServer

    stock = kwargs.pop("stock_services", False)
    interceptors = [INTERCEPTORS[name]() for name in kwargs.pop("interceptors", ())]
    preset = kwargs.pop("health_preset", {})
    server = GmfServer(health=not stock, reflection=not stock, interceptors=interceptors, **kwargs)
    for service, status in preset.items():
        server.health.set(service, status)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    gmftest_pb2_grpc.add_TestServiceServicer_to_server(TestService(), server)
    interop.add_to_server(server)  # grpc.testing.TestService, the interop test cases' servicer
    route_guide_pb2_grpc.add_RouteGuideServicer_to_server(RouteGuideServicer(), server)
    server.add_generic_rpc_handlers((sync_handlers(),))
    from tests.helpers.faults_app import fault_handlers  # gmftest.FaultService / SyncFaultService

    server.add_generic_rpc_handlers(fault_handlers())
    if stock:  # grpcio's own reflection and health servicers, registered the way grpcio documents
        from grpc_health.v1 import health, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        names = [helloworld_pb2.DESCRIPTOR.services_by_name["Greeter"].full_name,
                 gmftest_pb2.DESCRIPTOR.services_by_name["TestService"].full_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    return server


# -- what a test asks the test service -----------------------------------------------------------
def wait_handler_started(channel: grpc.Channel, key: str, timeout: float = 10.0) -> None:
    """Wait until the handler of a "sleep" (or "count_start") call with message ``key`` runs in
    the worker that ``channel``'s connection reaches (counts are per worker)."""
    stub = gmftest_pb2_grpc.TestServiceStub(channel)

    def started() -> bool:
        return stub.Unary(gmftest_pb2.EchoRequest(action="started", message=key), timeout=timeout).message != "0"

    poll.until(started, f"the handler of the call {key!r} to start", timeout)
