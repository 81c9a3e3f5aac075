"""The whole per-RPC path of one connection: request bytes in (``data_received``), HTTP/2 and
gRPC parsing, dispatch to a plain-def unary handler (inline, where the placement rule puts it
after its first calls), response bytes out (``transport.write``).

Includes what the RPC layer adds on every call (counters, access-log check, deadline timer).
"""

from __future__ import annotations

import asyncio

import helloworld_pb2
import helloworld_pb2_grpc
import pytest
from conftest import Wire

from bench.cost import CountingTransport as Sink  # the transport: counts what the connection writes

pytestmark = pytest.mark.benchmark(group="connection")


class SyncGreeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):  # noqa: N802
        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")


def test_gmf_connection_unary(benchmark, wire: Wire) -> None:
    registry_mod = pytest.importorskip("gmf.rpc.registry")
    state_mod = pytest.importorskip("gmf.rpc.server_state")
    accept_mod = pytest.importorskip("gmf.rpc.accept")
    registry = registry_mod.MethodRegistry()
    helloworld_pb2_grpc.add_GreeterServicer_to_server(SyncGreeter(), registry)
    loop = asyncio.new_event_loop()
    state = state_mod.ServerState(loop, registry, state_mod.ServerOptions())
    conn = accept_mod.Acceptor(state)()
    sink = Sink()
    sink.set_protocol(conn)
    conn.connection_made(sink)
    reply = helloworld_pb2.HelloReply(message="Hello world!").SerializeToString()
    credit = 5 + len(reply)  # the DATA bytes of one response: keeps the connection window steady
    conn.data_received(wire.client_start + wire.request(1, wire.first_block, credit=credit))
    conn = sink.get_protocol()  # the HTTP/2 connection the preface chose (the same one with web=False)
    counter = {"sid": 1}

    def cycle() -> int:
        counter["sid"] += 2
        before = sink.written
        conn.data_received(wire.request(counter["sid"], credit=credit))
        loop.call_soon(loop.stop)  # run the callbacks the call queued (deadline timer cancel, flush)
        loop.run_forever()
        return sink.written - before

    method = state.methods.resolve("/helloworld.Greeter/SayHello", lambda: ())
    for _ in range(10_000):  # the placement rule: its first calls run in the handler threads
        if method.inline:
            break
        cycle()
        loop.run_until_complete(asyncio.sleep(0.0005))  # their replies come back through the loop
    assert method.inline, "the plain-def handler should run inline once seen quick (gmf/rpc/inline.py)"
    try:
        assert benchmark(cycle) > len(reply)
        assert not conn.h2.terminated
    finally:
        loop.close()
