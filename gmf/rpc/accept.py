"""Accepting a connection: what protocol object a socket the runtime accepted gets.

:class:`Acceptor` is the protocol factory a worker hands its runtime. For each new connection,
in this order:

1. over ``max_connections`` (open connections plus TLS handshakes in progress) it is refused:
   counted, logged at most once a second, closed before any handshake;
2. with TLS it is wrapped in :class:`TlsProtocol` (asyncio's own ``SSLProtocol``, the code
   behind ``loop.create_server(ssl=...)``, so every runtime shares one TLS path and the
   plaintext path has no TLS check at all); a handshake counts against ``max_connections``
   and is cut after ``handshake_timeout``;
3. :meth:`Acceptor.application` makes the protocol that serves it, the one place that
   chooses: with the web protocols off, :class:`~gmf.rpc.connection.GrpcConnection` (HTTP/2);
   with them on, :class:`ChooseProtocol`, which hands the connection to ``GrpcConnection`` or
   to :class:`~gmf.rpc.http1.Http1Connection` (gRPC-Web and Connect over HTTP/1.1) by the ALPN
   protocol TLS negotiated (``h2`` / ``http/1.1``) or, without one, by the first bytes: the
   HTTP/2 preface, or an HTTP/1.x request (a method name: an upper-case letter first).
   Anything else goes to HTTP/2, which answers garbage with GOAWAY as it always did.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from asyncio import sslproto
from typing import cast

from ..balance import WorkerBalance
from ..tls import ServerTls
from .connection import GrpcConnection
from .http1 import Http1Connection
from .server_state import ServerState

log = logging.getLogger("gmf")


class Acceptor:
    """The protocol factory of one worker (see the module docstring)."""

    def __init__(self, state: ServerState, tls: ServerTls | None = None, balance: WorkerBalance | None = None) -> None:
        self.state = state
        self.tls = tls
        self.balance = balance
        if balance is not None:
            state.connections_changed = self.publish_load
        self.handshaking = 0  # TLS connections still in their handshake
        self._last_refusal_log = 0.0
        if tls is not None:
            # One receive buffer per worker for all TLS connections (see TlsProtocol).
            self._read_buffer = bytearray(TlsProtocol.max_size)
            tls.start_reloading(state.loop)

    def __call__(self) -> asyncio.BaseProtocol:
        return self.here() if self.balance is None else Placing(self, may_pass=True)

    def passed(self) -> asyncio.BaseProtocol:
        """The protocol factory for a connection another worker passed here."""
        return Placing(self, may_pass=False)

    def here(self) -> asyncio.BaseProtocol:
        """The protocol for a connection this worker serves."""
        state = self.state
        if self.balance is not None:
            self.balance.publish(self.load() + 1)
        if len(state.connections) + self.handshaking >= state.options.max_connections:
            return _Refused(self)
        app = self.application()
        if self.tls is None:
            return app
        return TlsProtocol(self, app, self.tls.context, self._read_buffer)

    def load(self) -> int:
        """Connections this worker serves: open ones and TLS handshakes."""
        return len(self.state.connections) + self.handshaking

    def publish_load(self) -> None:
        if self.balance is not None:
            self.balance.publish(self.load())

    def application(self) -> asyncio.Protocol:
        """The protocol that serves an accepted connection (behind TLS when there is TLS)."""
        if self.state.web is None:
            return GrpcConnection(self.state)
        return ChooseProtocol(self.state)

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


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ChooseProtocol(asyncio.Protocol):
    """A connection whose protocol is not known yet (see the module docstring): it counts as
    an open connection (``max_connections``, drain) and has ``handshake_timeout`` to choose."""

    calls: tuple[()] = ()  # no RPC before the choice (OpenConnection)

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.state.connections.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2":
            self._become(GrpcConnection(self.state))
        elif alpn == "http/1.1":
            self._become(self._http1())
        else:
            self._timer = self.state.loop.call_later(self.state.options.handshake_timeout, self._expired)
            if self.state.draining:
                self.close()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        n = min(len(buffer), len(_PREFACE))
        if buffer[:n] == _PREFACE[:n]:
            if n < len(_PREFACE):
                self._buffer = buffer  # a prefix of the preface: wait for the rest
                return
            protocol: asyncio.Protocol = GrpcConnection(self.state)
        elif 0x41 <= buffer[0] <= 0x5A:  # A-Z: an HTTP/1.x request method
            protocol = self._http1()
        else:
            protocol = GrpcConnection(self.state)
        self._buffer = b""
        self._become(protocol, buffer)

    def _http1(self) -> asyncio.Protocol:
        assert self.state.web is not None
        return Http1Connection(self.state, self.state.web)

    def _become(self, protocol: asyncio.Protocol, data: bytes = b"") -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        assert transport is not None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        self.state.connections.discard(self)  # after: a drain never sees this connection gone
        self.transport = None
        if data:
            protocol.data_received(data)

    def _expired(self) -> None:
        self._timer = None
        log.info("closing connection: no request within %.1fs", self.state.options.handshake_timeout)
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        self.state.connection_closed(self)

    # OpenConnection: nothing is in progress, so stopping is closing
    def start_shutdown(self) -> None:
        self.close()

    def cancel_all(self) -> None:
        pass

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Placing(asyncio.Protocol):
    """A new connection when workers balance (gmf.balance): in ``connection_made`` (when this
    worker's count includes every connection made before it, on every runtime) it is passed to
    a worker that serves fewer (its socket sent there before any byte is read, then closed
    here; the other copy keeps the connection open) or else served here."""

    def __init__(self, acceptor: Acceptor, may_pass: bool) -> None:
        self._acceptor = acceptor
        self._may_pass = may_pass  # False: another worker passed it here; it stays

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        acceptor = self._acceptor
        balance = acceptor.balance
        assert balance is not None
        if self._may_pass:
            target = balance.target(acceptor.load())
            sock = transport.get_extra_info("socket") if target >= 0 else None
            if sock is not None and balance.pass_on(sock.fileno(), target):
                cast(asyncio.Transport, transport).abort()  # only a close(): no FIN, no RST
                return
        else:
            balance.taken()  # counted below, in the same callback
        protocol = acceptor.here()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


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
