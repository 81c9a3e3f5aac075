"""Plain-def handlers in the worker's handler threads, driven through the fake connection: every
kind, what the sync ``ServicerContext`` asks of the loop from a thread, backpressure and flow
control across the hand-off, a blocked handler not delaying others, cancel and deadline seen
by ``is_active()``, the batched wake-up of the loop, and the placement rule (threads -> inline
-> back), including the rescue of an inline handler that blocks. Over real workers and grpcio
clients: tests/migration/ and tests/rpc/test_faults.py."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from gmf.protocol import grpc as g
from gmf.rpc import inline, runner
from gmf.rpc.call import _QUEUE_LIMIT
from gmf.rpc.registry import MethodOptions
from gmf.rpc.threads import HandlerThreads
from tests.rpc.fake_sink import FakeSink, request

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

OK_STATUS = ("status", g.OK, "", None, False)
THREADS = MethodOptions(sync_handlers="threads")
AUTO = MethodOptions(sync_handlers="auto")


@pytest.fixture
def sink() -> Iterator[FakeSink]:
    loop = asyncio.new_event_loop()
    fake = FakeSink(loop)
    fake.executor = HandlerThreads(loop, 4, name="fake-sink")
    yield fake
    fake.close()
    loop.close()


def feed(call: Any, *payloads: bytes, end: bool = True) -> None:
    data = b"".join(request(p) for p in payloads)
    call.feed(data, len(data), end)


def unary_call(sink: FakeSink, handler: Any, stream_id: int = 1, options: MethodOptions = THREADS) -> Any:
    call = sink.call(grpc.unary_unary_rpc_method_handler(handler), stream_id=stream_id, options=options)
    feed(call, b"req")
    return call


# ---------------------------------------------------------------------------- every kind

def test_server_stream_from_a_thread_waits_while_the_peer_does_not_read(sink: FakeSink) -> None:
    produced: list[int] = []

    def handler(req: bytes, ctx: Any) -> Any:
        for i in range(3 * runner._THREAD_WINDOW):
            produced.append(i)
            yield b"%d" % i

    call = sink.call(grpc.unary_stream_rpc_method_handler(handler))
    feed(call, b"")
    sink.blocked = True
    runner.start(call)
    sink.run_until(lambda: len(produced) > runner._THREAD_WINDOW)
    sink.settle(20)
    assert len(sink.messages()) == runner._THREAD_WINDOW  # the thread waits for the window
    assert len(produced) <= runner._THREAD_WINDOW + 1
    sink.blocked = False
    call.wake_writer()  # what the connection does on WINDOW_UPDATE / resume_writing
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.messages() == [b"%d" % i for i in range(3 * runner._THREAD_WINDOW)]
    assert sink.status() == OK_STATUS


def test_client_stream_in_a_thread_releases_held_back_credit(sink: FakeSink) -> None:
    go = threading.Event()

    def handler(requests: Any, ctx: Any) -> bytes:
        go.wait(10)
        return b"%d" % sum(len(item) for item in requests)

    call = sink.call(grpc.stream_unary_rpc_method_handler(handler))
    runner.start(call)
    chunk = request(b"x" * (_QUEUE_LIMIT // 2))
    credits = [call.feed(chunk, len(chunk), False) for _ in range(3)]
    assert credits == [len(chunk), len(chunk), 0]
    go.set()
    call.feed(b"", 0, True)
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.released == [(1, len(chunk))]  # given back on the loop as the thread read
    assert sink.messages() == [b"%d" % (3 * (_QUEUE_LIMIT // 2))]


def test_bidi_in_a_thread_reads_as_requests_arrive(sink: FakeSink) -> None:
    def handler(requests: Any, ctx: Any) -> Any:
        for item in requests:
            yield item.upper()

    call = sink.call(grpc.stream_stream_rpc_method_handler(handler))
    runner.start(call)
    feed(call, b"a", end=False)
    sink.run_until(lambda: sink.messages() == [b"A"])  # answered before the stream ends
    feed(call, b"b", end=True)
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.messages() == [b"A", b"B"] and sink.status() == OK_STATUS


def test_def_returning_an_async_generator_streams_from_the_loop(sink: FakeSink) -> None:
    async def gen() -> Any:
        yield b"x"
        yield b"y"

    call = sink.call(grpc.unary_stream_rpc_method_handler(lambda req, ctx: gen()))
    feed(call, b"")
    runner.start(call)
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.messages() == [b"x", b"y"] and sink.status() == OK_STATUS


def test_exception_mid_stream_in_a_thread(sink: FakeSink) -> None:
    def handler(req: bytes, ctx: Any) -> Any:
        yield b"one"
        raise RuntimeError("half way")

    call = sink.call(grpc.unary_stream_rpc_method_handler(handler), options=MethodOptions(grpcio_flavor="sync"))
    feed(call, b"")
    runner.start(call)
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.messages() == [b"one"]
    assert sink.status() == ("status", g.UNKNOWN, "Exception calling application: half way", None, False)


# ---------------------------------------------------------------------------- the sync context

def test_context_from_a_thread_keeps_the_order_of_what_it_sends(sink: FakeSink) -> None:
    seen: dict[str, Any] = {}

    def handler(req: bytes, ctx: Any) -> bytes:
        ctx.send_initial_metadata((("x-first", "1"),))
        with pytest.raises(RuntimeError):
            ctx.send_initial_metadata((("x-again", "2"),))
        seen["active"] = ctx.is_active()
        seen["remaining"] = ctx.time_remaining()
        seen["metadata"] = [(m.key, m.value) for m in ctx.invocation_metadata()]
        seen["added"] = ctx.add_callback(lambda: seen.setdefault("callback_on", threading.current_thread().name))
        ctx.set_trailing_metadata((("x-last", "2"),))
        return b"body"

    call = sink.call(grpc.unary_unary_rpc_method_handler(handler), headers=[(b"x-user", b"ada")], options=THREADS)
    call.deadline = sink.loop.time() + 30
    ctx = call.context  # a finished call lets go of its context (no reference cycle)
    feed(call, b"")
    runner.start(call)
    sink.run_until(lambda: 1 in sink.finished and "callback_on" in seen)
    assert sink.sent[1] == [("headers", [(b"x-first", b"1")], None), ("message", b"body", False),
                            ("status", g.OK, "", [(b"x-last", b"2")], False)]
    assert seen["active"] is True and 29 < seen["remaining"] <= 30
    assert seen["metadata"] == [("x-user", "ada")]
    assert seen["added"] is True and seen["callback_on"] == threading.current_thread().name  # the loop's thread
    assert ctx.is_active() is False and ctx.add_callback(lambda: None) is False


def test_abort_with_status_from_a_thread(sink: FakeSink) -> None:
    from google.rpc import code_pb2, status_pb2
    from grpc_status import rpc_status

    detail = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="no stock")

    def handler(req: bytes, ctx: Any) -> bytes:
        ctx.abort_with_status(rpc_status.to_status(detail))

    call = unary_call(sink, handler)
    runner.start(call)
    sink.run_until(lambda: 1 in sink.finished)
    (name, value), = sink.status()[3]
    assert sink.status()[1:3] == (g.FAILED_PRECONDITION, "no stock") and name == b"grpc-status-details-bin"
    assert status_pb2.Status.FromString(base64.b64decode(value + b"==")) == detail


def test_cancel_from_the_handler_thread(sink: FakeSink) -> None:
    after: list[bool] = []

    def handler(req: bytes, ctx: Any) -> bytes:
        ctx.cancel()
        while ctx.is_active():  # the loop ends the call
            time.sleep(0.001)
        after.append(ctx.is_active())
        return b"dropped"

    call = unary_call(sink, handler)
    runner.start(call)
    sink.run_until(lambda: 1 in sink.finished and after)
    assert sink.status() == ("status", g.CANCELLED, "Cancelled", None, True) and sink.messages() == []


def test_client_cancel_turns_is_active_false_and_drops_the_late_result(sink: FakeSink) -> None:
    running, saw_inactive = threading.Event(), threading.Event()

    def handler(req: bytes, ctx: Any) -> bytes:
        running.set()
        while ctx.is_active():
            time.sleep(0.005)
        saw_inactive.set()
        return b"too late"

    call = unary_call(sink, handler)
    runner.start(call)
    assert running.wait(5)
    call.cancel()  # the client reset the stream
    assert saw_inactive.wait(5)
    sink.settle(20)
    assert sink.sent.get(1, []) == [] and sink.finished == {1: g.CANCELLED}


def test_deadline_while_in_a_thread(sink: FakeSink) -> None:
    release = threading.Event()

    def handler(req: bytes, ctx: Any) -> bytes:
        release.wait(10)
        return b"late"

    call = unary_call(sink, handler)
    call.deadline = sink.loop.time() + 0.02
    call.timer = sink.loop.call_at(call.deadline, call.on_deadline)
    ctx = call.context
    runner.start(call)
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.sent[1] == [("status", g.DEADLINE_EXCEEDED, "Deadline Exceeded", None, True)]
    assert ctx.time_remaining() == 0.0 and not ctx.is_active()
    release.set()
    sink.settle(20)
    assert len(sink.sent[1]) == 1  # the late reply is dropped


# ---------------------------------------------------------------------------- the pool

def test_a_blocked_handler_does_not_delay_the_others(sink: FakeSink) -> None:
    release = threading.Event()
    slow = unary_call(sink, lambda req, ctx: release.wait(10) and b"slow", stream_id=1)
    fast = [unary_call(sink, lambda req, ctx: b"fast", stream_id=sid) for sid in (3, 5, 7)]
    runner.start(slow)
    for call in fast:
        runner.start(call)
    sink.run_until(lambda: all(sid in sink.finished for sid in (3, 5, 7)))
    assert 1 not in sink.finished
    release.set()
    sink.run_until(lambda: 1 in sink.finished)
    assert sink.messages(1) == [b"slow"]


def test_calls_beyond_the_pool_wait_for_a_thread(sink: FakeSink) -> None:
    release = threading.Event()
    calls = [unary_call(sink, lambda req, ctx: release.wait(10) and b"ok", stream_id=sid) for sid in range(1, 12, 2)]
    for call in calls:
        runner.start(call)
    sink.settle(20)
    assert sink.executor.threads == 4 and sink.finished == {}  # 6 calls, 4 threads
    release.set()
    sink.run_until(lambda: len(sink.finished) == 6)


def test_results_of_a_batch_wake_the_loop_once(sink: FakeSink) -> None:
    wakeups: list[int] = []
    original = sink.loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any) -> Any:
        wakeups.append(1)
        return original(callback, *args)

    sink.loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    pool = sink.executor
    done: list[int] = []
    barrier = threading.Barrier(4)

    def job(i: int) -> None:
        barrier.wait(5)  # all four finish together, before the loop runs again
        pool.to_loop(done.append, i)
        time.sleep(0.05)

    for i in range(4):
        pool.run(job, i)
    time.sleep(0.02)
    sink.run_until(lambda: len(done) == 4)
    assert sorted(done) == [0, 1, 2, 3] and len(wakeups) < 4


def test_the_pool_is_an_executor_for_run_in_executor(sink: FakeSink) -> None:
    async def use() -> Any:
        return await sink.loop.run_in_executor(sink.executor, lambda: threading.current_thread().name)

    assert sink.loop.run_until_complete(use()).startswith("fake-sink")


def test_a_stuck_handler_thread_does_not_hold_up_shutdown() -> None:
    loop = asyncio.new_event_loop()
    pool = HandlerThreads(loop, 2)
    forever = threading.Event()
    pool.run(forever.wait)
    started = time.monotonic()
    pool.shutdown(wait=False, cancel_futures=True)
    assert time.monotonic() - started < 0.5
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("gmf-handler"))
    with pytest.raises(RuntimeError):
        pool.run(print)
    forever.set()
    loop.close()


# ---------------------------------------------------------------------------- the placement rule

def quick_runs(sink: FakeSink, handler: Any, count: int, first_id: int = 1, method: Any = None) -> Any:
    """``count`` calls of one method (one Method object, as the worker's cache gives them)."""
    for n in range(count):
        call = sink.call(grpc.unary_unary_rpc_method_handler(handler), stream_id=first_id + 2 * n, options=AUTO)
        if method is None:
            method = call.method
        call.method = method
        feed(call, b"r")
        runner.start(call)
        sink.run_until(lambda c=call: c.stream_id in sink.finished)
    return method


def until_inline(sink: FakeSink, handler: Any, limit: int = 20 * inline.INLINE_AFTER) -> Any:
    """Calls of one quick method until it runs inline (a busy machine may stretch a thread run
    over QUICK_SECONDS now and then, which restarts the count)."""
    method = quick_runs(sink, handler, inline.INLINE_AFTER)
    runs = inline.INLINE_AFTER
    while not method.inline and runs < limit:
        quick_runs(sink, handler, 1, first_id=1 + 2 * runs, method=method)
        runs += 1
    assert method.inline, f"still in threads after {runs} quick runs"
    return method


def test_a_method_that_never_blocks_moves_inline(sink: FakeSink) -> None:
    where: list[str] = []

    def handler(req: bytes, ctx: Any) -> bytes:
        where.append(threading.current_thread().name)
        return req

    method = until_inline(sink, handler)
    assert len(where) >= inline.INLINE_AFTER and all(name.startswith("fake-sink") for name in where)
    quick_runs(sink, handler, 3, first_id=100001, method=method)
    assert set(where[-3:]) == {threading.current_thread().name}  # the loop's


def test_a_method_that_blocks_stays_in_threads(sink: FakeSink) -> None:
    count = [0]

    def handler(req: bytes, ctx: Any) -> bytes:
        count[0] += 1
        if count[0] % 50 == 0:
            time.sleep(0.002)  # off the CPU now and then: never 100 quick runs in a row
        return req

    method = quick_runs(sink, handler, 3 * inline.INLINE_AFTER)
    assert not method.inline


def test_repeated_slow_inline_runs_move_it_back_for_good(sink: FakeSink) -> None:
    slow = [False]

    def handler(req: bytes, ctx: Any) -> bytes:
        if slow[0]:
            time.sleep(inline.INLINE_LIMIT * 2)
        return req

    method = until_inline(sink, handler)
    slow[0] = True
    quick_runs(sink, handler, inline.STRIKES - 1, first_id=200001, method=method)
    assert method.inline  # a few slow runs are forgiven (preemption, a GC pause)
    quick_runs(sink, handler, 1, first_id=300001, method=method)
    assert not method.inline and method.sync_mode == "threads"
    slow[0] = False
    quick_runs(sink, handler, inline.INLINE_AFTER + 1, first_id=400001, method=method)
    assert not method.inline  # for good


def test_an_inline_handler_that_blocks_is_rescued(sink: FakeSink) -> None:
    """A handler that was quick, then waits for something only another RPC of its worker
    would do: inline it would wedge the worker; it is interrupted and moves to threads."""
    jobs: list[bytes] = [b"job"] * (20 * inline.INLINE_AFTER)
    arrived = threading.Condition()

    def next_job(req: bytes, ctx: Any) -> bytes:
        with arrived:
            while not jobs:
                arrived.wait()  # no timeout: blocks until a producer adds a job
            return jobs.pop()

    method = until_inline(sink, next_job)
    jobs.clear()
    blocked = sink.call(grpc.unary_unary_rpc_method_handler(next_job), stream_id=900001, options=AUTO)
    blocked.method = method
    feed(blocked, b"r")
    started = time.monotonic()
    runner.start(blocked)  # inline: returns only once rescued
    assert inline.RESCUE_SECONDS <= time.monotonic() - started < inline.RESCUE_SECONDS + 2
    code, details = sink.status(900001)[1:3]
    assert code == g.UNAVAILABLE and "interrupted" in details
    assert not method.inline and method.sync_mode == "threads"
    waiting = sink.call(grpc.unary_unary_rpc_method_handler(next_job), stream_id=900003, options=AUTO)
    waiting.method = method
    feed(waiting, b"r")
    runner.start(waiting)  # in a thread now: the loop goes on
    sink.settle(5)
    with arrived:
        jobs.append(b"late job")
        arrived.notify()
    sink.run_until(lambda: 900003 in sink.finished)
    assert sink.messages(900003) == [b"late job"]


def test_forced_placements(sink: FakeSink) -> None:
    @inline.run_in_thread
    def threaded(req: bytes, ctx: Any) -> bytes:
        return threading.current_thread().name.encode()

    method = quick_runs(sink, threaded, inline.INLINE_AFTER + 2)
    assert not method.inline and sink.messages(1 + 2 * (inline.INLINE_AFTER + 1)).pop().startswith(b"fake-sink")

    @inline.run_inline
    def on_loop(req: bytes, ctx: Any) -> bytes:
        return threading.current_thread().name.encode()

    method = quick_runs(sink, on_loop, 1, first_id=500001)
    assert method.inline and sink.messages(500001) == [threading.current_thread().name.encode()]
