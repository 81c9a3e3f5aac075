"""A ``selectors.BaseSelector`` on io_uring: everything asyncio does through readiness.

One-shot ``IORING_OP_POLL_ADD`` (level-triggered like epoll: a poll armed on an already ready
fd completes at once, and it is re-armed after each completion while the fd stays
registered) serves the loop's self-pipe (``call_soon_threadsafe``, ``run_in_executor``), the
signal wakeup fd, and ordinary asyncio transports (``asyncio.open_connection`` in handler
code). ``select(timeout)`` is the loop's only blocking point: it flushes queued writes,
submits, waits in ``io_uring_enter`` (timeout from asyncio's timers) and dispatches
completions, the server's own sockets' included. There is no epoll anywhere.
"""

from __future__ import annotations

import errno
import selectors
from collections.abc import Mapping
from typing import Any, Protocol

from .uring_ring import K_POLL, Handler, Ring

_ECANCELED = errno.ECANCELED
_POLLIN = 0x001
_POLLOUT = 0x004
_POLLERR = 0x008


class _Transport(Protocol):
    """What closing the selector does with a live transport (``UringTransport``)."""

    def _abandon(self) -> None: ...

    def _close_fd_directly(self) -> None: ...


class _Server(Protocol):
    """... and with a serving ``UringServer``."""

    def _on_loop_close(self) -> None: ...


def _fileobj_to_fd(fileobj: Any) -> int:
    fd = fileobj if isinstance(fileobj, int) else int(fileobj.fileno())
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


class _PollRegistration:
    """One registered fd: its key and the user_data of the one-shot poll armed for it (0: none)."""

    __slots__ = ("key", "user_data")

    def __init__(self, key: selectors.SelectorKey) -> None:
        self.key = key
        self.user_data = 0

    def poll_mask(self) -> int:
        events = self.key.events
        return (_POLLIN if events & selectors.EVENT_READ else 0) | (
            _POLLOUT if events & selectors.EVENT_WRITE else 0)

    def ready_events(self, res: int) -> int:
        """Translate a poll result into selector events (as selectors.PollSelector does)."""
        if res < 0:
            res = _POLLERR
        events = 0
        if res & ~_POLLIN:
            events |= selectors.EVENT_WRITE
        if res & ~_POLLOUT:
            events |= selectors.EVENT_READ
        return events & self.key.events


class UringSelector(selectors.BaseSelector):
    """A level-triggered selector on io_uring POLL_ADD; its select() drives the whole ring."""

    def __init__(self) -> None:
        self.ring = Ring()
        self._regs: dict[int, _PollRegistration] = {}
        self._to_arm: set[int] = set()
        self._ready: dict[int, int] = {}
        self.transports: set[_Transport] = set()
        self.servers: set[_Server] = set()

    # -- BaseSelector API
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        fd = _fileobj_to_fd(fileobj)
        if fd in self._regs:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._regs[fd] = _PollRegistration(key)
        self._to_arm.add(fd)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = self._fd_of(fileobj)
        reg = self._regs.pop(fd)
        self._to_arm.discard(fd)
        self._disarm(reg)
        self._ready.pop(fd, None)
        return reg.key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = self._fd_of(fileobj)
        reg = self._regs[fd]
        old = reg.key
        if events != old.events:
            self.unregister(fileobj)
            return self.register(fileobj, events, data)
        if data is not old.data:
            reg.key = old._replace(data=data)
        return reg.key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ring = self.ring
        if ring.closed:
            raise RuntimeError("selector is closed")
        if ring.flush_queue:
            if ring.submitted_early:
                # A send submitted mid-iteration (UringTransport.send_now) has most likely
                # completed: reap it now, so that what its connection wrote since goes out in
                # this submit rather than one iteration later.
                ring.submitted_early = False
                ring.reap()
            ring.flush_writes()
        if self._to_arm:
            self._arm_polls()
        ring.submit_and_wait(timeout)
        ring.reap()
        ready = self._ready
        if not ready:
            return []
        self._ready = {}
        regs = self._regs
        return [(regs[fd].key, events) for fd, events in ready.items() if fd in regs]

    def close(self) -> None:
        ring = self.ring
        if ring.closed:
            return
        for server in list(self.servers):
            server._on_loop_close()
        transports = list(self.transports)
        for transport in transports:
            transport._abandon()
        # Wait for the cancellations, so the kernel is done with every receive buffer
        # before the transports (and their buffers) can be freed.
        ring.drain(lambda: not self.transports, timeout=1.0)
        self.transports.clear()
        self._regs.clear()
        self._to_arm.clear()
        ring.close()  # io_uring_queue_exit
        for transport in transports:
            transport._close_fd_directly()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._regs[self._fd_of(fileobj)].key

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return {fd: reg.key for fd, reg in self._regs.items()}

    # -- internals
    def _fd_of(self, fileobj: Any) -> int:
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            for fd, reg in self._regs.items():
                if reg.key.fileobj is fileobj:
                    return fd
            raise

    def _arm_polls(self) -> None:
        ring = self.ring
        for fd in self._to_arm:
            reg = self._regs.get(fd)
            if reg is None or reg.user_data:
                continue
            user_data = ring.new_token() | K_POLL
            ring.ring.prep_poll_add(fd, reg.poll_mask(), user_data)
            reg.user_data = user_data
            ring.handlers[user_data] = self._make_poll_handler(reg, user_data)
        self._to_arm.clear()

    def _make_poll_handler(self, reg: _PollRegistration, user_data: int) -> Handler:
        handlers = self.ring.handlers

        def on_poll(res: int, flags: int) -> None:
            del handlers[user_data]
            if reg.user_data != user_data or res == -_ECANCELED:
                return  # a poll we removed (unregister/modify)
            reg.user_data = 0
            fd = reg.key.fd
            self._to_arm.add(fd)  # one-shot: re-arm on the next select() while registered
            events = reg.ready_events(res)
            if events:
                ready = self._ready
                ready[fd] = ready.get(fd, 0) | events

        return on_poll

    def _disarm(self, reg: _PollRegistration) -> None:
        if reg.user_data:
            self.ring.ring.prep_poll_remove(reg.user_data)
            reg.user_data = 0  # the removed poll's CQE (-ECANCELED) is then ignored
