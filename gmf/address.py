"""Addresses and listening sockets: ``HOST:PORT`` parsed, a port reserved before the workers
exist, and each worker's ``SO_REUSEPORT`` listener."""

from __future__ import annotations

import errno
import socket

from .errors import StartupError


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


def bind_listener(host: str, port: int, family: int, backlog: int | None) -> socket.socket:
    """A non-blocking TCP socket bound with SO_REUSEPORT (listening when ``backlog`` is set)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve(host: str, port: int, family: int) -> socket.socket:
    """Hold ``host:port`` (port 0: a free one, see ``getsockname()``) until the workers bind their
    own listeners to it: bound with SO_REUSEPORT, not listening. It fails early and clearly when
    the address is unusable: a probe binds first *without* SO_REUSEPORT, so a port held by
    another server (even another GMF) is reported busy. Raises StartupError."""
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = int(probe.getsockname()[1])
    except OSError as exc:
        raise StartupError(_bind_error(host, port, exc)) from None
    finally:
        probe.close()
    try:
        return bind_listener(host, port, family, backlog=None)
    except OSError as exc:
        raise StartupError(_bind_error(host, port, exc)) from None


def _bind_error(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: address already in use (another server is running there: stop it or choose another port)"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
        return f"{where}: {exc.strerror} (use an address of this machine, e.g. 0.0.0.0)"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need root)"
    return f"{where}: {exc}"
