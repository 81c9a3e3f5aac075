"""``invoke soak``: a long load run with workers killed now and then; every RPC accounted.

python -m soak --rpcs 1000000 --connections 64 --streaming 1000 --kill-every 10 --workers 2

Starts the soak server (soak/server.py: GMF, ``--workers`` workers) the way
``invoke bench`` starts servers, loads it from ``--clients`` grpcio aio client processes
(soak/client.py: many channels, concurrent unary calls each with a deadline, plus server-
and bidi-streaming calls that check every message), and SIGKILLs a random worker every
``--kill-every`` seconds (the supervisor restarts it). Prints progress every few seconds and
a final report: sent, succeeded, failed by status code, per kind.

Exit status 1 when any RPC is unaccounted (sent != succeeded + failed, or a call got no
status within its deadline + a margin), a failure other than UNAVAILABLE (a connection cut
by a kill; WRITE_CUT_INTERNAL for grpcio's report of a bidi write on a cut connection) or
DEADLINE_EXCEEDED appears, a streaming call ended OK with messages missing,
a client process failed, or the success ratio is below ``--min-success``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.servers import ServerSpec, launch, raise_nofile_limit, server_env

SERVER = Path("soak/server.py")  # relative to the checkout
# A call cut by a worker kill (grpcio aio reports a write on a cut stream as INTERNAL: the
# client counts those as WRITE_CUT_INTERNAL, grpc/grpc#36066), or a deadline.
EXPECTED_FAILURES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "WRITE_CUT_INTERNAL"})
KINDS = ("unary", "server_stream", "bidi")


@dataclass
class SoakConfig:
    rpcs: int = 1_000_000  # unary calls
    connections: int = 64  # client channels (one TCP connection each), over all clients
    streaming: int = 1000  # streaming calls (half server streaming, half bidi)
    kill_every: float = 10.0  # seconds between worker kills; 0 = never
    workers: int = 2
    clients: int = 2  # client processes
    concurrency: int = 64  # unary calls in flight per client process
    deadline: float = 10.0  # per unary call
    min_success: float = 0.99
    runtime: str = "auto"
    progress_every: float = 3.0
    seed: int | None = None
    fail_fast: bool = False  # clients without wait_for_ready: calls fail while a channel reconnects


@dataclass
class Totals:
    sent: int = 0
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    def add(self, entry: dict[str, Any]) -> None:
        self.sent += entry["sent"]
        self.ok += entry["ok"]
        for code, n in entry["failed"].items():
            self.failed[code] = self.failed.get(code, 0) + n

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    @property
    def unaccounted(self) -> int:
        return self.sent - self.ok - self.failures

    def text(self) -> str:
        failed = ", ".join(f"{code} {n:,}" for code, n in sorted(self.failed.items())) or "none"
        return f"sent {self.sent:,}  ok {self.ok:,}  failed {self.failures:,} ({failed})"


@dataclass
class SoakReport:
    kinds: dict[str, Totals]
    messages: int
    kills: int
    elapsed_s: float
    problems: list[str]
    notes: list[str] = field(default_factory=list)  # details of unexpected outcomes, from the clients

    @property
    def total(self) -> Totals:
        total = Totals()
        for kind in self.kinds.values():
            total.add({"sent": kind.sent, "ok": kind.ok, "failed": kind.failed})
        return total

    @property
    def passed(self) -> bool:
        return not self.problems

    def text(self) -> str:
        total = self.total
        lines = [f"soak: {self.elapsed_s:.1f}s, {total.sent / max(self.elapsed_s, 1e-9):,.0f} RPC/s, "
                 f"{self.kills} worker kill(s), {self.messages:,} stream messages checked"]
        lines += [f"  {kind:<13} {totals.text()}" for kind, totals in self.kinds.items()]
        lines.append(f"  {'all':<13} {total.text()}  unaccounted {total.unaccounted}")
        lines += [f"  PROBLEM: {p}" for p in self.problems] or ["  every RPC succeeded or returned a status: OK"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class _ClientProcess:
    """One client process and the latest totals it printed."""

    def __init__(self, index: int, port: int, rpcs: int, streaming: int, channels: int, config: SoakConfig,
                 seed: int) -> None:
        cmd = [sys.executable, "-m", "soak.client", "--port", str(port), "--rpcs", str(rpcs), "--streaming", str(streaming),
               "--channels", str(channels), "--concurrency", str(config.concurrency),
               "--deadline", str(config.deadline), "--seed", str(seed), *(["--fail-fast"] if config.fail_fast else [])]
        self.index = index
        self.latest: dict[str, Any] | None = None
        self.final = False
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line[:2] in ("P ", "F "):
                self.latest = json.loads(line[2:])
                self.final = self.final or line[0] == "F"

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            del self.stderr[:-20]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _totals(clients: list[_ClientProcess]) -> tuple[dict[str, Totals], int]:
    kinds = {kind: Totals() for kind in KINDS}
    messages = 0
    for client in clients:
        if client.latest is not None:
            for kind in KINDS:
                kinds[kind].add(client.latest["kinds"][kind])
            messages += client.latest["messages"]
    return kinds, messages


def _workers_back(pids: Callable[[], list[int]], workers: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while len(pids()) < workers:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run(config: SoakConfig, out: Callable[[str], None] = print) -> SoakReport:
    raise_nofile_limit()
    rng = random.Random(config.seed)
    spec = ServerSpec("gmf-soak", SERVER, args=("--workers", str(config.workers), "--runtime", config.runtime),
                      pinned=False, description="GMF soak server")
    clients: list[_ClientProcess] = []
    problems: list[str] = []
    kills = 0
    out(f"soak: {config.rpcs:,} unary + {config.streaming:,} streaming RPCs, {config.clients} client processes x "
        f"{config.concurrency} in flight over {config.connections} connections, {config.workers} workers, "
        + (f"a worker killed every {config.kill_every:g}s" if config.kill_every else "no kills"))
    with launch(spec, server_cpu=0) as server:
        started = time.monotonic()
        channels = [max(1, n) for n in _split(config.connections, config.clients)]
        for i, (rpcs, streams, n) in enumerate(zip(_split(config.rpcs, config.clients),
                                                  _split(config.streaming, config.clients), channels, strict=True)):
            clients.append(_ClientProcess(i, server.port, rpcs, streams, n, config, rng.randrange(1 << 30)))
        next_kill = started + config.kill_every if config.kill_every else float("inf")
        next_progress = started + config.progress_every
        # A generous bound: clients that do not finish by then are stopped and reported.
        limit = started + 120 + (config.rpcs + config.streaming * 20) / 200
        try:
            while any(c.proc.poll() is None for c in clients):
                now = time.monotonic()
                if now >= limit:
                    problems.append(f"clients still running after {now - started:.0f}s: stopped")
                    break
                if now >= next_kill:
                    next_kill = now + config.kill_every
                    pids = server.worker_pids()
                    if pids and pids != [server.proc.pid]:
                        victim = rng.choice(pids)
                        try:
                            os.kill(victim, signal.SIGKILL)
                            kills += 1
                        except ProcessLookupError:
                            pass
                if now >= next_progress:
                    next_progress = now + config.progress_every
                    kinds, messages = _totals(clients)
                    total = Totals()
                    for k in kinds.values():
                        total.add({"sent": k.sent, "ok": k.ok, "failed": k.failed})
                    out(f"soak: {now - started:5.0f}s  {total.text()}  msgs {messages:,}  "
                        f"{total.sent / (now - started):,.0f}/s  kills {kills}")
                time.sleep(0.1)
        finally:
            for client in clients:
                client.stop()
        elapsed = time.monotonic() - started
        server_errors = [line for line in server.log_tail(100_000).splitlines()
                         if " ERROR " in line or "internal error" in line or "Traceback" in line]
        if server.proc.poll() is not None:
            problems.append(f"the server exited with status {server.proc.returncode}")
        elif not _workers_back(server.worker_pids, config.workers):
            problems.append(f"the supervisor did not bring back all {config.workers} workers")
    for client in clients:
        if not client.final or client.proc.returncode != 0:
            tail = " | ".join(client.stderr[-3:])
            problems.append(f"client {client.index} exited with {client.proc.returncode} without its final report: {tail}")
    notes = [f"client {c.index}: {line[2:]}" for c in clients for line in c.stderr
             if line.startswith("# ") and "client done" not in line]
    problems += [f"server log: {line}" for line in server_errors[:10]]
    kinds, messages = _totals(clients)
    report = SoakReport(kinds, messages, kills, elapsed, problems, notes)
    total = report.total
    if total.unaccounted:
        problems.append(f"{total.unaccounted} RPC(s) unaccounted (sent != ok + failed)")
    unexpected = {code: n for code, n in total.failed.items() if code not in EXPECTED_FAILURES}
    if unexpected:
        problems.append(f"unexpected outcomes: {unexpected}")
    ratio = total.ok / total.sent if total.sent else 0.0
    if ratio < config.min_success:
        problems.append(f"success ratio {ratio:.4f} below {config.min_success}")
    if config.kill_every and elapsed > config.kill_every and not kills:
        problems.append("no worker was killed")
    out(report.text())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SoakConfig()
    parser.add_argument("--rpcs", type=int, default=d.rpcs, help="unary RPCs")
    parser.add_argument("--connections", type=int, default=d.connections)
    parser.add_argument("--streaming", type=int, default=d.streaming, help="streaming RPCs")
    parser.add_argument("--kill-every", type=float, default=d.kill_every, help="seconds between worker kills (0: never)")
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--clients", type=int, default=d.clients, help="client processes")
    parser.add_argument("--concurrency", type=int, default=d.concurrency, help="unary calls in flight per client")
    parser.add_argument("--deadline", type=float, default=d.deadline)
    parser.add_argument("--min-success", type=float, default=d.min_success)
    parser.add_argument("--runtime", default=d.runtime)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--fail-fast", action="store_true", help="clients without wait_for_ready")
    args = parser.parse_args(argv)
    config = SoakConfig(rpcs=args.rpcs, connections=args.connections, streaming=args.streaming,
                        kill_every=args.kill_every, workers=args.workers, clients=args.clients,
                        concurrency=args.concurrency, deadline=args.deadline, min_success=args.min_success,
                        runtime=args.runtime, seed=args.seed, fail_fast=args.fail_fast)
    return 0 if run(config).passed else 1


if __name__ == "__main__":
    sys.exit(main())
