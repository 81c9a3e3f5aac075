"""Proof that the "uring" runtime serves gRPC through io_uring only: the helloworld server runs
under strace while h2load and a grpcio client send a few thousand requests; the workers'
client sockets never see recv/send/read/write, and the workers never call epoll."""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import grpc
import helloworld_pb2
import helloworld_pb2_grpc
import pytest

from tests.helpers import ROOT
from tests.helpers.net import free_port, wait_port
from tests.helpers.servers import require_runtime

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

SOCKET_IO = ("recvfrom", "sendto", "recvmsg", "sendmsg", "read", "write", "readv", "writev", "recv", "send")
READINESS = ("epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "poll", "ppoll", "select", "pselect6")
LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. )?(\w+)(?: resumed>)?\(?(.*)$")


def trace_helloworld(runtime: str, tmp_path: Path, requests: int = 3000) -> tuple[str, int]:
    """Run the helloworld server (1 worker) under strace during load; returns (trace, supervisor pid)."""
    port = free_port()
    trace = tmp_path / f"trace-{runtime}.txt"
    proc = subprocess.Popen(
        ["strace", "-f", "-yy", "-qq", "-e", "trace=" + ",".join(("io_uring_enter", *SOCKET_IO, *READINESS)),
         "-o", str(trace), sys.executable, "examples/helloworld/server.py", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--runtime", runtime],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_port(port, timeout=60)
        body = helloworld_pb2.HelloRequest(name="strace").SerializeToString()
        req = tmp_path / "req.bin"
        req.write_bytes(struct.pack(">BL", 0, len(body)) + body)
        # 4x10, then 1x100: reads of more than 16 requests send their first half's answers
        # early (UringTransport.send_now), through the ring as well.
        for connections, streams in ((4, 10), (1, 100)):
            out = subprocess.run(
                ["h2load", "-n", str(requests), "-c", str(connections), "-m", str(streams), "-t", "1",
                 "-d", str(req), "-H", "content-type: application/grpc", "-H", "te: trailers",
                 f"http://127.0.0.1:{port}/helloworld.Greeter/SayHello"],
                capture_output=True, text=True, timeout=120,
            )
            assert f"{requests} succeeded" in out.stdout, out.stdout
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = helloworld_pb2_grpc.GreeterStub(ch)
            for i in range(100):
                assert stub.SayHello(helloworld_pb2.HelloRequest(name=str(i)), timeout=10).message == f"Hello {i}!"
    finally:
        # Signal the traced server itself: SIGTERM to strace would only detach it.
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = trace.read_text()
    first_pid = int(LINE.match(text.splitlines()[0]).group(1))  # type: ignore[union-attr]
    return text, first_pid


def worker_calls(text: str, supervisor_pid: int) -> tuple[Counter[str], list[str]]:
    """Syscall counts of the worker processes, and the lines doing socket I/O on TCP fds."""
    counts: Counter[str] = Counter()
    offending: list[str] = []
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or int(m.group(1)) == supervisor_pid or "resumed>" in line:
            continue
        name, args = m.group(2), m.group(3)
        counts[name] += 1
        if name in SOCKET_IO and "TCP" in args.split(",")[0]:
            offending.append(line)
    return counts, offending


@pytest.mark.skipif(shutil.which("strace") is None or shutil.which("h2load") is None,
                    reason="strace and h2load are needed (apt-get install strace nghttp2-client)")
def test_uring_runtime_uses_only_io_uring_on_client_sockets(tmp_path):
    require_runtime("uring")
    text, supervisor = trace_helloworld("uring", tmp_path)
    counts, offending = worker_calls(text, supervisor)
    assert counts["io_uring_enter"] > 100, counts
    assert not offending, "socket I/O outside io_uring:\n" + "\n".join(offending[:20])
    readiness = {name: counts[name] for name in READINESS if counts[name]}
    assert not readiness, f"the uring workers must not use epoll/poll/select: {readiness}"


@pytest.mark.skipif(shutil.which("strace") is None or shutil.which("h2load") is None,
                    reason="strace and h2load are needed (apt-get install strace nghttp2-client)")
def test_uvloop_runtime_contrast(tmp_path):
    """The same load on uvloop: readiness I/O (epoll + recv/send-family calls) — the baseline
    that the io_uring runtime replaces."""
    require_runtime("uvloop")
    text, supervisor = trace_helloworld("uvloop", tmp_path)
    counts, offending = worker_calls(text, supervisor)
    assert offending and any(counts[n] for n in ("epoll_wait", "epoll_pwait"))
