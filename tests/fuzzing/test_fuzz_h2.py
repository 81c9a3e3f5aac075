"""Fuzzing the sans-IO HTTP/2 core with hypothesis (a bounded, reproducible run; `invoke fuzz`
runs the same target longer). Invariants: see tests/fuzzing/h2_target.py."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzzing.h2_strategies import scenarios
from tests.fuzzing.h2_target import run_scenario

SUITE = settings(
    max_examples=400,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


@SUITE
@given(scenarios())
def test_h2_connection_survives_random_and_mutated_frames(scenario):
    run_scenario(scenario)


def test_regression_no_frames_after_goaway_of_a_connection_error():
    """Found by the fuzzer: a request and a connection error in one read. GrpcConnection
    answers the request after receive_data returned, so its HEADERS used to follow the GOAWAY."""
    from hpack import Encoder

    from gmf.protocol import frames as f
    from gmf.protocol import grpc as g
    from gmf.protocol import h2conn as h2
    from tests.fuzzing.h2_strategies import frame

    conn = h2.H2ServerConnection()
    conn.initiate_connection()
    conn.data_to_send()
    block = Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", "/a/b"), ("content-type", "application/grpc")])
    events = conn.receive_data(f.PREFACE + frame(f.SETTINGS, 0, 0, b"") + frame(f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, 1, block)
                               + frame(f.PING, 0, 0, b"short"))
    assert [type(e) for e in events] == [h2.RequestReceived, h2.ConnectionTerminated]
    conn.send_headers(1, g.trailers(g.OK, trailers_only=True), end_stream=True)  # the handler's answer
    out = conn.data_to_send()
    assert out[-17 - len(b"PING payload must be 8 bytes") + 3] == f.GOAWAY  # type byte of the last frame
    assert out.endswith(b"PING payload must be 8 bytes")


def test_regression_frames_on_even_stream_ids_are_connection_errors():
    """Found by `invoke fuzz` after the limits and reset-memory merges: DATA on stream 2 below
    the highest client stream drew RST_STREAM(STREAM_CLOSED) on a stream the client can never
    open (even ids are the server's, and GMF pushes none). It is an idle stream: GOAWAY
    PROTOCOL_ERROR, for DATA, WINDOW_UPDATE and RST_STREAM alike."""
    import struct

    from hpack import Encoder

    from gmf.protocol.h2conn import ConnectionTerminated, H2ServerConnection

    def frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
        return struct.pack(">BHBBL", len(payload) >> 16, len(payload) & 0xFFFF, ftype, flags, sid) + payload

    request = frame(0x1, 0x4, 3, Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", "/x/Y"),
                                                    ("content-type", "application/grpc")]))
    for bad in (frame(0x0, 0, 2, b"mmm"), frame(0x8, 0, 2, b"\x00\x00\x00\x01"), frame(0x3, 0, 2, b"\x00\x00\x00\x08")):
        conn = H2ServerConnection()
        conn.initiate_connection()
        events = conn.receive_data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b"") + request + bad)
        terminated = [e for e in events if isinstance(e, ConnectionTerminated)]
        assert terminated and terminated[0].error_code == 0x1, events
