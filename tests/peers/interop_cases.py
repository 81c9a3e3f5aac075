"""gRPC's interop test cases (doc/interop-test-descriptions.md in grpc/grpc) written with
grpcio's client: each function takes a channel and asserts what the description says the
client asserts. tests/peers/test_interop.py runs them against GMF and grpcio's own server;
the Go client (bench/peers/go/interop) has the same cases in grpc-go.

Where a description needs what grpcio's client API does not offer, the case says how it differs:
client_compressed_streaming compresses per call, not per message (grpcio has no per-message
write flags), so its two compressed/uncompressed messages go in two calls.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator

import empty_pb2
import grpc
import messages_pb2 as m
import test_pb2_grpc

SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
ECHO_METADATA = (("x-grpc-test-echo-initial", "test_initial_metadata_value"),
                 ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"))
TIMEOUT = 20


def zeros(n: int) -> m.Payload:
    return m.Payload(body=b"\x00" * n)


def stub(channel: grpc.Channel) -> test_pb2_grpc.TestServiceStub:
    return test_pb2_grpc.TestServiceStub(channel)


def expect_status(code: grpc.StatusCode, call: Callable[[], object], details: str | None = None) -> None:
    try:
        call()
    except grpc.RpcError as exc:
        assert exc.code() == code, f"{exc.code()}: {exc.details()}"
        if details is not None:
            assert exc.details() == details
        return
    raise AssertionError(f"the call succeeded; expected {code}")


class Requests:
    """A request stream the test feeds one message at a time (``put``; ``close`` half-closes)."""

    _END = object()

    def __init__(self, wait: float = TIMEOUT) -> None:
        self._queue: queue.Queue[object] = queue.Queue()
        self._wait = wait

    def put(self, message: object) -> None:
        self._queue.put(message)

    def close(self) -> None:
        self._queue.put(self._END)

    def __iter__(self) -> Iterator[object]:
        while True:
            try:
                item = self._queue.get(timeout=self._wait)
            except queue.Empty:
                return
            if item is self._END:
                return
            yield item


def empty_unary(channel: grpc.Channel) -> None:
    assert isinstance(stub(channel).EmptyCall(empty_pb2.Empty(), timeout=TIMEOUT), empty_pb2.Empty)


def large_unary(channel: grpc.Channel) -> None:
    reply = stub(channel).UnaryCall(m.SimpleRequest(response_size=314159, payload=zeros(271828)), timeout=TIMEOUT)
    assert reply.payload.body == b"\x00" * 314159


def client_compressed_unary(channel: grpc.Channel) -> None:
    s = stub(channel)

    def request(expect: bool) -> m.SimpleRequest:
        return m.SimpleRequest(expect_compressed=m.BoolValue(value=expect), response_size=314159, payload=zeros(271828))

    expect_status(grpc.StatusCode.INVALID_ARGUMENT,  # the feature probe
                  lambda: s.UnaryCall(request(True), compression=grpc.Compression.NoCompression, timeout=TIMEOUT))
    for expect, compression in ((True, grpc.Compression.Gzip), (False, grpc.Compression.NoCompression)):
        reply = s.UnaryCall(request(expect), compression=compression, timeout=TIMEOUT)
        assert len(reply.payload.body) == 314159


def server_compressed_unary(channel: grpc.Channel) -> None:
    """The compressed flag of the response is checked from raw frames in test_interop.py
    (grpcio does not show it)."""
    for compressed in (True, False):
        request = m.SimpleRequest(response_compressed=m.BoolValue(value=compressed), response_size=314159,
                                  payload=zeros(271828))
        assert len(stub(channel).UnaryCall(request, timeout=TIMEOUT).payload.body) == 314159


def client_streaming(channel: grpc.Channel) -> None:
    requests = [m.StreamingInputCallRequest(payload=zeros(n)) for n in (27182, 8, 1828, 45904)]
    assert stub(channel).StreamingInputCall(iter(requests), timeout=TIMEOUT).aggregated_payload_size == 74922


def client_compressed_streaming(channel: grpc.Channel) -> None:
    s = stub(channel)

    def call(expect: bool, size: int, compression: grpc.Compression) -> int:
        request = m.StreamingInputCallRequest(expect_compressed=m.BoolValue(value=expect), payload=zeros(size))
        return s.StreamingInputCall(iter([request]), compression=compression, timeout=TIMEOUT).aggregated_payload_size

    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: call(True, 27182, grpc.Compression.NoCompression))
    total = call(True, 27182, grpc.Compression.Gzip) + call(False, 45904, grpc.Compression.NoCompression)
    assert total == 73086


def server_streaming(channel: grpc.Channel) -> None:
    sizes = [31415, 9, 2653, 58979]
    request = m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=n) for n in sizes])
    assert [len(r.payload.body) for r in stub(channel).StreamingOutputCall(request, timeout=TIMEOUT)] == sizes


def server_compressed_streaming(channel: grpc.Channel) -> None:
    request = m.StreamingOutputCallRequest(response_parameters=[
        m.ResponseParameters(size=31415, compressed=m.BoolValue(value=True)),
        m.ResponseParameters(size=92653, compressed=m.BoolValue(value=False)),
    ])
    assert [len(r.payload.body) for r in stub(channel).StreamingOutputCall(request, timeout=TIMEOUT)] == [31415, 92653]


def ping_pong(channel: grpc.Channel) -> None:
    requests = Requests()
    responses = stub(channel).FullDuplexCall(iter(requests), timeout=TIMEOUT)
    for size, body in ((31415, 27182), (9, 8), (2653, 1828), (58979, 45904)):
        requests.put(m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=size)],
                                                  payload=zeros(body)))
        assert len(next(responses).payload.body) == size
    requests.close()
    assert list(responses) == []
    assert responses.code() == grpc.StatusCode.OK


def empty_stream(channel: grpc.Channel) -> None:
    responses = stub(channel).FullDuplexCall(iter([]), timeout=TIMEOUT)
    assert list(responses) == [] and responses.code() == grpc.StatusCode.OK


def timeout_on_sleeping_server(channel: grpc.Channel) -> None:
    requests = Requests(wait=3)  # sends one message, then "waits" (sends nothing, does not half-close)
    requests.put(m.StreamingOutputCallRequest(payload=zeros(27182)))
    responses = stub(channel).FullDuplexCall(iter(requests), timeout=0.001)
    expect_status(grpc.StatusCode.DEADLINE_EXCEEDED, lambda: list(responses))


def cancel_after_begin(channel: grpc.Channel) -> None:
    requests = Requests()
    future = stub(channel).StreamingInputCall.future(iter(requests), timeout=TIMEOUT)
    future.cancel()
    assert future.cancelled() and future.code() == grpc.StatusCode.CANCELLED
    requests.close()


def cancel_after_first_response(channel: grpc.Channel) -> None:
    requests = Requests()
    responses = stub(channel).FullDuplexCall(iter(requests), timeout=TIMEOUT)
    requests.put(m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=31415)],
                                              payload=zeros(27182)))
    assert len(next(responses).payload.body) == 31415
    responses.cancel()
    assert responses.code() == grpc.StatusCode.CANCELLED
    requests.close()


def custom_metadata(channel: grpc.Channel) -> None:
    s = stub(channel)
    _, call = s.UnaryCall.with_call(m.SimpleRequest(response_size=314159, payload=zeros(271828)),
                                    metadata=ECHO_METADATA, timeout=TIMEOUT)
    calls = [call]
    request = m.StreamingOutputCallRequest(response_parameters=[m.ResponseParameters(size=314159)], payload=zeros(271828))
    responses = s.FullDuplexCall(iter([request]), metadata=ECHO_METADATA, timeout=TIMEOUT)
    assert [len(r.payload.body) for r in responses] == [314159]
    calls.append(responses)
    for c in calls:
        assert (ECHO_METADATA[0][0], ECHO_METADATA[0][1]) in [(md.key, md.value) for md in c.initial_metadata()]
        assert (ECHO_METADATA[1][0], ECHO_METADATA[1][1]) in [(md.key, md.value) for md in c.trailing_metadata()]


def _status_and_message(channel: grpc.Channel, message: str) -> None:
    s = stub(channel)
    status = m.EchoStatus(code=2, message=message)
    expect_status(grpc.StatusCode.UNKNOWN, lambda: s.UnaryCall(m.SimpleRequest(response_status=status), timeout=TIMEOUT),
                  message)
    responses = s.FullDuplexCall(iter([m.StreamingOutputCallRequest(response_status=status)]), timeout=TIMEOUT)
    expect_status(grpc.StatusCode.UNKNOWN, lambda: list(responses), message)


def status_code_and_message(channel: grpc.Channel) -> None:
    _status_and_message(channel, "test status message")


def special_status_message(channel: grpc.Channel) -> None:
    _status_and_message(channel, SPECIAL_MESSAGE)


def unimplemented_method(channel: grpc.Channel) -> None:
    expect_status(grpc.StatusCode.UNIMPLEMENTED, lambda: stub(channel).UnimplementedCall(empty_pb2.Empty(), timeout=TIMEOUT))


def unimplemented_service(channel: grpc.Channel) -> None:
    other = test_pb2_grpc.UnimplementedServiceStub(channel)
    expect_status(grpc.StatusCode.UNIMPLEMENTED, lambda: other.UnimplementedCall(empty_pb2.Empty(), timeout=TIMEOUT))


CASES: dict[str, Callable[[grpc.Channel], None]] = {f.__name__: f for f in (
    empty_unary, large_unary, client_compressed_unary, server_compressed_unary, client_streaming,
    client_compressed_streaming, server_streaming, server_compressed_streaming, ping_pong, empty_stream,
    timeout_on_sleeping_server, cancel_after_begin, cancel_after_first_response, custom_metadata,
    status_code_and_message, special_status_message, unimplemented_method, unimplemented_service,
)}

