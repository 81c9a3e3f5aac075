"""The io_uring binding (gmf/runtime/_uring.c) on its own, against the real kernel: preparing,
submitting, waiting and reaping; what it does at its limits (a full submission queue, a
handler that raises, a closed ring); that waiting releases the GIL; and its build on first use
for a checkout that was not installed (uring_binding), including the reason it gives when no
compiler is there."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gmf.runtime import uring_binding
from tests.helpers import ROOT
from tests.helpers.servers import require_runtime

pytestmark = [pytest.mark.core, pytest.mark.timeout(60)]


@pytest.fixture
def lu() -> Any:
    require_runtime("uring")
    module, why = uring_binding.load()
    assert module is not None, why
    return module


@pytest.fixture
def pair() -> Any:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _reap_until(ring: Any, handlers: dict[int, Any], done: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "no completion in time"
        ring.wait(0.5)
        ring.reap(handlers)


def test_send_recv_and_their_results(lu: Any, pair: Any) -> None:
    a, b = pair
    ring = lu.Ring(64, 0)
    buf = bytearray(64)
    got: list[tuple[str, int, int]] = []
    handlers = {8: lambda res, flags: got.append(("send", res, flags)),
                16: lambda res, flags: got.append(("recv", res, flags))}
    ring.prep_recv(b.fileno(), buf, 0, 16)
    ring.prep_send(a.fileno(), b"hello", 0, 8)
    assert ring.sq_ready() == 2
    _reap_until(ring, handlers, lambda: len(got) == 2)
    assert sorted(got) == [("recv", 5, 0), ("send", 5, 0)] and bytes(buf[:5]) == b"hello"
    assert ring.sq_ready() == 0 and ring.cq_ready() == 0
    # A failed operation completes with -errno; user_data 0 and unknown user_data are skipped.
    ring.prep_send(12345678, b"x", 0, 8)
    ring.prep_close(12345679, 0, 0)
    _reap_until(ring, handlers, lambda: len(got) == 3)
    assert got[2] == ("send", -errno.EBADF, 0)
    ring.close()


def test_cancel_poll_and_shutdown(lu: Any, pair: Any) -> None:
    a, b = pair
    ring = lu.Ring(64, lu.SETUP_COOP_TASKRUN | lu.SETUP_TASKRUN_FLAG)
    got: dict[int, int] = {}

    def record(ud: int) -> Any:
        return lambda res, flags: got.__setitem__(ud, res)

    handlers = {ud: record(ud) for ud in (8, 16, 24, 32)}
    ring.prep_recv(b.fileno(), bytearray(16), 0, 8)
    ring.prep_poll_add(b.fileno(), 1, 16)  # POLLIN
    ring.submit()
    ring.prep_cancel(8)
    ring.prep_poll_remove(16)
    _reap_until(ring, handlers, lambda: 8 in got and 16 in got)
    assert got[8] == -errno.ECANCELED and got[16] == -errno.ECANCELED
    ring.prep_poll_add(a.fileno(), 4, 24)  # POLLOUT: ready at once
    ring.prep_shutdown(a.fileno(), socket.SHUT_WR, 32)
    _reap_until(ring, handlers, lambda: 24 in got and 32 in got)
    assert got[24] & 4 and got[32] == 0
    assert b.recv(1) == b""  # the peer saw the shutdown
    ring.close()


def test_full_submission_queue_is_submitted_to_make_room(lu: Any, pair: Any) -> None:
    a, b = pair
    ring = lu.Ring(8, 0)
    assert ring.entries == (8, 16)
    done: list[int] = []
    for i in range(12):  # more than the queue holds: the binding submits the first 8 itself
        ring.prep_send(a.fileno(), b"x", 0, 8 * (i + 1))
    handlers = {8 * (i + 1): (lambda res, flags: done.append(res)) for i in range(12)}
    _reap_until(ring, handlers, lambda: len(done) == 12)
    assert done == [1] * 12 and b.recv(100) == b"x" * 12
    ring.close()


def test_accept_multishot(lu: Any) -> None:
    ring = lu.Ring(16, 0)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        accepted: list[int] = []
        ring.prep_accept(srv.fileno(), socket.SOCK_CLOEXEC, True, 8)
        clients = [socket.create_connection(srv.getsockname()) for _ in range(3)]
        _reap_until(ring, {8: lambda res, flags: accepted.append(res)}, lambda: len(accepted) == 3)
        assert all(fd > 0 for fd in accepted)
        for fd in accepted:
            socket.socket(fileno=fd).close()
        for c in clients:
            c.close()
    ring.close()


def test_a_raising_handler_loses_no_other_completion(lu: Any, pair: Any) -> None:
    a, b = pair
    ring = lu.Ring(16, 0)
    seen: list[int] = []

    def boom(res: int, flags: int) -> None:
        raise ValueError("handler failed")

    for ud in (8, 16, 24):
        ring.prep_send(a.fileno(), b"y", 0, ud)
    ring.submit()
    time.sleep(0.05)
    with pytest.raises(ValueError, match="handler failed"):
        ring.reap({8: boom, 16: lambda r, f: seen.append(16), 24: lambda r, f: seen.append(24)})
    assert ring.cq_ready() == 2  # the failed one was released, the others wait for the next reap
    assert ring.reap({16: lambda r, f: seen.append(16), 24: lambda r, f: seen.append(24)}) == 2
    assert seen == [16, 24]
    ring.close()


def test_wait_times_out_and_releases_the_gil(lu: Any) -> None:
    ring = lu.Ring(8, 0)
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        time.sleep(0.02)
        before = ticks
        started = time.monotonic()
        ring.wait(0.3)  # nothing in flight: returns at the timeout
        waited = time.monotonic() - started
        progress = ticks - before
    finally:
        stop.set()
        thread.join()
    assert 0.25 <= waited < 2.0
    assert progress > 10_000, f"the other thread ran {progress} iterations while the ring waited"
    ring.close()


def test_closed_ring_and_bad_arguments(lu: Any) -> None:
    ring = lu.Ring(8, 0)
    with pytest.raises(TypeError):
        ring.prep_send(1, b"x", 0)
    with pytest.raises(BufferError):
        ring.prep_recv(0, b"immutable", 0, 8)  # recv needs a writable buffer
    with pytest.raises(TypeError):
        ring.reap([])
    ring.close()
    ring.close()  # idempotent
    assert ring.fd == -1
    for call in (ring.submit, lambda: ring.wait(0.01), lambda: ring.reap({}), lambda: ring.prep_cancel(8)):
        with pytest.raises(ValueError, match="closed"):
            call()
    with pytest.raises(OSError) as info:
        lu.Ring(0, 0)
    assert info.value.errno == errno.EINVAL


def test_probe_names_what_the_kernel_lacks(lu: Any) -> None:
    ring = lu.Ring(8, 0)
    assert ring.unsupported([lu.OP_RECV, lu.OP_SEND, lu.OP_ACCEPT]) == []
    assert ring.unsupported([250]) == [250]
    ring.close()


def _run_isolated(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Python with this checkout but without the installed build: uring_binding must build."""
    prelude = "import sys; sys.modules['gmf.runtime._uring'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_a_checkout_without_a_build_compiles_it_on_first_use(tmp_path: Path) -> None:
    require_runtime("uring")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    code = """
        from gmf.runtime import uring_binding
        m, why = uring_binding.load()
        print(m.__file__ if m else why)
        print(m.Ring(8, 0).entries)
    """
    first = _run_isolated(code, env)
    assert first.returncode == 0, first.stderr
    assert str(tmp_path / "cache" / "gmf" / "_uring-") in first.stdout and "(8, 16)" in first.stdout
    built = list((tmp_path / "cache" / "gmf").glob("_uring-*"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    again = _run_isolated(code, env)  # the second use loads the cached build
    assert again.returncode == 0 and built[0].stat().st_mtime_ns == stamp


def test_without_a_compiler_the_reason_says_what_to_install(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT), "CC": "/nonexistent/cc"}
    code = """
        import sysconfig
        sysconfig.get_config_vars()['CC'] = '/nonexistent/cc'
        from gmf.runtime import uring_unavailable
        print(uring_unavailable())
    """
    proc = _run_isolated(code, env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "the io_uring binding (gmf/runtime/_uring.c) could not be built" in out, out
    assert "apt-get install gcc python3-dev" in out and "Traceback" not in out
