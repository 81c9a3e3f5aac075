"""Per-stream state of the HTTP/2 core."""

from __future__ import annotations

from collections import deque


class Stream:
    """One open stream's flow-control windows, half-close state and the response DATA it
    holds back until the peer's windows open (the connection owns the logic; this is state)."""

    __slots__ = (
        "send_window",
        "recv_window",
        "recv_unacked",
        "remote_closed",
        "local_closed",
        "pending",
        "pending_bytes",
        "pending_end",
        "pending_trailers",
        "content_length",
        "data_tail",
    )

    def __init__(self, send_window: int, recv_window: int) -> None:
        self.send_window = send_window
        self.recv_window = recv_window
        self.recv_unacked = 0
        self.remote_closed = False
        self.local_closed = False
        self.pending: deque[memoryview] = deque()
        self.pending_bytes = 0
        self.pending_end = False
        self.pending_trailers: bytes | None = None
        # DATA bytes the request's content-length still announces (RFC 9113 8.1.1); None: no
        # content-length, the usual case for gRPC
        self.content_length: int | None = None
        # The last 6 bytes of this stream's DATA frame headers (frames.data_tail), once it sends one
        self.data_tail: bytes | None = None
