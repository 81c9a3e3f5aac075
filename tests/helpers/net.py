"""Ports for test servers and peers: a free one, and waiting until something listens."""

from __future__ import annotations

import socket

from tests.helpers import poll


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Return once something accepts connections on ``host:port``; AssertionError after ``timeout``."""
    poll.until(lambda: port_open(port, host), f"something to listen on {host}:{port}", timeout, interval=0.05)
