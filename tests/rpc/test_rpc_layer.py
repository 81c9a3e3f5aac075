"""The RPC layer (Call, the runner, ServicerContext) driven through a fake connection: request
bytes in through ``Call.feed``, handlers of each kind run by ``runner.start``, and exactly what
the call hands its :class:`~gmf.rpc.sink.CallSink` (metadata, messages, status, flow-control
credit). No sockets, no HTTP/2; the wire end of the same behaviour is tested with grpcio in
tests/rpc/test_grpc_core.py."""

from __future__ import annotations

import asyncio
import gzip
import threading
from typing import Any

import grpc
import pytest

from gmf.protocol import grpc as g
from gmf.rpc import runner
from gmf.rpc.call import _QUEUE_LIMIT
from gmf.rpc.registry import MethodOptions
from tests.rpc.fake_sink import OK_STATUS, FakeSink, request, unary

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too





@pytest.fixture(params=["inline", "threads"])
def where(request: pytest.FixtureRequest) -> MethodOptions:
    """Where the plain-def handler of a test runs: inline on the loop, or in a handler thread."""
    return MethodOptions(sync_handlers=request.param)


def run_to_end(sink: FakeSink, call: Any) -> None:
    """Start the call's handler and run the loop until the call has finished."""
    runner.start(call)
    sink.run_until(lambda: call.stream_id in sink.finished)


def feed_request(call: Any, *payloads: bytes, end: bool = True) -> int:
    data = b"".join(request(p) for p in payloads)
    return int(call.feed(data, len(data), end))


# ---------------------------------------------------------------------------- unary kinds

def test_plain_def_unary_runs_inline_and_answers_headers_message_status(sink: FakeSink) -> None:
    call = sink.call(unary(lambda req, ctx: b"re:" + req), options=MethodOptions(sync_handlers="inline"))
    assert feed_request(call, b"hi") == 5 + 2  # everything credited at once
    runner.start(call)
    # inline: done before the loop ever runs
    assert sink.sent[1] == [("headers", None, None), ("message", b"re:hi", False), OK_STATUS]
    assert sink.finished == {1: g.OK}
    assert call.task is None


def test_plain_def_unary_runs_in_a_handler_thread(sink: FakeSink) -> None:
    ran_in: list[str] = []

    def handler(req: bytes, ctx: Any) -> bytes:
        ran_in.append(threading.current_thread().name)
        return b"re:" + req

    call = sink.call(unary(handler), options=MethodOptions(sync_handlers="threads"))
    feed_request(call, b"hi")
    runner.start(call)
    assert 1 not in sink.sent  # handed to a thread; the answer comes back through the loop
    sink.run_until(lambda: 1 in sink.finished)
    assert ran_in[0].startswith("fake-sink")
    assert sink.sent[1] == [("headers", None, None), ("message", b"re:hi", False), OK_STATUS]
    assert call.task is None


def test_async_unary_runs_as_a_task(sink: FakeSink) -> None:
    async def handler(req: bytes, ctx: Any) -> bytes:
        await asyncio.sleep(0)
        return req.upper()

    call = sink.call(unary(handler))
    feed_request(call, b"abc")
    runner.start(call)
    assert call.task is not None and 1 not in sink.sent
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.sent[1] == [("headers", None, None), ("message", b"ABC", False), OK_STATUS]


def test_def_returning_an_awaitable_finishes_in_a_task(sink: FakeSink) -> None:
    async def later(req: bytes) -> bytes:
        return req * 2

    call = sink.call(unary(lambda req, ctx: later(req)))
    feed_request(call, b"x")
    runner.start(call)
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.messages() == [b"xx"] and sink.status()[1] == g.OK


