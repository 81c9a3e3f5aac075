"""Start a handler's coroutine now, and make it a task only if it has to wait.

Most unary handlers finish without ever waiting for anything: they compute a reply and
return. Giving each of them an ``asyncio.Task`` costs more than the handler (the task object,
its registration in asyncio's weak set of all tasks, a handle, a loop iteration): about 15% of
a unary request's instructions (``python -m bench.cost --callgrind``). :func:`start` runs the
coroutine's first step at once instead, like Python 3.12's eager tasks, and only a coroutine
that suspends ends up in a task.

Inside the handler asyncio works as in a task of its own, because the first step runs *as* a
task: each event loop keeps one spare ``Task``, parked on a future, which is the current task
(``asyncio.current_task()``) while a handler takes its first step, in that task's
``contextvars`` context. So ``asyncio.timeout()``, ``asyncio.TaskGroup`` and the clients that
use them (aiohttp) work from a handler's first line. A handler that finishes hands the spare
back unchanged; one that suspends keeps it: the spare wakes and runs the rest of the coroutine
(from then on it is a task like any other, ``call.task``, cancelled by deadlines and resets),
and the next call gets a new spare. A handler that left a context variable set, or cancelled
the task it was lent, retires the spare, so no call sees another call's context.

What differs from a task per call: handlers that finish without suspending share their task
object with other such calls of the same loop (``asyncio.current_task()`` is the same object
for them while they run), and one that suspends resumes one loop iteration after it otherwise
would (when the spare wakes). Code that uses its task only while it runs sees no difference.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
from asyncio.tasks import _enter_task, _leave_task  # type: ignore[attr-defined]  # as 3.12's eager tasks
from collections.abc import Coroutine
from typing import Any, NoReturn

from .driver import running_here

__all__ = ["start"]

_PARKING, _PARKED, _RUNNING = 0, 1, 2


class _Spare(collections.abc.Coroutine):  # type: ignore[type-arg]
    """The coroutine of a loop's spare task: parked until it adopts a suspended coroutine,
    then that coroutine's driver (what the task sends or throws goes straight to it)."""

    __slots__ = ("loop", "task", "context", "base", "size", "parked", "state", "coro", "yielded")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.context = contextvars.copy_context()
        self.base = tuple(self.context.items())  # to see whether a handler left a variable set
        self.size = len(self.base)
        self.parked: asyncio.Future[None] = loop.create_future()
        self.state = _PARKING
        self.coro: Coroutine[Any, Any, Any] | None = None
        self.yielded: Any = None
        self.task = loop.create_task(self, context=self.context)  # type: ignore[arg-type]
        self.task._log_destroy_pending = False  # type: ignore[attr-defined]  # parked: nothing to lose

    def clean(self) -> bool:
        """The context is as it was: no handler left a variable set in it."""
        context = self.context
        if len(context) != self.size:
            return False
        for var, value in self.base:
            if context.get(var) is not value:
                return False
        return True

    def adopt(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro, self.yielded = coro, yielded
        self.task._log_destroy_pending = True  # type: ignore[attr-defined]
        if not self.parked.done():
            self.parked.set_result(None)  # wakes the task (unless its first step is still due)

    def _take(self) -> tuple[Coroutine[Any, Any, Any], Any]:
        coro, yielded = self.coro, self.yielded
        assert coro is not None
        self.state, self.yielded = _RUNNING, None
        return coro, yielded

    # -- the coroutine protocol, as the task drives it -----------------------------------
    def send(self, value: Any) -> Any:
        if self.state == _RUNNING:
            return self.coro.send(value)  # type: ignore[union-attr]  # StopIteration ends the task
        if self.coro is not None:  # adopted: the task now waits where the coroutine waits
            return self._take()[1]
        if self.state == _PARKING:
            self.state = _PARKED
            parked = self.parked
            parked._asyncio_future_blocking = True  # what ``await parked`` does
            return parked
        raise StopIteration  # pragma: no cover - a parked spare is only woken to adopt

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = typ if isinstance(typ, BaseException) else val if isinstance(val, BaseException) else typ()
        if self.state == _RUNNING:
            return self.coro.throw(exc)  # type: ignore[union-attr]
        if self.coro is None:
            raise exc  # retired (cancelled) before adopting anything: the task ends
        # Cancelled between the coroutine's suspension and the task's first look at it:
        # deliver it as Task.cancel() would have (the awaited future is cancelled too).
        coro, yielded = self._take()
        if isinstance(yielded, asyncio.Future):
            yielded.cancel()
        return coro.throw(exc)

    def close(self) -> None:
        if self.coro is not None:
            self.coro.close()

    def __await__(self) -> NoReturn:
        raise TypeError("a spare task's coroutine is not awaitable")


_spare: _Spare | None = None


def start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run ``coro`` until it first suspends. Returns the task that runs the rest, or None when
    it finished (an exception it raises is raised here). Meant for callbacks of the running
    ``loop`` (a protocol's ``data_received``); elsewhere (inside a running task, or with the
    loop not running) it falls back to ``loop.create_task``."""
    global _spare
    if not running_here(loop):
        return loop.create_task(coro)
    spare = _spare
    if spare is None or spare.loop is not loop or spare.parked.done():
        spare = _spare = _Spare(loop)
    task = spare.task
    try:
        _enter_task(loop, task)
    except RuntimeError:  # a task is running (e.g. a test driving a call from a coroutine)
        return loop.create_task(coro)
    try:
        yielded = spare.context.run(coro.send, None)
    except BaseException as exc:
        _leave_task(loop, task)
        if task.cancelling() or ((len(spare.context) != spare.size or spare.base) and not spare.clean()):
            # The handler cancelled the task it was lent, or left a context variable set:
            # retire the spare, the next call gets a fresh task and context.
            _spare = None
            spare.parked.cancel()
        if isinstance(exc, StopIteration):
            return None
        raise
    _leave_task(loop, task)
    # It suspended: the spare runs the rest (even a spare the handler cancelled, which then
    # delivers that cancellation, as its own task would).
    spare.adopt(coro, yielded)
    _spare = None
    return task
