"""HTTP/1.1 server connection, sans-IO, on ``h11``: bytes in -> events, send methods -> bytes out.

``h11`` does the parsing and the response framing; this module adds what a server facing the
internet needs on top of it and gives every bad input one defined answer:

==========================================================  ==========================================
input                                                       answer (then the connection is closed)
==========================================================  ==========================================
malformed request line (as soon as its line ends), header    400 Bad Request
line or chunk
``Transfer-Encoding`` together with ``Content-Length``      400 Bad Request (RFC 9112 §6.1 smuggling)
obsolete line folding (a header line starting with SP/HT)   400 Bad Request (RFC 9112 §5.2)
conflicting ``Content-Length`` values, a missing or         400 Bad Request (h11)
duplicated ``Host``
``Transfer-Encoding`` other than ``chunked``                501 Not Implemented (h11)
HTTP version other than 1.0 / 1.1                           505 HTTP Version Not Supported
request line longer than ``max_request_line``               414 URI Too Long
head longer than ``max_head`` or over ``max_headers`` lines 431 Request Header Fields Too Large
body over ``max_body`` (declared, or counted when chunked)  413 Content Too Large
head not complete ``header_timeout`` after its first byte   408 Request Timeout
body not complete ``body_timeout`` after the head           408 Request Timeout (close only, when a
                                                            response has already started)
nothing received ``idle_timeout`` after the last response   closed without an answer (keep-alive idle)
==========================================================  ==========================================

Bare LF line endings are accepted (RFC 9112 §2.2 allows it; h11 does).

Keep-alive and pipelining: requests are answered in order; while one is being answered, the
bytes of the next ones stay buffered in h11 and their events come from :meth:`next_events`
after :meth:`end_response`. Buffered-but-unanswered bytes are bounded: once they exceed
``max_pipeline_buffer``, :attr:`H1ServerConnection.reading_paused` turns true and the runtime
must stop reading the socket until it turns false (TCP back-pressure, no answer needed).

Two parsers, one behaviour: a request cycle whose head is plain (``HTTP/1.1``, CRLF line ends,
one ``Host``, at most one all-digit ``Content-Length``, no ``Transfer-Encoding``, ``Expect``
or ``Connection`` other than ``close``/``keep-alive``, no method ``HEAD``, within the limits)
is parsed and answered by a hand-written fast path: one regular expression checks the
whole head as h11 would, and the response head is written directly. Every other cycle is
h11's, from its first byte: the bytes the fast path holds go to h11 untouched, so each bad
input gets exactly h11's (and this module's) answer. The fast path takes over again at the
next request boundary where h11 holds nothing. ``H1ServerConnection(fast=False)`` is h11
only (the tests run both).

Timeouts are deadlines, not timers: :attr:`H1ServerConnection.deadline` is the monotonic time at
which the runtime must call :meth:`H1ServerConnection.check_deadline` (re-read it after every
call into the connection). The runtime owns the clock; every entry point takes ``now``.

How a runtime drives it (:class:`gmf.rpc.http1.Http1Connection` does, for the connections the
accept point hands it: ALPN ``http/1.1``, or first bytes that are an HTTP/1.x request)::

    conn = H1ServerConnection(H1Limits(), now=loop.time())
    for event in conn.receive_data(chunk, loop.time()):   # b"" = EOF
        match event:
            case Request(): ...                # route it (gmf.web.route.classify) and start a call
            case Body(data=data): ...          # feed the call's request decoder
            case EndOfRequest(): ...           # the request half-closed
            case Rejected() | Closed(): ...    # nothing more will come: flush, then close
    transport.write(conn.data_to_send())       # after send_head/send_body/end_response too
    if conn.closing: close after the write
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

import h11

Header = tuple[bytes, bytes]

_OBS_FOLD = re.compile(rb"\n[ \t]")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
# RFC 9112 3: method (a token) SP request-target (visible characters) SP HTTP-version, as h11 reads it.
_REQUEST_LINE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]")
# The fast path's head: an HTTP/1.1 request line, then header lines as h11 accepts them (a token,
# ":", optional whitespace, a value of visible characters with inner spaces/tabs), CRLF each.
# (Any run of spaces, tabs and visible characters is h11's ``OWS field-value OWS``.)
_FAST_HEAD = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/1\.1\r\n"
    rb"((?:[-!#$%&'*+.^_`|~0-9A-Za-z]+:[\x20-\x7e\t]*\r\n)*)\r\n"
)
_FIELD_LINE = re.compile(rb"([^:]*):[ \t]*([^\r]*)\r\n")  # a line of a block _FAST_HEAD accepted
_OWS = (b" ", b"\t")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_FALLBACK = object()  # the fast path declines: h11 parses this cycle
_NO_BODY = (204, 304)  # responses without a body: no framing header when no length is given


@dataclass(frozen=True, slots=True)
class H1Limits:
    """Per-connection limits; the defaults suit RPC traffic (small heads, bounded bodies)."""

    max_request_line: int = 8192
    max_head: int = 16384  # request line + header lines
    max_headers: int = 100
    max_body: int = 4 * 1024 * 1024 + 1024  # the default gRPC message limit plus framing
    max_pipeline_buffer: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 60.0


# ---------------------------------------------------------------------------- events
@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: list[Header]  # names lower-case, in arrival order
    http_version: bytes  # b"1.1" or b"1.0"
    keep_alive: bool


@dataclass(slots=True)
class Body:
    data: bytes


@dataclass(slots=True)
class EndOfRequest:
    pass


@dataclass(slots=True)
class Rejected:
    """Bad input or a timeout: the answer (if ``status``) is queued; flush, then close."""

    status: int | None
    reason: str


@dataclass(slots=True)
class Closed:
    """The peer closed, or the keep-alive idle timeout passed: close without an answer."""

    reason: str


H1Event = Request | Body | EndOfRequest | Rejected | Closed


class _Reject(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


_PHRASES = {int(s): s.phrase.encode() for s in HTTPStatus}


def _phrase(status: int) -> bytes:
    return _PHRASES.get(status, b"")


class H1ServerConnection:
    """One HTTP/1.1 server connection (see the module docstring)."""

    def __init__(self, limits: H1Limits | None = None, *, now: float, fast: bool = True) -> None:
        self.limits = limits or H1Limits()
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head)
        self._out: list[bytes] = []
        self.closing = False
        self._use_fast = fast
        self._fast = fast  # this cycle (or the next one) is the fast path's, not h11's
        self._buf = b""  # fast path: bytes received and not parsed yet
        self._in_request = False  # fast path: a head was parsed, its body has not ended
        self._remaining = 0  # fast path: body bytes still to come
        self._answering = False  # fast path: a request arrived and its response has not ended
        self._keep_alive = True  # fast path: of the request being answered
        self._chunked = False  # fast path: the response body is chunked
        self._body_seen = 0
        self._response_started = False
        self._idle_since: float | None = now  # waiting for the first byte of a request
        self._head_since: float | None = None  # first byte of a head arrived, head not complete
        self._body_since: float | None = None  # head complete, body not complete
        self._buffered = 0  # bytes h11 holds that no event has taken yet

    # ------------------------------------------------------------------ input
    def receive_data(self, data: bytes, now: float) -> list[H1Event]:
        """Bytes from the socket (``b""`` when the peer closed its side)."""
        if self.closing:
            return []
        if self._fast:
            if data:
                self._buf = self._buf + data if self._buf else data
                return self._fast_events(now)
            return self._fast_eof(now)
        self._h11.receive_data(data)
        return self._events(now)

    def next_events(self, now: float) -> list[H1Event]:
        """Events of a pipelined request already buffered; call after :meth:`end_response`."""
        if self.closing:
            return []
        return self._fast_events(now) if self._fast else self._events(now)

    # ------------------------------------------------------------------ the fast path
    def _fast_events(self, now: float) -> list[H1Event]:
        out: list[H1Event] = []
        while True:
            buf = self._buf
            if self._in_request:
                if self._remaining:
                    if not buf:
                        break
                    chunk = buf[: self._remaining] if len(buf) > self._remaining else buf
                    self._buf = buf[len(chunk):]
                    self._remaining -= len(chunk)
                    out.append(Body(chunk))
                    if self._remaining:
                        break
                self._in_request = False
                self._body_since = None
                out.append(EndOfRequest())
                if not self._answering:
                    self._next_cycle(now)  # answered before the body ended
                continue  # pipelined bytes wait below while the response is pending
            if buf and not self._keep_alive:  # after "connection: close" only the close may come (as h11)
                out.append(self._reject(400, "Got data when expecting EOF"))
                break
            if self._answering or not buf:
                break
            request = self._fast_head(buf, now)
            if request is None:  # the head is not complete yet: the limits and timeouts apply
                try:
                    self._check_head(buf, now)
                except _Reject:
                    return out + self._to_h11(now)  # h11's path gives the answer
                break
            if request is _FALLBACK:
                return out + self._to_h11(now)
            assert isinstance(request, Request)
            out.append(request)
        self._buffered = len(self._buf)
        return out

    def _fast_head(self, buf: bytes, now: float) -> Request | object | None:
        """A plain head at the start of ``buf`` -> its Request (consumed); None: incomplete;
        _FALLBACK: anything else (h11 parses it)."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None if b"\n\n" not in buf and b"\n\r\n" not in buf else _FALLBACK
        lim = self.limits
        if end > lim.max_head or buf.find(b"\r\n", 0, lim.max_request_line + 2) < 0:
            return _FALLBACK
        m = _FAST_HEAD.match(buf, 0, end + 4)
        if m is None or m.end() != end + 4:
            return _FALLBACK
        method, target, block = m.group(1), m.group(2), m.group(3)
        if method == b"HEAD":
            return _FALLBACK
        headers: list[Header] = []
        length = 0
        hosts = lengths = 0
        keep_alive = True
        for name, value in _FIELD_LINE.findall(block):
            name = name.lower()
            if value.endswith(_OWS):
                value = value.rstrip(b" \t")
            headers.append((name, value))
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                lengths += 1
                if not _DIGITS.fullmatch(value):
                    return _FALLBACK
                length = int(value)
            elif name == b"connection":
                token = value.lower()
                if token == b"close":
                    keep_alive = False
                elif token != b"keep-alive":
                    return _FALLBACK
            elif name == b"transfer-encoding" or name == b"expect":
                return _FALLBACK
        if hosts != 1 or lengths > 1 or len(headers) > lim.max_headers or length > lim.max_body:
            return _FALLBACK
        self._buf = buf[end + 4:]
        self._head_since = self._idle_since = None
        self._body_since = now
        self._response_started = False
        self._in_request = self._answering = True
        self._remaining = length
        self._keep_alive = keep_alive
        return Request(method, target, headers, b"1.1", keep_alive)

    def _fast_eof(self, now: float) -> list[H1Event]:
        if self._in_request or (self._buf and not self._answering):
            return self._to_h11(now, eof=True) if not self._in_request else [
                self._reject(400, "peer closed connection without sending complete message body")]
        self.closing = True
        return [Closed("peer closed the connection")]

    def _to_h11(self, now: float, eof: bool = False) -> list[H1Event]:
        """This cycle is h11's: it gets the buffered bytes as they arrived."""
        self._fast = False
        buf, self._buf = self._buf, b""
        if buf:
            self._h11.receive_data(buf)
        if eof:
            self._h11.receive_data(b"")
        return self._events(now)

    def _next_cycle(self, now: float) -> None:
        self._idle_since = now

    def _events(self, now: float) -> list[H1Event]:
        out: list[H1Event] = []
        conn = self._h11
        try:
            while True:
                if conn.their_state is h11.IDLE:
                    self._check_head(conn.trailing_data[0], now)
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                if isinstance(event, h11.Request):
                    out.append(self._request(event, now))
                elif isinstance(event, h11.Data):
                    self._body_seen += len(event.data)
                    if self._body_seen > self.limits.max_body:
                        raise _Reject(413, f"request body over {self.limits.max_body} bytes")
                    out.append(Body(bytes(event.data)))
                elif isinstance(event, h11.EndOfMessage):
                    self._body_since = None
                    out.append(EndOfRequest())
                    if conn.our_state is h11.DONE:  # answered before the body ended: next cycle now
                        self._h11_next_cycle(now)
                        if self._fast:
                            return out + self._fast_events(now)
                elif isinstance(event, h11.ConnectionClosed):
                    self.closing = True
                    out.append(Closed("peer closed the connection"))
                    break
        except _Reject as exc:
            out.append(self._reject(exc.status, exc.reason))
        except h11.RemoteProtocolError as exc:
            out.append(self._reject(exc.error_status_hint, str(exc)))
        self._buffered = len(conn.trailing_data[0])
        return out

    def _h11_next_cycle(self, now: float) -> None:
        """h11's cycle is over: the next one is the fast path's when h11 holds no bytes."""
        conn = self._h11
        conn.start_next_cycle()
        self._idle_since = now
        raw, closed = conn.trailing_data
        if self._use_fast and not raw and not closed:
            self._fast = True

    def _check_head(self, raw: bytes, now: float) -> None:
        """Before a head is parsed: limits and the smuggling shapes h11 lets through."""
        if not raw:
            return
        if self._head_since is None:
            self._head_since = now
            self._idle_since = None
        end = _HEAD_END.search(raw)
        head = raw[: end.start()] if end else raw
        line_end = head.find(b"\n")
        if (line_end if line_end >= 0 else len(head)) > self.limits.max_request_line:
            raise _Reject(414, f"request line over {self.limits.max_request_line} bytes")
        if len(head) > self.limits.max_head:
            raise _Reject(431, f"request head over {self.limits.max_head} bytes")
        if line_end >= 0 and not _REQUEST_LINE.fullmatch(head, 0, line_end - (head[line_end - 1:line_end] == b"\r")):
            raise _Reject(400, "malformed request line")  # at once, not when a head that never ends would end
        if end is not None and _OBS_FOLD.search(head, max(line_end, 0)):
            raise _Reject(400, "obsolete line folding in the request head")

    def _request(self, event: h11.Request, now: float) -> Request:
        if event.http_version not in (b"1.1", b"1.0"):
            raise _Reject(505, f"HTTP/{event.http_version.decode('latin-1')} is not supported")
        headers = [(bytes(k), bytes(v)) for k, v in event.headers]
        if len(headers) > self.limits.max_headers:
            raise _Reject(431, f"more than {self.limits.max_headers} header fields")
        length: int | None = None
        chunked = False
        for name, value in headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        if chunked and length is not None:
            raise _Reject(400, "both Transfer-Encoding and Content-Length")
        if length is not None and length > self.limits.max_body:
            raise _Reject(413, f"request body of {length} bytes is over {self.limits.max_body}")
        self._head_since = None
        self._body_since = now
        self._body_seen = 0
        self._response_started = False
        if self._h11.they_are_waiting_for_100_continue:
            self._out.append(self._h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        keep_alive = event.http_version == b"1.1"
        for name, value in headers:
            if name == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                keep_alive = b"keep-alive" in tokens if event.http_version == b"1.0" else b"close" not in tokens
        return Request(bytes(event.method), bytes(event.target), headers, bytes(event.http_version), keep_alive)

    def _reject(self, status: int, reason: str) -> Rejected:
        """Queue the error answer (unless a response already started), then close."""
        self._head_since = self._body_since = self._idle_since = None
        self.closing = True
        if self._response_started:
            return Rejected(None, reason)
        body = f"{status} {_phrase(status).decode()}: {reason}\n".encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _phrase(status), len(body))
        )
        self._out.append(head + body)
        return Rejected(status, reason)

    # ------------------------------------------------------------------ timeouts
    @property
    def deadline(self) -> float | None:
        """When :meth:`check_deadline` must be called (monotonic, the runtime's clock), or None."""
        if self.closing:
            return None
        lim = self.limits
        if self._head_since is not None:
            return self._head_since + lim.header_timeout
        if self._body_since is not None and self._receiving_body():
            return self._body_since + lim.body_timeout
        if self._idle_since is not None:
            return self._idle_since + lim.idle_timeout
        return None

    def _receiving_body(self) -> bool:
        return self._in_request if self._fast else self._h11.their_state is h11.SEND_BODY

    def check_deadline(self, now: float) -> list[H1Event]:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        if self._head_since is not None:
            return [self._reject(408, f"request head not complete after {self.limits.header_timeout:g} s")]
        if self._body_since is not None and self._receiving_body():
            return [self._reject(408, f"request body not complete after {self.limits.body_timeout:g} s")]
        self.closing = True
        self._idle_since = None
        return [Closed(f"keep-alive connection idle for {self.limits.idle_timeout:g} s")]

    # ------------------------------------------------------------------ output
    def send_head(self, status: int, headers: list[Header], content_length: int | None = None) -> None:
        """Response status and headers; without ``content_length`` the body is chunked (HTTP/1.1)
        or delimited by closing the connection (HTTP/1.0)."""
        self._response_started = True
        if self._fast:
            parts = [b"HTTP/1.1 %d %s\r\n" % (status, _phrase(status))]
            for name, value in headers:
                if name == b"connection" and value.lower() == b"close":
                    self._keep_alive = False
                parts.append(b"%s: %s\r\n" % (name, value))
            self._chunked = content_length is None and status not in _NO_BODY
            if content_length is not None:
                parts.append(b"content-length: %d\r\n" % content_length)
            elif self._chunked:
                parts.append(b"transfer-encoding: chunked\r\n")
            if not self._keep_alive and not any(name == b"connection" for name, _ in headers):
                parts.append(b"connection: close\r\n")
            parts.append(b"\r\n")
            self._out.append(b"".join(parts))
            return
        if content_length is not None:
            headers = [*headers, (b"content-length", str(content_length).encode())]
        self._out.append(self._h11.send(h11.Response(status_code=status, headers=headers, reason=_phrase(status))) or b"")

    def send_body(self, data: bytes) -> None:
        if data:
            if self._fast:
                self._out.append(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
                return
            self._out.append(self._h11.send(h11.Data(data=data)) or b"")

    def end_response(self, now: float) -> None:
        """The response is complete. Then :meth:`next_events` gives the next pipelined request."""
        self._response_started = False
        if self._fast:
            if self._chunked:
                self._out.append(b"0\r\n\r\n")
            self._answering = False
            if not self._keep_alive:
                self.closing = True
            elif not self._in_request:
                self._next_cycle(now)
            # else: the request body is still arriving; it is read to its end before the next cycle
            return
        conn = self._h11
        self._out.append(conn.send(h11.EndOfMessage()) or b"")
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            self.closing = True
        elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            self._h11_next_cycle(now)
        # else: the request body is still arriving; h11 reads it to its end before the next cycle

    def respond(self, status: int, headers: list[Header], body: bytes, now: float) -> None:
        """A whole response with a known length (Connect unary, CORS preflight, errors)."""
        self.send_head(status, headers, len(body))
        self.send_body(body)
        self.end_response(now)

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    @property
    def has_input(self) -> bool:
        """Bytes received that no event has taken yet (a pipelined request, the rest of a body)."""
        return bool(self._buf) if self._fast else bool(self._h11.trailing_data[0])

    @property
    def reading_paused(self) -> bool:
        """True while unanswered buffered input exceeds ``max_pipeline_buffer``: stop reading."""
        return self._buffered > self.limits.max_pipeline_buffer and not self._receiving_body()
