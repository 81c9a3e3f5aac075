"""What one request costs GMF's Python, measured in-process without sockets or load generators.

    python -m bench.cost                          # unary, async Greeter, 16 requests per read
    python -m bench.cost --kind unary-sync --batch 100   # plain-def handler, inline (see --sync-handlers)
    python -m bench.cost --kind stream --batch 100  # server streaming: messages per request
    python -m bench.cost --kind bidi --batch 16     # bidi echo: 16 calls, one message each per read
    python -m bench.cost --callgrind              # instructions per request (valgrind)
    python -m bench.cost --heap                   # Python heap kept per request (tracemalloc): ~0
    python -m bench.cost --idle 2000              # Python heap per idle connection (tracemalloc)

A real :class:`~gmf.rpc.connection.GrpcConnection` (made by the worker's ``Acceptor``) on an
asyncio event loop gets the bytes a client sends (``data_received``), ``--batch`` requests (or
messages) per read, and its output goes to a transport that only counts bytes. The handlers
are the example servers' (``examples/helloworld``, ``examples/streambench``). After each read
the loop runs until nothing is ready, as a worker's loop would. What it does not include: the
runtime's socket I/O and the load generator, i.e. it isolates the HTTP/2 core, the RPC layer,
asyncio's task machinery, the handler, protobuf and the garbage collector.

It prints CPU microseconds per request (``time.process_time``; noisy on a shared machine),
garbage collections per 100k requests (gen 0 and gen 2), and with ``--calls`` the Python
function calls per request. ``--callgrind`` runs the same workload twice under
``valgrind --tool=callgrind`` (N and 2N requests) and prints the difference divided by N:
instructions per request without the start-up, which is deterministic and so the number to
decide an optimisation by on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import hpack

from . import ROOT

for _extra in (ROOT, ROOT / "examples", ROOT / "examples" / "helloworld", ROOT / "examples" / "streambench"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1
WARMUP_READS = 50


# What h2load sends (bench/h2load.py) for SayHello; --timeout adds grpcio's grpc-timeout.
def request_headers(path: bytes, timeout: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1:50051"),
        (b":path", path),
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
        (b"user-agent", b"h2load nghttp2/1.52.0"),
    ]
    if timeout:
        headers.append((b"grpc-timeout", b"4999913u"))
    return headers


def frame(ftype: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def grpc_message(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


class CountingTransport(asyncio.Transport):
    """Takes whatever the connection writes and counts it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.writes = 0
        self.protocol: Any = None

    def set_protocol(self, protocol: Any) -> None:  # the accept room hands over to the protocol it chose
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def write(self, data: Any) -> None:
        self.written += len(data)
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class Workload:
    """One connection, a client's bytes per read, and how many requests/messages a read is."""

    def __init__(self, kind: str, batch: int, timeout: bool, size: int, sync_handlers: str = "inline",
                 loop: str = "asyncio") -> None:
        from gmf.rpc.accept import Acceptor
        from gmf.rpc.registry import MethodRegistry
        from gmf.rpc.server_state import ServerOptions, ServerState

        self.kind = kind
        self.batch = batch
        if loop == "uring":  # a worker's loop (futures and tasks ask it get_debug(), for one)
            from gmf.runtime.uring import new_event_loop

            self.loop: asyncio.AbstractEventLoop = new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        registry = MethodRegistry()
        if kind in ("unary", "unary-sync"):
            import helloworld_pb2
            import helloworld_pb2_grpc

            if kind == "unary":
                from helloworld.server import Greeter
                servicer: Any = Greeter()
            else:
                class SyncGreeter(helloworld_pb2_grpc.GreeterServicer):
                    def SayHello(self, request: Any, context: Any) -> Any:  # noqa: N802
                        return helloworld_pb2.HelloReply(message=f"Hello {request.name}!")
                servicer = SyncGreeter()
            helloworld_pb2_grpc.add_GreeterServicer_to_server(servicer, registry)
            path = b"/helloworld.Greeter/SayHello"
            self.body = grpc_message(helloworld_pb2.HelloRequest(name="world").SerializeToString())
        else:
            import streambench_pb2 as sb
            from streambench_service import add_to_server

            add_to_server(registry)
            if kind == "stream":
                path = b"/streambench.StreamBench/ServerStream"
                self.body = grpc_message(sb.StreamRequest(count=batch, size=size).SerializeToString())
            else:
                path = b"/streambench.StreamBench/BidiEcho"
                self.body = grpc_message(sb.Chunk(body=bytes(size)).SerializeToString())
        state = ServerState(self.loop, registry, ServerOptions(sync_handlers=sync_handlers))
        self.acceptor = Acceptor(state)
        self.conn: Any = self.acceptor()
        self.transport = CountingTransport()
        encoder = hpack.Encoder()
        headers = request_headers(path, timeout)
        self.first_block = encoder.encode(headers)
        self.block = encoder.encode(headers)  # indexed from the dynamic table, as every later request
        self.next_sid = 1
        self.credit = 0

    def start(self) -> None:
        settings = struct.pack(">HL", 0x4, MAX_WINDOW)  # the client's initial stream window
        self.transport.set_protocol(self.conn)
        self.conn.connection_made(self.transport)
        self.conn.data_received(
            PREFACE
            + frame(0x4, 0, 0, settings)
            + frame(0x8, 0, 0, struct.pack(">L", (1 << 24) - 65535))  # connection window: 16 MiB
            + frame(0x4, 0x1, 0, b"")
        )
        self.conn = self.transport.get_protocol()  # the HTTP/2 connection the preface chose
        self.first = True
        if self.kind == "bidi":  # ``batch`` long calls, as streamload's bidi slots
            self.bidi_sids = [self._sid() for _ in range(self.batch)]
            self.conn.data_received(b"".join(frame(0x1, 0x4, sid, self._block()) for sid in self.bidi_sids))

    def _sid(self) -> int:
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def _block(self) -> bytes:
        if self.first:
            self.first = False
            return self.first_block
        return self.block

    def read(self) -> bytes:
        """The bytes of one client read: ``batch`` requests; for bidi one message on each of the
        ``batch`` calls; for stream one request for ``batch`` messages."""
        out = bytearray()
        if self.credit:  # the client returns the connection window our responses used
            out += frame(0x8, 0, 0, struct.pack(">L", self.credit))
            self.credit = 0
        if self.kind == "bidi":
            for sid in self.bidi_sids:
                out += frame(0x0, 0, sid, self.body)
        elif self.kind == "stream":
            sid = self._sid()
            out += frame(0x1, 0x4, sid, self._block()) + frame(0x0, 0x1, sid, self.body)
        else:
            for _ in range(self.batch):
                sid = self._sid()
                out += frame(0x1, 0x4, sid, self._block()) + frame(0x0, 0x1, sid, self.body)
        return bytes(out)

    def run(self, reads: int) -> None:
        """Feed ``reads`` reads, each from a loop callback (as a runtime calls
        ``data_received``), and after each run the loop until nothing is ready."""
        conn, loop, transport = self.conn, self.loop, self.transport
        ready = loop._ready  # type: ignore[attr-defined]
        done: asyncio.Future[None] = loop.create_future()
        left = reads
        before = 0
        unary = self.kind in ("unary", "unary-sync")

        def feed() -> None:
            nonlocal before
            before = transport.written
            conn.data_received(self.read())
            loop.call_soon(settled)

        def settled() -> None:
            nonlocal left
            if ready:  # callbacks the read made ready made more ready: after those
                loop.call_soon(settled)
                return
            if unary and conn.calls:  # plain defs in handler threads: their results wake the loop
                loop.call_later(0.0002, settled)
                return
            self.credit = transport.written - before
            left -= 1
            if conn.h2.terminated:
                done.set_exception(RuntimeError("the connection was terminated"))
            elif left:
                feed()
            else:
                done.set_result(None)

        loop.call_soon(feed)
        loop.run_until_complete(done)

    def stop(self) -> None:
        """The client goes away: calls still open (bidi) are cancelled and finish."""
        self.conn.connection_lost(None)
        self.loop.run_until_complete(asyncio.sleep(0.01))
        self.loop.close()


