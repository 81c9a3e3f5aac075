"""Beyond one machine: real nginx (examples/nginx/nginx.conf) in front of two GMF instances.
Thousands of grpcio RPCs through nginx reach both; one instance drains gracefully (SIGTERM)
under load and not one RPC fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import gmftest_pb2 as tpb
import gmftest_pb2_grpc
import grpc
import helloworld_pb2
import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, PingFrame, SettingsFrame

from tests.helpers import ROOT, poll
from tests.helpers.net import free_port
from tests.helpers.rawh2 import RawClient, frame
from tests.helpers.servers import ServerProcess, spawn

EXAMPLE = ROOT / "examples" / "nginx" / "nginx.conf"
CLIENTS = 4  # threads, each with its own channel (its own HTTP/2 connection to nginx)


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.environ.get("GMF_REQUIRE_NGINX"):
        pytest.fail("GMF_REQUIRE_NGINX is set but nginx is not installed (apt-get install -y nginx)")
    pytest.skip("nginx is not installed (apt-get install -y nginx); set GMF_REQUIRE_NGINX=1 to fail instead")


def render(tmp: Path, listen: int, backends: list[int]) -> Path:
    """The shipped example with loopback ports and paths under ``tmp`` (each edit must apply)."""
    text = EXAMPLE.read_text()
    edits = {
        "listen 8080 http2;": f"listen 127.0.0.1:{listen} http2;",
        "server 127.0.0.1:50051 ": f"server 127.0.0.1:{backends[0]} ",
        "server 127.0.0.1:50052 ": f"server 127.0.0.1:{backends[1]} ",
        "/var/log/nginx/": f"{tmp}/",
        "pid /run/nginx.pid;": f"pid {tmp}/nginx.pid;",
        "worker_processes auto;": "worker_processes 1;",
    }
    for old, new in edits.items():
        assert old in text, f"{EXAMPLE} no longer contains {old!r}: update this test"
        text = text.replace(old, new)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):  # not Debian's /var/lib/nginx
        text = text.replace("http {", f"http {{\n    {temp}_temp_path {tmp}/{temp};", 1)
    conf = tmp / "nginx.conf"
    conf.write_text(text)
    return conf


class Load:
    """CLIENTS threads calling Unary(action="pid") through nginx until stopped; records which
    backend worker answered each call (and when) and every failure."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.replies: list[tuple[float, int]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        with grpc.insecure_channel(self.target) as ch:
            stub = gmftest_pb2_grpc.TestServiceStub(ch)
            while not self._stop.is_set():
                try:
                    reply = stub.Unary(tpb.EchoRequest(action="pid"), timeout=10)
                    self.replies.append((time.monotonic(), int(reply.message)))
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code()}: {exc.details()}")

    def wait_for(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` replies came back (or a call failed: the caller reports it)."""
        poll.until(lambda: len(self.replies) >= count or self.failures, f"{count} replies through nginx", timeout,
                   interval=0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def test_nginx_balances_over_two_instances_and_one_drains_without_failures(tmp_path: Path) -> None:
    nginx = nginx_binary()
    instances: list[ServerProcess] = [spawn("asyncio", workers=1, grace=10.0) for _ in range(2)]
    listen = free_port()
    conf = render(tmp_path, listen, [s.port for s in instances])
    proxy = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log"),
                              "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    load: Load | None = None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{listen}") as ch:
            grpc.channel_ready_future(ch).result(timeout=20)
        load = Load(f"127.0.0.1:{listen}")
        load.wait_for(2000)
        served = Counter(pid for _, pid in load.replies)
        assert not load.failures, load.failures[:5]
        leaving, staying = instances
        assert served[leaving.pids[0]] > 200 and served[staying.pids[0]] > 200, served  # both take traffic

        assert leaving.stop() == 0  # SIGTERM: close the listener, GOAWAY, finish in-flight RPCs
        stopped_at, before = time.monotonic(), len(load.replies)
        load.wait_for(before + 1500)
        load.stop()
        after = [pid for t, pid in load.replies if t > stopped_at]
        assert not load.failures, f"{len(load.failures)} RPCs failed while an instance drained: {load.failures[:5]}"
        assert len(after) >= 1500 and set(after) == {staying.pids[0]}, Counter(after)
        print(f"{len(load.replies)} RPCs through nginx: {dict(Counter(p for _, p in load.replies))}")
    finally:
        if load is not None:
            load.stop()
        proxy.terminate()
        proxy.wait(20)
        for s in instances:
            s.stop()
    errors = (tmp_path / "error.log").read_text()
    assert "[emerg]" not in errors and "[alert]" not in errors, errors


def test_a_draining_backend_serves_streams_opened_before_its_goaway_arrived() -> None:
    """What keeps RPCs whole behind nginx (which never retries a gRPC request it has sent):
    GOAWAY(2^31-1) + PING first; a stream opened before the client acknowledged is served;
    after the ACK the final GOAWAY names it as the last stream, then the connection closes."""
    srv = spawn("asyncio", workers=1)
    try:
        client = RawClient(srv.port)
        client.handshake()
        client.frames(until=5, stop=lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        srv.proc.send_signal(signal.SIGTERM)
        frames = client.frames(until=10, stop=lambda f: isinstance(f, PingFrame))
        first = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert first and first[0].last_stream_id == 2**31 - 1 and first[0].error_code == 0, frames
        ping = frames[-1]
        assert isinstance(ping, PingFrame) and "ACK" not in ping.flags, frames

        body = helloworld_pb2.HelloRequest(name="late").SerializeToString()
        client.grpc_request(1, "/helloworld.Greeter/SayHello", b"\x00" + len(body).to_bytes(4, "big") + body)
        reply = client.frames(until=10, stop=lambda f: isinstance(f, HeadersFrame) and "END_STREAM" in f.flags)
        headers = [client.decode(f.data) for f in reply if isinstance(f, HeadersFrame)]
        assert headers and headers[-1].get("grpc-status") == "0", reply  # served, not refused

        client.send(frame(0x6, 0x1, 0, ping.opaque_data))  # PING ACK
        final = client.frames(until=10, stop=lambda f: isinstance(f, GoAwayFrame))
        assert final and isinstance(final[-1], GoAwayFrame) and final[-1].last_stream_id == 1, final
        assert client.closed(wait=10)
        client.close()
        assert srv.proc.wait(timeout=20) == 0
    finally:
        srv.stop()
