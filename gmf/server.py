"""GmfServer: configuration, the handler registry, serve() and start()."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from . import runtime as rt
from . import watchdog
from .placement import Placement, allowed_cpus
from .rpc.context import encoding_name
from .rpc.registry import MethodRegistry
from .rpc.server_state import ServerOptions
from .supervisor import StartupError, Supervisor
from .worker import WorkerConfig, WorkerInfo

log = logging.getLogger("gmf")

Hook = Callable[[WorkerInfo], Any]


def parse_address(address: str) -> tuple[str, int, int]:
    """``HOST:PORT`` / ``[IPv6]:PORT`` / ``:PORT`` -> (host, port, family)."""
    text = address.strip()
    try:
        if text.startswith("["):
            host, _, port_text = text[1:].partition("]:")
            family = socket.AF_INET6
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError
            host = host or "0.0.0.0"
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise StartupError(f"invalid address {address!r}: expected HOST:PORT, e.g. 0.0.0.0:50051 or [::]:50051") from None
    if host == "localhost":
        host = "127.0.0.1"
    return host, port, family


class ServerHandle:
    """What ``start()`` returns: the bound port, the worker PIDs, and ``stop()``."""

    def __init__(self, supervisor: Supervisor, port: int) -> None:
        self._supervisor = supervisor
        self.port = port
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="gmf-supervisor", daemon=True)
        self._thread.start()

    @property
    def worker_pids(self) -> list[int]:
        return self._supervisor.worker_pids()

    def _monitor(self) -> None:
        while not self._stopped.wait(0.05):
            self._supervisor.monitor_once()

    def stop(self, grace: float | None = None) -> None:
        """GOAWAY on every connection, let in-flight RPCs finish within ``grace`` seconds."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._thread.join()
        self._supervisor.stop(grace)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=1.0)


class GmfServer:
    """A gRPC server with one worker process per core (see README for the full API).

    Servicers are registered before ``serve()``/``start()``; workers are forked then, so each
    worker gets its own copy of every servicer object: state kept in a servicer is per
    worker. Create per-worker resources in ``on_worker_start``.
    """

    def __init__(
        self,
        workers: int | None = None,
        placement: Placement | None = None,
        runtime: str = "auto",
        max_connections: int = 10240,
        *,
        max_receive_message_length: int = 4 * 1024 * 1024,
        max_send_message_length: int | None = None,
        max_concurrent_streams: int = 1000,
        compression: grpc.Compression | None = None,
        handshake_timeout: float = 10.0,
        on_worker_start: Hook | None = None,
        on_worker_stop: Hook | None = None,
        grace: float = 10.0,
        slow_handler_threshold: float | None = 1.0,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1 (got {workers}); allowed CPUs: {','.join(map(str, allowed_cpus()))}")
        watchdog.check_threshold(slow_handler_threshold)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if placement is None:
            placement = Placement.max_spread(workers)
        elif workers is not None and placement.count not in (None, workers):
            raise ValueError(f"workers={workers} disagrees with {placement}")
        elif workers is not None and placement.kind != "fixed":
            placement = Placement(placement.kind, workers, placement.cpus)
        self.placement = placement
        self.cpu_sets = placement.cpu_sets()  # validates CPUs now, not at serve()
        self.runtime = runtime
        if runtime not in (*rt.RUNTIMES, "auto"):
            raise ValueError(f"unknown runtime {runtime!r}: choose one of auto, {', '.join(rt.RUNTIMES)}")
        compression_name = encoding_name(compression)
        self.options = ServerOptions(
            max_receive_message_length=max_receive_message_length,
            max_send_message_length=max_send_message_length,
            max_concurrent_streams=max_concurrent_streams,
            max_connections=max_connections,
            compression=compression_name,
            handshake_timeout=handshake_timeout,
            slow_handler_threshold=slow_handler_threshold,
        )
        self.on_worker_start = on_worker_start
        self.on_worker_stop = on_worker_stop
        self.grace = grace
        self._registry = MethodRegistry()
        self._address: str | None = None

    # -- what grpcio-generated code calls -------------------------------------------
    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._registry.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._registry.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        """grpc.server() compatibility: remember the address that ``serve()``/``start()`` use
        when called without one. Returns the port (0 stays 0 until ``start()`` binds it)."""
        self._address = address
        return parse_address(address)[1]

    @property
    def registry(self) -> MethodRegistry:
        return self._registry

    # -- running ----------------------------------------------------------------------
    def _supervisor(self, address: str) -> Supervisor:
        host, port, family = parse_address(address)
        try:
            choice = rt.resolve(self.runtime)
        except (ValueError, RuntimeError) as exc:
            raise StartupError(str(exc)) from None
        if self.runtime == "auto" and not os.environ.get(rt.ENV_VAR):
            log.info("runtime: %s (%s)", choice.name, choice.reason)
        config = WorkerConfig(
            host=host,
            port=port,
            family=family,
            registry=self._registry,
            options=self.options,
            runtime=choice,
            on_worker_start=self.on_worker_start,
            on_worker_stop=self.on_worker_stop,
        )
        return Supervisor(config, list(self.cpu_sets))

    def start(self, address: str | None = None) -> ServerHandle:
        """Start the workers and return at once (for tests and embedding). Raises StartupError.
        Address: the argument, else the one given to ``add_insecure_port``, else 127.0.0.1:0."""
        _configure_logging()
        supervisor = self._supervisor(address or self._address or "127.0.0.1:0")
        port = supervisor.start()
        log.info("serving on %s with %d worker(s)", _display(supervisor, port), len(self.cpu_sets))
        return ServerHandle(supervisor, port)

    def serve(self, address: str | None = None) -> None:
        """Serve until SIGINT/SIGTERM, then drain gracefully. A startup failure prints one
        line and exits with status 1. Address: the argument, else the one given to
        ``add_insecure_port``, else 0.0.0.0:50051."""
        address = address or self._address or "0.0.0.0:50051"
        _configure_logging()
        stop_signal: list[int] = []
        previous = {
            sig: signal.signal(sig, lambda signum, _frame: stop_signal.append(signum))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            supervisor = self._supervisor(address)
            port = supervisor.start()
        except StartupError as exc:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            print(f"gmf: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        log.info("serving on %s with %d worker(s); Ctrl-C to stop", _display(supervisor, port), len(self.cpu_sets))
        try:
            while not stop_signal:
                supervisor.monitor_once()
                time.sleep(0.05)
            log.info("received %s: draining (grace %.1fs)", signal.Signals(stop_signal[0]).name, self.grace)
            supervisor.stop(self.grace)
            log.info("stopped")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if not supervisor.stopping:
                supervisor.stop(0)


def _display(supervisor: Supervisor, port: int) -> str:
    host = supervisor.config.host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _configure_logging() -> None:
    logger = logging.getLogger("gmf")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s gmf[%(process)d] %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("GMF_LOG_LEVEL", "INFO").upper())
