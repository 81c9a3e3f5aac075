"""Tests of the io_uring event loop (gmf/runtime/uring.py).

The first half checks that the loop keeps asyncio's own semantics (timers, tasks,
threads, signals, ordinary asyncio client code); the second half drives the io_uring
native server path with real sockets; the last test proves with strace that the
server's client sockets never see recv/send/read/write/epoll system calls.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

from tests.helpers import ROOT, poll
from tests.helpers.net import socket_held

URING_PATH = ROOT / "gmf" / "runtime" / "uring.py"
T = TypeVar("T")
pytestmark = [pytest.mark.core, pytest.mark.timeout(120)]  # core: CI runs it on every tested Python too


def _load_uring() -> ModuleType:
    """Import the module on its own, so the tests do not depend on the rest of the package."""
    spec = importlib.util.spec_from_file_location("gmf_uring_under_test", URING_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


uring = _load_uring()


@pytest.fixture(autouse=True)
def _require_uring() -> None:
    why = uring.probe()
    if why:
        if os.environ.get("GMF_REQUIRE_URING") == "1":
            pytest.fail(f"io_uring required (GMF_REQUIRE_URING=1) but unavailable: {why}")
        pytest.skip(f"io_uring unavailable: {why}")


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run ``coro_fn()`` on a fresh io_uring loop, then close the loop."""
    loop = uring.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(), timeout))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ----------------------------------------------------------------------------- protocols


class Echo(asyncio.Protocol):
    """Echoes everything; obeys flow control by pausing reads while writing is paused."""

    instances: list[Echo] = []

    def __init__(self) -> None:
        self.transport: Any = None
        self.lost: list[BaseException | None] = []
        self.eof = False
        self.paused_writing = 0
        self.received = 0
        Echo.instances.append(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.write(data)

    def eof_received(self) -> None:
        self.eof = True

    def pause_writing(self) -> None:
        self.paused_writing += 1
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


@pytest.fixture(autouse=True)
def _reset_echo() -> None:
    Echo.instances = []


async def start_echo(factory: Callable[[], asyncio.Protocol] = Echo) -> tuple[Any, int]:
    loop = asyncio.get_running_loop()
    sock = listening_socket()
    server = await loop.uring_start_server(factory, sock)  # type: ignore[attr-defined]
    return server, sock.getsockname()[1]


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def read_slowly_to_eof(factory: Callable[[], asyncio.Protocol], expected: bytes, send: bytes = b"") -> None:
    """Serve ``factory``, connect, send ``send``, and read until EOF pausing every 16 reads (a
    slow reader): the bytes must be ``expected``."""
    server, port = await start_echo(factory)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(send)
    chunks = []
    while chunk := await reader.read(65536):
        chunks.append(chunk)
        if len(chunks) % 16 == 0:
            await asyncio.sleep(0.001)
    assert b"".join(chunks) == expected
    writer.close()
    server.close()
    await server.wait_closed()


# ----------------------------------------------------------------------------- asyncio semantics


def test_probe_and_loop_type() -> None:
    assert uring.probe() is None
    loop = uring.new_event_loop()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert not loop.is_closed()
    finally:
        loop.close()
    assert loop.is_closed()


def test_debug_mode_is_asyncios() -> None:
    """get_debug() answers through a C callable (futures ask it when made) and follows
    set_debug() and PYTHONASYNCIODEBUG as asyncio's loops do: in debug mode a future records
    where it was made, and slow callbacks are logged."""
    loop = uring.new_event_loop()
    try:
        assert loop.get_debug() is False
        assert loop.create_future()._source_traceback is None
        loop.set_debug(True)
        assert loop.get_debug() is True
        assert loop.create_future()._source_traceback is not None
        loop.set_debug(False)
        assert loop.get_debug() is False
    finally:
        loop.close()
    code = "import gmf.runtime.uring as u; loop = u.new_event_loop(); print(loop.get_debug()); loop.close()"
    env = {**os.environ, "PYTHONASYNCIODEBUG": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_sleep_and_timeouts() -> None:
    async def main() -> None:
        t0 = time.monotonic()
        await asyncio.sleep(0.05)
        assert 0.045 <= time.monotonic() - t0 < 0.5
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.05)
        assert time.monotonic() - t0 < 1.0

    run(main)


def test_tasks_and_call_later_ordering() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        done = loop.create_future()
        loop.call_later(0.03, order.append, "c")
        loop.call_later(0.01, order.append, "a")
        loop.call_later(0.02, order.append, "b")
        loop.call_later(0.04, done.set_result, None)
        loop.call_soon(order.append, "soon")

        async def child(i: int) -> int:
            await asyncio.sleep(0.001 * i)
            return i * i

        results = await asyncio.gather(*(asyncio.create_task(child(i)) for i in range(10)))
        assert results == [i * i for i in range(10)]
        await done
        return order

    assert run(main) == ["soon", "a", "b", "c"]


def test_run_in_executor_and_threadsafe_wakeup() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, sum, [1, 2, 3]) == 6
        fut = loop.create_future()

        def from_thread() -> None:
            time.sleep(0.1)  # the loop is now blocked in io_uring_enter with no timer
            loop.call_soon_threadsafe(fut.set_result, threading.get_ident())

        t0 = time.monotonic()
        threading.Thread(target=from_thread).start()
        assert await fut != threading.get_ident()
        assert time.monotonic() - t0 < 2.0

    run(main)