@pytest.mark.parametrize(("payloads", "details"), [
    ((), "Missing request message"),
    ((b"a", b"b"), "Expected exactly one request message"),
])
def test_unary_request_needs_exactly_one_message(sink: FakeSink, where: MethodOptions, payloads: tuple[bytes, ...], details: str) -> None:
    call = sink.call(unary(lambda req, ctx: b"never"), options=where)
    if payloads:
        feed_request(call, *payloads)
    else:
        call.feed(b"", 0, True)
    run_to_end(sink, call)
    assert sink.sent[1] == [("status", g.INTERNAL, details, None, True)]  # trailers-only


def test_incomplete_message_at_end_of_stream(sink: FakeSink) -> None:
    call = sink.call(unary(lambda req, ctx: b"never"))
    data = request(b"hello")[:-1]
    call.feed(data, len(data), True)
    assert sink.sent[1] == [("status", g.INTERNAL, "Incomplete message at end of stream", None, True)]
    assert call.finished
    assert call.feed(b"late", 4, True) == 4  # after the end, every byte is credited straight away


def test_compressed_message_without_grpc_encoding(sink: FakeSink) -> None:
    call = sink.call(unary(lambda req, ctx: b"never"))
    data = request(gzip.compress(b"x"), compressed=True)
    assert call.feed(data, len(data), True) == 0
    assert sink.status() == ("status", g.INTERNAL, "Compressed message received without grpc-encoding", None, True)


def test_gzip_request_is_decompressed(sink: FakeSink, where: MethodOptions) -> None:
    call = sink.call(unary(lambda req, ctx: req), encoding="gzip", options=where)
    data = request(gzip.compress(b"squeezed"), compressed=True)
    call.feed(data, len(data), True)
    run_to_end(sink, call)
    assert sink.messages() == [b"squeezed"]


def test_request_over_max_receive_message_length(sink: FakeSink) -> None:
    sink.max_receive_message_length = 10
    call = sink.call(unary(lambda req, ctx: b"never"))
    assert feed_request(call, b"x" * 11) == 0
    code, details = sink.status()[1:3]
    assert code == g.RESOURCE_EXHAUSTED and "11" in details and "10" in details


def test_response_over_max_send_message_length(sink: FakeSink, where: MethodOptions) -> None:
    sink.max_send_message_length = 3
    call = sink.call(unary(lambda req, ctx: b"four"), options=where)
    feed_request(call, b"")
    run_to_end(sink, call)
    assert sink.sent[1] == [("status", g.RESOURCE_EXHAUSTED, "Sent message larger than max (4 vs. 3)", None, True)]


def test_request_that_does_not_deserialize(sink: FakeSink, where: MethodOptions) -> None:
    def boom(data: bytes) -> Any:
        raise ValueError("not a message")

    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"never", request_deserializer=boom)
    call = sink.call(handler, options=where)
    feed_request(call, b"?")
    run_to_end(sink, call)
    assert sink.sent[1] == [("status", g.INTERNAL, "Exception deserializing request!", None, True)]


# ---------------------------------------------------------------------------- outcomes -> status

@pytest.mark.parametrize(("style", "details"), [
    ("aio", "Unexpected <class 'ValueError'>: boom"),  # grpc.aio's words
    ("sync", "Exception calling application: boom"),  # grpc.server's
])
def test_handler_exception_is_unknown(sink: FakeSink, where: MethodOptions, style: str, details: str) -> None:
    def handler(req: bytes, ctx: Any) -> bytes:
        raise ValueError("boom")

    call = sink.call(unary(handler), options=MethodOptions(where.sync_handlers, grpcio_flavor=style))
    feed_request(call, b"")
    run_to_end(sink, call)
    assert sink.sent[1] == [("status", g.UNKNOWN, details, None, True)]


