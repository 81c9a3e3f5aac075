"""Server side of an HTTP/2 connection, sans-IO (RFC 9113).

``receive_data(bytes) -> list[Event]`` parses frames and updates state; the send methods
queue frames; ``data_to_send()`` hands the bytes to whatever runtime owns the socket.
Only what a gRPC server needs is here: no server push, no priorities (parsed, checked and
ignored), header blocks decoded by a caching HPACK decoder and encoded statelessly by the
caller. Each decoded block is checked once (:mod:`.h2fields`, RFC 9113 8.1-8.3): a malformed
request or trailer block, or a content-length the DATA does not match, is a stream error.

Every protocol violation has a defined answer: a stream error (RST_STREAM) or a
connection error (GOAWAY then close, reported as ``ConnectionTerminated``).

The events it returns are in :mod:`.h2events`, the per-stream state in :mod:`.h2stream`, the
abuse limits (docs/security.md, "HTTP/2 frame level") in :mod:`.h2limits`: frames that make
us work without serving anything (SETTINGS, PRIORITY, empty DATA/HEADERS/CONTINUATION, frames
for closed streams, streams we are made to reset) draw on a budget that refills whenever we
send response HEADERS or DATA; PINGs follow grpc-core's ping-strike policy; control responses
waiting in the output are capped; header blocks far beyond the advertised header list size
are cut off while decoding. Each check is an int compare on the receive path. Time (for
PINGs only) comes from the ``clock`` callable: the runtime passes its loop's clock, tests a fake.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Final

from hpack import HPACKError, OversizedHeaderListError

from . import frames as f
from .h2events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    H2ConnectionError,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from .h2fields import check as check_fields
from .h2limits import HEADER_HARD_FACTOR, RESET_BURST, RESET_MEMORY, SKIPPED_MEMORY, AbuseGuard, AbuseLimits
from .h2stream import Stream
from .hpack_codec import CachingDecoder

__all__ = [
    "HEADER_HARD_FACTOR", "ConnectionTerminated", "DataReceived", "Event", "GoAwayReceived", "H2ServerConnection",
    "RequestReceived", "StreamEnded", "StreamReset", "WindowUpdated",
]

_U32: Final = struct.Struct(">L")
_SETTING: Final = struct.Struct(">HL")
_SHUTDOWN_PING: Final = b"gmfdrain"  # the opaque data of the PING that ends a graceful shutdown
_SELF_DEPENDENT = 0x100  # not a wire flag: HEADERS whose priority names its own stream (5.3.1)


_SETTINGS_FRAMES: dict[tuple[int, int, int], bytes] = {}


def _settings_frame(max_concurrent_streams: int, initial_window_size: int, max_header_list_size: int) -> bytes:
    """Our SETTINGS frame, one bytes object shared by the connections that advertise the
    same limits (every connection of a worker): not a dict and a frame per connection."""
    key = (max_concurrent_streams, initial_window_size, max_header_list_size)
    frame = _SETTINGS_FRAMES.get(key)
    if frame is None:
        frame = f.settings_frame({
            f.SETTINGS_MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            f.SETTINGS_INITIAL_WINDOW_SIZE: initial_window_size,
            f.SETTINGS_MAX_HEADER_LIST_SIZE: max_header_list_size,
            f.SETTINGS_ENABLE_PUSH: 0,
        })
        if len(_SETTINGS_FRAMES) < 64:  # a bound: the limits are the server's, a handful at most
            _SETTINGS_FRAMES[key] = frame
    return frame


class _OpenData:
    """The last DATA frame queued, while the next DATA of its stream may still join it: its
    stream, where its header is in _out, the length that header says and the length the frame
    has grown to, and len(_out) right after it (-1: nothing to join). A frame that grew gets
    its header rebuilt once (``seal``), not patched per message. ``queued``: the DATA payload
    bytes in _out, of every stream (``H2ServerConnection.queued_data``)."""

    __slots__ = ("sid", "index", "declared", "length", "at", "queued")

    def __init__(self) -> None:
        self.sid = 0
        self.index = -1
        self.declared = 0
        self.length = 0
        self.at = -1
        self.queued = 0

    def seal(self, out: list[bytes | bytearray | memoryview]) -> None:
        """Give the open frame (if it grew) the header of its final length."""
        n = self.length
        if n != self.declared:
            out[self.index] = f.frame_header(n, f.DATA, 0, self.sid)
            self.declared = n


class H2ServerConnection(AbuseGuard):
    """State of one server-side HTTP/2 connection."""

    def __init__(
        self,
        *,
        max_concurrent_streams: int = 100,
        initial_window_size: int = 1 << 20,
        connection_window_size: int = 1 << 24,
        max_header_list_size: int = 16384 * 4,
        keepalive_min_ping_interval: float = 300.0,
        max_ping_strikes: int = 2,
        max_unproductive_frames: int = 1000,
        max_pending_control_frames: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.streams: dict[int, Stream] = {}
        self.highest_stream_id = 0
        self.terminated = False
        self.goaway_sent = False  # the final GOAWAY: streams above highest_stream_id are refused
        self.goaway_received = False
        self.shutdown_pending = False  # GOAWAY(2^31-1) + PING sent, final GOAWAY after the ACK
        self._buf = bytearray()
        self._out: list[bytes | bytearray | memoryview] = []
        self._merge = _OpenData()  # the DATA frame the next DATA of its stream may join
        self._preface_ok = False
        self._settings_seen = False
        self._continuation: tuple[int, int, bytearray] | None = None
        # The advertised limit is enforced per request by the layer above (a stream-level
        # answer); blocks far beyond it cost the connection, before they are materialized.
        max_header_block = max_header_list_size * HEADER_HARD_FACTOR
        self._decoder = CachingDecoder(max_header_block)
        # local settings (what we advertise)
        self.max_concurrent_streams = max_concurrent_streams
        self.local_initial_window = initial_window_size
        self.local_max_frame = f.DEFAULT_MAX_FRAME
        self._conn_window_size = connection_window_size
        self._recv_conn_window = connection_window_size
        self._recv_conn_unacked = 0
        # peer settings
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self.peer_initial_window = f.DEFAULT_WINDOW
        self.send_conn_window = f.DEFAULT_WINDOW
        self._blocked: dict[int, None] = {}  # streams with pending data, in order
        # DATA bytes held because the peer's flow-control windows are closed (all streams):
        # the layer above caps it per connection (CVE-2019-9511/9517, internal data buffering).
        self.buffered_bytes = 0
        # Abuse limits. ``_responded`` is set whenever we send response HEADERS or DATA; the
        # next unproductive frame or PING sees it and restarts both counts. Only these three
        # live on the connection (hot paths touch them); the rest waits in ``_limits``.
        self._responded = False
        self._budget = max_unproductive_frames  # unproductive frames left; < 0: cut off
        self._pending_control = 0
        self._limits = AbuseLimits(
            max_unproductive_frames, max_pending_control_frames, keepalive_min_ping_interval, max_ping_strikes, clock
        )
        self._limits.max_header_block = max_header_block
        self._settings_frame = _settings_frame(max_concurrent_streams, initial_window_size, max_header_list_size)

    # ------------------------------------------------------------------ output
    def initiate_connection(self) -> None:
        """Queue our SETTINGS and the connection-window increase (server preface)."""
        self._out.append(self._settings_frame)
        self._limits.settings_unacked = True
        increment = self._conn_window_size - f.DEFAULT_WINDOW
        if increment > 0:
            self._out.append(f.window_update(0, increment))
        self._recv_conn_window = self._conn_window_size

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._pending_control = 0
        m = self._merge
        m.queued = 0
        m.seal(out)
        m.at = -1
        m.index = -1
        if len(out) == 1:
            data = bytes(out[0])
        else:
            data = b"".join(out)
        out.clear()
        return data

    def has_data_to_send(self) -> bool:
        return bool(self._out)

    def queued_data(self) -> int:
        """DATA payload bytes queued for the peer since the last ``data_to_send``."""
        return self._merge.queued

    # ------------------------------------------------------------------ send API
    def send_headers(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """Send an encoded header block. With ``end_stream`` (trailers) it waits for any
        buffered DATA of the stream to go first."""
        s = self.streams.get(stream_id)
        if s is None or s.local_closed:
            return
        self._responded = True
        if end_stream and s.pending:
            s.pending_trailers = block
            s.pending_end = True
            s.local_closed = True
            return
        self._out.append(f.headers_frames(stream_id, block, end_stream, self.peer_max_frame))
        if end_stream:
            self._end_local(stream_id, s)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> None:
        """Send DATA within flow-control limits; the rest is buffered until credit arrives.
        Consecutive DATA of one stream (nothing else queued in between, no END_STREAM) share
        one frame up to the peer's frame size: a stream of small messages costs a frame header
        per batch, not per message."""
        s = self.streams.get(stream_id)
        if s is None or s.local_closed:
            return
        self._responded = True
        size = len(data)
        if not s.pending and size <= s.send_window and size <= self.send_conn_window:
            out = self._out
            m = self._merge
            if m.sid == stream_id and m.at == len(out) and size and not end_stream:
                n = m.length + size
                if n <= self.peer_max_frame:
                    out.append(data if type(data) is bytes else bytes(data))  # joins the frame just before
                    m.length = n
                    m.at += 1
                    s.send_window -= size
                    self.send_conn_window -= size
                    m.queued += size
                    return
            if size <= self.peer_max_frame:
                if m.index >= 0:
                    m.seal(out)
                if end_stream:
                    out.append(f.frame_header(size, f.DATA, f.FLAG_END_STREAM, stream_id))
                    m.at = -1
                else:
                    m.index = len(out)
                    tail = s.data_tail
                    if tail is None:
                        tail = s.data_tail = f.data_tail(stream_id)
                    out.append(f.data_header(size, tail))
                    m.sid, m.length, m.declared = stream_id, size, size
                if size:
                    out.append(data if type(data) is bytes else bytes(data))
                if not end_stream:
                    m.at = len(out)
                s.send_window -= size
                self.send_conn_window -= size
                m.queued += size
                if end_stream:
                    self._end_local(stream_id, s)
                return
        if s.pending:
            if data:
                s.pending.append(memoryview(data))
                s.pending_bytes += size
                self.buffered_bytes += size
            if end_stream:
                s.pending_end = True
                s.local_closed = True
            return
        s.pending.append(memoryview(data))
        s.pending_bytes += size
        self.buffered_bytes += size
        if end_stream:
            s.pending_end = True
            s.local_closed = True
        self._flush_stream(stream_id, s)

    def send_response(self, stream_id: int, headers: bytes, data: bytes, trailers: bytes) -> bool:
        """A whole response at once: HEADERS, one DATA frame and the trailing HEADERS (END_STREAM),
        as one piece of output. Returns False, having sent nothing, unless the windows take the
        DATA now and every frame fits the peer's frame size (then send them one by one)."""
        s = self.streams.get(stream_id)
        if s is None or s.local_closed:
            return True  # reset or finished: nothing goes out, as with the single sends
        size = len(data)
        max_frame = self.peer_max_frame
        if (s.pending or size > s.send_window or size > self.send_conn_window or size > max_frame
                or len(headers) > max_frame or len(trailers) > max_frame):
            return False
        self._responded = True
        self._out.append(b"".join((
            f.frame_header(len(headers), f.HEADERS, f.FLAG_END_HEADERS, stream_id), headers,
            f.frame_header(size, f.DATA, 0, stream_id), data,
            f.frame_header(len(trailers), f.HEADERS, f.FLAG_END_HEADERS | f.FLAG_END_STREAM, stream_id), trailers,
        )))
        s.send_window -= size
        self.send_conn_window -= size
        self._end_local(stream_id, s)
        return True

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
        """Reset a stream the application refuses (a malformed request). It counts against
        the unproductive-frame budget, checked when the client opens its next stream."""
        if self._discard(stream_id) is not None:
            if self._responded:
                self._rearm()
            self._budget -= 1
            self._send_rst(stream_id, error_code)

    def start_shutdown(self, error_code: int = f.NO_ERROR, debug: bytes = b"") -> None:
        """Graceful GOAWAY: streams already open finish, newer ones are refused.

        NO_ERROR takes two steps (RFC 9113 section 6.8): GOAWAY with the largest stream id
        and a PING, then, once the PING is acknowledged (or ``finish_shutdown()`` is called),
        the GOAWAY naming the last stream actually received. Streams a client opened before
        it saw the first GOAWAY are served, not refused: a proxy such as nginx, which cannot
        retry a gRPC request once sent, never has one refused by a draining backend."""
        if self.goaway_sent or self.terminated or self.shutdown_pending:
            return
        if error_code != f.NO_ERROR:
            self.goaway_sent = True
            self._out.append(f.goaway(self.highest_stream_id, error_code, debug))
            return
        self.shutdown_pending = True
        self._out.append(f.goaway(0x7FFFFFFF, f.NO_ERROR, debug))
        self._out.append(f.ping(_SHUTDOWN_PING, ack=False))

    def finish_shutdown(self) -> None:
        """The second step of a graceful GOAWAY (called on the PING ACK, or by a timer)."""
        if self.shutdown_pending and not self.terminated:
            self.shutdown_pending = False
            self.goaway_sent = True
            self._out.append(f.goaway(self.highest_stream_id, f.NO_ERROR))

    @property
    def handshake_done(self) -> bool:
        """The client sent the connection preface and its first SETTINGS."""
        return self._settings_seen

    # ------------------------------------------------------------------ receive
    def receive_data(self, data: bytes) -> list[Event]:
        if self.terminated:
            return []
        events: list[Event] = []
        held = self._buf
        buf: bytes
        if held:  # the start of a frame came with an earlier read
            held += data
            if self._preface_ok:
                if len(held) < 9:
                    return events
                length = held[0] << 16 | held[1] << 8 | held[2]
                if length <= self.local_max_frame and len(held) < 9 + length:
                    return events  # still no whole frame: keep collecting (no copy per read)
            buf = bytes(held)
            held.clear()
        else:  # the common case: frames are sliced straight out of the read (one copy each)
            buf = data if type(data) is bytes else bytes(data)
        pos = 0
        try:
            if not self._preface_ok:
                n = min(len(buf), len(f.PREFACE))
                if buf[:n] != f.PREFACE[:n]:
                    raise H2ConnectionError(f.PROTOCOL_ERROR, "invalid connection preface (not an HTTP/2 client?)")
                if n < len(f.PREFACE):
                    held += buf
                    return events
                self._preface_ok = True
                pos = len(f.PREFACE)
            end = len(buf)
            max_frame = self.local_max_frame
            while end - pos >= 9:  # the header's fields read in line: compiled, each buf[i] is a C read (~5x faster than struct)
                length = buf[pos] << 16 | buf[pos + 1] << 8 | buf[pos + 2]
                if length > max_frame:
                    raise H2ConnectionError(f.FRAME_SIZE_ERROR, f"frame of {length} bytes exceeds {max_frame}")
                if end - pos - 9 < length:
                    break
                ftype = buf[pos + 3]
                flags = buf[pos + 4]
                sid = (buf[pos + 5] & 0x7F) << 24 | buf[pos + 6] << 16 | buf[pos + 7] << 8 | buf[pos + 8]
                payload = buf[pos + 9 : pos + 9 + length]
                pos += 9 + length
                self._frame(ftype, flags, sid, payload, events)
        except H2ConnectionError as exc:
            self._terminate(exc.code, exc.reason, events)
            return events
        if pos < len(buf):
            held += memoryview(buf)[pos:]
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
                raise H2ConnectionError(f.PROTOCOL_ERROR, "expected CONTINUATION")
            end_headers = flags & f.FLAG_END_HEADERS
            if not payload and not end_headers:
                self._waste("empty CONTINUATION frames")
                return
            block += payload
            if len(block) > self._limits.max_header_block:  # CONTINUATION flood: cut off, not decoded
                raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "header block too large")
            if end_headers:
                self._continuation = None
                self._header_block(sid, cont_flags, bytes(block), events)
            return
        if not self._settings_seen:
            if ftype != f.SETTINGS or flags & f.FLAG_ACK:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "first frame must be SETTINGS")
            self._settings_seen = True
            self._on_settings(flags, sid, payload, events)
            return
        if ftype == f.DATA:
            self._on_data(flags, sid, payload, events)
        elif ftype == f.HEADERS:
            self._on_headers(flags, sid, payload, events)
        elif ftype == f.WINDOW_UPDATE:
            self._on_window_update(sid, payload, events)
        elif ftype == f.SETTINGS:
            # One is expected in the preface and one ACK of ours: more draw on the budget.
            if not flags & f.FLAG_ACK:
                self._waste("SETTINGS frames")  # CVE-2019-9515
            elif self._limits.settings_unacked:
                self._limits.settings_unacked = False
            else:
                self._waste("unsolicited SETTINGS ACKs")
            self._on_settings(flags, sid, payload, events)
        elif ftype == f.PING:
            if len(payload) != 8:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "PING payload must be 8 bytes")
            if sid:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "PING on a stream")
            if flags & f.FLAG_ACK:
                if payload == _SHUTDOWN_PING:
                    self.finish_shutdown()
                else:
                    self._waste("unsolicited PING ACKs")  # the only PING we send is the shutdown one
            else:
                self._on_ping()
                self._control(f.ping(payload, ack=True))
        elif ftype == f.RST_STREAM:
            self._on_rst(sid, payload, events)
        elif ftype == f.GOAWAY:
            if sid:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "short GOAWAY")
            if self.goaway_received:
                self._waste("repeated GOAWAY frames")
            self.goaway_received = True
            last, code = struct.unpack_from(">LL", payload)
            events.append(GoAwayReceived(last & 0x7FFFFFFF, code))
        elif ftype == f.PRIORITY:
            if sid == 0:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "PRIORITY payload must be 5 bytes")
            if _U32.unpack_from(payload)[0] & 0x7FFFFFFF == sid:  # a stream cannot depend on itself (5.3.1)
                self._stream_error(sid, f.PROTOCOL_ERROR, events)
            else:
                self._waste("PRIORITY frames")  # priorities are ignored (CVE-2019-9513)
        elif ftype == f.PUSH_PROMISE:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "clients must not send PUSH_PROMISE")
        elif ftype == f.CONTINUATION:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
        else:  # unknown frame types are ignored (RFC 9113 4.1), but not without end
            self._waste("unknown frame types")

    @staticmethod
    def _strip_padding(flags: int, payload: bytes) -> bytes:
        if flags & f.FLAG_PADDED:
            if not payload:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "padded frame without pad length")
            pad = payload[0]
            if pad >= len(payload):
                raise H2ConnectionError(f.PROTOCOL_ERROR, "padding exceeds frame payload")
            return payload[1 : len(payload) - pad]
        return payload

    def _on_data(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(payload)
        self._recv_conn_window -= flow
        if self._recv_conn_window < 0:
            raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "connection flow-control window exceeded")
        self._credit_connection(flow)
        data = self._strip_padding(flags, payload)
        s = self.streams.get(sid)
        if s is None:
            if sid > self.highest_stream_id or not sid & 1:  # even ids: we open none (no push)
                raise H2ConnectionError(f.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            if sid not in self._limits.reset_ids:  # the client had ended it (or reset it, or skipped it)
                raise H2ConnectionError(f.STREAM_CLOSED, f"DATA on closed stream {sid}")  # 5.1
            if not flow:  # in flight after our reset: ignored (non-empty ones are flow-controlled)
                self._waste("empty DATA frames")
            return
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
        remaining = s.content_length
        if remaining is not None:  # the request announced its length: the DATA must match (8.1.1)
            remaining -= len(data)
            s.content_length = remaining
            if remaining < 0 or end and remaining:
                self._stream_error(sid, f.PROTOCOL_ERROR, events)
                return
        if end:
            s.remote_closed = True
        elif not data:
            self._waste("empty DATA frames")  # CVE-2019-9518
            return
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
            raise H2ConnectionError(f.PROTOCOL_ERROR, f"HEADERS on invalid stream id {sid}")
        block = self._strip_padding(flags, payload)
        if flags & f.FLAG_PRIORITY:
            if len(block) < 5:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "HEADERS priority field truncated")
            if _U32.unpack_from(block)[0] & 0x7FFFFFFF == sid:
                flags |= _SELF_DEPENDENT  # decoded all the same (HPACK state), then a stream error
            block = block[5:]
        if flags & f.FLAG_END_HEADERS:
            self._header_block(sid, flags, block, events)
        else:
            if not block:
                self._waste("empty HEADERS fragments")
            self._continuation = (sid, flags, bytearray(block))

    def _header_block(self, sid: int, flags: int, block: bytes, events: list[Event]) -> None:
        try:
            headers = self._decoder.decode(block)
        except OversizedHeaderListError:
            # An HPACK bomb: a block expanding far beyond the advertised limit. Decoding
            # stopped at the hard cap; the rest of the block (and the HPACK state) is lost.
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "header list far beyond the limit") from None
        except HPACKError as exc:
            raise H2ConnectionError(f.COMPRESSION_ERROR, f"HPACK: {exc}") from None
        except Exception as exc:  # any decoder failure leaves HPACK state unknown
            raise H2ConnectionError(f.COMPRESSION_ERROR, f"HPACK: {exc!r}") from None
        verdict = headers.check
        if verdict is None:  # once per distinct block: the decoder hands out one list per repeat
            verdict = headers.check = check_fields(headers)
        end = bool(flags & f.FLAG_END_STREAM)
        s = self.streams.get(sid)
        if s is not None:
            if s.remote_closed:  # half-closed (remote): 5.1
                self._stream_error(sid, f.STREAM_CLOSED, events)
            elif not end or s.content_length or flags & _SELF_DEPENDENT or verdict.trailers_error:
                # Only trailers may follow the request headers, and they end the stream (8.1),
                # without pseudo-header fields (8.1) and after all the announced content (8.1.1).
                self._stream_error(sid, f.PROTOCOL_ERROR, events)
            else:  # trailers
                s.remote_closed = True
                events.append(StreamEnded(sid))
                if s.local_closed and not s.pending:
                    self.streams.pop(sid, None)
            return
        if sid <= self.highest_stream_id:
            limits = self._limits
            if sid in limits.reset_ids:  # in flight after our reset: decoded, ignored (5.1)
                self._waste("HEADERS on closed streams")
            elif any(low <= sid <= high for low, high in limits.skipped):
                raise H2ConnectionError(f.PROTOCOL_ERROR, f"HEADERS on stream {sid}, below one opened later (5.1.1)")
            else:  # the client had ended it, or reset it
                raise H2ConnectionError(f.STREAM_CLOSED, f"HEADERS on closed stream {sid}")
            return
        if sid - self.highest_stream_id > 2:  # the ids between are skipped: closed, never opened
            skipped = self._limits.skipped
            skipped.append((self.highest_stream_id + 1, sid - 2))
            if len(skipped) > SKIPPED_MEMORY:
                del skipped[0]
        self.highest_stream_id = sid
        if self.goaway_sent:
            self._send_rst(sid, f.REFUSED_STREAM)
            return
        if verdict.request_error is not None or flags & _SELF_DEPENDENT or end and verdict.content_length:
            self._stream_error(sid, f.PROTOCOL_ERROR, events)  # a malformed request (8.1.1)
            return
        if len(self.streams) >= self.max_concurrent_streams:
            self._waste("streams over SETTINGS_MAX_CONCURRENT_STREAMS")
            self._send_rst(sid, f.REFUSED_STREAM, control=True)
            return
        if self._budget < 0:  # spent by streams the application reset (malformed requests)
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "too many malformed requests")
        s = Stream(self.peer_initial_window, self.local_initial_window)
        s.remote_closed = end
        if verdict.content_length is not None:
            s.content_length = verdict.content_length
        self.streams[sid] = s
        events.append(RequestReceived(sid, headers, end))

    def _on_window_update(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload must be 4 bytes")
        inc = (payload[0] & 0x7F) << 24 | payload[1] << 16 | payload[2] << 8 | payload[3]
        if sid == 0:
            if inc == 0:
                raise H2ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE with 0 increment")
            self.send_conn_window += inc
            if self.send_conn_window > f.MAX_WINDOW:
                raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "connection window overflow")
            for bsid in list(self._blocked):
                bs = self.streams.get(bsid)
                if bs is not None:
                    self._flush_stream(bsid, bs, events)
                if self.send_conn_window <= 0:
                    break
            return
        s = self.streams.get(sid)
        if s is None:
            if sid > self.highest_stream_id or not sid & 1:  # even ids: we open none (no push)
                raise H2ConnectionError(f.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
            self._waste("WINDOW_UPDATE on closed streams")
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
            raise H2ConnectionError(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.FLAG_ACK:
            if payload:
                raise H2ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        if len(payload) % 6:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        for i in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, i)
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for s in self.streams.values():
                    s.send_window += delta
                    if s.send_window > f.MAX_WINDOW:
                        raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "stream window overflow")
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= 16777215:
                    raise H2ConnectionError(f.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.peer_max_frame = value
            elif key == f.SETTINGS_ENABLE_PUSH:
                if value > 1:
                    raise H2ConnectionError(f.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
            # HEADER_TABLE_SIZE: our encoder never uses the dynamic table; others are advisory.
        self._control(f.SETTINGS_ACK)
        for bsid in list(self._blocked):
            bs = self.streams.get(bsid)
            if bs is not None and bs.send_window > 0:
                self._flush_stream(bsid, bs, events)

    def _on_rst(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise H2ConnectionError(f.FRAME_SIZE_ERROR, "RST_STREAM payload must be 4 bytes")
        if sid == 0 or sid > self.highest_stream_id or not sid & 1:
            raise H2ConnectionError(f.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        if self._discard(sid) is None:
            self._waste("RST_STREAM on closed streams")
            return
        events.append(StreamReset(sid, _U32.unpack(payload)[0], remote=True))
        # "Rapid reset" (CVE-2023-44487): streams opened and reset at once cost work
        # without ever counting against MAX_CONCURRENT_STREAMS. Allow a burst, then
        # require that most streams a client opens are not cancelled by it.
        limits = self._limits
        limits.remote_resets += 1
        if limits.remote_resets > RESET_BURST and limits.remote_resets * 2 > self.highest_stream_id // 2:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "too many streams reset by the client")

    def _stream_error(self, sid: int, code: int, events: list[Event]) -> None:
        self._waste("stream errors")  # CVE-2019-9514: requests made to draw RST_STREAM
        if self._discard(sid) is not None:
            events.append(StreamReset(sid, code, remote=False))
        self._send_rst(sid, code, control=True)

    def _send_rst(self, sid: int, code: int, control: bool = False) -> None:
        """RST_STREAM, remembering the id: frames the client had in flight for it are
        ignored (RFC 9113 5.1); frames on any other closed stream get STREAM_CLOSED.
        ``control``: a response the client provoked, under the control-frame cap."""
        frame = f.rst_stream(sid, code)
        if control:
            self._control(frame)
        else:
            self._out.append(frame)
        reset = self._limits.reset_ids
        reset[sid] = None
        if len(reset) > RESET_MEMORY:
            del reset[next(iter(reset))]

    def _discard(self, sid: int) -> Stream | None:
        """Forget a stream and the response data it still had buffered."""
        s = self.streams.pop(sid, None)
        if s is not None:
            self._blocked.pop(sid, None)
            self.buffered_bytes -= s.pending_bytes
        return s

    # ------------------------------------------------------------------ flow control
    def _end_local(self, sid: int, s: Stream) -> None:
        s.local_closed = True
        self._blocked.pop(sid, None)
        if s.remote_closed:
            self.streams.pop(sid, None)
        else:
            # Complete response before the request ended: ask the client to stop sending
            # (RFC 9113 8.1) and forget the stream.
            self.streams.pop(sid, None)
            self._send_rst(sid, f.NO_ERROR)

    def _flush_stream(self, sid: int, s: Stream, events: list[Event] | None = None) -> None:
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
            self.buffered_bytes -= n
            self._merge.queued += n
            progressed = True
            self._responded = True
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