def test_blocking_wait_releases_the_gil() -> None:
    ticks: list[float] = []

    def ticker() -> None:
        for _ in range(10):
            time.sleep(0.02)
            ticks.append(time.monotonic())

    async def main() -> None:
        thread = threading.Thread(target=ticker)
        thread.start()
        await asyncio.sleep(0.3)  # one long wait in io_uring_enter
        thread.join()

    run(main)
    assert len(ticks) == 10
    assert ticks[-1] - ticks[0] < 0.28  # the thread ran while the loop waited


def test_add_signal_handler() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, got.set_result, "term")
        try:
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
            assert await asyncio.wait_for(got, 5) == "term"
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    run(main)


def test_asyncio_client_library_compatibility() -> None:
    """asyncio.open_connection (readiness-based transports) works on the poll selector."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 23)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 23)
        for i in range(50):
            writer.write(f"hello {i}\n".encode())
            assert await reader.readline() == f"HELLO {i}\n".encode()
        big = b"z" * 3_000_000 + b"\n"
        writer.write(big)
        assert await reader.readline() == big.upper()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(main)


# ----------------------------------------------------------------------------- io_uring server


async def echo_client(port: int, messages: int, size: int = 64) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = os.urandom(size)
    for _ in range(messages):
        writer.write(payload)
        assert await reader.readexactly(size) == payload
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("with_thread", [False, True], ids=["single-thread", "gil-free-wait"])
def test_echo_many_concurrent_connections(with_thread: bool) -> None:
    """With another thread alive the loop waits through ctypes (GIL released)."""
    stop = threading.Event()
    if with_thread:
        threading.Thread(target=stop.wait, daemon=True).start()

    async def main() -> None:
        server, port = await start_echo()
        await asyncio.gather(*(echo_client(port, 20, 100 + i) for i in range(200)))
        await wait_until(lambda: sum(len(p.lost) for p in Echo.instances) == 200)
        assert all(p.lost == [None] and p.eof for p in Echo.instances)
        server.close()
        await server.wait_closed()

    try:
        run(main, timeout=60)
    finally:
        stop.set()


def test_transport_extra_info_and_nodelay() -> None:
    async def main() -> None:
        server, port = await start_echo()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await wait_until(lambda: bool(Echo.instances))
        transport = Echo.instances[0].transport
        assert transport.get_extra_info("peername") == writer.get_extra_info("sockname")
        assert transport.get_extra_info("sockname") == ("127.0.0.1", port)
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.get_extra_info("nothing", 7) == 7
        assert not transport.is_closing() and transport.is_reading()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(main)


def test_large_write_partial_sends_and_flow_control() -> None:
    size = 8 * 1024 * 1024

    async def main() -> None:
        server, port = await start_echo()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = os.urandom(size)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()

        sender = asyncio.create_task(send())
        # read late: the server's unsent buffer must grow and pause it
        await wait_until(lambda: bool(Echo.instances) and Echo.instances[0].paused_writing >= 1, timeout=20)
        got = await reader.readexactly(size)
        await sender
        assert got == payload
        proto = Echo.instances[0]
        assert proto.received == size
        assert proto.paused_writing >= 1  # the unsent buffer crossed the high-water mark
        assert proto.transport.get_write_buffer_size() == 0
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(main, timeout=60)


def test_one_big_server_write_with_slow_reader() -> None:
    size = 8 * 1024 * 1024
    payload = os.urandom(size)

    class Blast(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(payload)
            transport.close()  # must flush everything first

    run(lambda: read_slowly_to_eof(Blast, payload), timeout=60)


def test_send_now_hands_the_bytes_to_the_kernel_before_the_protocol_returns() -> None:
    """UringTransport.send_now: what is queued leaves at once (the peer has it while
    data_received still runs); what is written after it, while that send may still be in
    flight, follows in order at the loop's flush."""
    during: list[bytes] = []
    client: list[socket.socket] = []

    class Early(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            t = self.transport
            t.write(b"first,")
            t.send_now()
            during.append(client[0].recv(100))  # blocks this loop: only the kernel can deliver it
            t.write(b"second,")
            t.send_now()
            t.write(b"third")

    async def main() -> None:
        server, port = await start_echo(Early)
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.append(sock)
        sock.sendall(b"go")
        await wait_until(lambda: bool(during))
        assert during == [b"first,"]
        sock.setblocking(False)
        rest = b""
        loop = asyncio.get_running_loop()
        while len(rest) < len(b"second,third"):
            rest += await loop.sock_recv(sock, 100)
        assert rest == b"second,third"
        sock.close()
        server.close()
        await server.wait_closed()

    run(main)


def test_send_now_keeps_the_byte_order_with_a_send_in_flight_and_a_slow_reader() -> None:
    """Many writes, each followed by send_now, some larger than the socket takes at once: the
    peer, reading slowly, gets exactly the bytes written, in order."""
    chunks = [os.urandom(size) for size in (1 << 20, 100, 3000, 2 << 20, 7, 65536, 1)] * 3
    expected = b"".join(chunks)

    class Burst(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            for chunk in chunks:
                self.transport.write(chunk)
                self.transport.send_now()
            self.transport.close()  # after everything was sent

    run(lambda: read_slowly_to_eof(Burst, expected, send=b"go"), timeout=60)


def test_peer_reset_and_others_keep_working() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, port = await start_echo()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, b"ping")
        assert await loop.sock_recv(sock, 4) == b"ping"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
        await wait_until(lambda: bool(Echo.instances[0].lost))
        assert isinstance(Echo.instances[0].lost[0], ConnectionResetError)
        await echo_client(port, 10)
        server.close()
        await server.wait_closed()

    run(main)


def test_clean_close_both_directions() -> None:
    class Bye(asyncio.Protocol):
        lost: list[BaseException | None] = []

        def connection_made(self, transport: Any) -> None:
            transport.write(b"bye")
            transport.close()
            assert transport.is_closing()

        def connection_lost(self, exc: BaseException | None) -> None:
            Bye.lost.append(exc)

    async def main() -> None:
        server, port = await start_echo(Bye)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b"bye"  # data, then EOF
        writer.close()
        await wait_until(lambda: Bye.lost == [None])
        server.close()
        await server.wait_closed()

    run(main)


def test_client_half_close_and_write_eof() -> None:
    class Upper(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.data = b""

        def data_received(self, data: bytes) -> None:
            self.data += data

        def eof_received(self) -> bool:
            self.transport.write(self.data.upper())
            self.transport.write_eof()
            return True  # keep the transport open until our EOF is out

    async def main() -> None:
        server, port = await start_echo(Upper)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"abc")
        writer.write_eof()
        assert await reader.read() == b"ABC"
        writer.close()
        server.close()
        await server.wait_closed()

    run(main)


def test_pause_and_resume_reading() -> None:
    class Lazy(Echo):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.pause_reading()
            assert not transport.is_reading()

    async def main() -> None:
        server, port = await start_echo(Lazy)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        await asyncio.sleep(0.2)  # the interval under test: reading is paused, nothing is received
        proto = Echo.instances[0]
        assert proto.received == 0
        proto.transport.resume_reading()
        assert await reader.readexactly(5) == b"hello"
        proto.transport.pause_reading()
        writer.write(b"again")
        await asyncio.sleep(0.1)  # the interval under test: paused again
        assert proto.received == 5
        proto.transport.resume_reading()
        assert await reader.readexactly(5) == b"again"
        writer.close()
        server.close()
        await server.wait_closed()

    run(main)


def test_abort_discards_pending_data() -> None:
    class Aborter(asyncio.Protocol):
        lost: list[BaseException | None] = []

        def connection_made(self, transport: Any) -> None:
            transport.write(b"x" * 1_000_000)
            transport.abort()
            assert transport.is_closing()

        def connection_lost(self, exc: BaseException | None) -> None:
            Aborter.lost.append(exc)

    async def main() -> None:
        server, port = await start_echo(Aborter)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            data = await reader.read()
        except ConnectionResetError:
            data = b""
        assert len(data) < 1_000_000
        await wait_until(lambda: Aborter.lost == [None])
        writer.close()
        server.close()
        await server.wait_closed()

    run(main)


def test_protocol_exception_is_reported_and_connection_aborted() -> None:
    class Faulty(Echo):
        def data_received(self, data: bytes) -> None:
            if data == b"boom":
                raise ValueError("boom")
            super().data_received(data)

    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        server, port = await start_echo(Faulty)
        healthy = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"boom")
        assert await reader.read() == b""  # the faulty connection was aborted
        healthy[1].write(b"still here")
        assert await healthy[0].readexactly(10) == b"still here"
        for w in (writer, healthy[1]):
            w.close()
        server.close()
        await server.wait_closed()
        return reported

    reported = run(main)
    assert len(reported) == 1
    assert isinstance(reported[0]["exception"], ValueError)
    assert "data_received" in reported[0]["message"]


