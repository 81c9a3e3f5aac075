"""Drive a request-streaming handler's task, stepping it at once when a request message arrives.

A handler reading a request stream (``async for request in request_iterator``) waits in
``Call.wait_readable`` on a future per message. Through its task, each message costs a
callback round: the future's completion schedules the task's wakeup (a handle, ``call_soon``),
the next loop iteration steps the task, the response it writes schedules a flush, and one more
iteration writes it. Bidi echo pays that per message, on a connection that then idles between
reads (``python -m bench.cost --kind bidi``).

:class:`StreamDriver` is the coroutine of such a call's task, in front of the handler's
coroutine (``runner.run(call)``). When the handler waits for a request message, the driver
parks the task on a future of its own and remembers that the handler waits for its call's read
waiter. The connection, once a read's frames are all handled, steps every parked handler whose
message came (:meth:`StreamDriver.step`): the handler's coroutine runs right there, as its
task, in the task's ``contextvars`` context (``asyncio.current_task()`` is the call's task), and
what it writes goes out with the rest of the read's output, in the same loop iteration. While
it keeps waiting for request messages the task stays parked: no handle, no task step, no extra
loop iteration per message. Anything else the handler awaits (a sleep, a lock, another task)
goes back to the task, which then waits on it as it would have (one loop iteration later).

What stays as with a plain task: cancelling the task (client reset, deadline, shutdown)
throws ``CancelledError`` into the handler where it waits; a wake from anywhere but a read
(the call finishing, a sink without read batches) resumes the handler through its task.
``task.get_coro()`` is the driver, not the handler's coroutine.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import threading
from asyncio.events import _get_running_loop as get_running_loop
from asyncio.tasks import _enter_task as enter_task  # type: ignore[attr-defined]  # as gmf/rpc/eager.py
from asyncio.tasks import _leave_task as leave_task  # type: ignore[attr-defined]
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final, NoReturn

if TYPE_CHECKING:
    from .call import Call

__all__ = ["ReadWait", "StreamDriver", "running_here", "running_task", "start", "step_all"]

# What a direct step left for the task to do on its next step (StreamDriver.kind).
# Bound as Final (compiled: C statics, not the module's globals looked up per step).
_get_running_loop: Final = get_running_loop
_enter_task: Final = enter_task
_leave_task: Final = leave_task
_get_ident: Final = threading.get_ident
_MISSING: Final = object()


def running_here(loop: asyncio.AbstractEventLoop) -> bool:
    """``asyncio._get_running_loop() is loop``, without the system call: on 3.11 that function
    calls getpid() every time (a fork check), measured at 4% of a bidi echo worker's CPU when
    asked once per message. asyncio's own loops (the io_uring one included) record the thread
    running them in ``_thread_id``; a loop that does not (uvloop) is asked the slow way."""
    thread_id = getattr(loop, "_thread_id", _MISSING)
    if thread_id is _MISSING:
        return _get_running_loop() is loop
    return thread_id == _get_ident()


def _shared_current_tasks() -> dict[Any, Any] | None:
    """asyncio's dict of running task per loop, when this Python keeps one that both
    ``_enter_task`` and ``current_task()`` use (3.11 to 3.13, C or pure asyncio); None when it
    does not (3.14 keeps the running task per thread). Probed, not assumed from the version."""
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if type(tasks) is not dict:
        return None
    key: Any = object()
    probe: Any = object()
    try:
        _enter_task(key, probe)
    except Exception:  # noqa: BLE001 - an asyncio that checks what it is given: not ours to use
        return None
    try:
        shared = tasks.get(key) is probe and asyncio.current_task(key) is probe
    finally:
        _leave_task(key, probe)
    return tasks if shared and key not in tasks else None


# Compiled: a C static. step_all sets the running task in it directly (see there).
_CURRENT_TASKS: Final = _shared_current_tasks()


def running_task(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    """``asyncio.current_task(loop)``; compiled, where asyncio keeps the shared dict, one native
    lookup (asked once per request message a stepped handler waits for)."""
    tasks = _CURRENT_TASKS
    if tasks is not None:
        task: asyncio.Task[Any] | None = tasks.get(loop)
        return task
    return asyncio.current_task(loop)


def step_all(loop: asyncio.AbstractEventLoop, drivers: list[StreamDriver]) -> None:
    """Step the drivers whose handlers got a request message in one read (a connection, once
    its frames are handled). Each runs as its task, as :meth:`StreamDriver.step` would; where
    asyncio keeps its running tasks in a dict (``_CURRENT_TASKS``), each step stores its task
    over the previous one's and the entry goes once after the last: one store per message
    instead of an enter (lookup, insert) and a leave (lookup, delete), measured at 4% of a
    bidi echo worker's instructions."""
    tasks = _CURRENT_TASKS
    on_loop = running_here(loop)
    if tasks is None or not on_loop or loop in tasks:  # no shared dict, not on the loop, or a task runs
        for driver in drivers:
            driver.step(on_loop)
        return
    try:
        for driver in drivers:
            if driver.woken():
                tasks[loop] = driver.task
                driver.advance()
    finally:
        if loop in tasks:
            del tasks[loop]


