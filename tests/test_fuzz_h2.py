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
