"""The supervisor: forks one worker per CPU set, restarts crashed workers, drains on stop.

It runs in the process that called ``serve()`` (main thread, owns SIGINT/SIGTERM) or
``start()`` (a background thread; the host process keeps its signal handlers).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .address import reserve
from .balance import Balance
from .errors import StartupError
from .metrics import Snapshot, WorkerStats, aggregate
from .worker import Worker, WorkerConfig, worker_main

log = logging.getLogger("gmf")

STARTUP_TIMEOUT = 30.0
STATS_TIMEOUT = 1.0  # how long stats() waits for the workers' fresh counts


@dataclass
class _Child:
    id: int
    cpus: tuple[int, ...] | None
    pid: int
    control_fd: int
    stats_sock: socket.socket  # the worker sends its counter snapshots here
    started: float
    restarts: int = 0
    failures: int = 0
    next_restart: float = 0.0
    alive: bool = True
    seen: int = 0  # the last stats request this worker answered
    current: Snapshot = field(default_factory=Snapshot)
    retired: Snapshot = field(default_factory=Snapshot)  # counts of this slot's dead workers

    def receive_stats(self) -> None:
        """Take every snapshot waiting on the socket (the latest wins: they are cumulative)."""
        while True:
            try:
                data = self.stats_sock.recv(1 << 22)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            seq, self.current = Snapshot.from_bytes(data)
            self.seen = max(self.seen, seq)

    def retire(self) -> None:
        """The worker died: keep its last counts, so totals never go back."""
        self.receive_stats()
        self.retired.add(self.current, gauges=False)
        self.current = Snapshot()
        self.stats_sock.close()


@dataclass
class Supervisor:
    config: WorkerConfig
    cpu_sets: list[tuple[int, ...] | None]
    children: dict[int, _Child] = field(default_factory=dict)
    stopping: bool = False
    metrics_address: tuple[str, int] | None = None  # serve Prometheus /metrics there
    metrics_port: int | None = None  # the bound port, once started
    _inherited: list[Any] = field(default_factory=list)  # what forked workers must close
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stats_seq: int = 0
    _metrics: Any = None
    _balance: Balance | None = None  # connection counts shared by the workers (gmf.balance)

    # ------------------------------------------------------------------ startup
    def start(self, reservation: socket.socket | None = None) -> int:
        """Reserve the address (or take ``reservation``, made by ``address.reserve``), fork
        every worker, wait until all listen; returns the port. The reservation is closed then."""
        cfg = self.config
        if reservation is None:
            reservation = reserve(cfg.host, cfg.port, cfg.family)
        port = int(reservation.getsockname()[1])
        self._inherited.append(reservation)
        try:
            if self.metrics_address is not None:
                from .exporter import MetricsServer  # prometheus_client only when asked for

                self._metrics = MetricsServer(*self.metrics_address, self.stats)
                self.metrics_port = self._metrics.port
                self._inherited.append(self._metrics)
                host = self.metrics_address[0]
                log.info("Prometheus metrics on http://%s:%d/metrics", f"[{host}]" if ":" in host else host,
                         self.metrics_port)
            self.config = cfg = WorkerConfig(**{**cfg.__dict__, "port": port})
            if len(self.cpu_sets) > 1 and cfg.options.balance_connections and self._balance is None:
                self._balance = Balance(len(self.cpu_sets))
            pending: dict[int, int] = {}
            try:
                for worker_id, cpus in enumerate(self.cpu_sets):
                    read_fd, write_fd = os.pipe()
                    child = self._fork(worker_id, cpus, ready_fd=write_fd)
                    os.close(write_fd)
                    pending[read_fd] = child.id
                self._wait_ready(pending)
            except BaseException:
                self._kill_all()
                self._close_shared()
                raise
            finally:
                for fd in pending:
                    os.close(fd)
        finally:
            reservation.close()
            self._inherited.remove(reservation)
        return port

    def _fork(self, worker_id: int, cpus: tuple[int, ...] | None, ready_fd: int | None) -> _Child:
        control_r, control_w = os.pipe()
        stats_r, stats_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(control_w)
                stats_r.close()
                for sock in self._inherited:
                    os.close(sock.fileno())
                for other in self.children.values():
                    if other.alive:  # a dead one's fds are closed (their numbers may be reused)
                        os.close(other.control_fd)
                        other.stats_sock.close()
            finally:
                worker_main(Worker(worker_id, cpus, self.config, control_r, ready_fd, stats_w, self._balance))
        os.close(control_r)
        stats_w.close()
        stats_r.setblocking(False)
        previous = self.children.get(worker_id)
        child = _Child(worker_id, cpus, pid, control_w, stats_r, time.monotonic())
        if previous is not None:
            child.restarts = previous.restarts + 1
            child.failures = previous.failures
            child.retired = previous.retired
        self.children[worker_id] = child
        return child

    def _wait_ready(self, pending: dict[int, int]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        waiting = dict(pending)
        while waiting:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise StartupError(f"worker(s) {sorted(waiting.values())} did not start within {STARTUP_TIMEOUT:.0f}s")
            readable, _, _ = select.select(list(waiting), [], [], min(timeout, 0.5))
            for fd in readable:
                message = os.read(fd, 4096).decode(errors="replace")
                worker_id = waiting.pop(fd)
                if message != "ok":
                    text = message[len("error ") :] if message.startswith("error ") else "exited during startup"
                    raise StartupError(text or f"worker {worker_id} exited during startup")

    # ------------------------------------------------------------------ running
    def monitor_once(self) -> None:
        """Reap dead workers and restart the ones that died unexpectedly."""
        now = time.monotonic()
        with self._lock:
            for child in list(self.children.values()):
                if child.alive:
                    try:
                        pid, status = os.waitpid(child.pid, os.WNOHANG)
                    except ChildProcessError:
                        pid, status = child.pid, 0
                    if pid == 0:
                        child.receive_stats()
                        continue
                    child.alive = False
                    os.close(child.control_fd)
                    child.retire()
                    if self._balance is not None:
                        self._balance.closed(child.id)  # until its successor says it is serving
                    if self.stopping:
                        continue
                    how = _describe_status(status)
                    quick = now - child.started < 1.0
                    child.failures = child.failures + 1 if quick else 0
                    delay = 0.0 if child.failures <= 1 else min(0.1 * 2 ** (child.failures - 1), 10.0)
                    child.next_restart = now + delay
                    log.warning("worker %d (pid %d) %s: restarting%s", child.id, child.pid, how,
                                f" in {delay:.1f}s" if delay else "")
                if not child.alive and not self.stopping and now >= child.next_restart:
                    new = self._fork(child.id, child.cpus, ready_fd=None)
                    log.info("worker %d restarted as pid %d", new.id, new.pid)

    def worker_pids(self) -> list[int]:
        return [c.pid for c in self.children.values() if c.alive]

    def stats(self, timeout: float = STATS_TIMEOUT) -> dict[str, Any]:
        """Counters summed over all workers (and per worker): asks every live worker for its
        current counts and waits up to ``timeout`` for the answers (else uses the last ones)."""
        with self._lock:
            self._stats_seq += 1
            seq = self._stats_seq
            waiting: dict[int, _Child] = {}
            for child in self.children.values():
                if child.alive:
                    try:
                        os.write(child.control_fd, f"stats {seq}\n".encode())
                        waiting[child.stats_sock.fileno()] = child
                    except OSError:
                        pass
            deadline = time.monotonic() + timeout
            while waiting and (left := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select(list(waiting), [], [], left)
                for fd in readable:
                    child = waiting[fd]
                    child.receive_stats()
                    if child.seen >= seq:
                        del waiting[fd]
            return aggregate({
                c.id: WorkerStats(c.pid, c.alive, c.restarts, c.retired, c.current) for c in self.children.values()
            })

    # ------------------------------------------------------------------ stopping
    def stop(self, grace: float | None) -> None:
        """Ask every worker to drain within ``grace`` seconds, then make sure they are gone."""
        with self._lock:
            self.stopping = True
            message = f"stop {grace if grace is not None else 1e9}\n".encode()
            for child in self.children.values():
                if child.alive:
                    try:
                        os.write(child.control_fd, message)
                    except OSError:
                        pass
        limit = time.monotonic() + (grace if grace is not None else 3600.0) + 5.0
        try:
            while time.monotonic() < limit:
                self.monitor_once()
                if not any(c.alive for c in self.children.values()):
                    return
                time.sleep(0.02)
            log.warning("workers did not stop in time: killing them")
            self._kill_all()
        finally:
            self._close_shared()

    def _close_shared(self) -> None:
        if self._metrics is not None:
            self._inherited.remove(self._metrics)
            self._metrics.close()
            self._metrics = None
        if self._balance is not None:
            self._balance.close()
            self._balance = None

    def _kill_all(self) -> None:
        for child in self.children.values():
            if child.alive:
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for child in self.children.values():
            if child.alive:
                try:
                    os.waitpid(child.pid, 0)
                except ChildProcessError:
                    pass
                child.alive = False
                try:
                    os.close(child.control_fd)
                except OSError:
                    pass
                child.retire()


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"
