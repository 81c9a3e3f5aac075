"""HTTP/2 frame parsing of one unary request (HEADERS + DATA): hyperframe, and GMF's connection."""

from __future__ import annotations

import pytest
from conftest import Wire
from hyperframe.frame import Frame

pytestmark = pytest.mark.benchmark(group="http2 frames (request in)")


def test_hyperframe_parse_request(benchmark, wire: Wire) -> None:
    data = wire.request(1)

    def parse() -> int:
        view = memoryview(data)
        pos, count = 0, 0
        while pos < len(view):
            frame, length = Frame.parse_frame_header(view[pos : pos + 9])
            frame.parse_body(view[pos + 9 : pos + 9 + length])
            pos += 9 + length
            count += 1
        return count

    assert benchmark(parse) == 2


def test_gmf_receive_request(benchmark, wire: Wire) -> None:
    """GMF's sans-IO connection: bytes of one request in -> events (headers decoded, stream ended)."""
    h2conn = pytest.importorskip("gmf.protocol.h2conn")
    grpc_proto = pytest.importorskip("gmf.protocol.grpc")
    conn = h2conn.H2ServerConnection()
    conn.initiate_connection()
    conn.receive_data(wire.client_start + wire.request(1, wire.first_block))
    conn.data_to_send()
    state = {"sid": 1}
    trailers = grpc_proto.trailers(grpc_proto.OK)

    def receive() -> int:
        state["sid"] += 2
        sid = state["sid"]
        events = conn.receive_data(wire.request(sid))
        conn.send_headers(sid, trailers, end_stream=True)  # close the stream again (trailers-only)
        conn.data_to_send()
        return len(events)

    assert benchmark(receive) >= 2
    assert not conn.terminated