_NOTHING: Final = 0
_AWAIT: Final = 1
_RESUME: Final = 2
_RAISE: Final = 3


class ReadWait:
    """What a handler stepped by its driver waits on for its next request message
    (``RequestIterator.__anext__``, while the call's task runs it): the call's read waiter, one
    per call and armed again for each wait. Awaited, it yields itself, which the driver takes
    for "park" (:meth:`StreamDriver.step`); resumed, it returns. Unlike an ``asyncio.Future``
    per message it costs one small generator, no callbacks, and asks the loop nothing (a
    Future's constructor calls ``loop.get_debug()``). The call wakes it as it wakes a Future (``done``/``set_result``).
    The task itself never gets it: when the task must wait for it (a wake that is not a
    read's, :meth:`StreamDriver.release`), it waits on ``future``, which ``set_result``
    completes."""

    __slots__ = ("_done", "future")

    def __init__(self) -> None:
        self._done = True
        self.future: asyncio.Future[None] | None = None

    def arm(self) -> ReadWait:
        self._done = False
        self.future = None
        return self

    def done(self) -> bool:
        return self._done

    def set_result(self, _result: None) -> None:
        self._done = True
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_result(None)

    def cancel(self) -> bool:
        future, self.future = self.future, None
        if future is not None:
            future.cancel()
        return True

    def as_future(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A Future done when this is (what the task waits on in its place)."""
        future = self.future
        if future is None:
            future = self.future = loop.create_future()
            if self._done:
                future.set_result(None)
        return future

    def __await__(self) -> Generator[Any, None, None]:
        yield self  # to the driver (compiled: a generator that ends without raising per message)


class StreamDriver:
    """The coroutine of a request-streaming call's task (see the module docstring). A
    compiled class cannot subclass ``collections.abc.Coroutine``: it is registered as one."""

    __slots__ = ("call", "coro", "loop", "context", "task", "parked", "park", "waiting", "kind", "outcome",
                 "park_done", "read_wait", "_run", "_send")

    def __init__(self, call: Call, coro: Coroutine[Any, Any, Any]) -> None:
        self.call = call
        self.coro = coro
        self.loop = call.conn.loop
        self.context = contextvars.copy_context()
        # Bound once: a step is ``context.run(coro.send, None)``, per request message.
        self._run = self.context.run
        self._send = coro.send
        # parked: the handler waits for its call's read waiter (``waiting``) and the task on
        # ``park``, which only the driver completes (or a cancel of the task).
        self.parked = False
        self.park: asyncio.Future[None] | None = None
        # park.done, bound when the park is made: asked per step (compiled, a bound method's
        # call costs a third of a method lookup and call on the Future).
        self.park_done: Callable[[], bool] | None = None
        self.waiting: Any = None  # the call's read waiter: a Future, or read_wait
        self.read_wait = ReadWait()
        self.kind = _NOTHING
        self.outcome: Any = None
        self.task: asyncio.Task[Any] = self.loop.create_task(self, context=self.context)  # type: ignore[arg-type]

    # -- the connection's side ----------------------------------------------------------
    def step(self, on_loop: bool = False) -> None:
        """A request message (or the end of the request stream) came for the parked handler:
        run it now, as its task, until it waits again. ``on_loop``: the caller knows it runs
        on the call's running loop (a connection asks once for all the drivers of a read)."""
        if not self.woken():
            return
        loop, task = self.loop, self.task
        if not on_loop and not running_here(loop):  # not on the running loop (a test driving a call)
            self.release()
            return
        try:
            _enter_task(loop, task)
        except RuntimeError:  # a task is running (a test feeding a call from a coroutine)
            self.release()
            return
        try:
            self.advance()
        finally:
            _leave_task(loop, task)

    def woken(self) -> bool:
        """Parked, and the read waiter it waits for is done (a step runs the handler)."""
        if not self.parked:
            return False
        waiting, park_done = self.waiting, self.park_done
        if park_done is None or waiting is None or park_done():
            return False  # the task is being cancelled
        read_wait = self.read_wait
        # the read waiter: a native read, not a method call
        return read_wait._done if waiting is read_wait else bool(waiting.done())

    def advance(self) -> None:
        """Run the woken handler until it waits again, as its task (which the caller made
        asyncio's current one): parked again, or what the task must do next is left for it."""
        park = self.park
        assert park is not None  # woken()
        self.parked = False
        self.waiting = None
        try:
            yielded = self._run(self._send, None)
        except BaseException as exc:  # noqa: BLE001 - StopIteration included: the task ends with it
            self.kind, self.outcome = _RAISE, exc
            park.set_result(None)
            return
        if yielded is not None and yielded is self.call.waiter:  # waits for the next message
            self.waiting = yielded
            self.parked = True
            return
        self.kind, self.outcome = _AWAIT, yielded  # the task waits on it from its next step
        park.set_result(None)

    def release(self) -> None:
        """Resume a parked handler through its task (a wake that is not a read's)."""
        if not self.parked:
            return
        park, waiting = self.park, self.waiting
        if park is None or waiting is None or park.done():  # the task was cancelled: it throws into the handler next
            return
        self.parked = False
        self.waiting = None
        if waiting.done():
            self.kind = _RESUME
        else:
            self.kind, self.outcome = _AWAIT, waiting.as_future(self.loop) if waiting is self.read_wait else waiting
        park.set_result(None)

    # -- the coroutine protocol, as the task drives it ----------------------------------
    def _after(self, yielded: Any) -> Any:
        if yielded is not None and yielded is self.call.waiter:  # waits for a request message: park
            self.waiting = yielded
            self.parked = True
            park = self.park = self.loop.create_future()
            self.park_done = park.done
            park._asyncio_future_blocking = True  # type: ignore[attr-defined]  # what ``await park`` does
            return park
        return yielded

    def send(self, value: Any) -> Any:
        kind = self.kind
        if kind:
            outcome = self.outcome
            self.kind, self.outcome = _NOTHING, None
            if kind == _AWAIT:
                return outcome
            if kind == _RAISE:
                raise outcome
        return self._after(self.coro.send(value))

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = typ if isinstance(typ, BaseException) else val if isinstance(val, BaseException) else typ()
        kind = self.kind
        if kind:  # cancelled before the task took what a direct step left
            outcome = self.outcome
            self.kind, self.outcome = _NOTHING, None
            if kind == _RAISE:  # the handler had ended: with its error, or cancelled
                raise exc if isinstance(outcome, StopIteration) else outcome
            if kind == _AWAIT and isinstance(outcome, asyncio.Future):
                outcome.cancel()  # as Task.cancel() cancels what its coroutine awaits
        elif self.parked:
            waiting = self.waiting
            self.parked = False
            self.waiting = None
            if waiting is not None:
                waiting.cancel()
        return self._after(self.coro.throw(exc))

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> NoReturn:
        raise TypeError("a call's stream driver is not awaitable")


collections.abc.Coroutine.register(StreamDriver)


def start(call: Call, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """The task that runs ``coro`` (the handler of ``call``, a request-streaming one), driven
    by a :class:`StreamDriver` that ``call.driver`` names."""
    driver = call.driver = StreamDriver(call, coro)
    return driver.task
