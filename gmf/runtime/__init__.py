"""Event-loop runtimes: "uring" (io_uring, our binding gmf/runtime/_uring.c), "uvloop", "asyncio"; selection + fallback.

Every runtime provides an asyncio event loop and serves an ``asyncio.Protocol`` factory on a
listening socket, so the protocol core and the RPC layer are identical on all of them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RUNTIMES = ("uring", "uvloop", "asyncio")
ENV_VAR = "GMF_RUNTIME"


@dataclass(frozen=True)
class RuntimeChoice:
    name: str
    reason: str


def uring_unavailable() -> str | None:
    """None when the io_uring runtime can run here, else why not."""
    try:
        from gmf.runtime import uring
    except ImportError as exc:
        return f"the io_uring runtime cannot be imported ({exc}); reinstall gmf: pip install -e ."
    return uring.probe()


def _uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(requested: str = "auto") -> RuntimeChoice:
    """Pick the runtime: ``GMF_RUNTIME`` overrides ``requested``; "auto" prefers uring,
    then uvloop, then asyncio. Asking explicitly for one that cannot run is an error."""
    env = os.environ.get(ENV_VAR)
    source = "requested"
    if env:
        requested, source = env.strip().lower(), f"set by {ENV_VAR}"
    if requested not in (*RUNTIMES, "auto"):
        raise ValueError(f"unknown runtime {requested!r}: choose one of auto, {', '.join(RUNTIMES)}")
    if requested == "uring":
        why = uring_unavailable()
        if why:
            raise RuntimeError(f"runtime 'uring' {source} but {why}")
        return RuntimeChoice("uring", f"{source}; io_uring available")
    if requested == "uvloop":
        if not _uvloop_available():
            raise RuntimeError(f"runtime 'uvloop' {source} but uvloop is not installed: pip install 'gmf[uvloop]'")
        return RuntimeChoice("uvloop", source)
    if requested == "asyncio":
        return RuntimeChoice("asyncio", source)
    why = uring_unavailable()
    if why is None:
        return RuntimeChoice("uring", "io_uring available")
    if _uvloop_available():
        return RuntimeChoice("uvloop", f"io_uring unavailable: {why}")
    return RuntimeChoice("asyncio", f"io_uring unavailable: {why}; uvloop not installed")


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uring":
        from gmf.runtime import uring

        return uring.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def start_server(
    loop: asyncio.AbstractEventLoop, name: str, protocol_factory: Callable[[], asyncio.BaseProtocol], sock: socket.socket
) -> Any:
    """Serve ``protocol_factory`` on the bound, listening ``sock``; returns an object with
    ``close()`` and ``wait_closed()``."""
    if name == "uring":
        return await loop.uring_start_server(protocol_factory, sock)  # type: ignore[attr-defined]
    return await loop.create_server(protocol_factory, sock=sock)


def adopt(loop: asyncio.AbstractEventLoop, name: str, server: Any,
          protocol_factory: Callable[[], asyncio.BaseProtocol], fd: int, failed: Callable[[], None]) -> None:
    """Serve the connected socket ``fd`` (accepted by another worker) with ``protocol_factory``,
    as ``server`` (made by start_server) serves what it accepts; ``failed()`` when it cannot
    (later, on asyncio and uvloop; raised here on io_uring)."""
    if name == "uring":
        server.adopt(fd, protocol_factory)
        return
    sock = socket.socket(fileno=fd)

    async def connect() -> None:
        try:
            await loop.connect_accepted_socket(protocol_factory, sock)
        except Exception:
            sock.close()
            failed()
            logging.getLogger("gmf").exception("could not serve a connection passed from another worker")

    loop.create_task(connect())
