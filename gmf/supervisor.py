"""The supervisor: forks one worker per CPU set, restarts crashed workers, drains on stop.

It runs in the process that called ``serve()`` (main thread, owns SIGINT/SIGTERM) or
``start()`` (a background thread; the host process keeps its signal handlers).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

from .worker import Worker, WorkerConfig, bind_listener, worker_main

log = logging.getLogger("gmf")

STARTUP_TIMEOUT = 30.0


class StartupError(RuntimeError):
    """The server could not start (address in use, bad address, worker failed to start)."""


@dataclass
class _Child:
    id: int
    cpus: tuple[int, ...] | None
    pid: int
    control_fd: int
    started: float
    restarts: int = 0
    failures: int = 0
    next_restart: float = 0.0
    alive: bool = True


@dataclass
class Supervisor:
    config: WorkerConfig
    cpu_sets: list[tuple[int, ...] | None]
    children: dict[int, _Child] = field(default_factory=dict)
    stopping: bool = False
    _inherited: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ startup
    def start(self) -> int:
        """Check the address, fork every worker, wait until all listen; returns the port."""
        cfg = self.config
        port = self._reserve_port()
        self.config = cfg = WorkerConfig(**{**cfg.__dict__, "port": port})
        # Hold the port (bound, not listening) until the workers' listeners exist.
        reservation = bind_listener(cfg.host, port, cfg.family, backlog=None)
        self._inherited.append(reservation)
        try:
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
                raise
            finally:
                for fd in pending:
                    os.close(fd)
        finally:
            reservation.close()
            self._inherited.remove(reservation)
        return port

    def _reserve_port(self) -> int:
        """Fail early and clearly when the address is unusable. The probe binds *without*
        SO_REUSEPORT, so a port held by another server (even another GMF) is reported busy."""
        cfg = self.config
        probe = socket.socket(cfg.family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((cfg.host, cfg.port))
            return int(probe.getsockname()[1])
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"cannot listen on {cfg.host}:{cfg.port}: address already in use "
                    "(another server is running there: stop it or choose another port)"
                ) from None
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
                raise StartupError(
                    f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror} (use an address of this machine, e.g. 0.0.0.0)"
                ) from None
            if exc.errno == errno.EACCES:
                raise StartupError(
                    f"cannot listen on {cfg.host}:{cfg.port}: permission denied (ports below 1024 need root)"
                ) from None
            raise StartupError(f"cannot listen on {cfg.host}:{cfg.port}: {exc}") from None
        finally:
            probe.close()

    def _fork(self, worker_id: int, cpus: tuple[int, ...] | None, ready_fd: int | None) -> _Child:
        control_r, control_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(control_w)
                for sock in self._inherited:
                    sock.close()
                for other in self.children.values():
                    try:
                        os.close(other.control_fd)
                    except OSError:
                        pass
            finally:
                worker_main(Worker(worker_id, cpus, self.config, control_r, ready_fd))
        os.close(control_r)
        previous = self.children.get(worker_id)
        child = _Child(worker_id, cpus, pid, control_w, time.monotonic())
        if previous is not None:
            child.restarts = previous.restarts + 1
            child.failures = previous.failures
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
                        continue
                    child.alive = False
                    os.close(child.control_fd)
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
        while time.monotonic() < limit:
            self.monitor_once()
            if not any(c.alive for c in self.children.values()):
                return
            time.sleep(0.02)
        log.warning("workers did not stop in time: killing them")
        self._kill_all()

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


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"