@pytest.mark.parametrize(("style", "details"), [
    ("aio", "Unexpected <class 'NotImplementedError'>: Method not implemented!"),
    ("sync", "Method not implemented!"),
])
def test_code_set_before_an_exception_is_the_status(sink: FakeSink, where: MethodOptions, style: str,
                                                     details: str) -> None:
    """What the generated base class does for a method the servicer does not implement."""
    def handler(req: bytes, ctx: Any) -> bytes:
        ctx.set_code(grpc.StatusCode.UNIMPLEMENTED)
        ctx.set_details("Method not implemented!")
        ctx.set_trailing_metadata((("x-why", "base class"),))
        raise NotImplementedError("Method not implemented!")

    call = sink.call(unary(handler), options=MethodOptions(where.sync_handlers, grpcio_flavor=style))
    feed_request(call, b"")
    run_to_end(sink, call)
    assert sink.sent[1] == [("status", g.UNIMPLEMENTED, details, [(b"x-why", b"base class")], True)]


@pytest.mark.parametrize(("style", "details"), [
    ("aio", "Unexpected <class 'ValueError'>: boom"),
    ("sync", "Exception calling application: boom"),
])
def test_async_handler_code_before_an_exception(sink: FakeSink, style: str, details: str) -> None:
    async def handler(req: bytes, ctx: Any) -> bytes:
        ctx.set_code(grpc.StatusCode.NOT_FOUND)
        raise ValueError("boom")

    call = sink.call(unary(handler), options=MethodOptions(grpcio_flavor=style))
    feed_request(call, b"")
    run_to_end(sink, call)
    assert sink.status() == ("status", g.NOT_FOUND, details, None, True)


def test_code_ok_before_an_exception_is_unknown(sink: FakeSink) -> None:
    def handler(req: bytes, ctx: Any) -> bytes:
        ctx.set_code(grpc.StatusCode.OK)
        raise ValueError("boom")

    call = sink.call(unary(handler), options=MethodOptions("threads", grpcio_flavor="sync"))
    feed_request(call, b"")
    run_to_end(sink, call)
    assert sink.status()[1:3] == (g.UNKNOWN, "Exception calling application: boom")


def test_abort_with_trailing_metadata(sink: FakeSink, where: MethodOptions) -> None:
    def handler(req: bytes, ctx: Any) -> Any:
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing", (("why", "gone"),))

    call = sink.call(unary(handler), options=where)
    feed_request(call, b"")
    run_to_end(sink, call)
    assert sink.sent[1] == [("status", g.NOT_FOUND, "no such thing", [(b"why", b"gone")], True)]


def test_set_code_and_details_without_raising(sink: FakeSink, where: MethodOptions) -> None:
    def handler(req: bytes, ctx: Any) -> bytes:
        ctx.set_code(grpc.StatusCode.ALREADY_EXISTS)
        ctx.set_details("dup")
        ctx.set_trailing_metadata((("k", "v"),))
        return b"ignored: the status is not OK"

    call = sink.call(unary(handler), options=where)
    ctx = call.context  # a finished call lets go of its context (no reference cycle)
    feed_request(call, b"")
    run_to_end(sink, call)
    assert sink.sent[1] == [("status", g.ALREADY_EXISTS, "dup", [(b"k", b"v")], True)]
    assert ctx.code() is grpc.StatusCode.ALREADY_EXISTS and ctx.details() == "dup"


def test_initial_metadata_goes_first(sink: FakeSink, where: MethodOptions) -> None:
    def handler(req: bytes, ctx: Any) -> bytes:
        ctx.send_initial_metadata((("x-first", "1"),))
        with pytest.raises(RuntimeError):
            ctx.send_initial_metadata((("x-again", "2"),))
        return b"body"

    call = sink.call(unary(handler), options=where)
    feed_request(call, b"")
    run_to_end(sink, call)
    assert sink.sent[1] == [("headers", [(b"x-first", b"1")], None), ("message", b"body", False), OK_STATUS]


def test_response_compression_follows_accept_encoding(sink: FakeSink, where: MethodOptions) -> None:
    def handler(req: bytes, ctx: Any) -> bytes:
        ctx.set_compression(grpc.Compression.Gzip)
        return b"z" * 100

    call = sink.call(unary(handler), options=where)
    call.accept_encoding = "identity, gzip"
    feed_request(call, b"")
    run_to_end(sink, call)
    headers, message, status = sink.sent[1]
    assert headers == ("headers", None, "gzip")
    assert message[2] is True and gzip.decompress(message[1]) == b"z" * 100
    assert status == OK_STATUS


