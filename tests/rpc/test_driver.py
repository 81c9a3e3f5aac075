"""Request-streaming handlers stepped by their connection (gmf/rpc/driver.py), on a real
GrpcConnection fed raw HTTP/2 frames: the response to a read goes out in that read, the task
semantics a handler sees hold, and cancellation reaches a parked handler."""

from __future__ import annotations

import asyncio
import contextvars
import struct
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import hpack
import pytest

from bench.cost import MAX_WINDOW, PREFACE, CountingTransport, frame, grpc_message
from gmf import watchdog
from gmf.rpc.accept import Acceptor
from gmf.rpc.driver import ReadWait
from gmf.rpc.registry import MethodRegistry
from gmf.rpc.server_state import ServerOptions, ServerState

PATH = "/t.Stream/Bidi"


class Recorder(CountingTransport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()

    def write(self, data: Any) -> None:
        super().write(data)
        self.out += data

    def frames(self, upto: int | None = None) -> Iterator[tuple[int, int, int, bytes]]:
        """(type, flags, stream id, payload) of everything written so far (or of its first ``upto`` bytes)."""
        data, i = bytes(self.out[:upto]), 0
        while i + 9 <= len(data):
            hi, lo, ftype, flags, sid = struct.unpack(">BHBBL", data[i:i + 9])
            n = hi << 16 | lo
            yield ftype, flags, sid & 0x7FFFFFFF, data[i + 9:i + 9 + n]
            i += 9 + n

    def messages(self, sid: int, upto: int | None = None) -> list[bytes]:
        """The gRPC messages of stream ``sid``'s DATA frames (in the first ``upto`` bytes written)."""
        data = b"".join(payload for ftype, _, s, payload in self.frames(upto) if ftype == 0 and s == sid)
        out, i = [], 0
        while i + 5 <= len(data):
            n = int.from_bytes(data[i + 1:i + 5], "big")
            out.append(data[i + 5:i + 5 + n])
            i += 5 + n
        return out

    def trailers(self, sid: int) -> list[tuple[str, str]] | None:
        blocks = [payload for ftype, flags, s, payload in self.frames() if ftype == 1 and s == sid and flags & 0x1]
        return hpack.Decoder().decode(blocks[-1]) if blocks else None


class Server:
    """One connection of a GMF server whose only method is the bidi ``handler`` (bytes in, out)."""

    def __init__(self, handler: Callable[[AsyncIterator[bytes], Any], Any]) -> None:
        self.loop = asyncio.new_event_loop()
        registry = MethodRegistry()
        registry.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "t.Stream", {"Bidi": grpc.stream_stream_rpc_method_handler(handler)})])
        state = ServerState(self.loop, registry, ServerOptions())
        self.transport = Recorder()
        conn: Any = Acceptor(state)()
        self.transport.set_protocol(conn)
        conn.connection_made(self.transport)
        self.conn: Any = conn
        self.deliver(PREFACE + frame(0x4, 0, 0, struct.pack(">HL", 0x4, MAX_WINDOW)) + frame(0x4, 0x1, 0, b""))
        self.conn = self.transport.get_protocol()
        self.encoder = hpack.Encoder()

    def deliver(self, data: bytes) -> int:
        """``data_received(data)`` from a loop callback, as a runtime calls it; returns how many
        bytes the connection had written when it returned (before any other callback ran)."""
        written: asyncio.Future[int] = self.loop.create_future()

        def received() -> None:
            self.conn.data_received(data)
            written.set_result(len(self.transport.out))

        self.loop.call_soon(received)
        return self.loop.run_until_complete(written)

    def open(self, sid: int, timeout: str | None = None) -> None:
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", PATH),
                   ("te", "trailers"), ("content-type", "application/grpc")]
        if timeout:
            headers.append(("grpc-timeout", timeout))
        self.deliver(frame(0x1, 0x4, sid, self.encoder.encode(headers)))

    def send(self, sid: int, *bodies: bytes, end: bool = False) -> int:
        payload = b"".join(grpc_message(body) for body in bodies)
        return self.deliver(frame(0x0, 0x1 if end else 0, sid, payload))

    def reset(self, sid: int) -> None:
        self.deliver(frame(0x3, 0, sid, struct.pack(">L", 0x8)))

    def settle(self, seconds: float = 0.0) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))
        for _ in range(5):
            self.loop.run_until_complete(asyncio.sleep(0))

    def close(self) -> None:
        self.conn.connection_lost(None)
        self.settle()
        self.loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(handler: Callable[..., Any]) -> Server:
        made.append(Server(handler))
        return made[-1]

    yield make
    for server in made:
        server.close()