def measure(kind: str, batch: int, requests: int, timeout: bool, size: int, count_calls: bool,
            sync_handlers: str = "inline", loop: str = "asyncio") -> dict[str, Any]:
    work = Workload(kind, batch, timeout, size, sync_handlers, loop)
    work.start()
    reads = max(1, requests // batch)
    units = reads * batch  # requests (unary) or messages (stream, bidi)
    work.run(WARMUP_READS)  # warm up: caches, first blocks (same for every N)
    gc.collect()
    before_stats = [s["collections"] for s in gc.get_stats()]
    calls = 0
    if count_calls:
        counter = [0]

        def profile(_frame: Any, event: str, _arg: Any) -> None:
            if event == "call":
                counter[0] += 1

        sys.setprofile(profile)
    written = work.transport.written
    t0 = time.process_time()
    work.run(reads)
    cpu = time.process_time() - t0
    if count_calls:
        sys.setprofile(None)
        calls = counter[0]
    after_stats = [s["collections"] for s in gc.get_stats()]
    work.stop()
    per = 100_000 / units
    result: dict[str, Any] = {
        "kind": kind,
        "batch": batch,
        "units": units,
        "cpu_us_per_unit": round(cpu / units * 1e6, 3),
        "bytes_out_per_unit": round((work.transport.written - written) / units, 1),
        "gc_gen0_per_100k": round((after_stats[0] - before_stats[0]) * per, 1),
        "gc_gen2_per_100k": round((after_stats[2] - before_stats[2]) * per, 2),
        "gc_frozen": gc.get_freeze_count(),
    }
    if count_calls:
        result["python_calls_per_unit"] = round(calls / units, 1)
    return result


def heap_growth(kind: str, batch: int, requests: int, size: int = 100,
                sync_handlers: str = "inline") -> dict[str, Any]:
    """Python heap (tracemalloc) still held after ``requests`` more requests (or messages) on a
    connection that already served as many: what the connection, the HTTP/2 core, the RPC layer
    or a cache keeps per request. Collected garbage does not count (``gc.collect()`` at both
    ends); a worker's frozen GC collects the same cycles, later (issue 13: RSS flat)."""
    work = Workload(kind, batch, False, size, sync_handlers)
    work.start()
    reads = max(1, requests // batch)
    work.run(WARMUP_READS + reads)  # the first requests fill what is filled once (caches, freelists)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work.run(reads)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    open_calls = len(work.conn.calls)
    work.stop()
    units = reads * batch
    return {"kind": kind, "batch": batch, "units": units, "heap_growth_bytes": grown,
            "bytes_per_unit": round(grown / units, 2), "open_calls": open_calls}


def idle_heap(connections: int) -> dict[str, Any]:
    """Python heap (tracemalloc) per idle connection: accepted, preface and SETTINGS exchanged,
    then nothing, as the ``memory`` shape's clients. It counts the protocol objects (the
    connection, the HTTP/2 core, its timer) and this module's counting transport (~170 B); not
    the runtime's transport and receive buffer, which the ``memory`` shape's RSS adds."""
    work = Workload("unary", 16, False, 100)
    hello = PREFACE + frame(0x4, 0, 0, b"") + frame(0x4, 0x1, 0, b"")
    transports: list[CountingTransport] = []

    def open_idle(n: int) -> None:
        for _ in range(n):
            transport = CountingTransport()
            protocol = work.acceptor()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            transport.get_protocol().data_received(hello)
            transports.append(transport)
        work.loop.run_until_complete(asyncio.sleep(0))

    open_idle(50)  # what the first connections make once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        open_idle(connections)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    kind = type(transports[-1].get_protocol()).__name__
    for transport in transports:
        transport.get_protocol().connection_lost(None)
    work.loop.run_until_complete(asyncio.sleep(0))
    work.loop.close()
    return {"connections": connections, "protocol": kind, "bytes_per_connection": round(grown / connections)}


def callgrind_instructions(argv: list[str]) -> int:
    """Total instructions of ``python -m bench.cost ARGV`` under callgrind."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "bench.cost", *argv,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in both runs
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    match = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"callgrind failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("unary", "unary-sync", "stream", "bidi"), default="unary")
    parser.add_argument("--batch", type=int, default=16, help="requests (or messages) per client read")
    parser.add_argument("--requests", type=int, default=50_000, help="requests (or messages) to measure")
    parser.add_argument("--size", type=int, default=100, help="message body bytes (stream, bidi)")
    parser.add_argument("--timeout", action="store_true", help="send grpc-timeout (a deadline timer per call)")
    parser.add_argument(
        "--sync-handlers", choices=("inline", "auto", "threads"), default="inline",
        help="where unary-sync's plain def runs (default inline: where the placement rule puts a quick "
             "handler, and the same in every run; auto starts in the threads and may stay there on a busy "
             "machine or under valgrind)",
    )
    parser.add_argument("--loop", choices=("asyncio", "uring"), default="asyncio",
                        help="the event loop: asyncio's selector loop (default), or the io_uring one of the "
                             "workers (its selector and get_debug, not its transports)")
    parser.add_argument("--calls", action="store_true", help="count Python function calls per request")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request (valgrind)")
    parser.add_argument("--heap", action="store_true", help="Python heap kept per request (tracemalloc)")
    parser.add_argument("--idle", type=int, metavar="N", help="Python heap per idle connection, over N (tracemalloc)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.batch > 100:
        parser.error("--batch must be in 1..100 (the connection's max_concurrent_streams)")
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind not found (Debian: apt-get install valgrind)", file=sys.stderr)
            return 2
        n = max(args.batch, args.requests // 10)
        base = ["--kind", args.kind, "--batch", str(args.batch), "--size", str(args.size),
                "--sync-handlers", args.sync_handlers, "--loop", args.loop]
        if args.timeout:
            base.append("--timeout")
        small = callgrind_instructions([*base, "--requests", str(n)])
        large = callgrind_instructions([*base, "--requests", str(2 * n)])
        units = (2 * n // args.batch - n // args.batch) * args.batch
        per = (large - small) / units
        line = {"kind": args.kind, "batch": args.batch, "instructions_per_unit": round(per)}
        print(json.dumps(line) if args.json else f"{args.kind} batch {args.batch}: {per:,.0f} instructions per unit")
        return 0
    if args.idle:
        result = idle_heap(args.idle)
    elif args.heap:
        result = heap_growth(args.kind, args.batch, args.requests, args.size, args.sync_handlers)
    else:
        result = measure(args.kind, args.batch, args.requests, args.timeout, args.size, args.calls, args.sync_handlers,
                         args.loop)
    if args.json:
        print(json.dumps(result))
    else:
        print("  ".join(f"{k} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
