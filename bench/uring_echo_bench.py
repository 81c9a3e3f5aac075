"""Echo benchmark: GMF's io_uring loop vs asyncio's default loop vs uvloop.

Each server runs in its own process pinned to one CPU and serves an ``asyncio.Protocol``
that echoes what it receives. A client process pinned to another CPU (uvloop, protocol
based, so it is not the bottleneck) keeps C connections ping-ponging M-byte messages for
D seconds and counts round trips. It also reports the server's CPU time per message
(user + system, from /proc), which stays meaningful when the client is the bottleneck
or the machine is shared. Loops are measured back to back in one run; compare the
ratios, not the absolute numbers.

    python bench/uring_echo_bench.py                      # 50 conns, 64 B, 5 s, all loops
    python bench/uring_echo_bench.py -c 200 -s 1024 -d 3 --loops uring,uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_uring() -> Any:
    spec = importlib.util.spec_from_file_location("gmf_uring", ROOT / "gmf" / "runtime" / "uring.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uring":
        return load_uring().new_event_loop()  # type: ignore[no-any-return]
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


# ----------------------------------------------------------------------------- server


class EchoServerProtocol(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def serve(loop_name: str, cpu: int | None) -> None:
    pin(cpu)
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)

    async def main() -> None:
        if loop_name == "uring":
            await loop.uring_start_server(EchoServerProtocol, sock)  # type: ignore[attr-defined]
        else:
            await loop.create_server(EchoServerProtocol, sock=sock)
        print(sock.getsockname()[1], flush=True)
        stdin_closed = loop.create_future()

        def on_stdin() -> None:  # the parent closes stdin to stop us
            loop.remove_reader(sys.stdin.fileno())
            stdin_closed.set_result(None)

        loop.add_reader(sys.stdin.fileno(), on_stdin)
        if os.environ.get("BENCH_SERVER_THREAD"):  # exercise the loop's GIL-releasing wait path
            threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        await stdin_closed

    loop.run_until_complete(main())


# ----------------------------------------------------------------------------- client


class PingPong(asyncio.Protocol):
    def __init__(self, payload: bytes, counter: list[int], stop_at: float) -> None:
        self.payload = payload
        self.size = len(payload)
        self.pending = 0
        self.counter = counter
        self.stop_at = stop_at
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        while self.pending >= self.size:
            self.pending -= self.size
            self.counter[0] += 1
            if time.monotonic() >= self.stop_at:
                self.transport.close()
                return
            self.transport.write(self.payload)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(port: int, conns: int, size: int, seconds: float, cpu: int | None,
               server_pid: int) -> tuple[float, float]:
    import uvloop

    pin(cpu)
    loop = uvloop.new_event_loop()

    async def main() -> tuple[float, float]:
        payload = b"x" * size
        counter = [0]
        warm = 0.5
        stop_at = time.monotonic() + warm + seconds
        protos = []
        for _ in range(conns):
            _, proto = await loop.create_connection(
                lambda: PingPong(payload, counter, stop_at), "127.0.0.1", port)
            protos.append(proto)
        await asyncio.sleep(warm)
        start_count, t0, cpu0 = counter[0], time.monotonic(), cpu_seconds(server_pid)
        await asyncio.gather(*(p.done for p in protos))
        msgs = counter[0] - start_count
        return msgs / (time.monotonic() - t0), (cpu_seconds(server_pid) - cpu0) / msgs * 1e6

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def bench_one(loop_name: str, args: argparse.Namespace) -> tuple[float, float]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", loop_name, "--cpu", str(args.server_cpu)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        return run_client(port, args.conns, args.size, args.duration, args.client_cpu, server.pid)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--conns", type=int, default=50)
    parser.add_argument("-s", "--size", type=int, default=64)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("--loops", default="uring,asyncio,uvloop")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole comparison")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.cpu)
        return
    print(f"echo ping-pong: {args.conns} connections, {args.size}-byte messages, {args.duration:g} s per loop")
    for _ in range(args.rounds):
        results = {name: bench_one(name, args) for name in args.loops.split(",")}
        base = results.get("asyncio")
        for name, (rate, cpu_us) in results.items():
            ratio = f"  ({rate / base[0]:.2f}x asyncio msgs/s, {base[1] / cpu_us:.2f}x less CPU)" if base else ""
            print(f"  {name:8s} {rate:10,.0f} msgs/s  server {cpu_us:5.2f} CPU-us/msg{ratio}")


if __name__ == "__main__":
    main()