def serves_next(server: Server, sid: int) -> None:
    """A new call (stream ``sid``) on the same connection echoes and ends OK."""
    server.open(sid)
    server.settle()
    server.send(sid, b"b", end=True)
    server.settle()
    assert server.transport.messages(sid) == [b"b"]
    assert ("grpc-status", "0") in server.transport.trailers(sid)


async def echo(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


def test_a_read_is_answered_within_the_read(serve):
    """The parked handler runs when its message comes: the echo is written before the loop runs."""
    server = serve(echo)
    server.open(1)
    server.open(3)
    server.settle()  # the tasks' first steps: both handlers wait for a message
    for n in range(3):
        written = server.send(1, b"a%d" % n)
        assert server.transport.messages(1, written)[-1] == b"a%d" % n  # written by data_received itself
        written = server.send(3, b"b%d" % n)
        assert server.transport.messages(3, written)[-1] == b"b%d" % n
    written = server.send(1, b"x", b"y", end=True)  # two messages in one frame, then the end
    assert server.transport.messages(1, written)[-2:] == [b"x", b"y"]
    server.settle()
    assert ("grpc-status", "0") in server.transport.trailers(1)
    assert server.conn.calls.keys() == {3}


def test_the_handler_runs_as_its_task_in_its_context(serve):
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=0)
    seen: list[tuple[Any, int]] = []

    async def handler(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            seen.append((asyncio.current_task(), var.get()))
            var.set(var.get() + 1)
            yield request

    server = serve(handler)
    server.open(1)
    server.settle()
    task = server.conn.calls[1].task
    for _ in range(3):
        server.send(1, b"m")
    assert seen == [(task, 0), (task, 1), (task, 2)]
    assert var.get() == 0  # the handler's variable stayed in its task's context


def test_a_handler_that_awaits_other_things_between_reads(serve):
    async def handler(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            yield request

    server = serve(handler)
    server.open(1)
    server.settle()
    for n in range(4):
        server.send(1, b"%d" % n)
        server.settle(0.005)
    server.send(1, b"last", end=True)
    server.settle(0.005)
    assert server.transport.messages(1) == [b"0", b"1", b"2", b"3", b"last"]
    assert ("grpc-status", "0") in server.transport.trailers(1)


def test_another_task_may_read_the_requests(serve):
    async def handler(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async def drain() -> list[bytes]:
            return [request async for request in requests]

        for request in await asyncio.create_task(drain()):
            yield request

    server = serve(handler)
    server.open(1)
    server.settle()
    server.send(1, b"a")
    server.send(1, b"b", end=True)
    server.settle()
    assert server.transport.messages(1) == [b"a", b"b"]
    assert ("grpc-status", "0") in server.transport.trailers(1)


def test_a_read_interrupted_by_a_timeout_then_reads_on(serve):
    """The wait for a message (the driver's ReadWait) takes the CancelledError of an
    ``asyncio.timeout`` in the handler's task; the handler then reads the next messages."""
    async def handler(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        it = aiter(requests)
        while True:
            try:
                async with asyncio.timeout(0.02):
                    request = await anext(it)
            except TimeoutError:
                yield b"timeout"
                continue
            except StopAsyncIteration:
                return
            yield request

    server = serve(handler)
    server.open(1)
    server.settle()
    server.send(1, b"a")
    server.settle(0.05)  # the next read times out
    server.send(1, b"b", end=True)
    server.settle()
    messages = server.transport.messages(1)
    assert messages[0] == b"a" and messages[-1] == b"b" and b"timeout" in messages
    assert ("grpc-status", "0") in server.transport.trailers(1)


def test_read_wait_stands_in_for_a_future() -> None:
    """What the task waits on in a ReadWait's place (StreamDriver.release): a Future that its
    set_result completes and its cancel cancels; done at once if the message came first."""
    loop = asyncio.new_event_loop()
    try:
        wait = ReadWait().arm()
        future = wait.as_future(loop)
        assert not wait.done() and not future.done() and wait.as_future(loop) is future
        wait.set_result(None)
        assert wait.done() and future.done()
        wait.arm()
        cancelled = wait.as_future(loop)
        wait.cancel()
        assert cancelled.cancelled()
        wait.arm().set_result(None)
        assert wait.as_future(loop).done()
    finally:
        loop.close()


def echo_noting_cancel(outcome: list[str]) -> Callable[..., Any]:
    async def handler(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        try:
            async for request in requests:
                yield request
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    return handler


@pytest.mark.parametrize("how", ["reset", "deadline"])
def test_a_parked_handler_is_cancelled(serve, how):
    outcome: list[str] = []
    server = serve(echo_noting_cancel(outcome))
    server.open(1, timeout="20m" if how == "deadline" else None)
    server.settle()
    server.send(1, b"a")
    assert server.transport.messages(1) == [b"a"]
    if how == "reset":
        server.reset(1)
        server.settle()
    else:
        server.settle(0.05)
        assert ("grpc-status", "4") in server.transport.trailers(1)
    assert outcome == ["cancelled"]
    assert not server.conn.calls


def test_a_message_and_a_reset_in_one_read(serve):
    """The read's frames are all handled before a handler steps: a reset in the same read
    ends the call first, and the handler is cancelled instead of answering."""
    outcome: list[str] = []
    server = serve(echo_noting_cancel(outcome))
    server.open(1)
    server.settle()
    server.deliver(frame(0x0, 0, 1, grpc_message(b"a")) + frame(0x3, 0, 1, struct.pack(">L", 0x8)))
    server.settle()
    assert server.transport.messages(1) == []
    assert outcome == ["cancelled"]


def test_a_cancelled_stream_leaves_no_error_for_the_next(serve):
    """A handler cancelled where it waits, then a stream that ends normally on the same loop:
    its status is OK (compiled, an ``await`` in a ``finally`` of the response loop once raised
    the earlier CancelledError again: gmf/rpc/streaming.py)."""
    outcome: list[str] = []
    server = serve(echo_noting_cancel(outcome))
    server.open(1)
    server.settle()
    server.send(1, b"a")
    server.reset(1)
    server.settle()
    assert outcome == ["cancelled"]
    serves_next(server, 3)


def test_the_watchdog_names_a_handler_stepped_by_its_connection(serve):
    """Compiled frames (the connection, the response loop, the request iterator) are not on
    the stack the watchdog walks; the runner's ``run`` frame, which holds the call, is."""
    named: list[str | None] = []

    async def handler(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            named.append(watchdog.current_rpc(sys._getframe())[0])
            yield request

    server = serve(handler)
    server.open(1)
    server.settle()
    server.send(1, b"a")
    assert named == [f"{PATH} (handler {handler.__qualname__})"]



async def echo_by_read_write(requests: AsyncIterator[bytes], context: Any) -> None:
    while (request := await context.read()) is not grpc.aio.EOF:
        await context.write(request)


@pytest.mark.parametrize("handler", [
    pytest.param(echo, id="async-generator", marks=pytest.mark.skipif(
        sys.version_info < (3, 13), reason="before 3.13 closing a coroutine suspended in `async for` over an "
        "async generator leaves the generator running, and asyncio's finalizer then fails (CPython's)")),
    pytest.param(echo_by_read_write, id="read-write"),
])
@pytest.mark.core  # on every tested Python (the async-generator case runs from 3.13 on)
def test_a_handler_whose_coroutine_is_closed_ends_cancelled(serve, handler):
    """A handler task destroyed while pending has its coroutine closed (``GeneratorExit`` where
    it waits): the close goes through without awaiting again (awaiting the response stream's
    ``aclose()`` there raised "asynchronous generator is already running"), the call ends
    CANCELLED, and the connection serves the next call."""
    server = serve(handler)
    server.open(1)
    server.settle()
    server.send(1, b"a")
    assert server.transport.messages(1) == [b"a"]
    task = server.conn.calls[1].task
    task.get_coro().close()  # what the collection of a task destroyed while pending does
    server.settle()
    # Kept alive here, the task then steps the closed coroutine once more (and fails): take that
    # outcome, or its finalizer logs it from whatever code the collector interrupts.
    assert task.done() and task.exception() is not None
    assert ("grpc-status", "1") in server.transport.trailers(1)
    assert 1 not in server.conn.calls
    serves_next(server, 3)


def test_handlers_woken_by_one_read_each_run_as_their_task(serve):
    """Messages for three streams in one read: each handler runs as its own task (the connection
    steps them in turn, gmf/rpc/driver.py step_all), one failing does not stop the next, and
    once the read is handled no task is left running on the loop."""
    seen: list[tuple[bytes, Any]] = []

    async def handler(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async for request in requests:
            seen.append((request, asyncio.current_task()))
            if request == b"boom":
                raise RuntimeError("boom")
            yield request

    server = serve(handler)
    for sid in (1, 3, 5):
        server.open(sid)
    server.settle()
    tasks = {sid: server.conn.calls[sid].task for sid in (1, 3, 5)}
    data = b"".join(frame(0x0, 0, sid, grpc_message(body)) for sid, body in ((1, b"one"), (5, b"boom"), (3, b"three")))
    after: list[Any] = []

    def received() -> None:
        server.conn.data_received(data)
        after.append(asyncio.current_task(server.loop))

    server.loop.call_soon(received)
    server.settle()
    assert seen == [(b"one", tasks[1]), (b"boom", tasks[5]), (b"three", tasks[3])]
    assert after == [None]
    assert server.transport.messages(1) == [b"one"] and server.transport.messages(3) == [b"three"]
    assert ("grpc-status", "2") in server.transport.trailers(5)
    serves_next(server, 7)


def test_a_long_request_queue_is_read_in_order_and_trimmed(serve):
    """A handler far behind its request stream reads every message in order, and the call's
    queue drops what was read as it goes (Call._take), not only once it is empty."""
    gates = [asyncio.Event(), asyncio.Event()]

    async def handler(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        await gates[0].wait()
        n = 0
        async for request in requests:
            yield request
            n += 1
            if n == 100:
                await gates[1].wait()

    server = serve(handler)
    server.open(1)
    server.settle()
    bodies = [b"m%d" % n for n in range(150)]
    server.send(1, *bodies)
    call = server.conn.calls[1]
    assert len(call.messages) == 150 and call.read_at == 0
    server.loop.call_soon(gates[0].set)
    server.settle()
    assert len(call.messages) - call.read_at == 50 and len(call.messages) < 150  # read ones dropped
    more = [b"n%d" % n for n in range(10)]
    server.send(1, *more, end=True)
    server.loop.call_soon(gates[1].set)
    server.settle()
    assert server.transport.messages(1) == bodies + more
    assert ("grpc-status", "0") in server.transport.trailers(1)
    assert not call.has_message() and call.messages in ([], [b""])  # no read message is held


def test_one_message_at_a_time_reuses_the_queue_slot(serve):
    """Request messages read one at a time go through the call's first queue slot: the read
    one is not held after it is taken, the next takes its place."""
    server = serve(echo)
    server.open(1)
    server.settle()
    call = server.conn.calls[1]
    for n in range(3):
        server.send(1, b"%d" % n)
        assert call.messages == [b""] and call.read_at == 1 and not call.has_message()
    server.send(1, b"x", b"y", end=True)
    server.settle()
    assert server.transport.messages(1) == [b"0", b"1", b"2", b"x", b"y"]
