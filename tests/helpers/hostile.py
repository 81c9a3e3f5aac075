"""What every hostile-input test checks besides the reply itself: the worker's memory stays
bounded and a well-behaved grpcio client is served during and after the attack.

    with Bystander(port) as bystander, RssBound(worker_pid, mib=32):
        ... attack ...
    # on exit: every bystander call succeeded (at least one ran) and RSS grew less than 32 MiB
"""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import helloworld_pb2
import helloworld_pb2_grpc

from tests.helpers import poll


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (from /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        raise AssertionError(f"no VmRSS for pid {pid} (the worker is gone)") from None
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def channel(port: int, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    target = f"127.0.0.1:{port}"
    return grpc.insecure_channel(target) if credentials is None else grpc.secure_channel(target, credentials)


def still_serving(port: int, credentials: grpc.ChannelCredentials | None = None) -> None:
    """One fresh grpcio connection (TLS with ``credentials``) gets a correct reply."""
    with channel(port, credentials) as ch:
        reply = helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name="after"), timeout=10)
    assert reply.message == "Hello after!"


class Bystander:
    """A grpcio client calling SayHello in a loop on its own connection while the attack runs.
    On exit it asserts that it made calls and that none of them failed, then checks a fresh
    connection is served too."""

    def __init__(self, port: int, interval: float = 0.02, timeout: float = 10.0,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        self.port = port
        self.credentials = credentials
        self.interval = interval
        self.timeout = timeout
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def _run(self) -> None:
        with channel(self.port, self.credentials) as ch:
            stub = helloworld_pb2_grpc.GreeterStub(ch)
            while not self._stop.is_set():
                try:
                    reply = stub.SayHello(helloworld_pb2.HelloRequest(name="bystander"), timeout=self.timeout)
                    if reply.message == "Hello bystander!":
                        self.ok += 1
                    else:
                        self.failures.append(f"wrong reply {reply.message!r}")
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                self._stop.wait(self.interval)

    def __enter__(self) -> Bystander:
        self._thread.start()
        try:  # the bystander is connected and served before the attack starts
            poll.until(lambda: self.ok or self.failures, "the bystander's first call", timeout=10, interval=0.01)
        except AssertionError:
            self._stop.set()
            raise
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        if exc_type is None:
            assert not self.failures, f"bystander calls failed during the attack: {self.failures[:5]}"
            assert self.ok > 0, "the bystander made no successful call"
            still_serving(self.port, self.credentials)


class RssBound:
    """Asserts on exit that the worker's RSS grew by less than ``mib`` MiB."""

    def __init__(self, pid: int, mib: float) -> None:
        self.pid = pid
        self.mib = mib
        self.before = 0
        self.grown_mib = 0.0

    def __enter__(self) -> RssBound:
        self.before = rss_kib(self.pid)
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.grown_mib = (rss_kib(self.pid) - self.before) / 1024
        if exc_type is None:
            assert self.grown_mib < self.mib, f"worker RSS grew by {self.grown_mib:.1f} MiB (bound {self.mib} MiB)"
