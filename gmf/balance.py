"""Spreading connections evenly over the workers.

The kernel gives each connection to one worker's ``SO_REUSEPORT`` listener by a hash of its
addresses. That is even over many short connections, not over the few long-lived ones gRPC
clients keep: 16 connections between two workers were split 5/11 as often as 8/8 (measured,
docs/benchmarking.md), so one worker could carry twice the other's load, and two channels land
on the same worker half the time.

So a worker that accepts a connection while another worker serves fewer passes the socket to
the least loaded one (``SCM_RIGHTS`` over a socketpair), before any byte is read or any TLS
handshake starts; the receiver serves it as if it had accepted it. What the workers share for
that is one table of counters in memory the supervisor mapped before forking, each cell written
by one process only (so no locks; a reader may see a count a moment old, which only makes the
spread off by one):

- ``open[w]``: connections worker ``w`` serves; ``CLOSED`` while it does not accept (starting,
  draining, dead), so no one passes it anything;
- ``sent[v][w]``: connections worker ``v`` has passed to ``w`` so far, ``received[w]``: how many
  of those ``w`` has taken. ``w``'s load is ``open[w]`` plus the ones on their way to it.

The requests themselves are never spread: a connection stays with the worker it reaches, and a
worker's RPCs share nothing with the others'. With one worker there is no table and no cost.
"""

from __future__ import annotations

import array
import logging
import mmap
import os
import socket
from collections.abc import Callable

log = logging.getLogger("gmf")

CLOSED = 1 << 60  # open[w] of a worker that takes no connections now
_MESSAGE = 16  # bytes read per message (each is one byte and one socket)
_ANCILLARY = socket.CMSG_SPACE(4)  # one descriptor per message (SEQPACKET: one message per recvmsg)


class Balance:
    """The shared table and one socketpair per worker; made by the supervisor before it forks."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        cells = workers * (workers + 2)
        self._map = mmap.mmap(-1, 8 * cells)  # MAP_SHARED | MAP_ANONYMOUS: seen by every fork
        self.table = memoryview(self._map).cast("q")
        for w in range(workers):
            self.table[self._open(w)] = CLOSED
        # pairs[w]: (w receives on [0], the others send on [1]); SEQPACKET keeps one socket per
        # message and is bounded by the socket buffer, not by a datagram queue length.
        self.pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(workers)]
        for receive, send in self.pairs:
            receive.setblocking(False)
            send.setblocking(False)

    # Worker w's row of the table: open[w], received[w], then sent[w][0..n-1].
    def _open(self, w: int) -> int:
        return w * (self.workers + 2)

    def _received(self, w: int) -> int:
        return self._open(w) + 1

    def _sent(self, v: int, w: int) -> int:
        return self._open(v) + 2 + w

    def closed(self, w: int) -> None:
        """Worker ``w`` takes nothing now (the supervisor says so when it dies)."""
        self.table[self._open(w)] = CLOSED

    def load(self, w: int) -> int:
        """Connections worker ``w`` serves or is about to take."""
        return self.table[self._open(w)] + self.incoming(w)

    def incoming(self, w: int) -> int:
        """Connections passed to worker ``w`` that it has not taken yet."""
        table = self.table
        return sum(table[self._sent(v, w)] for v in range(self.workers)) - table[self._received(w)]

    def close(self) -> None:
        for pair in self.pairs:
            for sock in pair:
                sock.close()
        self.table.release()
        self._map.close()


class WorkerBalance:
    """One worker's side: publish its count, pass surplus connections, take others'."""

    def __init__(self, balance: Balance, me: int) -> None:
        self.balance = balance
        self.me = me
        self._table = balance.table
        self._open = balance._open(me)
        self._received = balance._received(me)
        self._inbox = balance.pairs[me][0]
        self._stopped = False

    def publish(self, count: int) -> None:
        """This worker now serves ``count`` connections (and accepts more, until it stops)."""
        if not self._stopped:
            self._table[self._open] = count

    def stop_accepting(self) -> None:
        """Draining: nothing more is passed here, whatever happens to the count."""
        self._stopped = True
        self._table[self._open] = CLOSED

    def target(self, mine: int) -> int:
        """The least loaded worker if it serves fewer than this one, else -1: serve it here.
        ``mine``: this worker's connections without the one just accepted; those passed to it
        and not taken yet count too (a burst of accepts comes before the inbox is read)."""
        balance = self.balance
        target, least = -1, mine + balance.incoming(self.me)
        for w in range(balance.workers):
            if w != self.me:
                load = balance.load(w)
                if load < least:
                    target, least = w, load
        return target

    def pass_on(self, fd: int, target: int) -> bool:
        """Send the accepted socket ``fd`` to worker ``target``. True when sent (the caller then
        closes its own descriptor; the connection lives on in the target); False when it could
        not be (its queue is full, or it is gone): serve it here."""
        try:
            self.balance.pairs[target][1].sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                                                  socket.MSG_DONTWAIT)
        except OSError:
            return False
        self._table[self.balance._sent(self.me, target)] += 1
        return True

    def take(self) -> list[int]:
        """The sockets other workers passed here (non-blocking, close-on-exec). Each still
        counts as incoming until :meth:`taken` (when it is served, and so counted here)."""
        fds: list[int] = []
        while True:
            try:  # not socket.recv_fds/send_fds: they ignore their flags (CPython 3.11-3.14)
                data, ancillary, _, _ = self._inbox.recvmsg(_MESSAGE, _ANCILLARY, socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                break
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                    fds.extend(got)
            if not data:
                break
        for fd in fds:
            os.set_blocking(fd, False)
        return fds

    def taken(self) -> None:
        """A passed connection is served here now (or could not be): no longer incoming."""
        self._table[self._received] += 1

    def watch(self, add_reader: Callable[..., object], adopt: Callable[[int], None]) -> None:
        """Take passed sockets as they come and hand each to ``adopt``, which serves it and
        calls :meth:`taken` once it is counted (or has failed)."""

        def ready() -> None:
            for fd in self.take():
                try:
                    adopt(fd)
                except Exception:
                    os.close(fd)
                    self.taken()
                    log.exception("could not serve a connection passed from another worker")

        add_reader(self._inbox.fileno(), ready)
        ready()  # passed while this worker was starting (or before it restarted)
