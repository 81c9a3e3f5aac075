"""Runs a handler for each of the four RPC kinds and turns its outcome into a status."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ..protocol import grpc as g
from . import eager
from .call import _EOF, Call
from .context import AbortError

log = logging.getLogger("gmf")


class RequestIterator:
    """The async iterator of request messages handed to request-streaming handlers."""

    __slots__ = ("_call",)

    def __init__(self, call: Call) -> None:
        self._call = call

    def __aiter__(self) -> RequestIterator:
        return self

    async def __anext__(self) -> Any:
        raw = await self._call.read_raw()
        if raw is _EOF:
            raise StopAsyncIteration
        return self._call.deserialize(raw)


class BlockingRequestIterator:
    """Request iterator for plain ``def`` streaming handlers, which run in a thread."""

    def __init__(self, call: Call, loop: asyncio.AbstractEventLoop) -> None:
        self._aiter = RequestIterator(call)
        self._loop = loop

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        future = asyncio.run_coroutine_threadsafe(self._next(), self._loop)
        item = future.result()
        if item is _EOF:
            raise StopIteration
        return item

    async def _next(self) -> Any:
        try:
            return await self._aiter.__anext__()
        except StopAsyncIteration:
            return _EOF


def respond_and_finish(call: Call, response: Any) -> None:
    """End a unary-response call: the response (unless the handler set a non-OK code), then status."""
    if call.code is None or call.code == g.OK:
        call.send_response(response)  # a no-op once the call has finished (deadline, reset)
    finish_ok(call)


def finish_ok(call: Call) -> None:
    code = call.code if call.code is not None else g.OK
    call.finish(code, call.details or "", call.trailing_metadata)


def finish_error(call: Call, exc: BaseException) -> None:
    if isinstance(exc, AbortError):
        call.finish(exc.code, exc.details, exc.trailing_metadata)
    elif isinstance(exc, g.GrpcError):
        call.finish(exc.code, exc.message)
    elif isinstance(exc, asyncio.CancelledError):
        call.finish(g.CANCELLED, "Cancelled")
    else:
        log.error("Exception calling application: %s (%s)", exc, call.path, exc_info=exc)
        call.finish(g.UNKNOWN, f"Unexpected {type(exc)}: {exc}")


def start(call: Call) -> None:
    """Run the call's handler: an async one with a unary request eagerly (a task only if it
    suspends: gmf/rpc/eager.py), a plain-def unary one inline, now; the others as tasks."""
    method = call.method
    if method.is_async and not method.request_streaming:
        body = run(call) if method.response_streaming else run_unary_async(call)
        call.task = eager.start(call.conn.loop, body)
    elif not method.is_async and not method.request_streaming and not method.response_streaming:
        run_unary_inline(call)
    else:
        call.task = call.conn.loop.create_task(run(call))


def run_unary_inline(call: Call) -> None:
    """Fast path: unary request, plain-def unary response handler, run on the loop now."""
    try:
        request = call.single_request()
        response = call.method.func(request, call.context)
        if inspect.isawaitable(response):  # a def returning an awaitable: finish in a task
            call.task = call.conn.loop.create_task(_await_unary(call, response))
            return
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
    """General path: every kind, async or sync handlers."""
    method = call.method
    ctx = call.context
    try:
        if method.request_streaming:
            if method.is_async:
                result = method.func(RequestIterator(call), ctx)
            else:
                loop = call.conn.loop
                blocking = BlockingRequestIterator(call, loop)
                result = await loop.run_in_executor(call.conn.executor, _call_sync, call, method.func, blocking, ctx)
        else:
            result = method.func(call.single_request(), ctx)
        if method.response_streaming:
            await _stream_responses(call, result)
            finish_ok(call)
        else:
            respond_and_finish(call, await result if inspect.isawaitable(result) else result)
    except BaseException as exc:  # noqa: BLE001
        finish_error(call, exc)


def _call_sync(call: Call, func: Any, requests: BlockingRequestIterator, ctx: Any) -> Any:
    result = func(requests, ctx)
    if call.method.response_streaming and result is not None and not hasattr(result, "__aiter__"):
        return list(_drain_in_thread(call, result))
    return result


def _drain_in_thread(call: Call, iterator: Iterator[Any]) -> Iterator[Any]:
    loop = call.conn.loop
    for item in iterator:
        asyncio.run_coroutine_threadsafe(call.write(item), loop).result()
    return iter(())


async def _stream_responses(call: Call, result: Any) -> None:
    if result is None:
        return
    if hasattr(result, "__aiter__"):
        iterator: AsyncIterator[Any] = result
        try:
            async for item in iterator:
                if call.queue_message(item):
                    await call.wait_writable()
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
    elif inspect.isawaitable(result):
        await result  # a coroutine that used context.write()
    else:
        for item in result:
            await call.write(item)
