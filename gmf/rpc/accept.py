"""Accepting a connection: what protocol object a socket the runtime accepted gets.

:class:`Acceptor` is the protocol factory a worker hands its runtime. For each new connection,
in this order:

1. over ``max_connections`` (open connections plus TLS handshakes in progress) it is refused:
   counted, logged at most once a second, closed before any handshake;
2. with TLS it is wrapped in :class:`TlsProtocol` (asyncio's own ``SSLProtocol``, the code
   behind ``loop.create_server(ssl=...)``, so every runtime shares one TLS path and the
   plaintext path has no TLS check at all); a handshake counts against ``max_connections``
   and is cut after ``handshake_timeout``;
3. :meth:`Acceptor.application` makes the protocol that serves it: today always
   :class:`~gmf.rpc.connection.GrpcConnection` (gRPC over HTTP/2). It is the one place to
   choose another, by the ALPN protocol TLS negotiated or by a plaintext connection's first
   bytes (the HTTP/2 preface or an HTTP/1.1 request line).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from asyncio import sslproto
from typing import cast

from ..tls import ServerTls
from .connection import GrpcConnection
from .server_state import ServerState

log = logging.getLogger("gmf")


class Acceptor:
    """The protocol factory of one worker (see the module docstring)."""

    def __init__(self, state: ServerState, tls: ServerTls | None = None) -> None:
        self.state = state
        self.tls = tls
        self.handshaking = 0  # TLS connections still in their handshake
        self._last_refusal_log = 0.0
        if tls is not None:
            # One receive buffer per worker for all TLS connections (see TlsProtocol).
            self._read_buffer = bytearray(TlsProtocol.max_size)
            tls.start_reloading(state.loop)

    def __call__(self) -> asyncio.BaseProtocol:
        state = self.state
        if len(state.connections) + self.handshaking >= state.options.max_connections:
            return _Refused(self)
        app = self.application()
        if self.tls is None:
            return app
        return TlsProtocol(self, app, self.tls.context, self._read_buffer)

    def application(self) -> asyncio.Protocol:
        """The protocol that serves an accepted connection (behind TLS when there is TLS)."""
        return GrpcConnection(self.state)

    def refused(self) -> None:
        metrics = self.state.metrics
        metrics.refused += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= 1.0:
            self._last_refusal_log = now
            log.warning(
                "max_connections=%d reached: refusing new connections (%d refused so far)",
                self.state.options.max_connections,
                metrics.refused,
            )


class _Refused(asyncio.Protocol):
    """Protocol for a connection over the limit: counted, logged (rate-limited), closed."""

    def __init__(self, acceptor: Acceptor) -> None:
        self._acceptor = acceptor

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._acceptor.refused()
        cast(asyncio.Transport, transport).abort()


# Python 3.11 rewrote SSLProtocol as a BufferedProtocol (3.10's is a plain Protocol, with no
# shutdown timeout and no per-connection receive buffer).
_BUFFERED = issubclass(sslproto.SSLProtocol, asyncio.BufferedProtocol)


class TlsProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol for one accepted connection, counted while it handshakes.

    From 3.11 asyncio gives every connection its own 256 KiB receive buffer (2.5 GiB for 10,000
    connections). The transport fills it and ``buffer_updated`` copies it into the TLS input
    BIO in the same call, so one buffer per worker (``read_buffer``) serves them all.
    """

    max_size = 64 * 1024  # bytes per read from the socket

    def __init__(self, acceptor: Acceptor, app_protocol: asyncio.BaseProtocol, ctx: ssl.SSLContext,
                 read_buffer: bytearray) -> None:
        state = acceptor.state
        timeout = state.options.handshake_timeout
        extra = {"ssl_shutdown_timeout": timeout} if _BUFFERED else {}
        super().__init__(state.loop, app_protocol, ctx, None, server_side=True,  # type: ignore[arg-type]
                         ssl_handshake_timeout=timeout, **extra)  # type: ignore[arg-type]
        if _BUFFERED:
            self._ssl_buffer = read_buffer
            self._ssl_buffer_view = memoryview(read_buffer)
        self._gmf_acceptor: Acceptor | None = acceptor
        acceptor.handshaking += 1

    def _handshake_over(self) -> None:
        if self._gmf_acceptor is not None:
            self._gmf_acceptor.handshaking -= 1
            self._gmf_acceptor = None

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        self._handshake_over()
        super()._on_handshake_complete(handshake_exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._handshake_over()
        super().connection_lost(exc)

    if _BUFFERED:
        def data_received(self, data: bytes) -> None:
            """For transports that deliver bytes (GMF's io_uring transport) rather than filling
            ``get_buffer()`` themselves, as asyncio's and uvloop's do."""
            view = memoryview(data)
            while view:
                buf = self.get_buffer(len(view))
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                self.buffer_updated(n)
                view = view[n:]
