"""One worker: a forked process pinned to its CPU set, with its own event loop and its own
SO_REUSEPORT listener. Nothing is shared with other workers but a count of connections each
serves, to even them out (gmf.balance)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import resource
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _native, logs, watchdog
from . import runtime as rt
from . import tls as gmf_tls
from .address import bind_listener
from .balance import Balance, WorkerBalance
from .rpc.accept import Acceptor
from .rpc.registry import MethodRegistry
from .rpc.server_state import ServerOptions, ServerState

log = logging.getLogger("gmf")

DEFAULT_GRACE = 10.0
STATS_INTERVAL = 1.0  # seconds between counter snapshots sent to the supervisor


@dataclass(frozen=True)
class WorkerInfo:
    """What lifecycle hooks receive: which worker this is and where it runs."""

    id: int
    cpus: tuple[int, ...] | None
    pid: int
    runtime: str

    @property
    def cpu(self) -> int | None:
        """The CPU this worker is pinned to (None when unpinned or fenced to several)."""
        return self.cpus[0] if self.cpus is not None and len(self.cpus) == 1 else None


@dataclass(frozen=True)
class WorkerConfig:
    host: str
    port: int
    family: int
    registry: MethodRegistry
    options: ServerOptions
    runtime: rt.RuntimeChoice
    backlog: int = 1024
    on_worker_start: Callable[[WorkerInfo], Any] | None = None
    on_worker_stop: Callable[[WorkerInfo], Any] | None = None
    on_drain: tuple[Callable[[], Any], ...] = ()  # run when the worker starts draining, before GOAWAY
    tls: gmf_tls.ServerTls | None = None


def _raise_open_file_limit(max_connections: int) -> None:
    """Every connection is a file descriptor: lift the soft RLIMIT_NOFILE to the hard limit
    (many systems default to a soft limit of 1024) and say so when even that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + 256  # listener, ring, pipes, handler files
    if soft < wanted and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "max_connections=%d but this process may open only %d files: connections beyond that "
            "are refused; raise the limit (ulimit -n / LimitNOFILE= / docker --ulimit nofile=)",
            max_connections, soft,
        )


# CPython's default thresholds: generation 0 at 700 more container objects allocated than
# freed up to 3.12, 2,000 from 3.13 on (3.14 keeps 3.13's).
_DEFAULT_GC_THRESHOLDS = ((700, 10, 10), (2000, 10, 10))
WORKER_GC_THRESHOLD = (20_000, 10, 10)


def tune_gc() -> None:
    """The worker's GC policy, once started (measured with gc.callbacks in a worker under h2load;
    commits 86af1ac and 22d1fca):

    - collect, then ``gc.freeze()``: everything alive now (modules, servicers, what the start
      hook made) lives as long as the worker, so the collector never traverses it again and
      stops writing to pages shared with the supervisor since the fork. An application's own
      cycles then cost a pass over young objects only (main's cycle-per-request path: GC time
      per request 8-12 us -> 3-5 us at 16x16).
    - generation 0 at 20,000 instead of the default (700; 2,000 from 3.13): requests leave no garbage, but a read with 100
      requests has ~1,000 objects alive at once, which passed 700 and made a collection every
      ~110 requests at 1x100 (0.7-1 us per request, 3-4% of the worker) with nothing to free.
      Left alone when the application changed the thresholds (or disabled the collector).
    """
    gc.collect()
    gc.freeze()
    if gc.get_threshold() in _DEFAULT_GC_THRESHOLDS:
        gc.set_threshold(*WORKER_GC_THRESHOLD)


async def _call_hook(hook: Callable[[WorkerInfo], Any] | None, info: WorkerInfo) -> None:
    if hook is None:
        return
    result = hook(info)
    if inspect.isawaitable(result):
        await result


