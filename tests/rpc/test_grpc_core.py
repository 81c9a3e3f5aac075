"""The gRPC core against grpcio's C-core client (sync and aio), on every runtime."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import gmftest_pb2 as tpb
import gmftest_pb2_grpc
import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest
import route_guide_pb2 as rpb
import route_guide_pb2_grpc

from tests.helpers import poll
from tests.helpers.apps import wait_handler_started

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

MB = 1024 * 1024


@pytest.fixture(scope="module")
def channel(target):
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 16 * MB),
                                                ("grpc.max_send_message_length", 16 * MB)]) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel):
    return gmftest_pb2_grpc.TestServiceStub(channel)


def sync_call(channel, method):
    return channel.unary_unary(f"/gmftest.SyncService/{method}", request_serializer=tpb.EchoRequest.SerializeToString,
                               response_deserializer=tpb.EchoReply.FromString)


# ---------------------------------------------------------------- the four kinds
def test_helloworld(channel):
    reply = helloworld_pb2_grpc.GreeterStub(channel).SayHello(helloworld_pb2.HelloRequest(name="John"), timeout=10)
    assert reply.message == "Hello John!"


def test_async_handlers_have_their_task_from_the_first_line(stub):
    """Async unary handlers start eagerly (gmf/rpc/eager.py) yet run as a task from their
    first line: asyncio.timeout() works there, and the task is the same after a suspension."""
    for _ in range(3):
        reply = json.loads(stub.Unary(tpb.EchoRequest(action="asyncio"), timeout=10).message)
        assert reply == {"task": True, "same": True}


def test_worker_gc_policy(stub):
    reply = json.loads(stub.Unary(tpb.EchoRequest(action="gc"), timeout=10).message)
    assert reply["threshold"] == [20000, 10, 10] and reply["frozen"] > 1000


@pytest.mark.parametrize(("before", "after"), [
    (None, [20000, 10, 10]),  # this Python's default (700 up to 3.12, 2,000 from 3.13): the worker's
    ([1234, 5, 5], [1234, 5, 5]),  # the application's own: left alone
])
def test_tune_gc_replaces_only_the_default_threshold(before, after):
    code = ("import gc, json; from gmf.worker import tune_gc\n"
            + (f"gc.set_threshold(*{before!r})\n" if before else "")
            + "tune_gc(); print(json.dumps(gc.get_threshold()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == after


def test_route_guide_all_kinds(channel):
    stub = route_guide_pb2_grpc.RouteGuideStub(channel)
    assert stub.GetFeature(rpb.Point(latitude=10_000_000, longitude=0), timeout=10).name == "Feature 1/0"
    rect = rpb.Rectangle(lo=rpb.Point(latitude=0, longitude=0), hi=rpb.Point(latitude=20_000_000, longitude=20_000_000))
    names = [f.name for f in stub.ListFeatures(rect, timeout=10)]
    assert names and all(names)
    summary = stub.RecordRoute(iter([rpb.Point(latitude=i, longitude=i) for i in range(7)]), timeout=10)
    assert summary.point_count == 7
    notes = [rpb.RouteNote(location=rpb.Point(latitude=5, longitude=5), message=str(i)) for i in range(3)]
    replies = [n.message for n in stub.RouteChat(iter(notes), timeout=10)]
    assert replies[:3] == ["0", "0", "1"]


def test_server_stream_and_context_write(stub, channel):
    replies = list(stub.ServerStream(tpb.EchoRequest(message="s", count=50), timeout=10))
    assert [r.index for r in replies] == list(range(50))
    bidi = list(stub.Bidi(iter([tpb.EchoRequest(message=m) for m in "abc"]), metadata=[("use-context-write", "1")], timeout=10))
    assert [r.message for r in bidi] == ["A", "B", "C"]


def test_a_stream_made_without_suspending_reaches_the_client_as_it_is_made(stub):
    """A handler that yields many messages without awaiting anything (then holds the loop,
    as CPU-bound work would) gets them to the client as it makes them, not after it is done:
    past 16 KiB queued in one loop iteration a write goes to the kernel at once
    (GrpcConnection.send_message). 400 messages of ~110 bytes, 0.6 s of work before the last."""
    arrived = []
    began = time.monotonic()
    request = tpb.EchoRequest(action="busy", count=400, payload=b"x" * 100, sleep_seconds=0.6)
    for reply in stub.ServerStream(request, timeout=10):
        arrived.append((time.monotonic() - began, reply.index))
    assert [i for _, i in arrived] == list(range(400))
    first, last = arrived[0][0], arrived[-1][0]
    assert last - first > 0.4, f"first message at {first:.3f}s, last at {last:.3f}s: sent all at once"


def test_client_stream_and_bidi(stub):
    reply = stub.ClientStream(iter([tpb.EchoRequest(message=str(i)) for i in range(100)]), timeout=10)
    assert reply.index == 100 and reply.message == ",".join(str(i) for i in range(100))
    replies = list(stub.Bidi(iter([tpb.EchoRequest(message=str(i)) for i in range(20)]), timeout=10))
    assert [r.message for r in replies] == [str(i) for i in range(20)]


def test_plain_def_handlers_all_kinds(channel):
    des, ser = tpb.EchoReply.FromString, tpb.EchoRequest.SerializeToString
    assert sync_call(channel, "Unary")(tpb.EchoRequest(message="x"), timeout=10).message == "sync:x"
    stream = channel.unary_stream("/gmftest.SyncService/ServerStream", request_serializer=ser, response_deserializer=des)
    assert [r.index for r in stream(tpb.EchoRequest(count=5), timeout=10)] == list(range(5))
    cs = channel.stream_unary("/gmftest.SyncService/ClientStream", request_serializer=ser, response_deserializer=des)
    assert cs(iter([tpb.EchoRequest(message=m) for m in "ab"]), timeout=10).message == "sync:a,b"
    bidi = channel.stream_stream("/gmftest.SyncService/Bidi", request_serializer=ser, response_deserializer=des)
    assert [r.message for r in bidi(iter([tpb.EchoRequest(message=m) for m in "ab"]), timeout=10)] == ["sync:a", "sync:b"]
    with pytest.raises(grpc.RpcError) as err:
        sync_call(channel, "Unary")(tpb.EchoRequest(action="abort", code=5, details="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and err.value.details() == "nope"


# ---------------------------------------------------------------- status and metadata
@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL])
def test_abort_codes_and_percent_encoded_details(stub, code):
    details = "bad thing: 100% ünïcødé\n日本"
    with pytest.raises(grpc.RpcError) as err:
        stub.Unary(tpb.EchoRequest(action="abort", code=code.value[0], details=details), timeout=10)
    assert err.value.code() == code
    assert err.value.details() == details


def test_set_code(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Unary(tpb.EchoRequest(action="set_code", code=grpc.StatusCode.ALREADY_EXISTS.value[0], details="dup"), timeout=10)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and err.value.details() == "dup"


def test_handler_exception_is_unknown_and_logged(stub, session_server):
    with pytest.raises(grpc.RpcError) as err:
        stub.Unary(tpb.EchoRequest(action="raise", details="kaboom-123"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert "kaboom-123" in err.value.details()
    assert stub.Unary(tpb.EchoRequest(message="after"), timeout=10).message == "after"
    poll.until(lambda: "kaboom-123" in session_server.log(), "the handler's exception in the server log", timeout=5)
    assert "ValueError: kaboom-123" in session_server.log()


def test_metadata_both_ways(stub):
    reply, call = stub.Unary.with_call(
        tpb.EchoRequest(message="m", action="metadata"),
        metadata=[("x-text", "hello"), ("x-data-bin", b"\x00\xffbinary")],
        timeout=10,
    )
    assert "x-text=hello" in reply.metadata
    assert "x-data-bin=bin:" + b"\x00\xffbinary".hex() in reply.metadata
    initial = dict(call.initial_metadata())
    assert initial["initial-key"] == "initial-value" and initial["initial-bin"] == b"\x00\x01\xff"
    trailing = dict(call.trailing_metadata())
    assert trailing["trailing-key"] == "trailing-value" and trailing["trailing-bin"] == b"\xfe\x00"


def test_status_details_bin_passthrough(stub):
    details = b"\x08\x05\x12\x04nope-binary-details"
    with pytest.raises(grpc.RpcError) as err:
        stub.Unary(tpb.EchoRequest(action="details_bin", code=5, details="nf", payload=details), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert dict(err.value.trailing_metadata())["grpc-status-details-bin"] == details


def test_unknown_service_and_method_unimplemented(channel):
    for path in ("/gmftest.TestService/Nope", "/no.Such/Service"):
        call = channel.unary_unary(path)
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_undecodable_request_is_internal(channel, stub):
    call = channel.unary_unary("/gmftest.TestService/Unary")
    with pytest.raises(grpc.RpcError) as err:
        call(b"\xff\xff\xff\xff", timeout=10)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert stub.Unary(tpb.EchoRequest(message="still"), timeout=10).message == "still"


def test_peer_and_time_remaining(stub):
    assert stub.Unary(tpb.EchoRequest(action="peer"), timeout=10).message.startswith("ipv4:127.0.0.1:")
    remaining = float(stub.Unary(tpb.EchoRequest(action="time_remaining"), timeout=5).message)
    assert 3.0 < remaining <= 5.1  # C-core rounds the timeout it sends up
    assert stub.Unary(tpb.EchoRequest(action="time_remaining")).message == "none"


# ---------------------------------------------------------------- deadlines and cancellation
def test_deadline_exceeded_cancels_handler(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Unary(tpb.EchoRequest(message="dl-1", action="sleep", sleep_seconds=5), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.Unary(tpb.EchoRequest(message="dl-1", action="was_cancelled"), timeout=10).message == "cancelled"


def test_client_cancel_cancels_handler(stub, channel):
    future = stub.Unary.future(tpb.EchoRequest(message="rst-1", action="sleep", sleep_seconds=5))
    wait_handler_started(channel, "rst-1")
    future.cancel()
    assert stub.Unary(tpb.EchoRequest(message="rst-1", action="was_cancelled"), timeout=10).message == "cancelled"


def test_done_callback_runs(stub):
    stub.Unary(tpb.EchoRequest(message="cb-1", action="done_callback"), timeout=10)
    assert stub.Unary(tpb.EchoRequest(message="cb-1", action="was_cancelled"), timeout=10).message == "done-callback"


# ---------------------------------------------------------------- sizes and flow control
def test_4mb_messages_both_ways(stub):
    payload = b"p" * (4 * MB - 64)
    reply = stub.Unary(tpb.EchoRequest(payload=payload), timeout=30)
    assert reply.payload == payload
    assert len(stub.Unary(tpb.EchoRequest(action="big", count=4 * MB), timeout=30).payload) == 4 * MB


def test_request_over_limit_is_resource_exhausted(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Unary(tpb.EchoRequest(payload=b"x" * (4 * MB + 10)), timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Unary(tpb.EchoRequest(message="ok"), timeout=10).message == "ok"


def test_response_over_limit_is_resource_exhausted(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Unary(tpb.EchoRequest(action="big", count=6 * MB), timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_large_streams_flow_control(stub):
    chunk = b"z" * 100_000
    replies = stub.ServerStream(tpb.EchoRequest(count=80, payload=chunk), timeout=60)
    got = 0
    for i, reply in enumerate(replies):
        if i % 20 == 0:
            time.sleep(0.05)  # a slow reader: the server must wait for window updates
        assert reply.payload == chunk
        got += 1
    assert got == 80
    reply = stub.ClientStream(iter([tpb.EchoRequest(payload=chunk) for _ in range(80)]), timeout=60)
    assert reply.index == 80 and int(reply.payload) == 80 * len(chunk)


def test_many_concurrent_streams_aio(target):
    async def main():
        async with grpc.aio.insecure_channel(target) as ch:
            stub = gmftest_pb2_grpc.TestServiceStub(ch)
            replies = await asyncio.gather(*(stub.Unary(tpb.EchoRequest(message=str(i)), timeout=30) for i in range(500)))
            assert [r.message for r in replies] == [str(i) for i in range(500)]
            # streaming with the aio client too
            call = stub.Bidi()
            for i in range(10):
                await call.write(tpb.EchoRequest(message=str(i)))
                assert (await call.read()).message == str(i)
            await call.done_writing()
            assert await call.read() == grpc.aio.EOF
    asyncio.run(main())


# ---------------------------------------------------------------- compression
def test_gzip_request_and_response(target):
    with grpc.insecure_channel(target, compression=grpc.Compression.Gzip) as ch:
        stub = gmftest_pb2_grpc.TestServiceStub(ch)
        payload = b"compressible " * 10000
        assert stub.Unary(tpb.EchoRequest(payload=payload), timeout=10).payload == payload
        reply = stub.Unary(tpb.EchoRequest(payload=payload, action="compress"), timeout=10)
        assert reply.payload == payload


# ---------------------------------------------------------------- concurrency sanity
def test_parallel_clients_threads(target):
    errors = []

    def worker():
        try:
            with grpc.insecure_channel(target) as ch:
                s = helloworld_pb2_grpc.GreeterStub(ch)
                for i in range(50):
                    assert s.SayHello(helloworld_pb2.HelloRequest(name=str(i)), timeout=10).message == f"Hello {i}!"
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_oversized_metadata_is_resource_exhausted_connection_survives(stub):
    assert stub.Unary(tpb.EchoRequest(message="m"), metadata=[("x-big", "a" * 20000)], timeout=10).message == "m"
    with pytest.raises(grpc.RpcError) as err:
        stub.Unary(tpb.EchoRequest(message="m"), metadata=[("x-big", "a" * 100_000)], timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "exceeds the limit of 65536" in err.value.details()
    assert stub.Unary(tpb.EchoRequest(message="same channel"), timeout=10).message == "same channel"
