"""The transport of a TCP connection accepted by :class:`~gmf.runtime.uring_server.UringServer`:
completion-based I/O through the ring, never readiness.

One ``recv`` is armed per connection into a per-connection buffer (1 KiB, doubling up to
256 KiB while reads fill it and halving after a run of small reads, so idle connections stay
cheap); everything written during one loop iteration goes out as **one** ``send``
(``MSG_WAITALL``, so partial sends are rare and handled), unless the protocol asks for it
to leave at once (:meth:`UringTransport.send_now`: the same ``send``, submitted without
waiting for the iteration's end); at most one send per connection is in flight, so bytes
leave in order; ``close`` goes through the ring after the pending sends have flushed.

Lifetime: the kernel writes into a receive buffer and reads a send buffer until the
operation's final CQE. A transport therefore stays registered with the ring (which keeps it,
and its buffers, alive) until every operation it started has completed, even after the
protocol has seen ``connection_lost``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from asyncio import trsock
from collections.abc import Iterable
from typing import Any, Protocol

from .uring_ring import K_CLOSE, K_RECV, K_SEND, K_SHUTDOWN, os_error
from .uring_selector import UringSelector

# Per-connection receive buffer: starts small (an idle connection costs little; 10,000 idle
# connections must fit in a few hundred MB), doubles while reads fill it, and halves again
# after a run of reads that use less than an eighth of it.
_RECV_SIZE = 1024
_RECV_SIZE_MAX = 256 * 1024
_SHRINK_AFTER = 16
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_SEND_FLAGS = socket.MSG_WAITALL | getattr(socket, "MSG_NOSIGNAL", 0)
_ECANCELED = errno.ECANCELED



class _Server(Protocol):
    """What a transport tells the server that accepted it (``UringServer``)."""

    def _detach(self, transport: UringTransport) -> None: ...


class UringTransport(asyncio.Transport):
    """A TCP connection accepted by :class:`UringServer`; all its I/O goes through the ring."""

    __slots__ = (
        "_loop", "_ring", "_fd", "_family", "_protocol", "_server", "_token",
        "_rbuf", "_rview", "_small_reads", "_recv_armed", "_paused", "_held", "_held_eof",
        "_wbuf", "_wsize", "_sending", "_flush_queued", "_eof_requested", "_eof_sent",
        "_closing", "_closed", "_inflight_close", "_conn_lost_called", "_sock",
        "_protocol_paused", "_high_water", "_low_water", "_selector", "_info",
        "_lring", "_ud_recv", "_ud_send", "_close_submitted",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, selector: UringSelector, fd: int, family: int,
                 protocol: asyncio.BaseProtocol, server: _Server | None) -> None:
        super().__init__(None)
        self._info: dict[str, Any] = {}
        self._loop = loop
        self._selector = selector
        self._ring = selector.ring
        self._fd = fd
        self._family = family
        self._protocol: Any = protocol
        self._server = server
        self._lring = self._ring.ring
        self._token = self._ring.new_token()
        self._ud_recv = self._token | K_RECV
        self._ud_send = self._token | K_SEND
        self._rbuf = bytearray(_RECV_SIZE)
        self._rview = memoryview(self._rbuf)
        self._small_reads = 0
        self._recv_armed = False
        self._paused = False
        self._held: list[bytes] = []
        self._held_eof = False
        self._wbuf: list[bytes] = []
        self._wsize = 0
        self._sending: bytes | None = None
        self._flush_queued = False
        self._eof_requested = False
        self._eof_sent = False
        self._closing = False
        self._closed = False
        self._inflight_close = False
        self._close_submitted = False
        self._conn_lost_called = False
        self._sock: socket.socket | None = None
        self._protocol_paused = False
        self._high_water = _HIGH_WATER
        self._low_water = _LOW_WATER
        handlers = self._ring.handlers
        token = self._token
        handlers[token | K_RECV] = self._on_recv
        handlers[token | K_SEND] = self._on_send
        handlers[token | K_CLOSE] = self._on_close_done
        handlers[token | K_SHUTDOWN] = self._on_shutdown_done
        selector.transports.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return f"<UringTransport fd={self._fd} {state}>"

    # -- asyncio.BaseTransport
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = self._info
        if name in info:
            return info[name]
        if name not in ("socket", "peername", "sockname") or self._closed:
            return default
        sock = self._socket()
        try:
            value: Any = (trsock.TransportSocket(sock) if name == "socket"
                          else sock.getpeername() if name == "peername" else sock.getsockname())
        except OSError:
            return default
        info[name] = value
        return value

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(self._family, socket.SOCK_STREAM, 0, fileno=self._fd)
        return self._sock

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._cancel_recv()
        if self._sending is None and not self._wbuf:
            self._close_fd(None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    # -- asyncio.ReadTransport
    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._cancel_recv()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if self._held or self._held_eof:
            self._loop.call_soon(self._deliver_held)
        elif not self._recv_armed:
            self._arm_recv()

    # -- asyncio.WriteTransport
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = _HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def get_write_buffer_size(self) -> int:
        return self._wsize

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_requested:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._closing:
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._wbuf.append(data)
        self._wsize += len(data)
        if not self._flush_queued and self._sending is None:
            self._flush_queued = True
            self._ring.flush_queue.append(self)
        if self._wsize > self._high_water:
            self._maybe_pause_protocol()

    def send_now(self) -> None:
        """Hand what is queued to the kernel now instead of at the loop's next submit: its
        ``send`` SQE, submitted at once (one ``io_uring_enter`` that does not wait), when no
        send of this connection is in flight; otherwise it leaves, in order, after that one
        completes, as it would have. A protocol with more to do before it returns to the loop
        (a large read's remaining requests) calls it so that a single busy peer gets its first
        answers, and sends more requests, while the rest is served."""
        if self._sending is None and self._wbuf and not self._closed:
            self._flush()
            self._ring.submit()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        if self._closing or self._eof_requested:
            return
        self._eof_requested = True
        if self._sending is None and not self._wbuf:
            self._shutdown_write()

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        self._force_close(None)

    # -- receive side
    def _arm_recv(self) -> None:
        self._lring.prep_recv(self._fd, self._rbuf, 0, self._ud_recv)
        self._recv_armed = True

    def _cancel_recv(self) -> None:
        if self._recv_armed:
            self._ring.cancel(self._ud_recv)

    def _on_recv(self, res: int, flags: int) -> None:
        self._recv_armed = False
        if res <= 0 or self._closing or self._paused:
            self._on_recv_other(res)
            return
        # Hot path: deliver the bytes and re-arm the receive into the same buffer.
        data = bytes(self._rview[:res])
        size = len(self._rbuf)
        if res == size:
            if size < _RECV_SIZE_MAX:
                self._resize_rbuf(2 * size)
            self._small_reads = 0
        elif size > _RECV_SIZE and res < size >> 3:
            self._small_reads += 1
            if self._small_reads >= _SHRINK_AFTER:
                self._resize_rbuf(size >> 1)
        else:
            self._small_reads = 0
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
            return
        if not (self._closing or self._paused or self._recv_armed):
            self._lring.prep_recv(self._fd, self._rbuf, 0, self._ud_recv)
            self._recv_armed = True

    def _resize_rbuf(self, size: int) -> None:
        """Use a buffer of ``size`` bytes from the next read on (no read is in flight now)."""
        self._rbuf = bytearray(size)
        self._rview = memoryview(self._rbuf)
        self._small_reads = 0

    def _on_recv_other(self, res: int) -> None:
        """A receive completed while closing or paused, or with EOF, cancellation or an error."""
        if self._closing:
            self._maybe_release()
        elif res > 0:  # paused: keep the data for resume_reading()
            self._held.append(bytes(self._rview[:res]))
        elif res == 0:
            if self._paused:
                self._held_eof = True
            else:
                self._eof_received()
        elif res == -_ECANCELED:
            if not self._paused:
                self._arm_recv()
        else:
            self._force_close(os_error(-res))

    def _eof_received(self) -> None:
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    def _deliver_held(self) -> None:
        while self._held and not self._paused and not self._closing:
            self._data_received_no_rearm(self._held.pop(0))
        if self._paused or self._closing:
            return
        if self._held_eof:
            self._held_eof = False
            self._eof_received()
        elif not self._recv_armed:
            self._arm_recv()

    def _data_received_no_rearm(self, data: bytes) -> None:
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    # -- send side
    def _flush(self) -> None:
        """Send everything written since the last flush as one SQE (called by select())."""
        self._flush_queued = False
        if self._sending is not None or self._closed:
            return
        wbuf = self._wbuf
        if not wbuf:
            return
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        wbuf.clear()
        self._sending = data
        self._lring.prep_send(self._fd, data, _SEND_FLAGS, self._ud_send)

    def _on_send(self, res: int, flags: int) -> None:
        data = self._sending
        self._sending = None
        if self._closed:
            self._maybe_release()
            return
        if res < 0:
            self._force_close(os_error(-res))
            return
        assert data is not None
        if res < len(data):
            self._wbuf.insert(0, data[res:])
        self._wsize -= res
        if self._protocol_paused and self._wsize <= self._low_water:
            self._resume_protocol()
        if self._wbuf:
            if not self._flush_queued:
                self._flush_queued = True
                self._ring.flush_queue.append(self)
        elif self._closing:
            self._close_fd(None)
        elif self._eof_requested and not self._eof_sent:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        self._eof_sent = True
        self._lring.prep_shutdown(self._fd, socket.SHUT_WR, self._token | K_SHUTDOWN)

    def _on_shutdown_done(self, res: int, flags: int) -> None:
        if self._closed:
            self._maybe_release()

    def _maybe_pause_protocol(self) -> None:
        if self._wsize <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        self._call_flow_control("pause_writing")

    def _resume_protocol(self) -> None:
        self._protocol_paused = False
        self._call_flow_control("resume_writing")

    def _call_flow_control(self, name: str) -> None:
        method = getattr(self._protocol, name, None)
        if method is None:
            return
        try:
            method()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"protocol.{name}() failed",
                "exception": exc, "transport": self, "protocol": self._protocol,
            })

    # -- closing
    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler({
                "message": message, "exception": exc, "transport": self, "protocol": self._protocol,
            })
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closing = True
        self._wbuf.clear()
        if self._wsize and self._protocol_paused:
            self._protocol_paused = False
        self._wsize = 0
        self._cancel_recv()
        if self._sending is not None:
            self._ring.cancel(self._ud_send)
        self._close_fd(exc)

    def _close_fd(self, exc: BaseException | None) -> None:
        """Close the socket through the ring and schedule protocol.connection_lost(exc)."""
        self._closing = True
        self._closed = True
        if self._sock is not None:
            self._sock.detach()
        self._lring.prep_close(self._fd, 0, self._token | K_CLOSE)
        self._inflight_close = self._close_submitted = True
        if self._server is not None:
            self._server._detach(self)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _on_close_done(self, res: int, flags: int) -> None:
        self._inflight_close = False
        self._maybe_release()

    def _maybe_release(self) -> None:
        """Forget this transport once the kernel no longer uses its buffers."""
        if self._closed and not self._recv_armed and self._sending is None and not self._inflight_close:
            handlers = self._ring.handlers
            token = self._token
            for kind in (K_RECV, K_SEND, K_CLOSE, K_SHUTDOWN):
                handlers.pop(token | kind, None)
            self._selector.transports.discard(self)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._conn_lost_called:
            return
        self._conn_lost_called = True
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._protocol = None
            self._loop = None  # type: ignore[assignment]

    def _abandon(self) -> None:
        """The loop is closing: cancel in-flight operations without calling the protocol."""
        if self._closed:
            return
        self._closing = self._closed = True
        self._cancel_recv()
        if self._sending is not None:
            self._ring.cancel(self._ud_send)
        if self._sock is not None:
            self._sock.detach()
        self._maybe_release()

    def _close_fd_directly(self) -> None:
        """After the ring is gone: close the fd unless a ring close was already submitted."""
        if self._fd >= 0 and not self._close_submitted:
            self._close_submitted = True
            try:
                os.close(self._fd)
            except OSError:
                pass
