"""What the sans-IO HTTP/2 core reports: one event class per thing the layer above acts on.

``H2ServerConnection.receive_data`` returns a list of these; each class has ``__slots__`` and
is matched on its exact type (``type(event) is DataReceived``) by the layer above.
"""

from __future__ import annotations

from .hpack_codec import HeaderList


class Event:
    __slots__ = ()


class RequestReceived(Event):
    """A new stream opened with a complete header block."""

    __slots__ = ("stream_id", "headers", "end_stream")

    def __init__(self, stream_id: int, headers: HeaderList, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.end_stream = end_stream


class DataReceived(Event):
    """DATA payload (padding removed). ``flow_length`` is what to acknowledge once consumed."""

    __slots__ = ("stream_id", "data", "flow_length", "end_stream")

    def __init__(self, stream_id: int, data: bytes, flow_length: int, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_length = flow_length
        self.end_stream = end_stream


class StreamEnded(Event):
    """The client half-closed the stream with a trailing HEADERS frame."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset(Event):
    """The stream is gone: reset by the client, or by us for a stream-level error."""

    __slots__ = ("stream_id", "error_code", "remote")

    def __init__(self, stream_id: int, error_code: int, remote: bool) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote


class WindowUpdated(Event):
    """Buffered outbound data of this stream made progress (flow-control credit arrived)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class GoAwayReceived(Event):
    __slots__ = ("last_stream_id", "error_code")

    def __init__(self, last_stream_id: int, error_code: int) -> None:
        self.last_stream_id = last_stream_id
        self.error_code = error_code


class ConnectionTerminated(Event):
    """A connection error: GOAWAY is queued; flush ``data_to_send()`` and close."""

    __slots__ = ("error_code", "reason")

    def __init__(self, error_code: int, reason: str) -> None:
        self.error_code = error_code
        self.reason = reason


class H2ConnectionError(Exception):
    """Raised inside the core for a connection error (RFC 9113 5.4.1): the connection answers
    with GOAWAY(code) and reports :class:`ConnectionTerminated`; it never leaves the core."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
