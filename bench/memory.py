"""Idle-connection memory: hold N idle HTTP/2 connections to one server, read its RSS.

Each client connection sends the HTTP/2 preface and an empty SETTINGS frame, acknowledges
the server's SETTINGS, answers PINGs, and then stays idle.  The figure reported is the
serving process's VmRSS (for GMF: the worker, i.e. the child of the server process).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = struct.Struct(">HBBBI")  # 24-bit length split as (hi16, lo8), type, flags, stream id
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1


def frame(frame_type: int, flags: int = 0, stream_id: int = 0, payload: bytes = b"") -> bytes:
    length = len(payload)
    return FRAME_HEADER.pack(length >> 8, length & 0xFF, frame_type, flags, stream_id) + payload


CLIENT_HELLO = PREFACE + frame(SETTINGS)
SETTINGS_ACK = frame(SETTINGS, ACK)


class IdleClient(asyncio.Protocol):
    """One idle HTTP/2 client connection (just enough protocol to stay legitimately open)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.settings_seen = asyncio.get_running_loop().create_future()
        self.closed = False
        self.goaway = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(CLIENT_HELLO)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 9:
            hi, lo, frame_type, flags, _stream = FRAME_HEADER.unpack_from(self.buffer)
            length = (hi << 8) | lo
            if len(self.buffer) < 9 + length:
                return
            payload = bytes(self.buffer[9 : 9 + length])
            del self.buffer[: 9 + length]
            self.on_frame(frame_type, flags, payload)

    def on_frame(self, frame_type: int, flags: int, payload: bytes) -> None:
        assert self.transport is not None
        if frame_type == SETTINGS and not flags & ACK:
            self.transport.write(SETTINGS_ACK)
            if not self.settings_seen.done():
                self.settings_seen.set_result(True)
        elif frame_type == PING and not flags & ACK:
            self.transport.write(frame(PING, ACK, 0, payload))
        elif frame_type == GOAWAY:
            self.goaway = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.settings_seen.done():
            self.settings_seen.set_result(False)


@dataclass
class IdleResult:
    requested: int
    opened: int = 0  # TCP connected and the server's SETTINGS arrived
    held: int = 0  # still open (no close, no GOAWAY) after the settle time
    failed: int = 0
    open_seconds: float = 0.0
    rss_before_kib: int | None = None
    rss_after_kib: int | None = None

    @property
    def rss_after_mib(self) -> float | None:
        return None if self.rss_after_kib is None else self.rss_after_kib / 1024

    @property
    def per_connection_kib(self) -> float | None:
        if self.rss_after_kib is None or self.rss_before_kib is None or not self.held:
            return None
        return (self.rss_after_kib - self.rss_before_kib) / self.held

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rss_after_mib"] = self.rss_after_mib
        data["per_connection_kib"] = self.per_connection_kib
        return data


async def hold_idle(
    port: int,
    count: int,
    measure: Callable[[], int | None],
    host: str = "127.0.0.1",
    concurrency: int = 200,
    settle_s: float = 2.0,
    connect_timeout: float = 20.0,
    progress: Callable[[str], None] | None = None,
) -> IdleResult:
    """Open ``count`` idle connections, wait ``settle_s``, call ``measure()`` (the server's RSS)."""
    loop = asyncio.get_running_loop()
    result = IdleResult(requested=count, rss_before_kib=measure())
    clients: list[IdleClient] = []
    transports: list[asyncio.BaseTransport] = []
    gate = asyncio.Semaphore(concurrency)  # the listen backlog is finite: connect in waves

    async def open_one() -> None:
        async with gate:
            try:
                transport, client = await asyncio.wait_for(
                    loop.create_connection(IdleClient, host, port), connect_timeout
                )
                transports.append(transport)
                clients.append(client)
                if await asyncio.wait_for(client.settings_seen, connect_timeout):
                    result.opened += 1
                else:
                    result.failed += 1
            except (TimeoutError, OSError):
                result.failed += 1

    start = time.monotonic()
    tasks = [asyncio.ensure_future(open_one()) for _ in range(count)]
    last = 0.0
    while not all(t.done() for t in tasks):
        await asyncio.sleep(0.25)
        if progress and time.monotonic() - last > 2:
            last = time.monotonic()
            progress(f"  idle connections: {result.opened}/{count} open, {result.failed} failed")
    await asyncio.gather(*tasks)
    result.open_seconds = time.monotonic() - start
    await asyncio.sleep(settle_s)
    result.rss_after_kib = measure()
    result.held = sum(1 for c in clients if not c.closed and not c.goaway)
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.1)
    return result
