"""Server side of an HTTP/2 connection, sans-IO (RFC 9113).

``receive_data(bytes) -> list[Event]`` parses frames and updates state; the send methods
queue frames; ``data_to_send()`` hands the bytes to whatever runtime owns the socket.
Only what a gRPC server needs is here: no server push, no priorities (parsed and ignored),
header blocks decoded by a caching HPACK decoder and encoded statelessly by the caller.

Every protocol violation has a defined answer: a stream error (RST_STREAM) or a
connection error (GOAWAY then close, reported as ``ConnectionTerminated``).
"""

from __future__ import annotations

import struct
from collections import deque

from hpack import HPACKError

from . import frames as f
from .hpack_codec import CachingDecoder, HeaderList

_U32 = struct.Struct(">L")
_RESET_BURST = 1000  # client resets tolerated before the reset/open ratio is enforced
_SETTING = struct.Struct(">HL")


# ---------------------------------------------------------------------------- events
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


class _ConnectionError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------------------- streams
class _Stream:
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


class H2ServerConnection:
    """State of one server-side HTTP/2 connection."""

    def __init__(
        self,
        *,
        max_concurrent_streams: int = 1000,
        initial_window_size: int = 1 << 20,
        connection_window_size: int = 1 << 24,
        max_header_list_size: int = 16384 * 4,
        max_header_block_size: int = 1 << 18,
    ) -> None:
        self.streams: dict[int, _Stream] = {}
        self.highest_stream_id = 0
        self.terminated = False
        self.goaway_sent = False
        self.goaway_received = False
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._preface_ok = False
        self._settings_seen = False
        self._continuation: tuple[int, int, bytearray] | None = None
        # The advertised limit is enforced per request by the layer above (a stream-level
        # answer); the decoder only stops blocks far beyond it, which cost the connection.
        self._decoder = CachingDecoder(max(max_header_list_size * 4, max_header_block_size * 4))
        # local settings (what we advertise)
        self.max_concurrent_streams = max_concurrent_streams
        self.local_initial_window = initial_window_size
        self.local_max_frame = f.DEFAULT_MAX_FRAME
        self._max_header_block = max_header_block_size
        self._conn_window_size = connection_window_size
        self._recv_conn_window = connection_window_size
        self._recv_conn_unacked = 0
        # peer settings
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self.peer_initial_window = f.DEFAULT_WINDOW
        self.send_conn_window = f.DEFAULT_WINDOW
        self._blocked: dict[int, None] = {}  # streams with pending data, in order
        self._remote_resets = 0
        self._settings = {
            f.SETTINGS_MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            f.SETTINGS_INITIAL_WINDOW_SIZE: initial_window_size,
            f.SETTINGS_MAX_HEADER_LIST_SIZE: max_header_list_size,
            f.SETTINGS_ENABLE_PUSH: 0,
        }

    # ------------------------------------------------------------------ output
    def initiate_connection(self) -> None:
        """Queue our SETTINGS and the connection-window increase (server preface)."""
        self._out.append(f.settings_frame(self._settings))
        increment = self._conn_window_size - f.DEFAULT_WINDOW
        if increment > 0:
            self._out.append(f.window_update(0, increment))
        self._recv_conn_window = self._conn_window_size

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        if len(out) == 1:
            data = out[0]
        else:
            data = b"".join(out)
        out.clear()
        return data

    def has_data_to_send(self) -> bool:
        return bool(self._out)

    # ------------------------------------------------------------------ send API
    def send_headers(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """Send an encoded header block. With ``end_stream`` (trailers) it waits for any
        buffered DATA of the stream to go first."""
        s = self.streams.get(stream_id)
        if s is None or s.local_closed:
            return
        if end_stream and s.pending:
            s.pending_trailers = block
            s.pending_end = True
            s.local_closed = True
            return
        self._out.append(f.headers_frames(stream_id, block, end_stream, self.peer_max_frame))
        if end_stream:
            self._end_local(stream_id, s)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> None:
        """Send DATA within flow-control limits; the rest is buffered until credit arrives."""
        s = self.streams.get(stream_id)
        if s is None or s.local_closed:
            return
        if s.pending:
            if data:
                s.pending.append(memoryview(data))
                s.pending_bytes += len(data)
            if end_stream:
                s.pending_end = True
                s.local_closed = True
            return
        size = len(data)
        window = min(s.send_window, self.send_conn_window)
        if size <= window and size <= self.peer_max_frame:
            flags = f.FLAG_END_STREAM if end_stream else 0
            self._out.append(f.frame_header(size, f.DATA, flags, stream_id))
            if size:
                self._out.append(bytes(data))
            s.send_window -= size
            self.send_conn_window -= size
            if end_stream:
                self._end_local(stream_id, s)
            return
        s.pending.append(memoryview(data))
        s.pending_bytes += size
        if end_stream:
            s.pending_end = True
            s.local_closed = True
        self._flush_stream(stream_id, s)

    def pending_bytes(self, stream_id: int) -> int:
        s = self.streams.get(stream_id)
        return s.pending_bytes if s is not None else 0

    def acknowledge_received_data(self, stream_id: int, length: int) -> None:
        """The application consumed ``length`` flow-controlled bytes of this stream."""
        s = self.streams.get(stream_id)
        if s is None or s.remote_closed or length <= 0:
            return
        s.recv_unacked += length
        if s.recv_unacked >= self.local_initial_window >> 2:
            self._out.append(f.window_update(stream_id, s.recv_unacked))
            s.recv_window += s.recv_unacked
            s.recv_unacked = 0

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self._blocked.pop(stream_id, None)
            self._out.append(f.rst_stream(stream_id, error_code))

    def start_shutdown(self, error_code: int = f.NO_ERROR, debug: bytes = b"") -> None:
        """Graceful GOAWAY: streams already open finish, newer ones are refused."""
        if not self.goaway_sent and not self.terminated:
            self.goaway_sent = True
            self._out.append(f.goaway(self.highest_stream_id, error_code, debug))

    @property
    def handshake_done(self) -> bool:
        """The client sent the connection preface and its first SETTINGS."""
        return self._settings_seen

    # ------------------------------------------------------------------ receive
    def receive_data(self, data: bytes) -> list[Event]:
        if self.terminated:
            return []
        events: list[Event] = []
        buf = self._buf
        buf += data
        pos = 0
        try:
            if not self._preface_ok:
                n = min(len(buf), len(f.PREFACE))
                if buf[:n] != f.PREFACE[:n]:
                    raise _ConnectionError(f.PROTOCOL_ERROR, "invalid connection preface (not an HTTP/2 client?)")
                if n < len(f.PREFACE):
                    return events
                self._preface_ok = True
                pos = len(f.PREFACE)
            end = len(buf)
            max_frame = self.local_max_frame
            while end - pos >= 9:
                length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                if length > max_frame:
                    raise _ConnectionError(f.FRAME_SIZE_ERROR, f"frame of {length} bytes exceeds {max_frame}")
                if end - pos - 9 < length:
                    break
                ftype = buf[pos + 3]
                flags = buf[pos + 4]
                sid = _U32.unpack_from(buf, pos + 5)[0] & 0x7FFFFFFF
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._frame(ftype, flags, sid, payload, events)
        except _ConnectionError as exc:
            self._terminate(exc.code, exc.reason, events)
            buf.clear()
            return events
        if pos:
            del buf[:pos]
        return events

    def _terminate(self, code: int, reason: str, events: list[Event]) -> None:
        self.terminated = True
        # The GOAWAY is the last frame: later send calls (handlers answering requests from
        # the same read) find no stream and queue nothing.
        self.streams.clear()
        self._blocked.clear()
        self._out.append(f.goaway(self.highest_stream_id, code, reason.encode()[:256]))
        events.append(ConnectionTerminated(code, reason))

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if self._continuation is not None:
            cont_sid, cont_flags, block = self._continuation
            if ftype != f.CONTINUATION or sid != cont_sid:
                raise _ConnectionError(f.PROTOCOL_ERROR, "expected CONTINUATION")
            block += payload
            if len(block) > self._max_header_block:
                raise _ConnectionError(f.ENHANCE_YOUR_CALM, "header block too large")
            if flags & f.FLAG_END_HEADERS:
                self._continuation = None
                self._header_block(sid, cont_flags, bytes(block), events)
            return
        if not self._settings_seen:
            if ftype != f.SETTINGS or flags & f.FLAG_ACK:
                raise _ConnectionError(f.PROTOCOL_ERROR, "first frame must be SETTINGS")
            self._settings_seen = True
        if ftype == f.DATA:
            self._on_data(flags, sid, payload, events)
        elif ftype == f.HEADERS:
            self._on_headers(flags, sid, payload, events)
        elif ftype == f.WINDOW_UPDATE:
            self._on_window_update(sid, payload, events)
        elif ftype == f.SETTINGS:
            self._on_settings(flags, sid, payload, events)
        elif ftype == f.PING:
            if len(payload) != 8:
                raise _ConnectionError(f.FRAME_SIZE_ERROR, "PING payload must be 8 bytes")
            if sid:
                raise _ConnectionError(f.PROTOCOL_ERROR, "PING on a stream")
            if not flags & f.FLAG_ACK:
                self._out.append(f.ping(payload, ack=True))
        elif ftype == f.RST_STREAM:
            self._on_rst(sid, payload, events)
        elif ftype == f.GOAWAY:
            if sid:
                raise _ConnectionError(f.PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:
                raise _ConnectionError(f.FRAME_SIZE_ERROR, "short GOAWAY")
            self.goaway_received = True
            last, code = struct.unpack_from(">LL", payload)
            events.append(GoAwayReceived(last & 0x7FFFFFFF, code))
        elif ftype == f.PRIORITY:
            if sid == 0:
                raise _ConnectionError(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                raise _ConnectionError(f.FRAME_SIZE_ERROR, "PRIORITY payload must be 5 bytes")
        elif ftype == f.PUSH_PROMISE:
            raise _ConnectionError(f.PROTOCOL_ERROR, "clients must not send PUSH_PROMISE")
        elif ftype == f.CONTINUATION:
            raise _ConnectionError(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
        # unknown frame types are ignored (RFC 9113 4.1)

    @staticmethod
    def _strip_padding(flags: int, payload: bytes) -> bytes:
        if flags & f.FLAG_PADDED:
            if not payload:
                raise _ConnectionError(f.PROTOCOL_ERROR, "padded frame without pad length")
            pad = payload[0]
            if pad >= len(payload):
                raise _ConnectionError(f.PROTOCOL_ERROR, "padding exceeds frame payload")
            return payload[1 : len(payload) - pad]
        return payload

    def _on_data(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(payload)
        self._recv_conn_window -= flow
        if self._recv_conn_window < 0:
            raise _ConnectionError(f.FLOW_CONTROL_ERROR, "connection flow-control window exceeded")
        self._credit_connection(flow)
        data = self._strip_padding(flags, payload)
        s = self.streams.get(sid)
        if s is None:
            if sid > self.highest_stream_id:
                raise _ConnectionError(f.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            return  # a stream we already closed or reset: frames in flight, ignore
        if s.remote_closed:
            self._stream_error(sid, f.STREAM_CLOSED, events)
            return
        s.recv_window -= flow
        if s.recv_window < 0:
            self._stream_error(sid, f.FLOW_CONTROL_ERROR, events)
            return
        padding = flow - len(data)
        if padding:
            s.recv_window += padding  # padding is never handed to the application
            self._out.append(f.window_update(sid, padding))
        end = bool(flags & f.FLAG_END_STREAM)
        if end:
            s.remote_closed = True
        events.append(DataReceived(sid, data, len(data), end))
        if end and s.local_closed and not s.pending:
            self.streams.pop(sid, None)

    def _credit_connection(self, flow: int) -> None:
        self._recv_conn_unacked += flow
        if self._recv_conn_unacked >= self._conn_window_size >> 2:
            self._out.append(f.window_update(0, self._recv_conn_unacked))
            self._recv_conn_window += self._recv_conn_unacked
            self._recv_conn_unacked = 0

    def _on_headers(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0 or sid % 2 == 0:
            raise _ConnectionError(f.PROTOCOL_ERROR, f"HEADERS on invalid stream id {sid}")
        block = self._strip_padding(flags, payload)
        if flags & f.FLAG_PRIORITY:
            if len(block) < 5:
                raise _ConnectionError(f.FRAME_SIZE_ERROR, "HEADERS priority field truncated")
            block = block[5:]
        if flags & f.FLAG_END_HEADERS:
            self._header_block(sid, flags, block, events)
        else:
            self._continuation = (sid, flags, bytearray(block))

    def _header_block(self, sid: int, flags: int, block: bytes, events: list[Event]) -> None:
        try:
            headers = self._decoder.decode(block)
        except HPACKError as exc:
            raise _ConnectionError(f.COMPRESSION_ERROR, f"HPACK: {exc}") from None
        except Exception as exc:  # any decoder failure leaves HPACK state unknown
            raise _ConnectionError(f.COMPRESSION_ERROR, f"HPACK: {exc!r}") from None
        end = bool(flags & f.FLAG_END_STREAM)
        s = self.streams.get(sid)
        if s is not None:
            if s.remote_closed:
                self._stream_error(sid, f.STREAM_CLOSED, events)
            elif end:  # trailers
                s.remote_closed = True
                events.append(StreamEnded(sid))
                if s.local_closed and not s.pending:
                    self.streams.pop(sid, None)
            else:
                self._stream_error(sid, f.PROTOCOL_ERROR, events)
            return
        if sid <= self.highest_stream_id:
            return  # closed stream: trailers in flight after our reset; decoded, ignored
        self.highest_stream_id = sid
        s = _Stream(self.peer_initial_window, self.local_initial_window)
        if self.goaway_sent or len(self.streams) >= self.max_concurrent_streams:
            self._out.append(f.rst_stream(sid, f.REFUSED_STREAM))
            return
        s.remote_closed = end
        self.streams[sid] = s
        events.append(RequestReceived(sid, headers, end))

    def _on_window_update(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise _ConnectionError(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload must be 4 bytes")
        inc = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if sid == 0:
            if inc == 0:
                raise _ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE with 0 increment")
            self.send_conn_window += inc
            if self.send_conn_window > f.MAX_WINDOW:
                raise _ConnectionError(f.FLOW_CONTROL_ERROR, "connection window overflow")
            for bsid in list(self._blocked):
                bs = self.streams.get(bsid)
                if bs is not None:
                    self._flush_stream(bsid, bs, events)
                if self.send_conn_window <= 0:
                    break
            return
        s = self.streams.get(sid)
        if s is None:
            if sid > self.highest_stream_id:
                raise _ConnectionError(f.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
            return
        if inc == 0:
            self._stream_error(sid, f.PROTOCOL_ERROR, events)
            return
        s.send_window += inc
        if s.send_window > f.MAX_WINDOW:
            self._stream_error(sid, f.FLOW_CONTROL_ERROR, events)
            return
        if s.pending:
            self._flush_stream(sid, s, events)

    def _on_settings(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise _ConnectionError(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.FLAG_ACK:
            if payload:
                raise _ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        if len(payload) % 6:
            raise _ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        for i in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, i)
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise _ConnectionError(f.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for s in self.streams.values():
                    s.send_window += delta
                    if s.send_window > f.MAX_WINDOW:
                        raise _ConnectionError(f.FLOW_CONTROL_ERROR, "stream window overflow")
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= 16777215:
                    raise _ConnectionError(f.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.peer_max_frame = value
            elif key == f.SETTINGS_ENABLE_PUSH:
                if value > 1:
                    raise _ConnectionError(f.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
            # HEADER_TABLE_SIZE: our encoder never uses the dynamic table; others are advisory.
        self._out.append(f.SETTINGS_ACK)
        for bsid in list(self._blocked):
            bs = self.streams.get(bsid)
            if bs is not None and bs.send_window > 0:
                self._flush_stream(bsid, bs, events)

    def _on_rst(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise _ConnectionError(f.FRAME_SIZE_ERROR, "RST_STREAM payload must be 4 bytes")
        if sid == 0 or sid > self.highest_stream_id:
            raise _ConnectionError(f.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        if self.streams.pop(sid, None) is not None:
            self._blocked.pop(sid, None)
            events.append(StreamReset(sid, _U32.unpack(payload)[0], remote=True))
            # "Rapid reset" (CVE-2023-44487): streams opened and reset at once cost work
            # without ever counting against MAX_CONCURRENT_STREAMS. Allow a burst, then
            # require that most streams a client opens are not cancelled by it.
            self._remote_resets += 1
            if self._remote_resets > _RESET_BURST and self._remote_resets * 2 > self.highest_stream_id // 2:
                raise _ConnectionError(f.ENHANCE_YOUR_CALM, "too many streams reset by the client")

    def _stream_error(self, sid: int, code: int, events: list[Event]) -> None:
        if self.streams.pop(sid, None) is not None:
            self._blocked.pop(sid, None)
            events.append(StreamReset(sid, code, remote=False))
        self._out.append(f.rst_stream(sid, code))

    # ------------------------------------------------------------------ flow control
    def _end_local(self, sid: int, s: _Stream) -> None:
        s.local_closed = True
        self._blocked.pop(sid, None)
        if s.remote_closed:
            self.streams.pop(sid, None)
        else:
            # Complete response before the request ended: ask the client to stop sending
            # (RFC 9113 8.1) and forget the stream.
            self.streams.pop(sid, None)
            self._out.append(f.rst_stream(sid, f.NO_ERROR))

    def _flush_stream(self, sid: int, s: _Stream, events: list[Event] | None = None) -> None:
        out = self._out
        progressed = False
        while s.pending:
            window = min(s.send_window, self.send_conn_window, self.peer_max_frame)
            if window <= 0:
                break
            chunk = s.pending[0]
            if len(chunk) > window:
                piece, s.pending[0] = chunk[:window], chunk[window:]
            else:
                piece = s.pending.popleft()
            n = len(piece)
            last = not s.pending and s.pending_end and s.pending_trailers is None
            out.append(f.frame_header(n, f.DATA, f.FLAG_END_STREAM if last else 0, sid))
            out.append(bytes(piece))
            s.send_window -= n
            self.send_conn_window -= n
            s.pending_bytes -= n
            progressed = True
        if s.pending:
            self._blocked[sid] = None
        else:
            self._blocked.pop(sid, None)
            if s.pending_end:
                if s.pending_trailers is not None:
                    out.append(f.headers_frames(sid, s.pending_trailers, True, self.peer_max_frame))
                    s.pending_trailers = None
                elif not progressed:
                    out.append(f.frame_header(0, f.DATA, f.FLAG_END_STREAM, sid))
                self._end_local(sid, s)
        if progressed and events is not None:
            events.append(WindowUpdated(sid))
