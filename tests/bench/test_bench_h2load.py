"""The h2load side of the harness: request body, command line, output and log parsing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import h2load
from bench.h2load import LoadSpec, Shape
from tests.helpers import ROOT

SAMPLE = """starting benchmark...
spawning thread #0: 16 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Application protocol: h2c

finished in 2.51s, 3757.50 req/s, 275.79KB/s
requests: 7515 total, 7515 started, 7500 done, 7500 succeeded, 10 failed, 5 errored, 2 timeout
status codes: 7490 2xx, 0 3xx, 4 4xx, 6 5xx
traffic: 551.59KB (564826) total, 28.91KB (29607) headers (space savings 96.14%), 175.69KB (179911) data
                     min         max         mean         sd        +/- sd
time for request:      711us    182.46ms     68.00ms     24.23ms    87.04%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :     207.48      263.36      234.26       24.23    50.00%
"""


def test_body_is_a_framed_hello_request() -> None:
    sys.path.insert(0, str(ROOT / "examples" / "helloworld"))
    import helloworld_pb2

    body = h2load.hello_request_body("world")
    message = helloworld_pb2.HelloRequest(name="world").SerializeToString()
    assert body == b"\x00" + len(message).to_bytes(4, "big") + message
    assert helloworld_pb2.HelloRequest.FromString(body[5:]).name == "world"
    long_name = "x" * 300  # a two-byte varint length
    assert (
        h2load.hello_request_body(long_name)[5:]
        == helloworld_pb2.HelloRequest(name=long_name).SerializeToString()
    )


def test_parse_output() -> None:
    r = h2load.parse_output(SAMPLE)
    assert r.req_per_s == pytest.approx(3757.5)
    assert r.elapsed_s == pytest.approx(2.51)
    assert (r.requests_total, r.succeeded, r.failed, r.errored, r.timeout) == (7515, 7500, 10, 5, 2)
    assert (r.status_2xx, r.status_4xx, r.status_5xx) == (7490, 4, 6)
    assert r.min_us == 711 and r.max_us == pytest.approx(182_460) and r.mean_us == pytest.approx(68_000)
    assert r.errors == 10 + 5 + 2 + 4 + 6


def test_parse_output_without_summary() -> None:
    with pytest.raises(ValueError, match="no summary"):
        h2load.parse_output("connect: Connection refused\n")


def test_parse_log_and_percentiles() -> None:
    lines = [f"17956597449{i:05d}\t200\t{(i + 1) * 10}" for i in range(100)]
    lines += ["1795659744993811\t-1\t5", "garbage", ""]
    durations = h2load.parse_log("\n".join(lines))
    assert len(durations) == 100  # the failed stream (-1) and junk are left out
    result = h2load.H2loadResult()
    h2load.add_percentiles(result, durations)
    assert (result.p50_us, result.p90_us, result.p99_us, result.logged) == (500, 900, 990, 100)
    assert h2load.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        h2load.percentile([], 50)


def test_shapes_and_durations() -> None:
    assert Shape.parse("1000x1") == Shape(1000, 1) and Shape.parse(" 16X16 ").name == "16x16"
    for bad in ("16", "0x5", "ax1"):
        with pytest.raises(ValueError):
            Shape.parse(bad)
    assert h2load.format_duration(5) == "5s" and h2load.format_duration(0.5) == "500ms"


def test_command_line() -> None:
    spec = LoadSpec(port=5000, shape=Shape(16, 16), duration_s=2, warmup_s=0.5, rps_per_client=100)
    cmd = h2load.h2load_command(spec, Path("/tmp/req.bin"), Path("/tmp/log"), cpu=1)
    assert cmd[:4] == ["taskset", "-c", "1", "h2load"]
    joined = " ".join(cmd)
    for part in (
        "-D 2s",
        "--warm-up-time 500ms",
        "-c 16 -m 16 -t1",
        "--rps 100",
        "-d /tmp/req.bin",
        "-H content-type: application/grpc",
        "-H te: trailers",
        "--log-file /tmp/log",
    ):
        assert part in joined
    assert cmd[-1] == "http://127.0.0.1:5000/helloworld.Greeter/SayHello"
    counted = h2load.h2load_command(LoadSpec(port=1, shape=Shape(1, 1), requests=10), Path("b"))
    assert "-n" in counted and "-D" not in counted and counted[0] == "h2load"
