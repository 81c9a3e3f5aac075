"""gRPC's interop test cases from grpcio's client (tests/peers/interop_cases.py) against GMF
on each runtime and, for comparison, against grpcio's own ``grpc.aio`` server running the same
servicer (tests/helpers/interop.py); the compressed-message flags, which grpcio's client does
not show, from raw frames. The grpc-go client runs the same cases in test_interop_go.py."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator

import grpc
import messages_pb2 as m
import pytest
from hyperframe.frame import DataFrame, HeadersFrame

from tests.helpers import ROOT
from tests.helpers.rawh2 import PREFACE, RawClient, frame
from tests.peers.interop_cases import CASES

# grpcio's servicer context does not say whether a request message was compressed, so
# grpcio's own server (like its Python interop server) cannot implement CompressedRequest.
GRPCIO_CANNOT = {"client_compressed_unary", "client_compressed_streaming"}


@pytest.fixture(scope="module")
def grpcio_server() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.interop", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    yield f"127.0.0.1:{int(line.split()[1])}"
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_interop_case_on_gmf(target, case):
    with grpc.insecure_channel(target) as channel:
        CASES[case](channel)


@pytest.mark.parametrize("case", sorted(CASES))
def test_interop_case_on_grpcio(grpcio_server, case):
    """The same client code against grpcio's server: the reference GMF's answers are held to."""
    if case in GRPCIO_CANNOT:
        pytest.skip("grpcio's servicer context cannot tell a compressed request (CompressedRequest)")
    with grpc.insecure_channel(grpcio_server) as channel:
        CASES[case](channel)


def _messages(client: RawClient, sid: int) -> tuple[dict[str, str], list[tuple[int, int]]]:
    """The response headers and (compressed flag, length) of each message of stream ``sid``."""
    frames = client.frames(until=10, stop=lambda f: f.stream_id == sid and "END_STREAM" in f.flags)
    headers = [client.decode(f.data) for f in frames if isinstance(f, HeadersFrame) and f.stream_id == sid]
    assert headers[-1].get("grpc-status") == "0", headers
    data = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == sid)
    out, pos = [], 0
    while pos < len(data):
        flag, length = struct.unpack_from(">BL", data, pos)
        out.append((flag, length))
        pos += 5 + length
    return headers[0], out


def _call(client: RawClient, sid: int, method: str, request: bytes) -> None:
    client.grpc_request(sid, f"/grpc.testing.TestService/{method}", struct.pack(">BL", 0, len(request)) + request,
                        extra=[("grpc-accept-encoding", "gzip")])


def test_server_compressed_flags(session_server):
    """CompressedResponse, checked on the wire: the compressed flag is set exactly on the
    messages asked for compressed, with grpc-encoding: gzip."""
    client = RawClient(session_server.port)
    client.send(PREFACE + frame(0x4, 0, 0, struct.pack(">HL", 0x4, 1 << 24)) + frame(0x8, 0, 0, struct.pack(">L", 1 << 24)))
    for sid, compressed in ((1, True), (3, False)):
        request = m.SimpleRequest(response_compressed=m.BoolValue(value=compressed), response_size=314159)
        _call(client, sid, "UnaryCall", request.SerializeToString())
        headers, messages = _messages(client, sid)
        assert [flag for flag, _ in messages] == [1 if compressed else 0]
        assert headers.get("grpc-encoding") == ("gzip" if compressed else None)
    request = m.StreamingOutputCallRequest(response_parameters=[
        m.ResponseParameters(size=31415, compressed=m.BoolValue(value=True)),
        m.ResponseParameters(size=92653, compressed=m.BoolValue(value=False))])
    _call(client, 5, "StreamingOutputCall", request.SerializeToString())
    headers, messages = _messages(client, 5)
    assert headers.get("grpc-encoding") == "gzip"
    assert [flag for flag, _ in messages] == [1, 0] and messages[1][1] > 92653  # the second as is
    client.close()


# -- the second-language client: grpc-go 1.33 (bench/peers/go/interop, built by go_build) ------
@pytest.fixture(scope="module")
def go_interop() -> str:
    from tests.bench.test_go_peers import go_build

    try:
        return str(go_build.build().interop)
    except go_build.GoUnavailable as exc:
        if os.environ.get("GMF_REQUIRE_GO") == "1":
            pytest.fail(f"GMF_REQUIRE_GO=1 but the Go interop client cannot be built: {exc}")
        pytest.skip(str(exc))


def _go_case(binary: str, target: str, case: str) -> None:
    port = target.rsplit(":", 1)[1]
    out = subprocess.run([binary, "--server_port", port, "--test_case", case], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"ok {case}", out.stdout + out.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_go_interop_case_on_gmf(go_interop, target, case):
    _go_case(go_interop, target, case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_go_interop_case_on_grpcio(go_interop, grpcio_server, case):
    if case in GRPCIO_CANNOT:
        pytest.skip("grpcio's servicer context cannot tell a compressed request (CompressedRequest)")
    _go_case(go_interop, grpcio_server, case)


def test_go_client_knows_every_case(go_interop):
    """The Go client and the grpcio cases cover the same list."""
    out = subprocess.run([go_interop, "--server_port", "1", "--test_case", "nope"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "unknown test case" in out.stderr
    source = (ROOT / "bench" / "peers" / "go" / "interop" / "main.go").read_text()
    assert all(f'"{case}":' in source for case in CASES)
