"""The fuzz target: feed a scenario to ``H2ServerConnection``, drive it like ``GrpcConnection``
does, and check every invariant after every chunk.

Invariants (an ``AssertionError`` names the one that broke):
- ``receive_data`` never raises; events are consistent (requests on new odd stream ids,
  data only for open requests, nothing for a stream after its reset).
- Every byte of ``data_to_send()`` parses as HTTP/2 frames (hyperframe, strict: no unknown
  types), the first one SETTINGS, no frame larger than the peer allows, header blocks
  contiguous (HEADERS + CONTINUATION) and decodable by one ``hpack.Decoder`` kept across
  the connection, responses start with ``:status`` and end with ``grpc-status``, nothing on
  a stream after its END_STREAM or RST_STREAM, only on streams the client opened, and no more
  DATA than the client's flow-control windows allowed (per stream and per connection).
- After ``ConnectionTerminated`` the output ends with a GOAWAY carrying its error code and
  nothing more is accepted or emitted.
- Header validity (RFC 9113 8.1.1, 8.2, 8.3, 5.3.1), judged by an oracle written here apart
  from the server's ``h2fields``: every request the server accepts is well-formed, and every
  malformed request block it reads is answered with RST_STREAM PROTOCOL_ERROR (or refused,
  or the connection ends); the client's header blocks are decoded from its bytes as sent.
- Bounded state: open streams <= max_concurrent_streams, the receive buffer < one frame,
  a CONTINUATION block <= the header-block limit, the HPACK table <= 4096 bytes, the
  blocked-stream set within the open streams, the send window never negative, and the
  control frames answering a chunk at most a small multiple of its size (plus one GOAWAY).
"""

from __future__ import annotations

import hashlib

from hpack import Decoder, HPACKError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)
from hypothesis import event as record

from gmf.protocol import frames as f
from gmf.protocol import grpc as g
from gmf.protocol import h2conn as h2

from .h2_strategies import Scenario, grpc_message

MAX_STREAMS = 8  # small, so refusing streams over the limit is exercised
MAX_HEADER_LIST = 16384
HPACK_TABLE = 4096


