"""Response encoding: one unary response (headers, framed reply, OK trailers) as wire bytes."""

from __future__ import annotations

import h2.config
import h2.connection
import pytest
from conftest import Wire

pytestmark = pytest.mark.benchmark(group="response out")


def _h2_server(wire: Wire) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_inbound_headers=False,
        validate_outbound_headers=False,
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    conn.receive_data(wire.client_start + wire.request(1, wire.first_block))
    conn.data_to_send()
    return conn


def test_h2_full_unary_cycle(benchmark, wire: Wire) -> None:
    """The design's "minimal h2 server" hot path: receive a request, send the whole response."""
    conn = _h2_server(wire)
    reply = wire.framed  # any framed message of this size will do
    state = {"sid": 1}

    def cycle() -> int:
        state["sid"] += 2
        sid = state["sid"]
        conn.receive_data(wire.request(sid, credit=len(reply)))
        conn.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        conn.send_data(sid, reply)
        conn.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
        return len(conn.data_to_send())

    assert benchmark(cycle) > 0
    assert conn.state_machine.state != h2.connection.ConnectionState.CLOSED


def test_gmf_full_unary_cycle(benchmark, wire: Wire) -> None:
    """GMF, same cycle: request bytes in; constant header/trailer blocks, framed reply, frames out."""
    h2conn = pytest.importorskip("gmf.protocol.h2conn")
    grpc_proto = pytest.importorskip("gmf.protocol.grpc")
    conn = h2conn.H2ServerConnection()
    conn.initiate_connection()
    conn.receive_data(wire.client_start + wire.request(1, wire.first_block))
    conn.send_headers(1, grpc_proto.trailers(grpc_proto.OK), end_stream=True)
    conn.data_to_send()
    state = {"sid": 1}

    def respond() -> int:
        state["sid"] += 2
        sid = state["sid"]
        framed = grpc_proto.frame_message(wire.message)
        conn.receive_data(wire.request(sid, credit=len(framed)))
        conn.send_headers(sid, grpc_proto.response_headers())
        conn.send_data(sid, framed)
        conn.send_headers(sid, grpc_proto.trailers(grpc_proto.OK), end_stream=True)
        return len(conn.data_to_send())

    assert benchmark(respond) > 0
    assert not conn.terminated
