"""``gmf.server(...)``: grpc.server()'s signature, returning an object with grpc.Server's methods,
over a :class:`~gmf.server.GmfServer`. A service written for grpcio changes its import and this
one constructor call (docs/migration.md)::

    server = gmf.server(futures.ThreadPoolExecutor(max_workers=10))   # was grpc.server(...)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("[::]:50051")                     # bound now, as in grpcio
    server.start()
    server.wait_for_termination()

What is not the same, because GMF runs one process per core: the servicers are copied into every
worker when ``start()`` forks them (state in them is per worker), and a thread pool passed in
cannot cross ``fork()``: each worker gets its own pool of that many threads (``max_workers``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import Any

import grpc

from . import channel_args
from . import tls as gmf_tls
from .server import GmfServer, ServerHandle


def gmf_keywords(thread_pool: Executor | None, interceptors: Iterable[Any] | None,
                 options: Iterable[tuple[str, Any]] | None, maximum_concurrent_rpcs: int | None,
                 compression: grpc.Compression | None, grpcio_flavor: str,
                 gmf_options: dict[str, Any]) -> dict[str, Any]:
    """GmfServer keywords for grpc.server()'s / grpc.aio.server()'s arguments (GMF's own win)."""
    keywords: dict[str, Any] = {"grpcio_flavor": grpcio_flavor, **channel_args.gmf_keywords(options)}
    threads = getattr(thread_pool, "_max_workers", None)  # concurrent.futures.ThreadPoolExecutor's size
    if isinstance(threads, int) and threads > 0:
        keywords["handler_threads"] = threads
    if interceptors:
        keywords["interceptors"] = tuple(interceptors)
    if maximum_concurrent_rpcs is not None:
        keywords["max_concurrent_rpcs"] = maximum_concurrent_rpcs
    if compression is not None:
        keywords["compression"] = compression
    return {**keywords, **gmf_options}


class ServerBase:
    """What grpc.Server and grpc.aio.Server have in common: registering handlers and ports."""

    def __init__(self, gmf_server: GmfServer) -> None:
        self.gmf_server = gmf_server  # `gmf serve MODULE:ATTR` accepts this object too
        self._handle: ServerHandle | None = None
        self._stopping = False
        self._terminated = threading.Event()

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.gmf_server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.gmf_server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        """Bind ``address`` now and return the port (the real one for port 0), as grpcio does.
        GMF serves one address per server."""
        self.gmf_server.add_insecure_port(address)
        return self.gmf_server.bind(address)

    def add_secure_port(self, address: str, server_credentials: gmf_tls.ServerCredentials) -> int:
        """TLS on ``address``, with ``gmf.ssl_server_credentials(...)`` (grpc.ssl_server_credentials'
        arguments; grpcio's own credentials object keeps the keys out of reach)."""
        self.gmf_server.add_secure_port(address, server_credentials)
        return self.gmf_server.bind(address)

    @property
    def port(self) -> int | None:
        """The port the workers listen on, once started."""
        return self._handle.port if self._handle is not None else None

    def _start(self) -> None:
        if self._handle is not None or self._terminated.is_set():
            raise RuntimeError("the server was started already (a grpc server starts once)")
        self._handle = self.gmf_server.start()

    def _stop(self, grace: float | None) -> None:
        handle = self._handle
        if handle is not None:
            handle.stop(grace if grace is not None else 0.0)
        self._terminated.set()


class Server(ServerBase):
    """grpc.Server's methods over a GmfServer (made by :func:`server`)."""

    def start(self) -> None:
        """Fork the workers and return once they all listen (raises gmf.StartupError)."""
        self._start()

    def stop(self, grace: float | None) -> threading.Event:
        """Stop taking RPCs now; those in flight get ``grace`` seconds (None: none), then are
        cancelled. Returns at once with an event that is set when every worker has exited."""
        if self._handle is None:
            self._terminated.set()
        elif not self._stopping:
            self._stopping = True
            threading.Thread(target=self._stop, args=(grace,), name="gmf-stop", daemon=True).start()
        return self._terminated

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped or ``timeout`` seconds pass; True if they passed."""
        return not self._terminated.wait(timeout)


def server(thread_pool: Executor | None = None, handlers: Iterable[grpc.GenericRpcHandler] | None = None,
           interceptors: Iterable[Any] | None = None, options: Iterable[tuple[str, Any]] | None = None,
           maximum_concurrent_rpcs: int | None = None, compression: grpc.Compression | None = None,
           xds: bool = False, **gmf_options: Any) -> Server:
    """grpc.server()'s arguments, GMF's server. ``thread_pool``'s ``max_workers`` is the number
    of handler threads of each worker; ``options`` (grpcio channel arguments) with a GMF meaning
    apply (gmf/channel_args.py), the others are ignored as grpcio ignores unknown ones;
    ``maximum_concurrent_rpcs`` applies per worker; ``gmf_options`` are GmfServer keywords
    (``workers=``, ``runtime=``, ...). Exceptions in handlers are reported as grpc.server does."""
    if xds:
        raise ValueError("xds=True: GMF has no xDS support; serve plaintext or TLS")
    gmf_server = GmfServer(**gmf_keywords(thread_pool, interceptors, options, maximum_concurrent_rpcs, compression,
                                          "sync", gmf_options))
    if handlers:
        gmf_server.add_generic_rpc_handlers(handlers)
    return Server(gmf_server)