def well_formed_request(headers: list[tuple[bytes, bytes]]) -> bool:
    """RFC 9113's rules for a request's field block, byte by byte: the oracle the server's own
    check (gmf.protocol.h2fields) is held to."""
    pseudo_done = False
    seen: list[bytes] = []
    lengths: set[bytes] = set()
    for name, value in headers:
        if not name:
            return False
        body = name[1:] if name.startswith(b":") else name
        if any(b <= 0x20 or 0x41 <= b <= 0x5A or b >= 0x7F or b == 0x3A for b in body):
            return False  # 8.2.1 field names
        if any(b in (0, 10, 13) for b in value) or value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
            return False  # 8.2.1 field values
        if name.startswith(b":"):
            if pseudo_done or name in seen or name not in (b":method", b":scheme", b":path", b":authority"):
                return False  # 8.3: pseudo-headers first, once each, request ones only
            seen.append(name)
            continue
        pseudo_done = True
        if name in (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"):
            return False  # 8.2.2
        if name == b"te" and value.lower() != b"trailers":
            return False
        if name == b"content-length":
            if not value.isdigit():
                return False
            lengths.add(value.lstrip(b"0") or b"0")
    if len(lengths) > 1:
        return False
    fields = dict((n, v) for n, v in headers if n.startswith(b":"))
    if fields.get(b":method") == b"CONNECT":
        return set(fields) == {b":method", b":authority"}
    return {b":method", b":scheme", b":path"} <= set(fields) and fields[b":path"] != b""


class ClientRequests:
    """The requests the client's bytes open (new odd stream ids, decoded with a client-side
    view of HPACK), judged by ``well_formed_request`` and the priority rule of 5.3.1. Once a
    block does not decode, HPACK state is unknown: judging stops (the server must then end the
    connection, checked by the other invariants)."""

    def __init__(self) -> None:
        self.decoder = Decoder(max_header_list_size=1 << 30)
        self.highest = 0
        self.pending: tuple[int, bool, bytearray] | None = None  # sid, self-dependent, fragments
        self.malformed: set[int] = set()
        self.lost = False

    def frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self.lost:
            return
        if ftype == f.HEADERS:
            if flags & f.FLAG_PADDED:
                if not payload or payload[0] >= len(payload):
                    self.lost = True
                    return
                payload = payload[1 : len(payload) - payload[0]]
            self_dependent = False
            if flags & f.FLAG_PRIORITY:
                if len(payload) < 5:
                    self.lost = True
                    return
                self_dependent = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF == sid
                payload = payload[5:]
            self.pending = (sid, self_dependent, bytearray(payload))
        elif ftype == f.CONTINUATION and self.pending is not None:
            self.pending[2].extend(payload)
        else:
            return
        if flags & f.FLAG_END_HEADERS and self.pending is not None:
            block_sid, self_dependent, block = self.pending
            self.pending = None
            try:
                headers = [(bytes(n), bytes(v)) for n, v in self.decoder.decode(bytes(block), raw=True)]
            except (HPACKError, Exception):  # noqa: B014 - any failure: HPACK state unknown
                self.lost = True
                return
            if block_sid % 2 and block_sid > self.highest:
                self.highest = block_sid
                if self_dependent or not well_formed_request(headers):
                    self.malformed.add(block_sid)


class ClientCredit:
    """Upper bounds of the flow-control credit the client granted, from its bytes as sent:
    the largest SETTINGS_INITIAL_WINDOW_SIZE plus every WINDOW_UPDATE (the server may reject
    some, which only makes the bound looser; it frames the bytes exactly the same way)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.preface = False
        self.connection = f.DEFAULT_WINDOW
        self.max_initial = f.DEFAULT_WINDOW
        self.streams: dict[int, int] = {}
        self.requests = ClientRequests()

    def feed(self, data: bytes) -> None:
        self.buf += data
        if not self.preface:
            if len(self.buf) < len(f.PREFACE):
                return
            self.preface = True
            del self.buf[: len(f.PREFACE)]
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return
            ftype, flags, sid = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buf[9 : 9 + length])
            del self.buf[: 9 + length]
            self.requests.frame(ftype, flags, sid, payload)
            if ftype == f.WINDOW_UPDATE and length == 4:
                inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
                if sid:
                    self.streams[sid] = self.streams.get(sid, 0) + inc
                else:
                    self.connection += inc
            elif ftype == f.SETTINGS and length % 6 == 0 and not flags & f.FLAG_ACK:
                for i in range(0, length, 6):
                    if int.from_bytes(payload[i : i + 2], "big") == f.SETTINGS_INITIAL_WINDOW_SIZE:
                        self.max_initial = max(self.max_initial, int.from_bytes(payload[i + 2 : i + 6], "big"))

    def stream(self, sid: int) -> int:
        return self.max_initial + self.streams.get(sid, 0)


class OutputChecker:
    """The client's view of the server's bytes."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.decoder = Decoder()
        self.frames = 0
        self.block: tuple[int, int, bytearray] | None = None  # (sid, END_STREAM flag, fragments)
        self.started: set[int] = set()  # streams with response headers
        self.done: set[int] = set()  # streams the server ended or reset
        self.last_frame: Frame | None = None
        self.control_bytes = 0  # bytes of frames other than DATA/HEADERS/CONTINUATION
        self.data_sent: dict[int, int] = {}  # flow-controlled DATA bytes per stream
        self.data_total = 0
        self.digest = hashlib.sha256()  # of every byte, for comparing builds (tests/test_native.py)
        self.resets: dict[int, int] = {}  # stream -> the error code of our RST_STREAM

    def feed(self, data: bytes, max_frame: int, highest_sid: int) -> None:
        self.digest.update(data)
        self.buf += data
        self.control_bytes = 0
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]), strict=True)
            assert len(self.buf) >= 9 + length, "data_to_send() ended inside a frame"
            frame.parse_body(memoryview(bytes(self.buf[9 : 9 + length])))
            del self.buf[: 9 + length]
            self._frame(frame, length, max_frame, highest_sid)
        assert not self.buf, "data_to_send() ended inside a frame header"

    def _frame(self, frame: Frame, length: int, max_frame: int, highest_sid: int) -> None:
        self.frames += 1
        self.last_frame = frame
        if self.frames == 1:
            assert isinstance(frame, SettingsFrame) and "ACK" not in frame.flags, "first frame is not SETTINGS"
        assert length <= max_frame, f"{type(frame).__name__} of {length} bytes > peer max frame {max_frame}"
        sid = frame.stream_id
        if self.block is not None:
            assert isinstance(frame, ContinuationFrame) and sid == self.block[0], "header block interrupted"
        if isinstance(frame, (DataFrame, HeadersFrame, ContinuationFrame, RstStreamFrame)):
            assert sid % 2 == 1 and sid <= highest_sid, f"{type(frame).__name__} on stream {sid} the client never opened"
        else:
            self.control_bytes += 9 + length
        if isinstance(frame, (DataFrame, HeadersFrame)):
            assert sid not in self.done, f"{type(frame).__name__} on stream {sid} after it ended"
        if isinstance(frame, DataFrame):
            assert sid in self.started, f"DATA before response headers on stream {sid}"
            self.data_sent[sid] = self.data_sent.get(sid, 0) + length
            self.data_total += length
            if "END_STREAM" in frame.flags:
                self.done.add(sid)
        elif isinstance(frame, HeadersFrame):
            self.block = (sid, int("END_STREAM" in frame.flags), bytearray(frame.data))
        elif isinstance(frame, ContinuationFrame):
            assert self.block is not None, "CONTINUATION without HEADERS"
            self.block[2].extend(frame.data)
        elif isinstance(frame, RstStreamFrame):
            self.done.add(sid)
            self.resets.setdefault(sid, frame.error_code)
        if self.block is not None and "END_HEADERS" in frame.flags:
            self._header_block(*self.block)
            self.block = None

    def _header_block(self, sid: int, end_stream: int, block: bytearray) -> None:
        headers = self.decoder.decode(bytes(block), raw=True)
        names = [bytes(name) for name, _ in headers]
        assert all(n == n.lower() for n in names), f"upper-case header name in {names}"
        if sid not in self.started:
            assert names and names[0] == b":status", f"response on stream {sid} does not start with :status: {names}"
            self.started.add(sid)
        else:
            assert end_stream and b":status" not in names, f"second header block on stream {sid} is not trailers"
        if end_stream:
            assert b"grpc-status" in names, f"stream {sid} ended without grpc-status: {names}"
            self.done.add(sid)


