"""``gmf.aio.server(...)``: grpc.aio.server()'s signature, returning an object with
grpc.aio.Server's methods (``await start()``, ``await stop(grace)``,
``await wait_for_termination()``) over a :class:`~gmf.server.GmfServer`. A grpc.aio service
changes its import and this one constructor call (docs/migration.md).

The workers are forked by ``await server.start()``: do it before opening grpcio channels in this
process (forking beside C-core threads is unsafe), and know that the servicers are copied into
every worker (state in them is per worker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import Any

import grpc

from .grpc_server import ServerBase, gmf_keywords
from .server import GmfServer

__all__ = ["Server", "server"]

_POLL = 0.05  # seconds between looks at the stopped event (cancellable, unlike a thread blocked on it)


class Server(ServerBase):
    """grpc.aio.Server's methods over a GmfServer (made by :func:`server`)."""

    async def start(self) -> None:
        """Fork the workers (from a thread: the loop keeps running) and return once they listen."""
        await asyncio.to_thread(self._start)

    async def stop(self, grace: float | None) -> None:
        """Stop taking RPCs; those in flight get ``grace`` seconds (None: none). Returns when every
        worker has exited."""
        if not self._stopping:
            self._stopping = True
            await asyncio.to_thread(self._stop, grace)
        await self.wait_for_termination()

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Until the server has stopped or ``timeout`` seconds pass; True if they passed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._terminated.is_set():
            if deadline is not None and loop.time() >= deadline:
                return True
            await asyncio.sleep(_POLL if deadline is None else min(_POLL, max(0.0, deadline - loop.time())))
        return False


def server(migration_thread_pool: Executor | None = None, handlers: Iterable[grpc.GenericRpcHandler] | None = None,
           interceptors: Iterable[Any] | None = None, options: Iterable[tuple[str, Any]] | None = None,
           maximum_concurrent_rpcs: int | None = None, compression: grpc.Compression | None = None,
           **gmf_options: Any) -> Server:
    """grpc.aio.server()'s arguments, GMF's server: as :func:`gmf.server` (``migration_thread_pool``
    sizes each worker's threads for plain-def handlers); exceptions in handlers are reported as
    grpc.aio does."""
    gmf_server = GmfServer(**gmf_keywords(migration_thread_pool, interceptors, options, maximum_concurrent_rpcs,
                                          compression, "aio", gmf_options))
    if handlers:
        gmf_server.add_generic_rpc_handlers(handlers)
    return Server(gmf_server)
