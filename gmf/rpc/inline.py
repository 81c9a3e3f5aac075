"""Where a plain-def unary handler runs: in the worker's handler threads, or inline on its
event loop. The rule, per method and per worker, with ``sync_handlers="auto"`` (the default;
docs/migration.md, "What runs where"):

1. A method starts in the threads. Each run there is timed: wall clock, and the thread's CPU
   time. After ``INLINE_AFTER`` runs in a row that each took under ``QUICK_SECONDS``, of which
   under ``BLOCKED_SECONDS`` off the CPU (waiting for I/O, a lock, a sleep), it runs inline on
   the event loop: that saves the two thread hand-offs, which cost more than such a handler.
2. Each inline run is timed. One over ``INLINE_LIMIT`` (time in garbage collection not
   counted) is a strike; ``STRIKES`` strikes within ``STRIKE_WINDOW`` seconds move the method
   back to the threads for good (a warning says so). A lone slow run (the process was
   preempted) is forgiven.
3. An inline run still going after ``RESCUE_SECONDS`` blocks every RPC of its worker, and
   might wait for one of them: the guard thread interrupts it (a signal to the loop's thread,
   whose handler raises :class:`InlineRescue` at the blocking call; any blocking call made from
   Python returns then). That RPC ends with UNAVAILABLE, and the method runs in the threads for
   good. A worker is never wedged by a handler it chose to run inline.

Request-streaming and response-streaming plain-def handlers always run in the threads.
``sync_handlers="threads"`` (or ``@gmf.run_in_thread``) keeps a method in the threads;
``"inline"`` (``@gmf.run_inline``) runs it on the loop, untimed and unguarded: it must never block.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from typing import Any, Protocol

log = logging.getLogger("gmf")

INLINE_AFTER = 100
QUICK_SECONDS = 0.0005
BLOCKED_SECONDS = 0.0001
INLINE_LIMIT = 0.002
STRIKES = 5
STRIKE_WINDOW = 10.0
RESCUE_SECONDS = 0.1

SYNC_HANDLERS = ("auto", "threads", "inline")
_ATTRIBUTE = "__gmf_sync_handler__"

# Seconds spent in garbage collection in this process (counted once a method runs inline).
GC_PAUSES = [0.0]
_gc_started = [0.0]


class InlineRescue(BaseException):
    """Raised inside an inline handler that blocked the event loop over RESCUE_SECONDS (a
    BaseException, so that ``except Exception`` in the handler lets it through)."""


def run_inline(func: Any) -> Any:
    """Decorator: this plain-def unary handler always runs inline on the event loop (it must
    never block: every RPC of its worker waits while it runs)."""
    setattr(func, _ATTRIBUTE, "inline")
    return func


def run_in_thread(func: Any) -> Any:
    """Decorator: this plain-def unary handler always runs in the worker's handler threads."""
    setattr(func, _ATTRIBUTE, "threads")
    return func


def sync_mode(func: Any, default: str) -> str:
    """Where a plain-def unary handler runs: its decorator's choice, else the server's."""
    mode = getattr(func, _ATTRIBUTE, None)
    return mode if mode in SYNC_HANDLERS else default


class Placed(Protocol):
    """What the rule reads and sets on a method (gmf.rpc.registry.Method)."""

    path: str
    sync_mode: str
    inline: bool
    quick_runs: int
    strikes: int
    strike_at: float


def ran_in_thread(method: Placed, guard: InlineGuard, wall: float, blocked: float) -> None:
    """On the loop: a run of ``method`` in a thread took ``wall`` seconds, ``blocked`` of them off the CPU."""
    if method.sync_mode != "auto":
        return
    if wall >= QUICK_SECONDS or blocked >= BLOCKED_SECONDS:
        method.quick_runs = 0
        return
    method.quick_runs += 1
    if method.quick_runs >= INLINE_AFTER and guard.arm():
        method.inline = True


def ran_long_inline(method: Placed, seconds: float) -> None:
    """On the loop: an inline run of ``method`` took ``seconds`` (GC excluded); over INLINE_LIMIT it is a strike."""
    if seconds <= INLINE_LIMIT or not method.inline:
        return
    now = time.monotonic()
    if now - method.strike_at > STRIKE_WINDOW:
        method.strikes, method.strike_at = 0, now
    method.strikes += 1
    if method.strikes >= STRIKES:
        to_threads(method, f"ran over {INLINE_LIMIT * 1000:g} ms {STRIKES} times within {STRIKE_WINDOW:g} s "
                           f"(the last {seconds * 1000:.1f} ms)")


def to_threads(method: Placed, why: str) -> None:
    """``method`` runs in the handler threads from now on."""
    method.inline = False
    method.sync_mode = "threads"
    log.warning("%s: its plain-def handler %s on the event loop: it runs in the handler threads from now on "
                "(this worker)", method.path, why)


class InlineGuard:
    """Per worker: the inline run in progress (``call``, since ``since``), and the thread that
    interrupts one that blocks over RESCUE_SECONDS (started when a method first goes inline)."""

    __slots__ = ("call", "since", "_thread", "_main", "rescues")

    def __init__(self) -> None:
        self.call: Any = None
        self.since = 0.0
        self._thread: threading.Thread | None = None
        self._main = 0
        self.rescues = 0

    def arm(self) -> bool:
        """Ready to guard inline runs on this thread; False where it cannot be (not the main
        thread: only it runs Python signal handlers), and then nothing runs inline."""
        if self._thread is not None:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        signal.signal(RESCUE_SIGNAL, self._on_signal)
        if _on_gc not in gc.callbacks:
            gc.callbacks.append(_on_gc)
        self._main = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="gmf-inline-guard", daemon=True)
        self._thread.start()
        return True

    def _watch(self) -> None:
        while True:
            time.sleep(RESCUE_SECONDS / 4)
            call = self.call
            if call is not None and time.perf_counter() - self.since > RESCUE_SECONDS:
                signal.pthread_kill(self._main, RESCUE_SIGNAL)
                while self.call is call:  # once per blocked run (again if the handler swallows it)
                    time.sleep(RESCUE_SECONDS)
                    if self.call is call:
                        signal.pthread_kill(self._main, RESCUE_SIGNAL)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.call is not None and time.perf_counter() - self.since > RESCUE_SECONDS:
            self.rescues += 1
            raise InlineRescue()


RESCUE_SIGNAL = signal.SIGRTMIN + 3  # a real-time signal nobody else uses


def _on_gc(phase: str, info: dict[str, int]) -> None:
    now = time.perf_counter()
    if phase == "start":
        _gc_started[0] = now
    else:
        GC_PAUSES[0] += now - _gc_started[0]
