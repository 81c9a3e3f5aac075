"""Ports for test servers and peers: a free one, and waiting until something listens."""

from __future__ import annotations

import socket
from pathlib import Path

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


def socket_held(local_port: int, remote_port: int) -> bool:
    """True while a process still has the TCP socket local_port <-> remote_port open (an entry
    of /proc/net/tcp{,6} with an inode; a closed or orphaned socket has none)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == local_port and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                if inode != "0":
                    return True
    return False
