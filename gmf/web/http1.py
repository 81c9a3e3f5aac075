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

Timeouts are deadlines, not timers: :attr:`H1ServerConnection.deadline` is the monotonic time at
which the runtime must call :meth:`H1ServerConnection.check_deadline` (re-read it after every
call into the connection). The runtime owns the clock; every entry point takes ``now``.

How a runtime drives it (phase 2: the accept point hands a connection whose first bytes are not
the HTTP/2 preface, or whose ALPN is ``http/1.1``, to this class)::

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


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class H1ServerConnection:
    """One HTTP/1.1 server connection (see the module docstring)."""

    def __init__(self, limits: H1Limits | None = None, *, now: float) -> None:
        self.limits = limits or H1Limits()
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head)
        self._out: list[bytes] = []
        self.closing = False
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
        self._h11.receive_data(data)
        return self._events(now)

    def next_events(self, now: float) -> list[H1Event]:
        """Events of a pipelined request already buffered; call after :meth:`end_response`."""
        if self.closing:
            return []
        return self._events(now)

    def _events(self, now: float) -> list[H1Event]:
        out: list[H1Event] = []
        conn = self._h11
        try:
            while True:
                if conn.their_state is h11.IDLE:
                    self._check_head(now)
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
                        conn.start_next_cycle()
                        self._idle_since = now
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

    def _check_head(self, now: float) -> None:
        """Before h11 parses a head: limits and the smuggling shapes h11 lets through."""
        raw, _ = self._h11.trailing_data
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
        if self._body_since is not None and self._h11.their_state is h11.SEND_BODY:
            return self._body_since + lim.body_timeout
        if self._idle_since is not None:
            return self._idle_since + lim.idle_timeout
        return None

    def check_deadline(self, now: float) -> list[H1Event]:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        if self._head_since is not None:
            return [self._reject(408, f"request head not complete after {self.limits.header_timeout:g} s")]
        if self._body_since is not None and self._h11.their_state is h11.SEND_BODY:
            return [self._reject(408, f"request body not complete after {self.limits.body_timeout:g} s")]
        self.closing = True
        self._idle_since = None
        return [Closed(f"keep-alive connection idle for {self.limits.idle_timeout:g} s")]

    # ------------------------------------------------------------------ output
    def send_head(self, status: int, headers: list[Header], content_length: int | None = None) -> None:
        """Response status and headers; without ``content_length`` the body is chunked (HTTP/1.1)
        or delimited by closing the connection (HTTP/1.0)."""
        if content_length is not None:
            headers = [*headers, (b"content-length", str(content_length).encode())]
        self._response_started = True
        self._out.append(self._h11.send(h11.Response(status_code=status, headers=headers, reason=_phrase(status))) or b"")

    def send_body(self, data: bytes) -> None:
        if data:
            self._out.append(self._h11.send(h11.Data(data=data)) or b"")

    def end_response(self, now: float) -> None:
        """The response is complete. Then :meth:`next_events` gives the next pipelined request."""
        conn = self._h11
        self._out.append(conn.send(h11.EndOfMessage()) or b"")
        self._response_started = False
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            self.closing = True
        elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._idle_since = now
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
    def reading_paused(self) -> bool:
        """True while unanswered buffered input exceeds ``max_pipeline_buffer``: stop reading."""
        return self._buffered > self.limits.max_pipeline_buffer and self._h11.their_state is not h11.SEND_BODY
