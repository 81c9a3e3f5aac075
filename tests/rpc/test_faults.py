"""Handler faults against a real worker and real grpcio clients: exceptions in every RPC kind,
handlers that never return (ended by the client's deadline or cancel, cancelled when async,
abandoned when plain def), and a handler blocking the event loop (the watchdog's warning).
The faulty handlers are tests/helpers/faults_app.py; an exception in an async unary handler is
covered by tests/rpc/test_grpc_core.py::test_handler_exception_is_unknown_and_logged."""

from __future__ import annotations

import threading
import time

import gmftest_pb2 as tpb
import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest

from tests.helpers import poll
from tests.helpers.hostile import still_serving
from tests.helpers.servers import runtime_available, serving, spawn

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

RUNTIME = "uring" if runtime_available("uring") is None else "asyncio"
ASYNC, SYNC = "gmftest.FaultService", "gmftest.SyncFaultService"
KINDS = ("Unary", "ServerStream", "ClientStream", "Bidi")


@pytest.fixture(scope="module")
def faults_server():
    """One worker serving the faulty handlers (and the rest of the test services)."""
    with serving(RUNTIME, workers=1) as proc:
        yield proc


@pytest.fixture(scope="module")
def channel(faults_server):
    with grpc.insecure_channel(faults_server.target) as ch:
        yield ch


def method(channel: grpc.Channel, service: str, kind: str):
    factory = {"Unary": channel.unary_unary, "ServerStream": channel.unary_stream,
               "ClientStream": channel.stream_unary, "Bidi": channel.stream_stream}[kind]
    return factory(f"/{service}/{kind}", request_serializer=tpb.EchoRequest.SerializeToString,
                   response_deserializer=tpb.EchoReply.FromString)


def call(channel: grpc.Channel, service: str, kind: str, request: tpb.EchoRequest, timeout: float = 10.0,
         requests=None) -> tuple[grpc.StatusCode, str, int]:
    """(status, details, replies received) of one RPC of any kind."""
    stub = method(channel, service, kind)
    replies = 0
    try:
        if kind in ("ClientStream", "Bidi"):
            result = stub(requests if requests is not None else iter([request]), timeout=timeout)
        else:
            result = stub(request, timeout=timeout)
        if kind in ("ServerStream", "Bidi"):
            for _ in result:
                replies += 1
        else:
            replies = 1
        return grpc.StatusCode.OK, "", replies
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", replies


def stats(channel: grpc.Channel) -> dict[str, int]:
    reply = method(channel, ASYNC, "Unary")(tpb.EchoRequest(action="stats"), timeout=10)
    return {k: int(v) for k, v in (item.split("=") for item in reply.message.split())}


def wait_stats(channel: grpc.Channel, timeout: float = 10.0, **expected: int) -> dict[str, int]:
    seen: list[dict[str, int]] = []

    def reached() -> dict[str, int] | None:
        seen[:] = [stats(channel)]
        return seen[0] if all(seen[0][k] == v for k, v in expected.items()) else None

    return poll.until(reached, lambda: f"worker stats {expected}, still {seen[0]}", timeout, interval=0.05)


def worker_pid(channel: grpc.Channel) -> str:
    return method(channel, "gmftest.TestService", "Unary")(tpb.EchoRequest(action="pid"), timeout=10).message


# ------------------------------------------------------------------------------ exceptions
@pytest.mark.parametrize("service,kind", [(s, k) for s in (ASYNC, SYNC) for k in KINDS if (s, k) != (ASYNC, "Unary")])
def test_exception_in_every_kind_is_unknown_and_worker_continues(faults_server, channel, service, kind):
    pid = worker_pid(channel)
    code, details, replies = call(channel, service, kind, tpb.EchoRequest(action="raise", message="m"))
    assert code == grpc.StatusCode.UNKNOWN
    assert "fault in" in details and "RuntimeError" in details
    assert replies == {"ServerStream": 2, "Bidi": 1}.get(kind, 0)  # replies before the fault arrive
    wait_stats(channel, open=0, active=0)
    assert worker_pid(channel) == pid  # the same worker, not a restarted one
    still_serving(faults_server.port)
    assert f"Exception calling application: fault in {'async' if service == ASYNC else 'sync'}" in faults_server.log()