def test_closing_the_server_stops_accepting() -> None:
    async def main() -> None:
        server, port = await start_echo()
        assert server.is_serving()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        server.close()
        await server.wait_closed()
        assert not server.is_serving()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        # an existing connection is not closed by closing the server (as in asyncio)
        writer.write(b"still")
        assert await reader.readexactly(5) == b"still"
        writer.close()
        await writer.wait_closed()
        loop = asyncio.get_running_loop()
        await wait_until(lambda: loop.uring_stats()["transports"] == 0)  # type: ignore[attr-defined]

    run(main)


def test_loop_close_releases_fds_and_ring() -> None:
    before = open_fds()
    clients: list[socket.socket] = []

    async def main() -> None:
        server, port = await start_echo()
        for _ in range(20):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        await wait_until(lambda: len(Echo.instances) == 20)
        # leave the server and all connections open: loop.close() must clean up

    loop = uring.new_event_loop()
    loop.run_until_complete(main())
    assert open_fds() > before + 20
    loop.close()
    for sock in clients:
        sock.close()
    assert open_fds() <= before + 1  # at most the listening socket object, closed by the server


FORKED_CHILD = textwrap.dedent("""
    import asyncio, os, sys
    from tests.runtime.test_uring_loop import echo_client, run, start_echo

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            async def main():
                server, port = await start_echo()
                await asyncio.gather(*(echo_client(port, 10) for _ in range(5)))
                server.close()
                await server.wait_closed()

            run(main)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
""")