class Driver:
    """Answers requests the way GrpcConnection and Call do, choosing per request from ``actions``."""

    def __init__(self, scenario: Scenario) -> None:
        self.conn = h2.H2ServerConnection(max_concurrent_streams=MAX_STREAMS, max_header_list_size=MAX_HEADER_LIST)
        self.actions = scenario.actions
        self.size = scenario.response_size
        self.requests = 0
        self.later: list[int] = []
        self.started: set[int] = set()  # streams the driver sent response headers on
        self.active: set[int] = set()  # requests not yet ended by the client or reset
        self.gone: set[int] = set()  # streams reset (either side)
        self.highest_request = 0
        self.reset_by_us: list[int] = []
        self.shutdown_at: int | None = None  # last stream id of our graceful GOAWAY
        self.terminated: h2.ConnectionTerminated | None = None

    def handle(self, events: list[h2.Event]) -> None:
        conn = self.conn
        for event in events:
            assert self.terminated is None, f"{type(event).__name__} after ConnectionTerminated"
            sid = getattr(event, "stream_id", None)
            if sid is not None:
                assert sid not in self.gone, f"{type(event).__name__} for stream {sid} after its reset"
            if isinstance(event, h2.RequestReceived):
                assert sid is not None and sid % 2 == 1 and sid > self.highest_request, f"request on stream {sid}"
                assert self.shutdown_at is None or sid <= self.shutdown_at, f"request {sid} accepted after our GOAWAY"
                assert well_formed_request(list(event.headers)), f"malformed request accepted: {event.headers}"
                self.highest_request = sid
                if not event.end_stream:
                    self.active.add(sid)
                self._answer(sid)
            elif isinstance(event, h2.DataReceived):
                assert sid in self.active, f"DATA event for stream {sid} that is not an open request"
                if event.end_stream:
                    self.active.discard(sid)
                conn.acknowledge_received_data(event.stream_id, event.flow_length)
            elif isinstance(event, h2.StreamEnded):
                assert sid in self.active, f"StreamEnded for stream {sid} that is not an open request"
                self.active.discard(sid)
            elif isinstance(event, h2.StreamReset):
                self.gone.add(event.stream_id)
                self.active.discard(event.stream_id)
            elif isinstance(event, h2.ConnectionTerminated):
                self.terminated = event
        self.gone.update(self.reset_by_us)
        self.active.difference_update(self.reset_by_us)
        self.reset_by_us.clear()
        if self.later and self.terminated is None and self.requests % 2 == 0:
            self._finish(self.later.pop(0))

    def _answer(self, sid: int) -> None:
        conn = self.conn
        action = self.actions[self.requests % len(self.actions)]
        self.requests += 1
        if action == "reset":
            conn.reset_stream(sid, f.CANCEL)
            self.reset_by_us.append(sid)  # events already produced for it may follow in this batch
        elif action == "trailers_only":
            conn.send_headers(sid, g.trailers(g.UNIMPLEMENTED, "Method not found!", trailers_only=True), end_stream=True)
        elif action in ("unary", "big"):
            conn.send_headers(sid, g.response_headers())
            conn.send_data(sid, grpc_message(self.size if action == "unary" else 3 * self.size + 1))
            conn.send_headers(sid, g.trailers(g.OK), end_stream=True)
        elif action == "drain_start":  # first GOAWAY(2^31-1) + PING: new streams still served
            conn.start_shutdown()
            conn.send_headers(sid, g.trailers(g.UNAVAILABLE, "draining", trailers_only=True), end_stream=True)
        elif action == "shutdown":  # both GOAWAYs (the PING ACK never came: the 1 s timer), then answer
            conn.start_shutdown()
            conn.finish_shutdown()
            if self.shutdown_at is None and conn.goaway_sent:
                self.shutdown_at = conn.highest_stream_id
            conn.send_headers(sid, g.trailers(g.UNAVAILABLE, "draining", trailers_only=True), end_stream=True)
        elif action == "open":
            self.started.add(sid)
            conn.send_headers(sid, g.response_headers())
            conn.send_data(sid, grpc_message(self.size))
            self.later.append(sid)
        else:
            self.later.append(sid)

    def _finish(self, sid: int) -> None:
        """A late answer, like a handler finishing after other work: body then status."""
        conn = self.conn
        if sid not in self.started:
            self.started.add(sid)
            conn.send_headers(sid, g.response_headers())
        conn.send_data(sid, grpc_message(self.size))
        conn.send_headers(sid, g.trailers(g.DEADLINE_EXCEEDED, "late"), end_stream=True)

    def finish_all(self) -> None:
        while self.later and self.terminated is None:
            self._finish(self.later.pop(0))


