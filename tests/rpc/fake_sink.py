"""A connection for driving the RPC layer directly: a :class:`~gmf.rpc.sink.CallSink` that
records what calls send, so ``Call``, the runner and ``ServicerContext`` run without sockets
or HTTP/2 (as tests/protocol/test_h2_limits.py drives the protocol core without an RPC layer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from gmf.protocol import grpc as g
from gmf.protocol.hpack_codec import Header
from gmf.rpc.call import Call
from gmf.rpc.context import ServicerContext
from gmf.rpc.driver import StreamDriver
from gmf.rpc.registry import DEFAULT_OPTIONS, Method, MethodOptions
from gmf.rpc.sink import CallSink
from gmf.rpc.threads import HandlerThreads

PATH = "/test.Svc/Method"


class FakeSink:
    """Everything a call may use of its connection; what it sends is kept in ``sent``, in order:
    ``("headers", metadata, encoding)``, ``("message", payload, compressed)``,
    ``("status", code, details, metadata, trailers_only)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, max_receive_message_length: int = 4 * 1024 * 1024,
                 max_send_message_length: int | None = None) -> None:
        self.loop = loop
        self.executor = HandlerThreads(loop, 2, name="fake-sink")
        self.max_receive_message_length = max_receive_message_length
        self.max_send_message_length = max_send_message_length
        self.peer = "ipv4:192.0.2.7:4711"
        self.auth: dict[str, list[bytes]] = {"transport_security_type": [b"insecure"]}
        self.sent: dict[int, list[tuple[Any, ...]]] = {}
        self.released: list[tuple[int, int]] = []
        self.finished: dict[int, int] = {}
        self.blocked = False  # what write_blocked() answers
        self.made: list[Call] = []  # the calls of call(), cancelled by close() if still open

    def auth_context(self) -> dict[str, list[bytes]]:
        return {key: list(values) for key, values in self.auth.items()}

    def release(self, stream_id: int, nbytes: int) -> None:
        self.released.append((stream_id, nbytes))

    def send_headers(self, stream_id: int, metadata: list[Header] | None, encoding: str | None) -> None:
        self.sent.setdefault(stream_id, []).append(("headers", metadata, encoding))

    def send_message(self, stream_id: int, payload: bytes, compressed: bool) -> None:
        self.sent.setdefault(stream_id, []).append(("message", payload, compressed))

    def send_status(self, stream_id: int, code: int, details: str, metadata: list[Header] | None,
                    trailers_only: bool) -> None:
        self.sent.setdefault(stream_id, []).append(("status", code, details, metadata, trailers_only))

    def send_unary(self, stream_id: int, payload: bytes) -> None:
        self.send_headers(stream_id, None, None)
        self.send_message(stream_id, payload, False)
        self.send_status(stream_id, g.OK, "", None, False)

    def resume(self, driver: StreamDriver) -> None:
        driver.release()

    def write_blocked(self, stream_id: int) -> bool:
        return self.blocked

    def call_finished(self, stream_id: int, code: int) -> None:
        assert stream_id not in self.finished, f"call {stream_id} finished twice"
        self.finished[stream_id] = code

    # -- helpers for tests ---------------------------------------------------------------
    def call(self, handler: grpc.RpcMethodHandler, stream_id: int = 1, headers: list[Header] | None = None,
             encoding: str | None = None, options: MethodOptions = DEFAULT_OPTIONS) -> Call:
        """A call on this sink, with its context, as the connection makes one."""
        call = Call(self, stream_id, Method(PATH, handler, options), headers or [], encoding)
        call.context = ServicerContext(call)
        self.made.append(call)
        return call

    def status(self, stream_id: int = 1) -> tuple[Any, ...]:
        """The ``("status", ...)`` entry the call sent (exactly one, and last)."""
        sent = self.sent.get(stream_id, [])
        statuses = [entry for entry in sent if entry[0] == "status"]
        assert len(statuses) == 1 and sent[-1] is statuses[0], sent
        return statuses[0]

    def messages(self, stream_id: int = 1) -> list[bytes]:
        return [entry[1] for entry in self.sent.get(stream_id, []) if entry[0] == "message"]

    def run_until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        """Run the loop until ``done()`` (or fail after ``timeout`` seconds)."""

        async def wait() -> None:
            while not done():
                await asyncio.sleep(0.001)

        self.loop.run_until_complete(asyncio.wait_for(wait(), timeout))

    def settle(self, rounds: int = 10) -> None:
        """Let the tasks the calls started run until they wait for something."""
        for _ in range(rounds):
            self.loop.run_until_complete(asyncio.sleep(0))

    def close(self) -> None:
        # The client goes away, as the connection tells its calls on connection_lost: a
        # handler thread still streaming (a test that failed half way) then stops, instead
        # of the shutdown below waiting for it for ever.
        for call in self.made:
            if not call.finished:
                call.cancel()
        self.executor.shutdown(wait=True, cancel_futures=True)


def request(payload: bytes, compressed: bool = False) -> bytes:
    """One length-prefixed request message, as it arrives in DATA."""
    return g.frame_message(payload, compressed)


def _conforms(sink: FakeSink) -> CallSink:
    return sink  # mypy: FakeSink provides every member of CallSink


OK_STATUS = ("status", g.OK, "", None, False)  # what FakeSink records for a plain OK end


def unary(func: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(func)