# ------------------------------------------------------------------------------ never returning
HANG_BY_DEADLINE = [(service, k) for service in (ASYNC, SYNC) for k in KINDS]


@pytest.mark.parametrize("service,kind", HANG_BY_DEADLINE)
def test_hung_handler_ended_by_deadline(faults_server, channel, service, kind):
    """Async handlers are cancelled; plain-def ones (in a handler thread) are abandoned and their
    late result dropped."""
    before = stats(channel)
    start = time.monotonic()
    code, _, _ = call(channel, service, kind, tpb.EchoRequest(action="hang", sleep_seconds=1.5), timeout=0.5)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 3.0
    wait_stats(channel, open=0)  # the call is gone at once ...
    if service == ASYNC:  # ... and the handler was cancelled
        wait_stats(channel, active=0, cancelled=before["cancelled"] + 1)
    else:  # ... the thread finishes its sleep later, and nothing it returns is sent
        wait_stats(channel, active=0, finished_late=before["finished_late"] + 1)
    still_serving(faults_server.port)


@pytest.mark.parametrize("service", [ASYNC, SYNC])
@pytest.mark.parametrize("kind", ["ClientStream", "Bidi"])
def test_handler_waiting_for_requests_that_never_come_ends_at_deadline(faults_server, channel, service, kind):
    """The client sends one message and never half-closes: the deadline ends the call and the
    handler's request iterator (async: cancelled; plain def: iteration stops)."""
    release = threading.Event()

    def requests():
        yield tpb.EchoRequest(message="first")
        release.wait(10)

    try:
        code, _, _ = call(channel, service, kind, tpb.EchoRequest(), timeout=0.5, requests=requests())
    finally:
        release.set()
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_stats(channel, open=0, active=0)
    still_serving(faults_server.port)


@pytest.mark.parametrize("service,kind", [(ASYNC, "Unary"), (ASYNC, "ServerStream"), (ASYNC, "Bidi"), (SYNC, "Unary"),
                                          (SYNC, "ServerStream"), (SYNC, "ClientStream")])
def test_hung_handler_ended_by_client_cancel(faults_server, channel, service, kind):
    before = stats(channel)
    stub = method(channel, service, kind)
    request = tpb.EchoRequest(action="hang", sleep_seconds=1.0)
    if kind in ("ClientStream", "Bidi"):
        pending = stub.future(iter([request])) if kind == "ClientStream" else stub(iter([request]))
    else:
        pending = stub.future(request) if kind == "Unary" else stub(request)
    wait_stats(channel, active=before["active"] + 1)  # the handler is running
    pending.cancel()
    wait_stats(channel, open=0)
    if service == ASYNC:
        wait_stats(channel, active=0, cancelled=before["cancelled"] + 1)
    else:
        wait_stats(channel, active=0, finished_late=before["finished_late"] + 1)
    still_serving(faults_server.port)


# ------------------------------------------------------------------------------ loop-blocking watchdog
BLOCKED = "event loop blocked for"


def _wait_log(proc, text: str, count: int = 1, timeout: float = 10.0) -> str:
    def logged() -> str | None:
        log = proc.log()
        return log if log.count(text) >= count else None

    return poll.until(logged, lambda: f"{text!r} logged {count} time(s); the log:\n{proc.log()[-3000:]}", timeout,
                      interval=0.05)


