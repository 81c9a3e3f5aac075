"""The per-message loops of streaming handlers: the request iterator an async handler reads,
and the loop that sends what an async response stream yields.

They are compiled with the rest of the hot path (gmf/_native.py): a message of a bidi stream
passes through both, and each await between compiled coroutines costs less than one between
Python frames. The runner (gmf/rpc/runner.py) calls them from its ``run`` frame, which the
watchdog looks for on the loop's stack to name a blocking RPC (gmf/watchdog.py); compiled
frames are not on that stack, and need not be.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

from .call import Call


class RequestIterator:
    """The async iterator of request messages handed to request-streaming handlers."""

    __slots__ = ("_call",)

    def __init__(self, call: Call) -> None:
        self._call = call

    def __aiter__(self) -> RequestIterator:
        return self

    async def __anext__(self) -> Any:
        call = self._call
        # Call.read_raw and Call.wait_readable without their coroutines, and Call.has_message()
        # inlined (``read_at == len(messages)``: nothing unread), all per request message.
        if call.read_at == len(call.messages):
            while call.read_at == len(call.messages) and not call.ended and not call.finished:
                await call.read_waiter()
            if call.read_at == len(call.messages):
                raise StopAsyncIteration
        return call.deserialize(call._take())


async def stream_responses(call: Call, result: Any) -> None:
    """Send what an async handler's response stream yields (an async iterator, a coroutine
    that used ``context.write()``, or a plain iterable), waiting while the peer does not take it."""
    if result is None:
        return
    if hasattr(result, "__aiter__"):
        iterator: AsyncIterator[Any] = result
        error: BaseException | None = None
        try:
            async for item in iterator:
                if call.queue_message(item):
                    await call.wait_writable()
        except GeneratorExit:  # this coroutine is being closed (a task destroyed while pending): it must
            raise  # not await again, so the handler's generator is left as CPython left it
        except BaseException as exc:  # noqa: BLE001 - raised again once the iterator is closed
            error = exc
        # What ``finally: await aclose()`` says; compiled, an await in a finally block left the
        # exception it re-raised as the thread's current one, for later code to raise again.
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
        if error is not None:
            raise error
    elif inspect.isawaitable(result):
        await result  # a coroutine that used context.write()
    else:
        for item in result:
            await call.write(item)
