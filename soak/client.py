"""One soak client process: grpcio aio, many channels (one TCP connection each), many
concurrent calls, every call accounted.

    python -m soak.client --port P --rpcs N --streaming S --channels C --concurrency K

Prints ``P <json>`` (running totals) every second and ``F <json>`` once at the end:
``{"kinds": {"unary": {"sent": n, "ok": n, "failed": {"UNAVAILABLE": n, ...}}, ...}, "messages": n}``.
Each call ends as OK, a status code name, or one of:
- ``NO_STATUS``: the call neither finished nor failed within its deadline + a margin (lost),
- ``WRONG_REPLY`` / ``INCOMPLETE``: OK status, but the reply or the message count is wrong,
- ``CLIENT_ERROR``: the client library raised something other than an RpcError,
- ``WRITE_CUT_INTERNAL``: a bidi write failed with grpcio's "INTERNAL: Internal error from Core",
  which grpcio aio reports instead of the real status when the connection was cut
  (grpc/grpc#36066): counted apart from genuine INTERNAL statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from typing import Any

from bench import add_helloworld_to_path

add_helloworld_to_path()

import grpc  # noqa: E402
import helloworld_pb2 as pb  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402

KINDS = ("unary", "server_stream", "bidi")
WRITE_CUT = "WRITE_CUT_INTERNAL"  # see bidi()
EXPECTED = ("UNAVAILABLE", "DEADLINE_EXCEEDED", WRITE_CUT)  # a call cut by a worker kill; a deadline
GUARD_S = 5.0  # after its deadline a call has this long to report a status before it counts as lost


class Tally:
    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, Any]] = {k: {"sent": 0, "ok": 0, "failed": {}} for k in KINDS}
        self.messages = 0

    def sent(self, kind: str) -> None:
        self.kinds[kind]["sent"] += 1

    def done(self, kind: str, outcome: str) -> None:
        entry = self.kinds[kind]
        if outcome == "OK":
            entry["ok"] += 1
        else:
            entry["failed"][outcome] = entry["failed"].get(outcome, 0) + 1

    def snapshot(self) -> str:
        return json.dumps({"kinds": self.kinds, "messages": self.messages})


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        target = f"127.0.0.1:{args.port}"
        # A local subchannel pool per channel: otherwise grpcio shares one connection among them.
        self.channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                         for _ in range(args.channels)]
        self.greeters = [helloworld_pb2_grpc.GreeterStub(ch) for ch in self.channels]
        ser, des = pb.HelloRequest.SerializeToString, pb.HelloReply.FromString
        self.counts = [ch.unary_stream("/soak.Stream/Count", request_serializer=ser, response_deserializer=des)
                       for ch in self.channels]
        self.echoes = [ch.stream_stream("/soak.Stream/Echo", request_serializer=ser, response_deserializer=des)
                       for ch in self.channels]
        self.tally = Tally()
        self.unary_left = args.rpcs
        self.streams_left = args.streaming
        self.next = 0
        # wait_for_ready: a call made while its channel reconnects (after a kill) waits for the
        # connection within its deadline instead of failing at once; calls cut by a kill
        # still fail with UNAVAILABLE.
        self.wait = not args.fail_fast

    def _pick(self) -> int:
        self.next = (self.next + 1) % len(self.channels)
        return self.next

    async def _accounted(self, kind: str, deadline: float, call: Any) -> None:
        """Run one call; whatever happens it ends in exactly one outcome."""
        self.tally.sent(kind)
        try:
            outcome = await asyncio.wait_for(call, deadline + GUARD_S)
        except TimeoutError:
            outcome = "NO_STATUS"
        except grpc.RpcError as exc:
            outcome = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "UNKNOWN"
            details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
            self._explain(kind, outcome, details)
        except Exception as exc:  # noqa: BLE001 - accounted, never dropped
            outcome = f"CLIENT_ERROR:{type(exc).__name__}"
            self._explain(kind, outcome, repr(exc))
        self.tally.done(kind, outcome)

    def _explain(self, kind: str, outcome: str, details: str) -> None:
        """Print the details of unexpected outcomes (the first few of each) on stderr."""
        if outcome in EXPECTED and not os.environ.get("GMF_SOAK_DEBUG"):
            return
        if self.tally.kinds[kind]["failed"].get(outcome, 0) < 5:
            print(f"# {time.time():.3f} {kind}: {outcome}: {details}", file=sys.stderr, flush=True)

    async def unary(self, i: int) -> str:
        name = f"u{i}"
        reply = await self.greeters[self._pick()].SayHello(pb.HelloRequest(name=name), timeout=self.args.deadline,
                                                           wait_for_ready=self.wait)
        return "OK" if reply.message == f"Hello {name}!" else "WRONG_REPLY"

    async def server_stream(self, n: int) -> str:
        call = self.counts[self._pick()](pb.HelloRequest(name=str(n)), timeout=self.args.stream_deadline,
                                         wait_for_ready=self.wait)
        got = []
        async for reply in call:
            got.append(reply.message)
            self.tally.messages += 1
        return "OK" if got == [str(i) for i in range(n)] else "INCOMPLETE"

    async def bidi(self, n: int) -> str:
        call = self.echoes[self._pick()](timeout=self.args.stream_deadline, wait_for_ready=self.wait)
        got = []
        for i in range(n):
            try:
                await call.write(pb.HelloRequest(name=f"b{i}"))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INTERNAL and exc.details() == "Internal error from Core":
                    # grpcio aio reports a write on a stream whose connection was just cut as
                    # INTERNAL, hiding the real status (grpc/grpc#36066): a kill, counted apart.
                    return WRITE_CUT
                raise
            reply = await call.read()
            if reply is grpc.aio.EOF:
                break
            got.append(reply.message)
            self.tally.messages += 1
        await call.done_writing()
        if await call.read() is not grpc.aio.EOF:
            return "INCOMPLETE"
        status = await call.code()
        if status != grpc.StatusCode.OK:
            self._explain("bidi", str(status.name), await call.details())
            return str(status.name)
        return "OK" if got == [f"b{i}" for i in range(n)] else "INCOMPLETE"

    async def unary_loop(self) -> None:
        while self.unary_left > 0:
            self.unary_left -= 1
            await self._accounted("unary", self.args.deadline, self.unary(self.unary_left))

    async def stream_loop(self, rng: random.Random) -> None:
        args = self.args
        while self.streams_left > 0:
            # spread the streaming calls over the whole run (so kills hit some of them)
            while self.unary_left > 0 and (args.rpcs - self.unary_left) * args.streaming < (args.streaming - self.streams_left) * args.rpcs:
                await asyncio.sleep(0.05)
            if self.streams_left <= 0:  # another streamer took the last one while this one waited
                break
            self.streams_left -= 1
            n = rng.randint(1, 50)
            if rng.random() < 0.5:
                await self._accounted("server_stream", self.args.stream_deadline, self.server_stream(n))
            else:
                await self._accounted("bidi", self.args.stream_deadline, self.bidi(n))

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            print("P " + self.tally.snapshot(), flush=True)

    async def run(self) -> None:
        reporter = asyncio.create_task(self.progress())
        rng = random.Random(self.args.seed)
        streamers = max(1, self.args.concurrency // 8) if self.args.streaming else 0
        tasks = [self.unary_loop() for _ in range(self.args.concurrency)]
        tasks += [self.stream_loop(random.Random(rng.random())) for _ in range(streamers)]
        await asyncio.gather(*tasks)
        reporter.cancel()
        print("F " + self.tally.snapshot(), flush=True)
        for ch in self.channels:
            await ch.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rpcs", type=int, required=True, help="unary calls")
    parser.add_argument("--streaming", type=int, default=0, help="streaming calls (server and bidi)")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=64, help="unary calls in flight")
    parser.add_argument("--deadline", type=float, default=10.0)
    parser.add_argument("--stream-deadline", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-fast", action="store_true", help="no wait_for_ready (grpcio's default)")
    args = parser.parse_args(argv)
    started = time.monotonic()

    async def go() -> None:  # grpc.aio channels belong to the loop they are made in
        await Client(args).run()

    asyncio.run(go())
    print(f"# client done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
