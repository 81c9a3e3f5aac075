"""GmfServer: configuration, the handler registry, serve() and start()."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc

from . import logs, settings, watchdog
from . import runtime as rt
from . import tls as gmf_tls
from .address import parse_address, reserve
from .errors import StartupError
from .placement import Placement, allowed_cpus
from .rpc.context import encoding_name
from .rpc.inline import SYNC_HANDLERS
from .rpc.interceptors import check_interceptors
from .rpc.registry import MethodRegistry
from .rpc.server_state import ServerOptions
from .supervisor import Supervisor
from .web.cors import check_origins
from .worker import WorkerConfig, WorkerInfo

if TYPE_CHECKING:
    from .services.health import Health

log = logging.getLogger("gmf")

Hook = Callable[[WorkerInfo], Any]


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

    @property
    def metrics_port(self) -> int | None:
        """The port of the Prometheus /metrics endpoint (None without ``metrics_port``)."""
        return self._supervisor.metrics_port

    def stats(self) -> dict[str, Any]:
        """Counters summed over the workers, fresh (asks each worker, waits up to a second):
        connections_accepted/open/refused, bytes_received/sent, rpcs_started {method: n},
        rpcs_finished {method: {code name: n}}, and ``workers`` {id: the same per worker}."""
        return self._supervisor.stats()

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
        max_concurrent_streams: int = 100,
        compression: grpc.Compression | None = None,
        handshake_timeout: float = 10.0,
        on_worker_start: Hook | None = None,
        on_worker_stop: Hook | None = None,
        grace: float = 10.0,
        access_log: bool = False,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        health: bool = False,
        reflection: bool = False,
        interceptors: Iterable[Any] = (),
        max_header_list_size: int = 64 * 1024,
        keepalive_min_ping_interval: float = 300.0,
        max_ping_strikes: int = 2,
        max_unproductive_frames: int = 1000,
        max_pending_control_frames: int = 10000,
        tls: gmf_tls.ServerCredentials | ssl.SSLContext | None = None,
        idle_timeout: float | None = 300.0,
        max_outbound_buffer: int | None = 16 * 1024 * 1024,
        outbound_stall_timeout: float | None = 30.0,
        slow_handler_threshold: float | None = 1.0,
        handler_threads: int = 10,
        sync_handlers: str = "auto",
        grpcio_flavor: str = "aio",
        max_concurrent_rpcs: int | None = None,
        web: bool = True,
        cors_origins: Iterable[str] = (),
        http1_body_timeout: float = 30.0,
        balance_connections: bool = True,
    ) -> None:
        self.placement = Placement.max_spread()
        self.cpu_sets: list[tuple[int, ...] | None] = []
        self.runtime = "auto"
        self.options = ServerOptions()
        self.on_worker_start: Hook | None = None
        self.on_worker_stop: Hook | None = None
        self.grace = 10.0
        self.metrics_port: int | None = None
        self.metrics_host = "127.0.0.1"
        self._registry = MethodRegistry()
        self._address: str | None = None
        self._reserved: tuple[str, socket.socket] | None = None  # bind(): the address and its held socket
        self._on_drain: list[Callable[[], Any]] = []
        self.health: Health | None = None  # set by health=True / gmf.services.enable_health
        self.tls: gmf_tls.ServerTls | None = None
        self.configure(
            workers=workers,
            placement=placement,
            runtime=runtime,
            max_connections=max_connections,
            max_receive_message_length=max_receive_message_length,
            max_send_message_length=max_send_message_length,
            max_concurrent_streams=max_concurrent_streams,
            compression=compression,
            handshake_timeout=handshake_timeout,
            access_log=access_log,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            interceptors=interceptors,
            health=health,
            reflection=reflection,
            on_worker_start=on_worker_start,
            on_worker_stop=on_worker_stop,
            grace=grace,
            max_header_list_size=max_header_list_size,
            keepalive_min_ping_interval=keepalive_min_ping_interval,
            max_ping_strikes=max_ping_strikes,
            max_unproductive_frames=max_unproductive_frames,
            max_pending_control_frames=max_pending_control_frames,
            tls=tls,
            idle_timeout=idle_timeout,
            max_outbound_buffer=max_outbound_buffer,
            outbound_stall_timeout=outbound_stall_timeout,
            slow_handler_threshold=slow_handler_threshold,
            handler_threads=handler_threads,
            sync_handlers=sync_handlers,
            grpcio_flavor=grpcio_flavor,
            max_concurrent_rpcs=max_concurrent_rpcs,
            web=web,
            cors_origins=cors_origins,
            http1_body_timeout=http1_body_timeout,
            balance_connections=balance_connections,
        )

    def configure(self, **options: Any) -> GmfServer:
        """Validate and apply options: any keyword of ``GmfServer()`` (or field of
        ServerOptions, so a new limit there needs no code here). Later calls override
        earlier ones (``gmf serve`` applies its command line and ``GMF_*`` environment so);
        ``workers`` alone re-counts the current placement. A bad value raises ValueError and
        an unknown name TypeError, before anything is applied. Returns the server."""
        unknown = sorted(set(options) - _KEYWORDS)
        if unknown:
            raise TypeError(f"unknown GmfServer option(s): {', '.join(unknown)}; known: {', '.join(sorted(_KEYWORDS))}")
        for name, (kind, minimum) in _NUMBERS.items():
            if name in options:
                _check_number(name, options[name], kind, minimum)
        if options.get("runtime", "auto") not in (*rt.RUNTIMES, "auto"):
            raise ValueError(f"unknown runtime {options['runtime']!r}: choose one of auto, {', '.join(rt.RUNTIMES)}")
        compression = options.get("compression")
        if compression is not None and encoding_name(compression) is None:
            raise ValueError(f"unsupported compression {compression!r}: use grpc.Compression.Gzip or Deflate")
        if options.get("sync_handlers", "auto") not in SYNC_HANDLERS:
            raise ValueError(f"sync_handlers must be one of {', '.join(SYNC_HANDLERS)} (got {options['sync_handlers']!r})")
        if options.get("grpcio_flavor", "aio") not in ("aio", "sync"):
            raise ValueError(f"grpcio_flavor must be 'aio' or 'sync' (got {options['grpcio_flavor']!r})")
        if "cors_origins" in options:
            check_origins(options["cors_origins"])
        for name in ("web", "balance_connections"):
            if name in options and not isinstance(options[name], bool):
                raise ValueError(f"{name} must be True or False (got {options[name]!r})")
        if "slow_handler_threshold" in options:
            watchdog.check_threshold(options["slow_handler_threshold"])
        for name in ("on_worker_start", "on_worker_stop"):
            if options.get(name) is not None and not callable(options[name]):
                raise ValueError(f"{name} must be callable (got {options[name]!r})")
        placement = _placement(self.placement, options)
        cpu_sets = placement.cpu_sets()  # validates CPUs now, not at serve()

        self.placement, self.cpu_sets = placement, cpu_sets
        fields = {name: options[name] for name in _OPTION_FIELDS & set(options)}
        if "compression" in fields:
            fields["compression"] = encoding_name(compression)
        if "interceptors" in fields:
            fields["interceptors"] = check_interceptors(fields["interceptors"])
        if "cors_origins" in fields:
            fields["cors_origins"] = check_origins(fields["cors_origins"])
        self.options = dataclasses.replace(self.options, **fields)
        for name in _ATTRIBUTES & set(options):
            setattr(self, name, options[name])
        if "tls" in options:
            self.tls = None if options["tls"] is None else gmf_tls.ServerTls(options["tls"])
        if options.get("health"):
            from .services import enable_health

            enable_health(self)
        if options.get("reflection"):
            from .services import enable_reflection

            enable_reflection(self)
        return self

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where the supervisor serves Prometheus /metrics (None: not served)."""
        return (self.metrics_host, self.metrics_port) if self.metrics_port is not None else None

    # -- what grpcio-generated code calls -------------------------------------------
    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._registry.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._registry.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        """grpc.server() compatibility: remember the address that ``serve()``/``start()`` use
        when called without one. Returns the port (0 stays 0 until ``start()`` binds it; the
        grpc.Server of ``gmf.server()`` binds at once, see ``bind``)."""
        if self.tls is not None:
            raise ValueError("this server is configured for TLS (tls= or add_secure_port) and GMF serves one "
                             "address: drop add_insecure_port, or run a second server for plaintext")
        self._address = address
        return parse_address(address)[1]

    def add_secure_port(self, address: str, server_credentials: gmf_tls.ServerCredentials | ssl.SSLContext) -> int:
        """grpc.server() compatibility, with ``gmf.ssl_server_credentials(...)`` (same arguments
        as grpc's) or an ``ssl.SSLContext``: serve TLS on ``address``. GMF serves one address:
        a second call replaces the first; after ``add_insecure_port`` it is an error."""
        if self._address is not None and self.tls is None:
            raise ValueError("add_insecure_port was called already and GMF serves one address: "
                             "use add_secure_port alone, or run a second server for plaintext")
        if not isinstance(server_credentials, (gmf_tls.ServerCredentials, ssl.SSLContext)):
            raise TypeError(f"{server_credentials!r} is not gmf.ssl_server_credentials(...) or an ssl.SSLContext: "
                            "grpc.ssl_server_credentials() keeps its keys inside grpcio; call "
                            "gmf.ssl_server_credentials() with the same arguments")
        self.tls = gmf_tls.ServerTls(server_credentials)
        self._address = address
        return parse_address(address)[1]

    def bind(self, address: str) -> int:
        """Reserve ``address`` now (GMF_BIND instead, when set) and return its port, a free one
        for port 0, as grpcio's ``add_insecure_port`` does; ``serve()``/``start()`` then serve
        it. The supervisor's own reservation (held until every worker listens) is this one.
        GMF serves one address: another one is an error. Raises StartupError."""
        address = settings.bind_address() or address
        if self._reserved is not None:
            if self._reserved[0] == address:
                return int(self._reserved[1].getsockname()[1])
            raise ValueError(f"{self._reserved[0]} is bound already and GMF serves one address (not {address}): "
                             "run a second server for another")
        sock = reserve(*parse_address(address))
        self._reserved = (address, sock)
        self._address = address
        return int(sock.getsockname()[1])

    def _reservation(self, address: str) -> socket.socket | None:
        """The socket ``bind`` holds for ``address`` (given away: the supervisor closes it), or
        None; one held for another address is released."""
        reserved, self._reserved = self._reserved, None
        if reserved is None:
            return None
        if reserved[0] == address:
            return reserved[1]
        reserved[1].close()
        return None

    @property
    def registry(self) -> MethodRegistry:
        return self._registry

    def add_drain_callback(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` (sync or async) in every worker when it starts draining, before
        its connections get GOAWAY (health uses it to report NOT_SERVING)."""
        self._on_drain.append(callback)

    # -- running ----------------------------------------------------------------------
    def _supervisor(self, address: str) -> Supervisor:
        host, port, family = parse_address(address)
        try:
            choice = rt.resolve(self.runtime)
        except (ValueError, RuntimeError) as exc:
            raise StartupError(str(exc)) from None
        if self.runtime == "auto" and not os.environ.get(rt.ENV_VAR):
            log.info("runtime: %s (%s)", choice.name, choice.reason)
        if self.tls is not None:  # http/1.1 too when gRPC-Web and Connect are served
            self.tls.offer(gmf_tls.ALPN_WEB if self.options.web else gmf_tls.ALPN)
        config = WorkerConfig(
            host=host,
            port=port,
            family=family,
            registry=self._registry,
            options=self.options,
            runtime=choice,
            on_worker_start=self.on_worker_start,
            on_worker_stop=self.on_worker_stop,
            on_drain=tuple(self._on_drain),
            tls=self.tls,
        )
        return Supervisor(config, list(self.cpu_sets), metrics_address=self.metrics_address)

    def _launch(self, address: str | None, default: str) -> tuple[Supervisor, int]:
        """Apply the GMF_* settings (the one place: gmf.settings.apply), choose the address
        (GMF_BIND, else ``address``, else the one given to add_insecure_port/bind, else
        ``default``), fork the workers and wait until they listen. Raises StartupError."""
        settings.apply(self)
        address = settings.bind_address() or address or self._address or default
        reservation = self._reservation(address)
        try:
            supervisor = self._supervisor(address)
        except BaseException:
            if reservation is not None:
                reservation.close()
            raise
        return supervisor, supervisor.start(reservation)

    def start(self, address: str | None = None) -> ServerHandle:
        """Start the workers and return at once (for tests and embedding). Raises StartupError.
        Address: GMF_BIND, else the argument, else the one given to ``add_insecure_port``,
        else 127.0.0.1:0. Every GMF_* setting applies, as for ``serve()`` and ``gmf serve``."""
        _configure_logging()
        supervisor, port = self._launch(address, "127.0.0.1:0")
        log.info("serving on %s with %d worker(s)", _display(supervisor, port), len(self.cpu_sets))
        return ServerHandle(supervisor, port)

    def serve(self, address: str | None = None) -> None:
        """Serve until SIGINT/SIGTERM, then drain gracefully. A startup failure prints one
        line and exits with status 1. Address: GMF_BIND, else the argument, else the one given
        to ``add_insecure_port``, else 0.0.0.0:50051. Every GMF_* setting applies."""
        _configure_logging()
        stop_signal: list[int] = []
        previous = {
            sig: signal.signal(sig, lambda signum, _frame: stop_signal.append(signum))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            supervisor, port = self._launch(address, "0.0.0.0:50051")
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


# configure(): ServerOptions fields are applied to ``options``; _ATTRIBUTES are set on the
# server; _NUMBERS are checked as (type, minimum), None allowed where the default is None.
_OPTION_FIELDS = frozenset(f.name for f in dataclasses.fields(ServerOptions))
_ATTRIBUTES = frozenset({"runtime", "on_worker_start", "on_worker_stop", "grace", "metrics_port", "metrics_host"})
_KEYWORDS = _OPTION_FIELDS | _ATTRIBUTES | {"workers", "placement", "health", "reflection", "tls"}
_NUMBERS: dict[str, tuple[type, float]] = {
    "workers": (int, 1),
    "max_connections": (int, 1),
    "max_concurrent_streams": (int, 1),
    "max_receive_message_length": (int, 1),
    "max_send_message_length": (int, 1),
    "max_header_list_size": (int, 1),
    "max_unproductive_frames": (int, 1),
    "max_pending_control_frames": (int, 1),
    "keepalive_min_ping_interval": (float, 0),
    "max_ping_strikes": (int, 0),
    "handshake_timeout": (float, 0.001),
    "grace": (float, 0),
    "metrics_port": (int, 0),
    "idle_timeout": (float, 0.001),
    "max_outbound_buffer": (int, 1),
    "outbound_stall_timeout": (float, 0.001),
    "handler_threads": (int, 1),
    "max_concurrent_rpcs": (int, 1),
    "http1_body_timeout": (float, 0.001),
}
_NULLABLE = frozenset({"workers", "max_send_message_length", "metrics_port", "idle_timeout", "max_outbound_buffer",
                       "outbound_stall_timeout", "max_concurrent_rpcs"})


def _check_number(name: str, value: object, kind: type, minimum: float) -> None:
    if value is None and name in _NULLABLE:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ValueError(f"{name} must be {'a number' if kind is float else 'an integer'} (got {value!r})")
    if value < minimum:
        hint = f"; allowed CPUs: {','.join(map(str, allowed_cpus()))}" if name == "workers" else ""
        raise ValueError(f"{name} must be at least {minimum:g} (got {value}){hint}")


def _placement(current: Placement, options: dict[str, Any]) -> Placement:
    """The placement after ``configure(**options)``: ``placement`` replaces the current one
    (None: the default, max_spread), ``workers`` sets its worker count."""
    workers = options.get("workers")
    if "placement" in options:
        placement = options["placement"] or Placement.max_spread(workers)
        if not isinstance(placement, Placement):
            raise ValueError(f"placement must be a Placement (got {placement!r}), e.g. Placement.max_spread()")
        if workers is not None and placement.count not in (None, workers):
            raise ValueError(f"workers={workers} disagrees with {placement}")
    else:
        placement = current
    if workers is None or placement.count == workers:
        return placement
    if placement.kind == "fixed":
        raise ValueError(f"workers={workers} disagrees with {placement}: choose another placement as well")
    return Placement(placement.kind, workers, placement.cpus)


def _display(supervisor: Supervisor, port: int) -> str:
    host = supervisor.config.host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _configure_logging() -> None:
    logs.configure()
