"""Async handlers with a unary request start eagerly (gmf/rpc/eager.py): driven, as a runtime
drives a connection, from a callback of the running loop, through the fake connection of
tests/rpc/fake_sink.py. A handler that does not suspend finishes inside ``runner.start``
without a task of its own; one that suspends continues in a task; asyncio behaves inside both
as in a task per call (current_task, timeout, TaskGroup, contextvars, cancellation)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
from typing import Any

import grpc

from gmf.protocol import grpc as g
from gmf.rpc import eager, inline, runner
from gmf.rpc.call import Call
from tests.rpc.fake_sink import OK_STATUS, FakeSink, request, unary

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")




def start(sink: FakeSink, *calls: Call) -> None:
    """Feed each call its request and start it from one loop callback, as data_received does."""
    for call in calls:
        data = request(b"req")
        call.feed(data, len(data), True)
    ran = sink.loop.create_future()

    def callback() -> None:
        for call in calls:
            runner.start(call)
        ran.set_result(None)

    sink.loop.call_soon(callback)
    sink.loop.run_until_complete(ran)


def test_a_handler_that_does_not_suspend_finishes_inside_start_without_a_task(sink: FakeSink) -> None:
    seen: list[asyncio.Task[Any] | None] = []

    async def handler(req: bytes, ctx: Any) -> bytes:
        seen.append(asyncio.current_task())
        return b"re:" + req

    calls = [sink.call(unary(handler), stream_id=sid) for sid in (1, 3)]
    start(sink, *calls)
    for call in calls:
        assert call.task is None and call.finished
        assert sink.sent[call.stream_id] == [("headers", None, None), ("message", b"re:req", False), OK_STATUS]
    # Each ran as the current task: the loop's spare, lent to one call after the other.
    assert seen[0] is not None and seen[0] is seen[1] and not seen[0].done()


def test_a_handler_that_suspends_continues_in_the_task_it_started_in(sink: FakeSink) -> None:
    tasks: list[asyncio.Task[Any] | None] = []

    async def handler(req: bytes, ctx: Any) -> bytes:
        tasks.append(asyncio.current_task())
        await asyncio.sleep(0.001)
        tasks.append(asyncio.current_task())
        return req.upper()

    call = sink.call(unary(handler))
    start(sink, call)
    assert call.task is not None and tasks == [call.task] and not call.finished
    sink.run_until(lambda: call.finished)
    assert tasks == [call.task, call.task] and sink.messages() == [b"REQ"]
    # The next call gets another task: the one that suspended keeps its own.
    other = sink.call(unary(handler), stream_id=3)
    start(sink, other)
    assert tasks[2] is not call.task
    sink.run_until(lambda: other.finished)


def test_asyncio_timeout_and_taskgroup_work_from_the_first_line(sink: FakeSink) -> None:
    async def with_timeout(req: bytes, ctx: Any) -> bytes:
        async with asyncio.timeout(5):  # needs a current task before the first suspension
            await asyncio.sleep(0)
        return b"timeout ok"

    async def with_group(req: bytes, ctx: Any) -> bytes:
        async with asyncio.TaskGroup() as group:
            first = group.create_task(asyncio.sleep(0, b"group "))
            second = group.create_task(asyncio.sleep(0, b"ok"))
        return first.result() + second.result()

    async def timing_out(req: bytes, ctx: Any) -> bytes:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            return b"timed out"
        return b"never"

    calls = [sink.call(unary(h), stream_id=sid) for sid, h in ((1, with_timeout), (3, with_group), (5, timing_out))]
    start(sink, *calls)
    sink.run_until(lambda: all(c.finished for c in calls))
    assert [sink.messages(c.stream_id) for c in calls] == [[b"timeout ok"], [b"group ok"], [b"timed out"]]
    assert all(sink.status(c.stream_id)[1] == g.OK for c in calls)


def test_a_deadline_cancels_a_suspended_handler_at_its_await(sink: FakeSink) -> None:
    events: list[str] = []

    async def handler(req: bytes, ctx: Any) -> bytes:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            events.append("finally")
        return b"never"

    call = sink.call(unary(handler))
    call.deadline = sink.loop.time() + 0.01
    call.timer = sink.loop.call_at(call.deadline, call.on_deadline)
    start(sink, call)
    sink.run_until(lambda: call.task is not None and call.task.done())
    assert events == ["cancelled", "finally"]
    assert sink.sent[1] == [("status", g.DEADLINE_EXCEEDED, "Deadline Exceeded", None, True)]


def test_a_reset_right_after_the_handler_suspends_reaches_the_handler(sink: FakeSink) -> None:
    """The client's RST_STREAM in the same read as its request: the call is cancelled before
    the spare task took its first step; the handler still sees the cancellation (its finally runs)."""
    events: list[str] = []
    waited: asyncio.Future[None] = sink.loop.create_future()

    async def handler(req: bytes, ctx: Any) -> bytes:
        try:
            await waited
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return b"never"

    call = sink.call(unary(handler))
    data = request(b"")
    call.feed(data, len(data), True)
    done = sink.loop.create_future()

    def same_read() -> None:
        runner.start(call)
        call.cancel()  # the reset, handled in the same data_received
        done.set_result(None)

    sink.loop.call_soon(same_read)
    sink.loop.run_until_complete(done)
    sink.run_until(lambda: call.task is not None and call.task.done())
    assert events == ["cancelled"] and waited.cancelled()
    assert sink.sent.get(1, []) == [] and sink.finished == {1: g.CANCELLED}


def test_context_variables_stay_with_their_call(sink: FakeSink) -> None:
    seen: list[str] = []

    async def sets_and_returns(req: bytes, ctx: Any) -> bytes:
        seen.append(request_id.get())
        request_id.set("leaked?")  # never reset
        return b""

    async def sets_and_suspends(req: bytes, ctx: Any) -> bytes:
        request_id.set("mine")
        await asyncio.sleep(0)
        seen.append(request_id.get())
        return b""

    first, second = sink.call(unary(sets_and_returns)), sink.call(unary(sets_and_returns), stream_id=3)
    start(sink, first, second)
    assert seen == ["-", "-"]  # the second call did not see the first one's value
    third = sink.call(unary(sets_and_suspends), stream_id=5)
    start(sink, third)
    sink.run_until(lambda: third.finished)
    assert seen == ["-", "-", "mine"] and request_id.get() == "-"


def test_a_handler_that_cancels_its_task_does_not_break_the_next_call(sink: FakeSink) -> None:
    async def rude(req: bytes, ctx: Any) -> bytes:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return b"rude"

    async def polite(req: bytes, ctx: Any) -> bytes:
        await asyncio.sleep(0)
        return b"polite"

    first, second = sink.call(unary(rude)), sink.call(unary(polite), stream_id=3)
    start(sink, first)
    start(sink, second)
    sink.run_until(lambda: second.finished)
    assert sink.messages(1) == [b"rude"] and sink.messages(3) == [b"polite"]
    assert sink.status(3)[1] == g.OK


def test_errors_of_an_eager_handler_become_a_status_and_the_spare_is_reused(sink: FakeSink) -> None:
    tasks: list[Any] = []

    async def failing(req: bytes, ctx: Any) -> bytes:
        tasks.append(asyncio.current_task())
        raise ValueError("boom")

    async def aborting(req: bytes, ctx: Any) -> bytes:
        tasks.append(asyncio.current_task())
        await ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "no")

    calls = [sink.call(unary(failing)), sink.call(unary(aborting), stream_id=3)]
    start(sink, *calls)
    assert sink.status(1)[1] == g.UNKNOWN and "boom" in sink.status(1)[2]
    assert sink.status(3)[1:3] == (g.PERMISSION_DENIED, "no")
    assert tasks[0] is tasks[1] and all(c.task is None for c in calls)


def test_server_streaming_handlers_start_eagerly_too(sink: FakeSink) -> None:
    async def chunks(req: bytes, ctx: Any) -> Any:
        for i in range(3):
            yield b"%d" % i

    call = sink.call(grpc.unary_stream_rpc_method_handler(chunks))
    start(sink, call)
    assert call.task is None and sink.messages() == [b"0", b"1", b"2"] and sink.status()[1] == g.OK


def test_inside_a_running_task_it_falls_back_to_a_task_per_call(sink: FakeSink) -> None:
    async def handler(req: bytes, ctx: Any) -> bytes:
        return req

    call = sink.call(unary(handler))
    data = request(b"x")
    call.feed(data, len(data), True)

    async def from_a_task() -> None:
        runner.start(call)

    sink.loop.run_until_complete(from_a_task())
    assert call.task is not None  # a task of its own, not the spare
    sink.run_until(lambda: call.finished)
    assert sink.messages() == [b"x"]


def test_finished_calls_leave_no_reference_cycles(sink: FakeSink) -> None:
    """Call and ServicerContext point at each other while the call runs; once it finishes it
    lets go, so reference counting frees every call (the cyclic collector has nothing to do)."""

    async def handler(req: bytes, ctx: Any) -> bytes:
        return req

    def sync_handler(req: bytes, ctx: Any) -> bytes:
        return req

    start(sink, *[sink.call(unary(handler), stream_id=sid) for sid in range(1, 21, 2)])
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        calls = [sink.call(unary(h), stream_id=sid) for sid, h in zip(range(101, 141, 2), [handler, sync_handler] * 10, strict=True)]
        start(sink, *calls)
        sink.run_until(lambda started=calls: all(c.finished for c in started))  # the plain defs: in handler threads
        del calls
        gc.collect()
        leftovers = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leftovers == []


def test_eager_start_outside_the_running_loop_makes_a_task() -> None:
    loop = asyncio.new_event_loop()
    try:
        async def coro() -> int:
            return 7

        task = eager.start(loop, coro())
        assert task is not None and loop.run_until_complete(task) == 7
    finally:
        loop.close()


def test_plain_def_handlers_start_where_the_placement_rule_says_never_eagerly(sink: FakeSink) -> None:
    """Eager start is for async handlers. A plain-def unary handler started from the same loop
    callback runs in a handler thread until the placement rule has seen it run quickly
    (gmf/rpc/inline.py), and only then inline on the loop; the async one beside it finishes
    inside ``runner.start`` either way."""
    loop_thread = threading.get_ident()
    ran_on: list[int] = []

    def sync_handler(req: bytes, ctx: Any) -> bytes:
        ran_on.append(threading.get_ident())
        return req

    async def async_handler(req: bytes, ctx: Any) -> bytes:
        return req

    sids = iter(range(1, 10**6, 2))
    method: Any = None
    done_in_start: dict[int, bool] = {}

    def pair() -> tuple[Call, Call]:
        nonlocal method
        a, d = sink.call(unary(async_handler), stream_id=next(sids)), sink.call(unary(sync_handler), stream_id=next(sids))
        if method is None:
            method = d.method
        d.method = method  # one Method object, as the worker's cache gives them
        for call in (a, d):
            data = request(b"r")
            call.feed(data, len(data), True)
        ran = sink.loop.create_future()

        def callback() -> None:  # as data_received: both start from one loop callback
            for call in (a, d):
                runner.start(call)
                done_in_start[call.stream_id] = call.finished
            ran.set_result(None)

        sink.loop.call_soon(callback)
        sink.loop.run_until_complete(ran)
        sink.run_until(lambda: d.finished)
        return a, d

    a, d = pair()
    assert done_in_start[a.stream_id] and a.task is None  # eager
    assert not done_in_start[d.stream_id] and d.task is None and ran_on == [ran_on[0]] and ran_on[0] != loop_thread
    runs = 1
    while not method.inline and runs < 20 * inline.INLINE_AFTER:
        pair()
        runs += 1
    assert method.inline, f"still in threads after {runs} quick runs"
    assert runs >= inline.INLINE_AFTER and loop_thread not in ran_on  # never on the loop before the rule said so
    a, d = pair()
    assert done_in_start[a.stream_id] and done_in_start[d.stream_id] and ran_on[-1] == loop_thread  # inline now
    assert sink.messages(d.stream_id) == [b"r"] and sink.status(d.stream_id)[1] == g.OK