# ---------------------------------------------------------------------------- streams

def test_server_streaming_waits_while_the_sink_is_blocked(sink: FakeSink) -> None:
    async def handler(req: bytes, ctx: Any) -> Any:
        for i in range(3):
            yield b"%d" % i

    call = sink.call(grpc.unary_stream_rpc_method_handler(handler))
    feed_request(call, b"")
    sink.blocked = True
    runner.start(call)
    sink.settle()
    assert sink.messages() == [b"0"] and call.write_waiter is not None  # waiting after the first
    sink.blocked = False
    call.wake_writer()  # what the connection does on WINDOW_UPDATE / resume_writing
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.messages() == [b"0", b"1", b"2"] and sink.status() == OK_STATUS


def test_context_write_from_a_coroutine_handler(sink: FakeSink) -> None:
    async def handler(req: bytes, ctx: Any) -> None:
        await ctx.write(b"a")
        await ctx.write(b"b")

    call = sink.call(grpc.unary_stream_rpc_method_handler(handler))
    feed_request(call, b"")
    runner.start(call)
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.messages() == [b"a", b"b"] and sink.status() == OK_STATUS


def test_request_stream_is_read_as_it_arrives(sink: FakeSink) -> None:
    seen: list[bytes] = []

    async def handler(requests: Any, ctx: Any) -> bytes:
        async for item in requests:
            seen.append(item)
        return b"%d" % len(seen)

    call = sink.call(grpc.stream_unary_rpc_method_handler(handler))
    runner.start(call)  # request-streaming handlers start with the headers
    sink.settle()
    feed_request(call, b"one", end=False)
    sink.settle()
    assert seen == [b"one"]
    feed_request(call, b"two", end=True)
    sink.run_until(lambda: 1 in sink.finished)
    assert seen == [b"one", b"two"] and sink.messages() == [b"2"]


