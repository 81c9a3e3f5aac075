"""The io_uring ring of one event loop: set-up, the handler table, and the per-iteration
submit / wait / reap cycle; and :func:`probe`, which says whether io_uring can run here.

Every submitted operation carries a 64-bit ``user_data`` that keys a handler in
``Ring.handlers``; the binding (``gmf/runtime/_uring.c``, loaded by ``uring_binding``) reaps
every available CQE in one call, calling ``handlers[user_data](res, flags)`` for each. All
SQEs prepared during a loop iteration are submitted together. The ring is set up with
``IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG`` where the kernel has them.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from .uring_binding import load as _load_binding

_lu: Any
_lu, _unavailable = _load_binding()

Handler = Callable[[int, int], None]  # (res, flags) of one CQE

# user_data = (token << KIND_BITS) | kind; user_data 0 marks "ignore this CQE".
KIND_BITS = 3
K_POLL = 1
K_ACCEPT = 2
K_RECV = 3
K_SEND = 4
K_CLOSE = 5
K_SHUTDOWN = 6

RING_ENTRIES = 4096
F_MORE = 2  # IORING_CQE_F_MORE
_SETUP_FLAGS = (_lu.SETUP_COOP_TASKRUN | _lu.SETUP_TASKRUN_FLAG) if _lu is not None else 0

_REQUIRED_OPS = ("POLL_ADD", "ACCEPT", "RECV", "SEND", "CLOSE", "ASYNC_CANCEL", "POLL_REMOVE", "SHUTDOWN")


def probe() -> str | None:
    """Return ``None`` when an io_uring loop can run here, else a human-readable reason."""
    if _lu is None:
        return _unavailable or "the io_uring binding is unavailable"
    try:
        ring = _lu.Ring(8, 0)
    except OSError as exc:
        reason = f"io_uring_setup failed: {exc.strerror or exc}"
        if exc.errno in (errno.EPERM, errno.ENOSYS, errno.EACCES):
            reason += (" (blocked by seccomp or kernel.io_uring_disabled? run the container with a"
                       " seccomp profile that allows io_uring)")
        return reason
    try:
        if not ring.features & _lu.FEAT_EXT_ARG:
            return "kernel too old: io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11 or newer needed)"
        try:
            missing = ring.unsupported([getattr(_lu, f"OP_{name}") for name in _REQUIRED_OPS])
        except OSError as exc:
            return f"io_uring probe failed: {exc}"
        names = [f"IORING_OP_{name}" for name in _REQUIRED_OPS if getattr(_lu, f"OP_{name}") in missing]
        return f"kernel io_uring lacks {', '.join(names)}" if names else None
    finally:
        ring.close()


def os_error(err: int) -> OSError:
    """OSError(errno, msg) returns the matching subclass (ConnectionResetError, ...)."""
    return OSError(err, os.strerror(err))


class Writer(Protocol):
    """A transport with writes queued for this iteration's submit (``Ring.flush_queue``)."""

    def _flush(self) -> None: ...


class Ring:
    """The ring, its handler table and the per-iteration submit/wait/reap cycle.

    ``ring`` is the binding's ring: callers prepare operations on it directly
    (``ring.prep_recv(fd, buf, flags, user_data)``, ...; a full submission queue is submitted
    to make room), the kernel sees them at the next :meth:`submit` or :meth:`submit_and_wait`.
    """

    def __init__(self, entries: int = RING_ENTRIES) -> None:
        if _lu is None:
            raise RuntimeError(probe() or "the io_uring binding is unavailable")
        try:
            # COOP_TASKRUN: completions are posted when we enter the kernel anyway, instead of
            # interrupting us with task-work notifications (measured ~30% less CPU per message).
            # TASKRUN_FLAG tells submit() when an enter is needed to reap them.
            self.ring: Any = _lu.Ring(entries, _SETUP_FLAGS)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # kernels before 5.19 lack the flags
                raise
            self.ring = _lu.Ring(entries, 0)
        self.handlers: dict[int, Handler] = {}
        self.flush_queue: list[Writer] = []
        # submit() ran during this iteration: sends that completed since may free connections
        # whose next writes are queued behind them (UringSelector.select reaps them first).
        self.submitted_early = False
        self._next_token = 1
        self.closed = False

    def new_token(self) -> int:
        token = self._next_token
        self._next_token = token + 1
        return token << KIND_BITS

    def cancel(self, user_data: int) -> None:
        """Cancel the in-flight operation tagged ``user_data`` (its CQE gets -ECANCELED)."""
        self.ring.prep_cancel(user_data)

    def submit(self) -> None:
        """Submit the SQEs prepared so far now, without waiting (their CQEs are reaped by the
        loop's next ``select``, first thing: ``submitted_early``)."""
        self.ring.submit()
        self.submitted_early = True

    def submit_and_wait(self, timeout: float | None) -> None:
        """Submit pending SQEs; if no CQE is ready and timeout allows, block for one."""
        if timeout is not None and timeout <= 0:
            self.ring.submit()  # enters the kernel only if there is work to submit or reap
            return
        self._wait(timeout)

    def _wait(self, timeout: float | None) -> None:
        # Its own frame, so that profiles count the time blocked here as idle (bench/profile.py).
        self.ring.wait(timeout)  # the binding releases the GIL while it blocks

    def reap(self) -> None:
        """Dispatch every available CQE to its handler (``handlers[user_data](res, flags)``)."""
        self.ring.reap(self.handlers)

    def flush_writes(self) -> None:
        queue = self.flush_queue
        if queue:
            self.flush_queue = []
            for transport in queue:
                transport._flush()

    def drain(self, done: Callable[[], bool], timeout: float) -> None:
        """Submit, wait and reap until ``done()`` (used when the loop closes)."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            try:
                self.submit_and_wait(0.02)
                self.reap()
            except Exception:  # the loop is closing: nothing useful to report to
                break

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.handlers.clear()
            self.flush_queue.clear()
            self.ring.close()

    def close_fd(self, fd: int) -> None:
        """Close ``fd`` through the ring (nobody waits for the result)."""
        self.ring.prep_close(fd, 0, 0)