def check_flow_control(checker: OutputChecker, credit: ClientCredit) -> None:
    """The server never sends more DATA than the client's windows allowed."""
    assert checker.data_total <= credit.connection, \
        f"{checker.data_total} DATA bytes sent, connection credit at most {credit.connection}"
    for sid, sent in checker.data_sent.items():
        assert sent <= credit.stream(sid), f"{sent} DATA bytes on stream {sid}, credit at most {credit.stream(sid)}"


def check_malformed_answered(checker: OutputChecker, credit: ClientCredit, driver: Driver) -> None:
    """Each malformed request block the server read got RST_STREAM PROTOCOL_ERROR (or
    REFUSED_STREAM: refused before being looked at, after our GOAWAY or over the stream limit)."""
    if driver.terminated is not None:
        return  # the blocks after the connection error were never read
    for sid in credit.requests.malformed:
        if sid <= driver.conn.highest_stream_id:
            code = checker.resets.get(sid)
            assert code in (f.PROTOCOL_ERROR, f.REFUSED_STREAM), f"malformed request on stream {sid} answered {code}"


def check_bounds(conn: h2.H2ServerConnection) -> None:
    assert len(conn.streams) <= conn.max_concurrent_streams, f"{len(conn.streams)} open streams"
    assert len(conn._buf) < len(f.PREFACE) + 9 + conn.local_max_frame, f"receive buffer of {len(conn._buf)} bytes"
    if conn._continuation is not None:
        assert len(conn._continuation[2]) <= conn._limits.max_header_block, "CONTINUATION block over the limit"
    decoder = conn._decoder
    assert decoder.table_size <= HPACK_TABLE, f"HPACK table of {decoder.table_size} bytes"
    assert decoder.cached_blocks <= decoder._cache_limit
    assert set(conn._blocked) <= set(conn.streams), "a blocked stream that is not open"
    assert conn.send_conn_window >= 0, f"connection send window {conn.send_conn_window}"


