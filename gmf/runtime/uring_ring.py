"""The io_uring ring of one event loop: set-up, the handler table, and the per-iteration
submit / wait / reap cycle; and :func:`probe`, which says whether io_uring can run here.

Every submitted operation carries a 64-bit ``user_data`` that keys a handler in
``Ring.handlers``; reaping a CQE is one dict lookup and one call. All SQEs prepared during a
loop iteration are submitted together, and all available CQEs are reaped together
(``CqeIter`` + one ``io_uring_cq_advance``). The ring is set up with
``IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG`` where the kernel has them.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .uring_wait import GilFreeWaiter

try:  # pragma: no cover - exercised implicitly on Linux
    import liburing as _lu
except ImportError:  # pragma: no cover - non-Linux or package missing
    _lu = None

liburing: Any = _lu  # the binding, or None where it is not installed

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
_FEAT_EXT_ARG = 1 << 8
_SETUP_FLAGS = (_lu.IORING_SETUP_COOP_TASKRUN | _lu.IORING_SETUP_TASKRUN_FLAG) if _lu is not None else 0

_REQUIRED_OPS = ("IORING_OP_POLL_ADD", "IORING_OP_ACCEPT", "IORING_OP_RECV", "IORING_OP_SEND",
                 "IORING_OP_CLOSE", "IORING_OP_ASYNC_CANCEL", "IORING_OP_POLL_REMOVE")


def probe() -> str | None:
    """Return ``None`` when an io_uring loop can run here, else a human-readable reason."""
    if _lu is None:
        return "the 'liburing' Python package is not installed (pip install liburing; Linux only)"
    ring = _lu.Ring()
    try:
        _lu.io_uring_queue_init(8, ring)
    except OSError as exc:
        reason = f"io_uring_setup failed: {exc.strerror or exc}"
        if exc.errno in (errno.EPERM, errno.ENOSYS, errno.EACCES):
            reason += (" (blocked by seccomp or kernel.io_uring_disabled? run the container with a"
                       " seccomp profile that allows io_uring)")
        return reason
    try:
        if not ring.features & _FEAT_EXT_ARG:
            return "kernel too old: io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11 or newer needed)"
        return _probe_ops(ring)
    finally:
        _lu.io_uring_queue_exit(ring)


def _probe_ops(ring: Any) -> str | None:
    try:
        ops = _lu.io_uring_get_probe_ring(ring)
    except RuntimeError as exc:
        return f"io_uring probe failed: {exc}"
    try:
        missing = [name for name in _REQUIRED_OPS
                   if not _lu.io_uring_opcode_supported(ops, getattr(_lu.io_uring_op, name))]
    finally:
        _lu.io_uring_free_probe(ops)
    return f"kernel io_uring lacks {', '.join(missing)}" if missing else None


def os_error(err: int) -> OSError:
    """OSError(errno, msg) returns the matching subclass (ConnectionResetError, ...)."""
    return OSError(err, os.strerror(err))


class Writer(Protocol):
    """A transport with writes queued for this iteration's submit (``Ring.flush_queue``)."""

    def _flush(self) -> None: ...


class Ring:
    """The ring, its handler table and the per-iteration submit/wait/reap cycle."""

    def __init__(self, entries: int = RING_ENTRIES) -> None:
        if _lu is None:
            raise RuntimeError(probe() or "liburing unavailable")
        self.ring = _lu.Ring()
        self._init_ring(entries)
        self._cqe = _lu.Cqe()
        self._waiter = GilFreeWaiter(self.ring.ring_fd)
        self._timespec = _lu.timespec(1.0)
        self.handlers: dict[int, Handler] = {}
        self.flush_queue: list[Writer] = []
        # submit() ran during this iteration: sends that completed since may free connections
        # whose next writes are queued behind them (UringSelector.select reaps them first).
        self.submitted_early = False
        self._next_token = 1
        self.closed = False

    def _init_ring(self, entries: int) -> None:
        # COOP_TASKRUN: completions are posted when we enter the kernel anyway, instead of
        # interrupting us with task-work notifications (measured ~30% less CPU per message).
        # TASKRUN_FLAG tells io_uring_submit() when an enter is needed to reap them.
        try:
            _lu.io_uring_queue_init(entries, self.ring, _SETUP_FLAGS)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # kernels before 5.19 lack the flags
                raise
            self.ring = _lu.Ring()
            _lu.io_uring_queue_init(entries, self.ring, 0)

    def new_token(self) -> int:
        token = self._next_token
        self._next_token = token + 1
        return token << KIND_BITS

    def get_sqe(self) -> Any:
        sqe = _lu.io_uring_get_sqe(self.ring)
        if sqe is None:  # submission queue full: hand what we have to the kernel
            _lu.io_uring_submit(self.ring)
            sqe = _lu.io_uring_get_sqe(self.ring)
        return sqe

    def cancel(self, user_data: int) -> None:
        """Cancel the in-flight operation tagged ``user_data`` (its CQE gets -ECANCELED)."""
        sqe = self.get_sqe()
        _lu.io_uring_prep_cancel64(sqe, user_data, 0)
        sqe.user_data = 0

    def submit(self) -> None:
        """Submit the SQEs prepared so far now, without waiting (their CQEs are reaped by the
        loop's next ``select``, first thing: ``submitted_early``)."""
        _lu.io_uring_submit(self.ring)
        self.submitted_early = True

    def submit_and_wait(self, timeout: float | None) -> None:
        """Submit pending SQEs; if no CQE is ready and timeout allows, block for one."""
        ring = self.ring
        if timeout is not None and timeout <= 0:
            _lu.io_uring_submit(ring)  # enters the kernel only if there is work to submit or reap
            return
        if threading.active_count() == 1:
            self._wait_holding_gil(timeout)
            return
        if _lu.io_uring_sq_ready(ring):
            _lu.io_uring_submit(ring)
        if not _lu.io_uring_cq_ready(ring):
            self._waiter.wait(timeout)

    def _wait_holding_gil(self, timeout: float | None) -> None:
        # No other Python thread exists, so nobody can need the GIL while we block.
        ts = None
        if timeout is not None:
            ts = self._timespec
            sec = int(timeout)
            ts.sec = sec
            ts.nsec = int((timeout - sec) * 1e9)
        try:
            _lu.io_uring_submit_and_wait_timeout(self.ring, self._cqe, 1, ts)
        except (TimeoutError, InterruptedError, BlockingIOError):
            pass
        except OSError as exc:
            if exc.errno not in (errno.ETIME, errno.EBUSY):
                raise

    def reap(self) -> None:
        """Dispatch every available CQE to its handler, then release them all at once."""
        ring = self.ring
        cqe = self._cqe
        get = self.handlers.get
        seen = 0
        try:
            for _ in _lu.CqeIter(ring, cqe):
                seen += 1
                entry = cqe[0]
                handler = get(entry.user_data)
                if handler is None:
                    continue
                try:
                    res = entry.res
                except OSError as exc:  # the binding raises for negative results
                    res = -(exc.errno or errno.EIO)
                handler(res, entry.flags)
        finally:
            if seen:
                _lu.io_uring_cq_advance(ring, seen)
        if _lu.io_uring_cq_has_overflow(ring):
            _lu.io_uring_get_events(ring)

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
            _lu.io_uring_queue_exit(self.ring)

    def close_fd(self, fd: int) -> None:
        """Close ``fd`` through the ring (nobody waits for the result)."""
        sqe = self.get_sqe()
        _lu.io_uring_prep_close(sqe, fd)
        sqe.user_data = 0