class Worker:
    def __init__(self, worker_id: int, cpus: tuple[int, ...] | None, config: WorkerConfig, control_fd: int,
                 ready_fd: int | None, stats_sock: socket.socket, balance: Balance | None = None) -> None:
        self.id = worker_id
        self.balance = WorkerBalance(balance, worker_id) if balance is not None else None
        self.cpus = cpus
        self.config = config
        self.control_fd = control_fd
        self.ready_fd = ready_fd
        self.stats_sock = stats_sock
        self._stop: asyncio.Future[float] | None = None
        self._control_buf = b""
        self._state: ServerState | None = None
        self._stats_timer: asyncio.TimerHandle | None = None

    def run(self) -> int:
        """Runs in the child after fork; returns the exit status."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor coordinates Ctrl-C
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        logs.set_worker(self.id)
        if self.config.options.access_log:
            logs.enable_access_log()
        self.stats_sock.setblocking(False)
        if self.cpus is not None:
            os.sched_setaffinity(0, self.cpus)
        _raise_open_file_limit(self.config.options.max_connections)
        loop = rt.new_event_loop(self.config.runtime.name)
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(self._main(loop))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def _report_ready(self, message: str) -> None:
        if self.ready_fd is not None:
            try:
                os.write(self.ready_fd, message.encode()[:4000])
            finally:
                os.close(self.ready_fd)
                self.ready_fd = None

    async def _main(self, loop: asyncio.AbstractEventLoop) -> int:
        cfg = self.config
        info = WorkerInfo(self.id, self.cpus, os.getpid(), cfg.runtime.name)
        try:
            sock = bind_listener(cfg.host, cfg.port, cfg.family, cfg.backlog)
        except OSError as exc:
            self._report_ready(f"error cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}")
            return 1
        state = self._state = ServerState(loop, cfg.registry, cfg.options, cfg.on_drain)
        try:
            await _call_hook(cfg.on_worker_start, info)
        except Exception as exc:
            self._report_ready(f"error on_worker_start hook failed in worker {self.id}: {exc!r}")
            log.exception("on_worker_start hook failed in worker %d", self.id)
            sock.close()
            return 1
        acceptor = Acceptor(state, cfg.tls, self.balance)
        server = await rt.start_server(loop, cfg.runtime.name, acceptor, sock)
        balance = self.balance
        if balance is not None:  # take connections other workers pass here, then say how many this one has
            balance.watch(loop.add_reader,
                          lambda fd: rt.adopt(loop, cfg.runtime.name, server, acceptor.passed, fd, balance.taken))
            balance.publish(acceptor.load())
        self._stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, DEFAULT_GRACE)
        loop.add_reader(self.control_fd, self._on_control)
        where = f"cpu {','.join(map(str, self.cpus))}" if self.cpus is not None else "any cpu"
        log.info(
            "worker %d (pid %d) on %s: runtime=%s (%s), listening on %s:%d%s; hot path %s",
            self.id, info.pid, where, cfg.runtime.name, cfg.runtime.reason, cfg.host, cfg.port,
            " (TLS)" if cfg.tls is not None else "", _native.build()["reason"],
        )
        tune_gc()
        self._report_ready("ok")
        self._send_stats_periodically(loop)
        dog = watchdog.start(loop, cfg.options.slow_handler_threshold)
        grace = await self._stop
        loop.remove_reader(self.control_fd)
        if self.balance is not None:
            self.balance.stop_accepting()
        server.close()
        await state.drain(grace)
        if self._stats_timer is not None:
            self._stats_timer.cancel()
        self._send_stats(0)  # the final counts
        if dog is not None:
            dog.stop()
        try:
            await _call_hook(cfg.on_worker_stop, info)
        except Exception:
            log.exception("on_worker_stop hook failed in worker %d", self.id)
        log.info("worker %d stopped (%d RPCs served)", self.id, sum(state.metrics.finished.values()))
        return 0

    def _request_stop(self, grace: float) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(grace)

    def _on_control(self) -> None:
        try:
            data = os.read(self.control_fd, 256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the supervisor is gone: never outlive it
            self._request_stop(DEFAULT_GRACE)
            return
        self._control_buf += data
        while b"\n" in self._control_buf:
            line, self._control_buf = self._control_buf.split(b"\n", 1)
            parts = line.split()
            if parts and parts[0] == b"stop":
                self._request_stop(float(parts[1]) if len(parts) > 1 else DEFAULT_GRACE)
            elif parts and parts[0] == b"stats":
                self._send_stats(int(parts[1]))

    def _send_stats(self, seq: int) -> None:
        """A cumulative snapshot to the supervisor; dropped if its socket is full (the next
        one carries the same counts and more)."""
        state = self._state
        if state is None:
            return
        try:
            self.stats_sock.send(state.metrics.snapshot(len(state.connections)).to_bytes(seq))
        except OSError:
            pass

    def _send_stats_periodically(self, loop: asyncio.AbstractEventLoop) -> None:
        self._send_stats(0)
        self._stats_timer = loop.call_later(STATS_INTERVAL, self._send_stats_periodically, loop)


def worker_main(worker: Worker) -> None:
    """Entry point in the forked child: never returns."""
    code = 1
    try:
        code = worker.run()
    except BaseException:
        traceback.print_exc()
        try:
            worker._report_ready("error worker crashed during startup")
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