def test_watchdog_names_the_blocking_handler_and_its_stack():
    proc = spawn(RUNTIME, workers=1, options={"slow_handler_threshold": 0.5})
    try:
        with grpc.insecure_channel(proc.target) as ch:
            greeter = helloworld_pb2_grpc.GreeterStub(ch)
            # a normal load logs nothing
            for i in range(200):
                greeter.SayHello(helloworld_pb2.HelloRequest(name=str(i)), timeout=10)
            assert call(ch, ASYNC, "ServerStream", tpb.EchoRequest())[0] == grpc.StatusCode.OK
            time.sleep(1.0)  # the interval under test: twice the threshold, and no warning
            assert BLOCKED not in proc.log()

            # an async handler calling time.sleep blocks every connection of the worker
            blocker = threading.Thread(target=call, args=(ch, ASYNC, "Unary", tpb.EchoRequest(action="block_loop", sleep_seconds=1.5)))
            blocker.start()
            _wait_log(proc, BLOCKED)  # the loop is blocked now
            with grpc.insecure_channel(proc.target) as other:  # another client, served once it unblocks
                reply = helloworld_pb2_grpc.GreeterStub(other).SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=10)
            assert reply.message == "Hello x!"
            blocker.join(10)
            log = _wait_log(proc, "event loop unblocked after")
            assert log.count(BLOCKED) == 1, "one warning per blocked episode"
            warning = log[log.index(BLOCKED):]
            assert "in RPC /gmftest.FaultService/Unary (handler a_unary)" in warning.splitlines()[0]
            assert "faults_app.py" in warning and "time.sleep(request.sleep_seconds)" in warning  # the stack

            # a plain-def handler that blocks runs in a handler thread: the loop goes on
            sleeper = threading.Thread(target=call, args=(ch, SYNC, "Unary", tpb.EchoRequest(action="block_loop", sleep_seconds=1.2)))
            sleeper.start()
            wait_stats(ch, active=1)  # it sleeps now
            reply = greeter.SayHello(helloworld_pb2.HelloRequest(name="y"), timeout=10)
            assert reply.message == "Hello y!"
            sleeper.join(10)
            assert proc.log().count(BLOCKED) == 1
            still_serving(proc.port)
    finally:
        proc.stop()


def test_watchdog_names_a_plain_def_handler_forced_inline():
    """sync_handlers="inline" runs plain-def unary handlers on the loop, as before threads: one
    that blocks is reported like a blocking async handler."""
    proc = spawn(RUNTIME, workers=1, options={"slow_handler_threshold": 0.5, "sync_handlers": "inline"})
    try:
        with grpc.insecure_channel(proc.target) as ch:
            call(ch, SYNC, "Unary", tpb.EchoRequest(action="block_loop", sleep_seconds=1.2))
            log = _wait_log(proc, BLOCKED)
            warning = log[log.index(BLOCKED):]
            assert "in RPC /gmftest.SyncFaultService/Unary (handler s_unary)" in warning.splitlines()[0]
            still_serving(proc.port)
    finally:
        proc.stop()


def test_watchdog_threshold_must_be_positive():
    from gmf import GmfServer

    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="slow_handler_threshold"):
            GmfServer(workers=1, slow_handler_threshold=bad)


def test_watchdog_can_be_disabled():
    proc = spawn(RUNTIME, workers=1, options={"slow_handler_threshold": None})
    try:
        with grpc.insecure_channel(proc.target) as ch:
            assert call(ch, ASYNC, "Unary", tpb.EchoRequest(action="block_loop", sleep_seconds=1.2))[0] == grpc.StatusCode.OK
        time.sleep(0.3)  # the interval under test: a warning would have been written by now
        assert BLOCKED not in proc.log()
    finally:
        proc.stop()


def test_a_stuck_plain_def_handler_does_not_keep_its_worker_from_stopping():
    """A plain-def handler that ignores is_active() and sleeps 30 s holds one handler thread; on
    SIGTERM the call is cancelled at the end of the grace period and the worker exits on time
    (the handler threads are daemon threads)."""
    proc = spawn(RUNTIME, workers=1, grace=0.5)
    outcome: list[tuple[grpc.StatusCode, str, int]] = []
    try:
        with grpc.insecure_channel(proc.target) as ch:
            caller = threading.Thread(target=lambda: outcome.append(
                call(ch, SYNC, "Unary", tpb.EchoRequest(action="hang", sleep_seconds=30), timeout=60)))
            caller.start()
            wait_stats(ch, active=1)  # the handler sleeps in its thread
            started = time.monotonic()
            code = proc.stop()
            took = time.monotonic() - started
            caller.join(10)
    finally:
        proc.stop()
    assert code == 0 and took < 5.0, f"exit {code} after {took:.1f}s"
    assert outcome and outcome[0][0] == grpc.StatusCode.UNAVAILABLE
