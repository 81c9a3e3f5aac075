"""gmf.balance on its own: the shared counts, the choice of worker, sockets passed between
processes (the end-to-end spread is in test_workers.py and tests/tls)."""

from __future__ import annotations

import os
import socket

import pytest

from gmf.balance import CLOSED, Balance, WorkerBalance

pytestmark = pytest.mark.core


@pytest.fixture
def balance():
    shared = Balance(3)
    yield shared
    shared.close()


def test_a_worker_that_is_not_serving_takes_nothing(balance):
    w0 = WorkerBalance(balance, 0)
    assert balance.load(1) >= CLOSED and balance.load(2) >= CLOSED  # not started yet
    assert w0.target(5) == -1
    WorkerBalance(balance, 2).publish(1)
    assert w0.target(5) == 2 and w0.target(1) == -1  # only to one serving fewer
    balance.closed(2)  # died: the supervisor says so
    assert w0.target(5) == -1
    w1 = WorkerBalance(balance, 1)
    w1.publish(0)
    assert w0.target(5) == 1
    w1.stop_accepting()  # draining: a connection closing or arriving later does not reopen it
    w1.publish(0)
    assert w0.target(5) == -1


def test_the_least_loaded_gets_it_and_sockets_on_their_way_count(balance):
    w0, w1, w2 = (WorkerBalance(balance, w) for w in range(3))
    w0.publish(4)
    w1.publish(2)
    w2.publish(1)
    assert w0.target(4) == 2
    a, b = socket.socketpair()
    try:
        assert w0.pass_on(a.fileno(), 2)
        assert w0.pass_on(a.fileno(), 2)
        assert balance.load(2) == 3 and balance.incoming(2) == 2  # sent, not taken yet
        assert w0.target(4) == 1  # worker 2 now looks busier than worker 1
        # worker 2 counts its own incoming sockets: with 1 open + 2 coming it passes to worker 1
        assert w2.target(1) == 1
        fds = w2.take()
        assert len(fds) == 2 and balance.incoming(2) == 2  # still incoming until served
        for _ in fds:
            w2.taken()
        assert balance.incoming(2) == 0
        # what arrived is the same connection: bytes written to it reach the peer
        os.write(fds[0], b"hello")
        assert b.recv(5) == b"hello"
        assert not os.get_blocking(fds[0]) and not os.get_inheritable(fds[0])
        for fd in fds:
            os.close(fd)
    finally:
        a.close()
        b.close()


def test_a_socket_that_cannot_be_sent_stays(balance):
    w0 = WorkerBalance(balance, 0)
    WorkerBalance(balance, 1).publish(0)
    a, b = socket.socketpair()
    try:
        sent = 0
        while w0.pass_on(a.fileno(), 1):  # worker 1 never reads: its queue fills up
            sent += 1
            assert sent < 100_000
        assert sent > 0 and balance.incoming(1) == sent
    finally:
        a.close()
        b.close()
        for fd in WorkerBalance(balance, 1).take():
            os.close(fd)


def test_a_forked_worker_sees_the_counts_and_takes_the_socket(balance):
    """The table and the socketpairs are made before fork: what one process writes, the other
    reads, and a socket sent from the parent is served by the child."""
    w0 = WorkerBalance(balance, 0)
    listener = socket.create_server(("127.0.0.1", 0))
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the receiving worker
        code = 1
        try:
            w1 = WorkerBalance(balance, 1)
            w1.publish(0)
            while not (fds := w1.take()):
                pass
            w1.taken()
            os.write(fds[0], b"served by the child")
            code = 0 if balance.incoming(1) == 0 else 2
        finally:
            os.write(done_w, bytes([code]))
            os._exit(code)
    client = socket.create_connection(listener.getsockname())
    try:
        while balance.load(1) >= CLOSED:  # the child has published its count
            pass
        conn, _ = listener.accept()
        assert w0.target(3) == 1 and w0.pass_on(conn.fileno(), 1)
        conn.close()  # the child's copy keeps the connection open
        client.settimeout(10)
        assert client.recv(64) == b"served by the child"
        assert os.read(done_r, 1) == b"\x00"
    finally:
        os.waitpid(pid, 0)
        client.close()
        listener.close()
        os.close(done_r)
        os.close(done_w)
