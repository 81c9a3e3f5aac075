"""Each worker's pool of handler threads, for plain ``def`` handlers (grpcio runs them so).

A job goes from the event loop to a thread through one queue; the results come back through
one deque that the loop drains in order, woken once per batch: a thread that finishes while
an earlier wake-up is still pending adds its result without another ``call_soon_threadsafe``
(which writes to the loop's self-pipe). Threads start on demand, up to ``max_threads``, and
are daemon threads: a handler that never returns cannot keep its worker from exiting (the
worker ends with ``os._exit`` after draining).

It is also a :class:`concurrent.futures.Executor` (``submit``), so ``loop.run_in_executor``
works with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import SimpleQueue
from typing import Any

from .inline import InlineGuard

log = logging.getLogger("gmf")

_STOP = None


class HandlerThreads(Executor):
    """Threads for one worker's plain-def handlers (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_threads: int, name: str = "gmf-handler") -> None:
        if max_threads < 1:
            raise ValueError(f"handler_threads must be at least 1 (got {max_threads})")
        self.loop = loop
        self.loop_thread = threading.get_ident()  # made on the loop's thread
        self.max_threads = max_threads
        self._name = name
        self._jobs: SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job, not yet claimed by a queued one
        self._results: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._wake_pending = False
        self._closed = False
        self.guard = InlineGuard()  # plain-def handlers that run inline on this loop (gmf.rpc.inline)

    # -- the event loop's side -----------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in a thread of the pool (as soon as one is free)."""
        if self._closed:
            raise RuntimeError("the handler thread pool is shut down")
        self._jobs.put((fn, args))
        with self._lock:
            if self._idle:
                self._idle -= 1
                return
            if len(self._threads) >= self.max_threads:
                return  # queued until a thread finishes its job
            thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                future.set_exception(exc)

        self.run(job)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new jobs; idle threads exit. Running handlers are not interrupted (threads cannot
        be), and with ``wait=False`` nobody waits for them."""
        self._closed = True
        if cancel_futures:
            while not self._jobs.empty():
                self._jobs.get_nowait()
        for _ in self._threads:
            self._jobs.put(_STOP)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    @property
    def threads(self) -> int:
        """Threads started so far."""
        return len(self._threads)

    def _drain(self) -> None:
        self._wake_pending = False  # before taking: a result added from now on wakes the loop again
        results = self._results
        while results:
            fn, args = results.popleft()
            fn(*args)

    def on_loop(self) -> bool:
        """Whether the caller runs on the event loop's thread (not in a handler thread)."""
        return threading.get_ident() == self.loop_thread

    # -- a handler thread's side ---------------------------------------------------------
    def to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a handler thread: run ``fn(*args)`` on the event loop, after everything this
        pool handed to the loop before (so a call's headers, messages and status keep their
        order). One loop wake-up serves every result that arrives before the loop runs."""
        self._results.append((fn, args))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: the worker is exiting
                pass

    def _work(self) -> None:
        jobs = self._jobs
        lock = self._lock
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            fn, args = job
            try:
                fn(*args)
            except BaseException:  # jobs catch what their handler raises: this is a bug in GMF
                log.exception("handler thread job %r failed", fn)
            del job, fn, args
            with lock:
                self._idle += 1

