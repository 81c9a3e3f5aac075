"""Runs a handler for each of the four RPC kinds and turns its outcome into a status.

``async def`` handlers run on the event loop as tasks. Plain ``def`` handlers of every kind run
in the worker's handler threads (:mod:`gmf.rpc.threads`), as grpcio runs them: a thread
deserializes the request, runs the handler, serializes each response and hands it to the loop,
which alone talks to the connection. A plain-def unary handler may run inline on the loop
instead, by the placement rule in :mod:`gmf.rpc.inline` (or when forced).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future
from threading import Semaphore
from typing import Any

from ..protocol import grpc as g
from . import driver, eager, inline
from .call import _EOF, Call
from .context import AbortError
from .streaming import RequestIterator, stream_responses

__all__ = ["RequestIterator", "finish_error", "finish_ok", "respond_and_finish", "run", "serve", "start"]

log = logging.getLogger("gmf")

# Response messages a plain-def streaming handler may have handed to the loop and not yet seen
# taken by the peer: its thread waits there (backpressure), as an async writer waits in write().
_THREAD_WINDOW = 8


class BlockingRequestIterator:
    """The request iterator of plain-def request-streaming handlers (which run in a thread):
    each ``next()`` asks the loop for the next message and waits for it."""

    __slots__ = ("_call",)

    def __init__(self, call: Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        call = self._call
        box: Future[Any] = Future()
        call.conn.executor.to_loop(_read_for_thread, call, box)
        raw = box.result()
        if raw is _EOF:
            raise StopIteration
        return call.deserialize(raw)


def _read_for_thread(call: Call, box: Future[Any]) -> None:
    """On the loop: the next request message (or _EOF) into ``box``, now if one is queued."""
    if call.has_message():
        box.set_result(call._take())
    elif call.ended or call.finished:
        box.set_result(_EOF)
    else:
        call.conn.loop.create_task(_read_later(call, box))


async def _read_later(call: Call, box: Future[Any]) -> None:
    try:
        box.set_result(await call.read_raw())
    except BaseException as exc:  # noqa: BLE001 - the reader thread must not wait forever
        box.set_result(_EOF)
        if isinstance(exc, asyncio.CancelledError):
            raise


# ---------------------------------------------------------------------------- outcomes
def respond_and_finish(call: Call, response: Any) -> None:
    """End a unary-response call: the response (unless the handler set a non-OK code), then status."""
    if call.code is None or call.code == g.OK:
        call.send_response(response)  # a no-op once the call has finished (deadline, reset)
    finish_ok(call)


def finish_ok(call: Call) -> None:
    code = call.code if call.code is not None else g.OK
    call.finish(code, call.details or "", call.trailing_metadata)


def finish_error(call: Call, exc: BaseException) -> None:
    """The status of a handler that raised. The one place statuses of failed handlers are made:
    ``context.abort()`` and errors below the handler carry their own; for any other exception a
    code set on the context before it (not OK) is the call's status, as in grpcio (the generated
    base class does ``set_code(UNIMPLEMENTED)``, then raises NotImplementedError), else UNKNOWN;
    the details follow grpc.server (``grpcio_flavor="sync"``: the context's details, else
    "Exception calling application: ...") or grpc.aio (``Unexpected <class ...>: ...``)."""
    if isinstance(exc, AbortError):
        call.finish(exc.code, exc.details, exc.trailing_metadata)
    elif isinstance(exc, g.GrpcError):
        call.finish(exc.code, exc.message)
    elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):  # GeneratorExit: its coroutine was closed
        call.finish(g.CANCELLED, "Cancelled")
    elif isinstance(exc, inline.InlineRescue):
        seconds = inline.RESCUE_SECONDS
        inline.to_threads(call.method, f"blocked the event loop for over {seconds:g} s and was interrupted")
        call.finish(g.UNAVAILABLE, f"the handler blocked its worker's event loop for over {seconds:g} s and was "
                                   "interrupted; it runs in a thread from now on: retry")
    else:
        log.error("Exception calling application: %s (%s)", exc, call.path, exc_info=exc)
        code = call.code if call.code is not None and call.code != g.OK else g.UNKNOWN
        if call.method.sync_flavor:
            details = call.details if call.details is not None else f"Exception calling application: {exc}"
        else:
            details = f"Unexpected {type(exc)}: {exc}"
        call.finish(code, details, call.trailing_metadata)


# ---------------------------------------------------------------------------- starting
def start(call: Call) -> None:
    """Run the call's handler. An async one with a unary request starts eagerly, now (a task
    only if it suspends: gmf/rpc/eager.py); a request-streaming async one as a task that its
    connection steps as request messages come (gmf/rpc/driver.py). A
    plain-def one runs in a handler thread, or inline now when the placement rule (or
    ``sync_handlers="inline"``) put a unary one on the loop: eager start never applies to it."""
    method = call.method
    if method.is_async:
        if method.request_streaming:  # a task whose driver steps it as request messages come
            call.task = driver.start(call, run(call))
        else:
            body = run(call) if method.response_streaming else run_unary_async(call)
            call.task = eager.start(call.conn.loop, body)
    elif method.inline:
        run_unary_inline(call)
    else:
        start_in_thread(call)


def run_unary_inline(call: Call) -> None:
    """A plain-def unary handler on the loop: run it now. Unless forced inline, the run is
    guarded and timed for the placement rule (gmf.rpc.inline)."""
    method = call.method
    try:
        request = call.single_request()
        if method.sync_mode == "inline":
            response = method.func(request, call.context)
        else:
            guard = call.conn.executor.guard
            gc_before = inline.GC_PAUSES[0]
            guard.call = call
            guard.since = began = time.perf_counter()
            try:
                response = method.func(request, call.context)
            finally:
                guard.call = None
            took = time.perf_counter() - began
            if took > inline.INLINE_LIMIT:
                inline.ran_long_inline(method, took - (inline.GC_PAUSES[0] - gc_before))
        if inspect.isawaitable(response):  # a def returning an awaitable: finish in a task
            call.task = call.conn.loop.create_task(_await_unary(call, response))
            return
        if not call.finish_unary(response):
            respond_and_finish(call, response)
    except BaseException as exc:  # noqa: BLE001 - every outcome becomes a status
        finish_error(call, exc)


async def run_unary_async(call: Call) -> None:
    """An async unary handler (started by ``eager.start``); the common answer (one message,
    OK, nothing else set) goes out in one piece (``Call.finish_unary``)."""
    try:
        response = await call.method.func(call.single_request(), call.context)
        if not call.finish_unary(response):
            respond_and_finish(call, response)
    except BaseException as exc:  # noqa: BLE001 - every outcome becomes a status
        finish_error(call, exc)


async def _await_unary(call: Call, awaitable: Any) -> None:
    try:
        respond_and_finish(call, await awaitable)
    except BaseException as exc:  # noqa: BLE001
        finish_error(call, exc)


async def run(call: Call) -> None:
    """General path: every kind of async handler (and a plain-def unary one on the loop)."""
    method = call.method
    ctx = call.context
    try:
        if method.request_streaming:
            result = method.func(RequestIterator(call), ctx)
        else:
            result = method.func(call.single_request(), ctx)
        if method.response_streaming:
            await stream_responses(call, result)
            finish_ok(call)
        else:
            respond_and_finish(call, await result if inspect.isawaitable(result) else result)
    except BaseException as exc:  # noqa: BLE001
        finish_error(call, exc)


async def serve(call: Call) -> None:
    """Serve ``call`` with its method wherever it runs, and return once the call has finished
    (the interceptor chain's task awaits the handler it chose this way)."""
    method = call.method
    if method.is_async or method.inline:
        await run(call)
        return
    finished: asyncio.Future[None] = call.conn.loop.create_future()

    def ended(_context: Any) -> None:
        if not finished.done():
            finished.set_result(None)

    call.context.add_done_callback(ended)
    start_in_thread(call)
    await finished


# ---------------------------------------------------------------------------- in a thread
def start_in_thread(call: Call) -> None:
    """Hand a plain-def handler to the worker's handler threads. A unary request is taken off
    the call here, on the loop; the thread deserializes it."""
    pool = call.conn.executor
    # The context goes along from here: a call that finishes (deadline, cancel) while the
    # handler waits for a thread lets go of it (Call._ended).
    if call.method.request_streaming:
        pool.run(_in_thread, call, call.context, None)
        return
    try:
        payload = call.single_payload()
    except g.GrpcError as exc:
        finish_error(call, exc)
        return
    pool.run(_in_thread, call, call.context, payload)


def _in_thread(call: Call, context: Any, payload: bytes | None) -> None:
    """In a handler thread: run the handler and hand every outcome to the loop."""
    method = call.method
    to_loop = call.conn.executor.to_loop
    try:
        request = BlockingRequestIterator(call) if payload is None else call.deserialize(payload)
        if call.finished:  # ended (deadline, cancel, shutdown) while it waited for a thread
            return
        if method.sync_mode == "auto":  # timed for the placement rule
            began, cpu = time.perf_counter(), time.thread_time()
            result = method.func(request, context)
            wall = time.perf_counter() - began
            blocked = wall - (time.thread_time() - cpu)
        else:
            result = method.func(request, context)
            wall = blocked = 0.0
        if inspect.isawaitable(result) or hasattr(result, "__aiter__"):  # a def returning async work
            to_loop(_continue_on_loop, call, result)
        elif method.response_streaming:
            if result is not None:
                _stream_from_thread(call, result)
            to_loop(finish_ok, call)
        elif call.code is None or call.code == g.OK:
            to_loop(_respond_from_thread, call, call.encode(result), wall, blocked)
        else:
            to_loop(finish_ok, call)
    except BaseException as exc:  # noqa: BLE001 - every outcome becomes a status
        to_loop(finish_error, call, exc)


def _respond_from_thread(call: Call, encoded: tuple[bytes, bool], wall: float, blocked: float) -> None:
    inline.ran_in_thread(call.method, call.conn.executor.guard, wall, blocked)
    call.send_encoded(*encoded)
    finish_ok(call)


def _continue_on_loop(call: Call, result: Any) -> None:
    """A plain def returned a coroutine or an async iterator: the loop finishes the call."""
    call.task = call.conn.loop.create_task(_finish_async_result(call, result))


async def _finish_async_result(call: Call, result: Any) -> None:
    try:
        if call.method.response_streaming:
            await stream_responses(call, result)
            finish_ok(call)
        else:
            respond_and_finish(call, await result)
    except BaseException as exc:  # noqa: BLE001
        finish_error(call, exc)


def _stream_from_thread(call: Call, iterator: Iterator[Any]) -> None:
    """In a handler thread: send each response of a plain-def response stream, waiting while
    ``_THREAD_WINDOW`` of them are not taken by the peer. Stops pulling from the handler's
    iterator once the call has ended (client cancel, deadline, shutdown)."""
    to_loop = call.conn.executor.to_loop
    window = Semaphore(_THREAD_WINDOW)
    try:
        for item in iterator:
            encoded = call.encode(item)
            while not window.acquire(timeout=0.5):
                if call.finished:
                    return
            if call.finished:
                return
            to_loop(_send_from_thread, call, encoded, window)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None and call.finished:
            close()


def _send_from_thread(call: Call, encoded: tuple[bytes, bool], window: Semaphore) -> None:
    call.send_encoded(*encoded)
    if call.finished or not call.conn.write_blocked(call.stream_id):
        window.release()
    else:
        call.conn.loop.create_task(_release_when_writable(call, window))


async def _release_when_writable(call: Call, window: Semaphore) -> None:
    try:
        await call.wait_writable()
    finally:
        window.release()