def test_slow_reader_holds_back_flow_control_credit(sink: FakeSink) -> None:
    """Over _QUEUE_LIMIT unread bytes, credit is held back; reading releases it."""
    go = asyncio.Event()

    async def handler(requests: Any, ctx: Any) -> bytes:
        await go.wait()
        total = 0
        async for item in requests:
            total += len(item)
        return b"%d" % total

    call = sink.call(grpc.stream_unary_rpc_method_handler(handler))
    runner.start(call)
    chunk = request(b"x" * (_QUEUE_LIMIT // 2))
    credits = [call.feed(chunk, len(chunk), False) for _ in range(3)]
    assert credits == [len(chunk), len(chunk), 0]  # the third arrives with 1 MiB already queued
    assert sink.released == []
    go.set()
    call.feed(b"", 0, True)
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.released == [(1, len(chunk))]
    assert sink.messages() == [b"%d" % (3 * (_QUEUE_LIMIT // 2))]


def test_context_read_returns_eof(sink: FakeSink) -> None:
    got: list[Any] = []

    async def handler(requests: Any, ctx: Any) -> bytes:
        got.append(await ctx.read())
        got.append(await ctx.read())
        return b""

    call = sink.call(grpc.stream_unary_rpc_method_handler(handler))
    runner.start(call)
    feed_request(call, b"only")
    sink.run_until(lambda: 1 in sink.finished)
    assert got == [b"only", grpc.aio.EOF]


def test_plain_def_bidi_runs_in_the_executor(sink: FakeSink) -> None:
    threads: list[str] = []

    def handler(requests: Any, ctx: Any) -> Any:
        threads.append(threading.current_thread().name)
        for item in requests:
            yield item[::-1]

    call = sink.call(grpc.stream_stream_rpc_method_handler(handler))
    runner.start(call)
    feed_request(call, b"abc", b"xyz")
    sink.run_until(lambda: 1 in sink.finished)
    assert threads and threads[0].startswith("fake-sink")
    assert sink.messages() == [b"cba", b"zyx"] and sink.status() == OK_STATUS


# ---------------------------------------------------------------------------- lifetime

def test_cancel_stops_the_handler_and_sends_nothing(sink: FakeSink) -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def handler(req: bytes, ctx: Any) -> bytes:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(ctx.cancelled())
            raise
        return b"never"

    call = sink.call(unary(handler))
    feed_request(call, b"")
    runner.start(call)
    sink.run_until(started.is_set)
    call.cancel()  # the client reset the stream
    sink.run_until(lambda: call.task is not None and call.task.done())
    assert sink.sent.get(1, []) == [] and sink.finished == {1: g.CANCELLED}
    assert cancelled == [True]


def test_deadline_answers_deadline_exceeded(sink: FakeSink) -> None:
    async def handler(req: bytes, ctx: Any) -> bytes:
        await asyncio.sleep(60)
        return b"never"

    call = sink.call(unary(handler))
    ctx = call.context
    call.deadline = sink.loop.time() + 0.01
    call.timer = sink.loop.call_at(call.deadline, call.on_deadline)  # as the connection arms it
    feed_request(call, b"")
    runner.start(call)
    sink.run_until(lambda: call.task is not None and call.task.done())
    assert sink.sent[1] == [("status", g.DEADLINE_EXCEEDED, "Deadline Exceeded", None, True)]
    assert ctx.cancelled() and ctx.time_remaining() == 0.0


def test_done_callbacks_run_once_when_the_call_ends(sink: FakeSink) -> None:
    calls: list[str] = []
    call = sink.call(unary(lambda req, ctx: b""), options=MethodOptions(sync_handlers="inline"))
    ctx = call.context
    ctx.add_done_callback(lambda c: calls.append("first"))
    ctx.add_done_callback(lambda c: 1 / 0)  # a failing callback is logged, the others still run
    ctx.add_done_callback(lambda c: calls.append("third"))
    feed_request(call, b"")
    runner.start(call)
    assert calls == ["first", "third"] and ctx.done()
    ctx.add_done_callback(lambda c: calls.append("late"))  # after the end: on the loop, soon
    assert calls == ["first", "third"]
    sink.settle(1)
    assert calls == ["first", "third", "late"]


def test_write_after_the_end_is_refused(sink: FakeSink) -> None:
    call = sink.call(unary(lambda req, ctx: b""))
    ctx = call.context
    feed_request(call, b"")
    runner.start(call)
    with pytest.raises(asyncio.InvalidStateError):
        sink.loop.run_until_complete(ctx.write(b"late"))


# ---------------------------------------------------------------------------- context views

def test_context_reports_what_the_sink_knows(sink: FakeSink) -> None:
    sink.auth = {"transport_security_type": [b"ssl"], "x509_common_name": [b"client-a"]}
    headers = [(b":path", b"/test.Svc/Method"), (b"te", b"trailers"), (b"x-user", b"ada"), (b"x-raw-bin", b"AAE")]
    call = sink.call(unary(lambda req, ctx: b""), headers=headers)
    ctx = call.context
    assert ctx.peer() == "ipv4:192.0.2.7:4711"
    assert ctx.invocation_metadata() == (("x-user", "ada"), ("x-raw-bin", b"\x00\x01"))
    assert ctx.auth_context()["x509_common_name"] == [b"client-a"]
    assert ctx.peer_identity_key() == "x509_common_name" and ctx.peer_identities() == [b"client-a"]
    assert ctx.time_remaining() is None and not ctx.cancelled() and not ctx.done()
    ctx.auth_context()["x509_common_name"].append(b"mutated")  # callers get their own copy
    assert ctx.peer_identities() == [b"client-a"]