def run_scenario(scenario: Scenario, statistics: bool = True) -> str:
    """Run one scenario, checking every invariant; returns the sha256 of the server's output.
    ``statistics``: record what it reached as hypothesis events (only inside a hypothesis test)."""
    driver = Driver(scenario)
    conn = driver.conn
    checker = OutputChecker()
    credit = ClientCredit()
    conn.initiate_connection()
    checker.feed(conn.data_to_send(), conn.peer_max_frame, 0)
    for chunk in scenario.chunks:
        if driver.terminated is not None:
            assert conn.receive_data(chunk) == [], "events after ConnectionTerminated"
            assert conn.data_to_send() == b"", "output after ConnectionTerminated"
            continue
        max_frame = conn.peer_max_frame
        credit.feed(chunk)
        events = conn.receive_data(chunk)  # must never raise
        driver.handle(events)
        max_frame = max(max_frame, conn.peer_max_frame)
        checker.feed(conn.data_to_send(), max_frame, conn.highest_stream_id)
        # control frames answering a chunk: a small multiple of it, plus one GOAWAY's debug text
        assert checker.control_bytes <= 2 * len(chunk) + 300, f"{checker.control_bytes} control bytes for {len(chunk)} in"
        if driver.terminated is not None:
            last = checker.last_frame
            assert isinstance(last, GoAwayFrame) and last.error_code == driver.terminated.error_code, \
                f"ConnectionTerminated but the last frame is {last!r}, not its GOAWAY"
            assert conn.terminated
        check_flow_control(checker, credit)
        check_malformed_answered(checker, credit, driver)
        check_bounds(conn)
    driver.finish_all()
    checker.feed(conn.data_to_send(), conn.peer_max_frame, conn.highest_stream_id)
    check_flow_control(checker, credit)
    check_bounds(conn)
    if not statistics:
        return checker.digest.hexdigest()
    # what the example reached (shown by pytest --hypothesis-show-statistics)
    record(f"requests answered: {min(driver.requests, 5)}{'+' if driver.requests >= 5 else ''}")
    record(f"malformed requests: {min(len(credit.requests.malformed), 3)}")
    record("ended by: " + (" ".join(driver.terminated.reason.split()[:2]) if driver.terminated else "nothing"))
    return checker.digest.hexdigest()
