"""Serving a listening socket through io_uring: multishot ``accept``, each accepted socket
handed to a new :class:`~gmf.runtime.uring_transport.UringTransport` and its protocol."""

from __future__ import annotations

import asyncio
import errno
import socket
from asyncio import trsock
from collections.abc import Callable

from .uring_ring import F_MORE, K_ACCEPT, os_error
from .uring_selector import UringSelector
from .uring_transport import UringTransport

_ACCEPT_RETRY_DELAY = 1.0
_ECANCELED = errno.ECANCELED


class UringServer(asyncio.AbstractServer):
    """Accepts connections on a listening socket through io_uring (multishot accept)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, selector: UringSelector, sock: socket.socket,
                 protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._loop = loop
        self._selector = selector
        self._ring = selector.ring
        self._sock: socket.socket | None = sock
        self._family = sock.family
        self._factory = protocol_factory
        self._user_data = self._ring.new_token() | K_ACCEPT
        self._multishot = True
        self._accept_armed = False
        self._serving = False
        self._connections: set[UringTransport] = set()
        self._closed_future: asyncio.Future[None] = loop.create_future()
        self._retry_handle: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<UringServer sock={self._sock!r} serving={self._serving}>"

    # -- AbstractServer API
    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[trsock.TransportSocket, ...]:
        return () if self._sock is None else (trsock.TransportSocket(self._sock),)

    def close(self) -> None:
        if self._sock is None:
            return
        self._serving = False
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        if self._accept_armed:
            self._ring.cancel(self._user_data)
        else:
            self._finish_close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed_future)

    async def start_serving(self) -> None:
        if not self._serving and self._sock is not None:
            self._serving = True
            self._selector.servers.add(self)
            self._ring.handlers[self._user_data] = self._on_accept
            self._arm_accept()

    async def serve_forever(self) -> None:
        await self.start_serving()
        await self.wait_closed()

    async def __aenter__(self) -> UringServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    # -- internals
    def _arm_accept(self) -> None:
        assert self._sock is not None
        flags = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        self._ring.ring.prep_accept(self._sock.fileno(), flags, self._multishot, self._user_data)
        self._accept_armed = True

    def _on_accept(self, res: int, flags: int) -> None:
        more = bool(flags & F_MORE)
        if not more:
            self._accept_armed = False
        if res >= 0:
            if self._serving:
                self._new_connection(res)
            else:
                self._ring.close_fd(res)
        elif res == -errno.EINVAL and self._multishot and self._serving:
            self._multishot = False  # kernel without multishot accept (< 5.19)
        elif res not in (-_ECANCELED, -errno.EAGAIN, -errno.EINTR, -errno.ECONNABORTED) and self._serving:
            self._accept_error(res)
            return
        if not self._accept_armed:
            if self._serving:
                self._arm_accept()
            else:
                self._finish_close()

    def _accept_error(self, res: int) -> None:
        exc = os_error(-res)
        self._loop.call_exception_handler({
            "message": "socket.accept() out of system resource", "exception": exc,
            "socket": self.sockets[0] if self.sockets else None,
        })
        if self._accept_armed:
            self._ring.cancel(self._user_data)  # pause accepting for a moment, like asyncio
        self._retry_handle = self._loop.call_later(_ACCEPT_RETRY_DELAY, self._retry_accept)

    def _retry_accept(self) -> None:
        self._retry_handle = None
        if self._serving and not self._accept_armed:
            self._arm_accept()

    def adopt(self, fd: int, protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        """Serve a connected socket accepted elsewhere (another worker passed it here)."""
        self._new_connection(fd, protocol_factory)

    def _new_connection(self, fd: int, factory: Callable[[], asyncio.BaseProtocol] | None = None) -> None:
        try:
            protocol = (factory or self._factory)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._ring.close_fd(fd)
            self._loop.call_exception_handler({"message": "protocol_factory() failed", "exception": exc})
            return
        transport = UringTransport(self._loop, self._selector, fd, self._family, protocol, self)
        self._connections.add(transport)
        try:
            protocol.connection_made(transport)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            transport._fatal_error(exc, "Fatal error: protocol.connection_made() call failed.")
            return
        if not transport._closing and not transport._paused:
            transport._arm_recv()

    def _detach(self, transport: UringTransport) -> None:
        self._connections.discard(transport)

    def _finish_close(self) -> None:
        sock, self._sock = self._sock, None
        self._ring.handlers.pop(self._user_data, None)
        self._selector.servers.discard(self)
        if sock is not None:
            sock.close()
        if not self._closed_future.done():
            try:
                self._closed_future.set_result(None)
            except RuntimeError:  # the loop is already closed; nobody can await us
                pass

    def _on_loop_close(self) -> None:
        self._serving = False
        self._accept_armed = False
        self._finish_close()