def test_works_in_forked_child() -> None:
    """Each GMF worker forks first and then creates its loop. The fork happens in a fresh
    interpreter: this one has threads by now (3.12+ warns about forking those)."""
    proc = subprocess.run([sys.executable, "-c", FORKED_CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- strace proof

STRACE_SERVER = textwrap.dedent(
    """
    import asyncio, importlib.util, os, signal, socket, sys
    spec = importlib.util.spec_from_file_location("uring", sys.argv[1])
    uring = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(uring)

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(data)

    async def main():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        server = await loop.uring_start_server(Echo, sock)
        print(os.getpid(), sock.getsockname()[1], flush=True)
        await stop
        server.close()
        await server.wait_closed()

    loop = uring.new_event_loop()
    loop.run_until_complete(main())
    loop.close()
    """
)

BANNED = ("recvfrom", "sendto", "recvmsg", "sendmsg", "read", "write", "readv", "writev",
          "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "poll", "ppoll", "select", "pselect6")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_server_sockets_only_use_io_uring(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(STRACE_SERVER)
    trace = tmp_path / "trace.txt"
    proc = subprocess.Popen(
        ["strace", "-f", "-yy", "-e", "trace=" + ",".join(("io_uring_enter", *BANNED)), "-o", str(trace),
         sys.executable, str(script), str(URING_PATH)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        server_pid, port = map(int, proc.stdout.readline().split())
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        for i in range(3000):
            conn = conns[i % 4]
            msg = b"m%05d" % i
            conn.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += conn.recv(64)
            assert got == msg
        ends = [conn.getsockname()[1] for conn in conns]
        for conn in conns:
            conn.close()
        poll.until(lambda: not any(socket_held(port, end) for end in ends), "the server to close the 4 connections")
        os.kill(server_pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = trace.read_text()
    assert "io_uring_enter(" in text
    # -yy decorates fds: TCP sockets look like 3<TCP:[127.0.0.1:1234->127.0.0.1:5678]>.
    call = re.compile(r"^\d+\s+(?:<\.\.\. )?(\w+)\(?(.*)$")
    offending = []
    for line in text.splitlines():
        m = call.match(line)
        if m and m.group(1) in BANNED and "TCP" in m.group(2).split(",")[0]:
            offending.append(line)
    assert not offending, "server used readiness I/O on client sockets:\n" + "\n".join(offending[:20])
    # reads of the self-pipe may happen (signals, call_soon_threadsafe) but must stay rare
    pipe_reads = [ln for ln in text.splitlines() if re.search(r"\b(recvfrom|read)\(\d+<UNIX", ln)]
    assert len(pipe_reads) < 50
