"""An asyncio event loop whose socket I/O and waiting go through io_uring.

Design
======

io_uring is *completion based*: we hand the kernel an operation ("receive into this
buffer", "send these bytes", "accept a connection") and later reap a completion (CQE)
carrying the result.  That is the model of asyncio's proactor loop (IOCP on Windows),
not of the selector loop (readiness: "this fd is readable, now call recv()").  The loop
combines both on **one ring**, in these pieces (the way CPython splits its proactor engine
from its transports):

* ``uring_ring.Ring`` owns the ring of our binding (``_uring.c``: the kernel's io_uring ABI,
  no liburing): a handler per ``user_data``, all SQEs of a loop iteration submitted together,
  all available CQEs reaped in one call that dispatches each to its handler; ``probe()``.
  Blocking for completions (``io_uring_enter`` with ``GETEVENTS``, submitting in the same
  system call) releases the GIL, so executor threads and ``call_soon_threadsafe`` run.
* ``uring_selector.UringSelector``: a ``selectors.BaseSelector`` on one-shot
  ``IORING_OP_POLL_ADD`` for everything asyncio does through readiness (its self-pipe,
  signals, ordinary asyncio transports in handler code); its ``select(timeout)`` is the
  loop's only blocking point and drives the whole ring.  There is no epoll anywhere.
* ``uring_transport.UringTransport`` and ``uring_server.UringServer``: the server's own
  connections, which never touch readiness: multishot ``accept``; one ``recv`` armed per
  connection; everything written during one loop iteration sent as **one** ``send``;
  ``close`` through the ring after the pending sends have flushed.
* :class:`UringEventLoop` (here): a ``SelectorEventLoop`` on that selector, so every
  asyncio API keeps asyncio's own semantics, plus :meth:`UringEventLoop.uring_start_server`.

The ring is set up with ``IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG``:
completions are posted when the loop enters the kernel anyway instead of interrupting
it; on an echo benchmark that cut the server's CPU time per message by about a third.

Fork: create the loop *after* forking (each GMF worker does).  A ring shared between a
parent and a child is not supported.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable

# Absolute imports: tests and bench/uring_echo_bench.py load this file on its own by path.
from gmf.runtime.uring_ring import probe
from gmf.runtime.uring_selector import UringSelector
from gmf.runtime.uring_server import UringServer
from gmf.runtime.uring_transport import UringTransport

__all__ = ["UringEventLoop", "UringServer", "UringTransport", "new_event_loop", "probe"]


def new_event_loop() -> UringEventLoop:
    """Create a new :class:`UringEventLoop` (call it in the process that will run it)."""
    return UringEventLoop()


class UringEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop on an io_uring selector, plus io_uring-native TCP serving."""

    def __init__(self) -> None:
        self._uring_selector = UringSelector()
        super().__init__(self._uring_selector)

    def set_debug(self, enabled: bool) -> None:
        """As asyncio's, and ``get_debug`` answers through a C callable: every Future and Task
        asks its loop ``get_debug()`` when it is made, a Python method call each time (a bidi
        stream makes a future per message it waits for)."""
        super().set_debug(enabled)
        self.get_debug = itertools.repeat(bool(enabled)).__next__  # type: ignore[method-assign]

    async def uring_start_server(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                                 sock: socket.socket) -> UringServer:
        """Serve ``protocol_factory`` connections accepted on the listening ``sock``."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A stream socket was expected, got {sock!r}")
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Accepted sockets inherit TCP_NODELAY from the listener (as asyncio sets it).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = UringServer(self, self._uring_selector, sock, protocol_factory)
        await server.start_serving()
        return server

    def uring_stats(self) -> dict[str, int]:
        """Counts useful in tests: live transports, servers and registered handlers."""
        sel = self._uring_selector
        return {"transports": len(sel.transports), "servers": len(sel.servers),
                "handlers": len(sel.ring.handlers)}
