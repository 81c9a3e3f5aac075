"""A per-worker watchdog that reports a handler blocking the event loop.

The loop updates a heartbeat from a timer every ``TICK_S`` (no per-request cost). A daemon
thread checks it; once the loop has not ticked for ``threshold`` seconds it logs ONE warning
per blocked episode on the "gmf" logger -- how long, which RPC is running (found on the
loop thread's stack: the runner frame that holds the call), and that thread's stack -- and,
when the loop ticks again, one line with the total. Like asyncio's slow-callback report
(debug mode), but always on and cheap.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from types import FrameType

from .rpc import runner

log = logging.getLogger("gmf")

TICK_S = 0.1
_MAX_STACK_FRAMES = 40
# Frames of gmf.rpc.runner that run a handler and hold its ``call`` in a local.
_RUNNER_CODES = frozenset(
    fn.__code__ for fn in (runner.run, runner.run_unary_inline, runner.run_unary_async, runner._await_unary)
)


def check_threshold(threshold: float | None) -> None:
    if threshold is not None and not threshold > 0:
        raise ValueError(f"slow_handler_threshold must be positive seconds, or None to disable the watchdog (got {threshold})")


def current_rpc(frame: FrameType | None) -> tuple[str | None, FrameType | None]:
    """('/pkg.Service/Method (handler Qual.name)', the runner frame) of the innermost handler
    on this stack, or (None, None)."""
    while frame is not None:
        if frame.f_code in _RUNNER_CODES:
            call = frame.f_locals.get("call")
            method = getattr(call, "method", None)
            if method is not None:
                name = getattr(method.func, "__qualname__", None) or repr(method.func)
                return f"{method.path} (handler {name})", frame
        frame = frame.f_back
    return None, None


def format_stack(frame: FrameType, outermost: FrameType | None) -> str:
    """The stack from ``frame`` out to ``outermost`` (the handler's runner), or its last frames."""
    frames = []
    for item in traceback.walk_stack(frame):
        frames.append(item)
        if item[0] is outermost or len(frames) >= _MAX_STACK_FRAMES:
            break
    return "".join(traceback.StackSummary.extract(reversed(frames)).format()).rstrip()


class LoopWatchdog:
    """Start with :meth:`start` on the loop's thread; :meth:`stop` before the loop closes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        check_threshold(threshold)
        self.loop = loop
        self.threshold = threshold
        self.episodes = 0
        self._beat = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="gmf-watchdog", daemon=True)

    def start(self) -> LoopWatchdog:
        self._loop_thread = threading.get_ident()
        self._tick()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thread.is_alive():
            self._thread.join(1.0)

    def _tick(self) -> None:
        self._beat = time.monotonic()
        self._timer = self.loop.call_later(TICK_S, self._tick)

    def _watch(self) -> None:
        interval = min(max(self.threshold / 4, 0.02), 0.25)
        blocked_since: float | None = None  # heartbeat of the episode being reported
        rpc: str | None = None
        while not self._stop.wait(interval):
            beat = self._beat
            now = time.monotonic()
            if blocked_since is not None:
                if beat != blocked_since:  # the loop ticked again
                    log.warning("event loop unblocked after %.1fs%s", beat - blocked_since,
                                f" (RPC {rpc})" if rpc else "")
                    blocked_since = None
                continue
            stalled = now - beat - TICK_S
            if stalled >= self.threshold:
                blocked_since = beat
                self.episodes += 1
                rpc = self._report(stalled)

    def _report(self, stalled: float) -> str | None:
        frame = sys._current_frames().get(self._loop_thread)
        rpc, runner_frame = current_rpc(frame)
        stack = format_stack(frame, runner_frame) if frame is not None else ""
        log.warning(
            "event loop blocked for %.2fs (slow_handler_threshold=%gs)%s: every connection of this worker waits; "
            "use await, or run blocking work in a thread (loop.run_in_executor). Loop thread stack:\n%s",
            stalled, self.threshold, f" in RPC {rpc}" if rpc else "", stack,
        )
        return rpc


def start(loop: asyncio.AbstractEventLoop, threshold: float | None) -> LoopWatchdog | None:
    """A running watchdog for this loop, or None when ``threshold`` is None (disabled)."""
    return LoopWatchdog(loop, threshold).start() if threshold is not None else None
