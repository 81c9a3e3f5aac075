"""gmf.web.http1: the sans-IO HTTP/1.1 server connection (every hostile shape has its answer)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from gmf.web.http1 import Body, Closed, EndOfRequest, H1Limits, H1ServerConnection, Rejected, Request

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

Factory = Callable[..., H1ServerConnection]


@pytest.fixture(params=["fast", "h11"])
def h1(request: pytest.FixtureRequest) -> Factory:
    """``H1ServerConnection`` with the fast path (plain heads parsed by hand) and without (h11
    only): every behaviour below holds for both."""
    return partial(H1ServerConnection, fast=request.param == "fast")


def status_of(out: bytes) -> int:
    assert out.startswith(b"HTTP/1.1 "), out[:80]
    return int(out[9:12])


def feed(conn: H1ServerConnection, data: bytes, now: float = 0.0) -> list:
    return conn.receive_data(data, now)


GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"


def test_keep_alive_two_requests_in_sequence(h1: Factory) -> None:
    conn = h1(now=0.0)
    events = feed(conn, GET)
    assert isinstance(events[0], Request) and events[0].target == b"/x" and events[0].keep_alive
    assert isinstance(events[1], EndOfRequest)
    conn.respond(200, [(b"content-type", b"text/plain")], b"hi", 0.0)
    out = conn.data_to_send()
    assert status_of(out) == 200 and out.endswith(b"\r\n\r\nhi") and b"content-length: 2" in out
    assert not conn.closing
    events = feed(conn, b"POST /y HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    assert [type(e) for e in events] == [Request, Body, EndOfRequest]
    assert events[1].data == b"abc"


def test_pipelined_requests_are_answered_in_order(h1: Factory) -> None:
    conn = h1(now=0.0)
    events = feed(conn, GET + GET.replace(b"/x", b"/second"))
    assert [type(e) for e in events] == [Request, EndOfRequest]  # the second waits
    conn.respond(200, [], b"1", 1.0)
    events = conn.next_events(1.0)
    assert isinstance(events[0], Request) and events[0].target == b"/second"


def test_pipelining_flood_pauses_reading(h1: Factory) -> None:
    conn = h1(H1Limits(max_pipeline_buffer=4096), now=0.0)
    feed(conn, GET)
    assert not conn.reading_paused
    feed(conn, GET * 200)  # ~5.6 KiB of requests while the first is unanswered
    assert conn.reading_paused
    # Answering drains the buffer one request at a time; reading resumes when it is small again.
    for _ in range(200):
        conn.respond(204, [], b"", 0.0)
        conn.next_events(0.0)
    assert not conn.reading_paused


def test_chunked_streaming_response(h1: Factory) -> None:
    conn = h1(now=0.0)
    feed(conn, GET)
    conn.send_head(200, [(b"content-type", b"application/grpc-web")])
    conn.send_body(b"abc")
    conn.send_body(b"de")
    conn.end_response(0.0)
    out = conn.data_to_send()
    assert b"transfer-encoding: chunked" in out.lower()
    assert out.endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")


def test_http10_closes_after_the_response(h1: Factory) -> None:
    conn = h1(now=0.0)
    events = feed(conn, b"GET /x HTTP/1.0\r\n\r\n")
    assert isinstance(events[0], Request) and not events[0].keep_alive
    conn.respond(200, [], b"ok", 0.0)
    assert conn.closing


def test_expect_100_continue_is_answered(h1: Factory) -> None:
    conn = h1(now=0.0)
    feed(conn, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert conn.data_to_send().startswith(b"HTTP/1.1 100 ")


def test_peer_close_is_an_event(h1: Factory) -> None:
    conn = h1(now=0.0)
    assert [type(e) for e in feed(conn, b"")] == [Closed]
    assert conn.closing


REJECTIONS = {
    "transfer-encoding with content-length": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "obsolete line folding": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    "folding on the first header line": (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    "conflicting content-length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    "content-length with a sign": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    "space before the colon": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400),
    "missing host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "NUL in a header": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    "garbage request line": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    "transfer-encoding gzip": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    "two transfer-encodings": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    "HTTP/2.0 on the HTTP/1 port": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "the HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "request line too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    "head too long": (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: " + b"b" * 17000 + b"\r\n\r\n", 431),
    "too many header lines": (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
    "declared body too large": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n", 413),
    "bad chunk size": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
}


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_hostile_input_has_its_answer(h1: Factory, name: str) -> None:
    data, status = REJECTIONS[name]
    conn = h1(now=0.0)
    events = feed(conn, data)
    rejected = [e for e in events if isinstance(e, Rejected)]
    assert rejected and rejected[0].status == status, events
    out = conn.data_to_send()
    assert status_of(out) == status
    assert b"connection: close" in out
    assert conn.closing
    assert feed(conn, GET) == []  # nothing more is read


@pytest.mark.parametrize("name", ["request line too long", "head too long"])
def test_oversized_head_is_refused_when_it_trickles_in(h1: Factory, name: str) -> None:
    data, status = REJECTIONS[name]
    conn = h1(now=0.0)
    events: list = []
    for i in range(0, len(data), 512):
        events += feed(conn, data[i : i + 512])
        if conn.closing:
            break
    assert isinstance(events[-1], Rejected) and events[-1].status == status
    assert i < 17500  # refused at the limit, not after the whole head was buffered


def test_chunked_body_over_the_limit_is_413(h1: Factory) -> None:
    conn = h1(H1Limits(max_body=100), now=0.0)
    events = feed(conn, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert isinstance(events[0], Request)
    events = feed(conn, b"40\r\n" + b"a" * 64 + b"\r\n" + b"40\r\n" + b"a" * 64 + b"\r\n")
    assert isinstance(events[-1], Rejected) and events[-1].status == 413
    assert status_of(conn.data_to_send()) == 413


def test_error_after_the_response_started_only_closes(h1: Factory) -> None:
    conn = h1(H1Limits(max_body=100), now=0.0)
    feed(conn, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send_head(200, [])
    conn.data_to_send()
    events = feed(conn, b"zz\r\n")
    assert isinstance(events[-1], Rejected) and events[-1].status is None
    assert conn.data_to_send() == b""
    assert conn.closing


def test_slow_head_gets_408(h1: Factory) -> None:
    conn = h1(H1Limits(header_timeout=5.0, idle_timeout=60.0), now=0.0)
    assert conn.deadline == 60.0
    feed(conn, b"GET / HTTP/1.1\r\nHo", now=10.0)
    assert conn.deadline == 15.0
    assert conn.check_deadline(14.9) == []
    events = conn.check_deadline(15.0)
    assert isinstance(events[0], Rejected) and events[0].status == 408
    assert status_of(conn.data_to_send()) == 408 and conn.closing and conn.deadline is None


def test_slow_body_gets_408(h1: Factory) -> None:
    conn = h1(H1Limits(body_timeout=5.0), now=0.0)
    feed(conn, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab", now=1.0)
    assert conn.deadline == 6.0
    feed(conn, b"cd", now=5.0)  # progress does not extend the deadline: the whole body has 5 s
    events = conn.check_deadline(6.0)
    assert isinstance(events[0], Rejected) and events[0].status == 408


def test_idle_keep_alive_connection_is_closed_silently(h1: Factory) -> None:
    conn = h1(H1Limits(idle_timeout=2.0), now=0.0)
    feed(conn, GET, now=0.5)
    assert conn.deadline is None  # a request is being answered: no deadline runs
    conn.respond(200, [], b"", 1.0)
    conn.data_to_send()
    assert conn.deadline == 3.0
    events = conn.check_deadline(3.0)
    assert isinstance(events[0], Closed)
    assert conn.data_to_send() == b"" and conn.closing


def test_answer_before_the_body_ended_then_next_request(h1: Factory) -> None:
    conn = h1(now=0.0)
    feed(conn, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    conn.respond(400, [], b"no", 0.0)
    assert not conn.closing
    events = feed(conn, b"cd" + GET)
    assert [type(e) for e in events] == [Body, EndOfRequest, Request, EndOfRequest]


# ---------------------------------------------------------------------------- the fast path vs h11
CLIENT_REQUESTS = {  # what real clients send (curl, h2load, browsers, connectrpc's client), and variants
    "curl json": b"POST /helloworld.Greeter/SayHello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\n"
                 b"Accept: */*\r\ncontent-type: application/json\r\nContent-Length: 15\r\n\r\n{\"name\":\"John\"}",
    "browser": b"POST /x.Y/Z HTTP/1.1\r\nHost: a:1\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
               b"sec-ch-ua: \"Chromium\";v=\"120\", \"Not?A_Brand\";v=\"24\"\r\norigin: http://a:2\r\n"
               b"content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\nAccept-Encoding: gzip, deflate, br\r\n\r\nab",
    "get with query": b"GET /a.B/C?encoding=json&message=%7B%7D&connect=v1 HTTP/1.1\r\nHost: a\r\n\r\n",
    "options": b"OPTIONS /a.B/C HTTP/1.1\r\nHost: a\r\norigin: http://b\r\naccess-control-request-method: POST\r\n\r\n",
    "empty values and odd spacing": b"POST / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tabs:\t v \t\r\nX-Inner: a  b\r\n"
                                    b"content-length: 0\r\n\r\n",
    "connection close": b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz",
    "leading zeros": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc",
    # the fast path declines these; h11 parses them
    "chunked": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "bare LF": b"POST / HTTP/1.1\nHost: a\nContent-Length: 1\n\nz",
    "HTTP/1.0": b"POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nz",
    "HEAD": b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    "connection upgrade": b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    "obs-text value": b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
}
FAST = {"curl json", "browser", "get with query", "options", "empty values and odd spacing", "connection close",
        "leading zeros"}


def _serve(conn: H1ServerConnection, data: bytes, split: int | None) -> tuple[list, bytes]:
    """Feed ``data`` (in two pieces at ``split``), answer every request; the events and the output."""
    events: list = []
    parts = [data] if split is None else [data[:split], data[split:]]
    for part in parts:
        new = feed(conn, part)
        while new:
            events += new
            if any(isinstance(e, EndOfRequest) for e in new) and not conn.closing:
                conn.send_head(200, [(b"content-type", b"text/plain")])
                if not any(isinstance(e, Request) and e.method == b"HEAD" for e in events):
                    conn.send_body(b"hi")
                conn.end_response(0.0)
                new = conn.next_events(0.0)
            else:
                new = []
    return [(type(e).__name__, getattr(e, "__dict__", None) or repr(e)) for e in events], conn.data_to_send()


@pytest.mark.parametrize("name,split", [(name, split) for name, data in CLIENT_REQUESTS.items()
                                        for split in (None, 7, 40) if split is None or split < len(data)])
def test_fast_path_reads_what_h11_reads(name: str, split: int | None) -> None:
    """Byte for byte the same events, as one segment or split (also inside the head), and two of
    them pipelined; the fast path serves the plain heads and declines the others."""
    data = CLIENT_REQUESTS[name]
    for payload in (data, data + data):
        fast, slow = H1ServerConnection(now=0.0), H1ServerConnection(now=0.0, fast=False)
        events_fast, _ = _serve(fast, payload, split)
        events_slow, _ = _serve(slow, payload, split)
        assert events_fast == events_slow
        assert events_fast and events_fast[0][0] == "Request"
    fresh = H1ServerConnection(now=0.0)
    feed(fresh, data)
    assert fresh._fast == (name in FAST)


def test_fast_path_returns_after_an_h11_cycle() -> None:
    conn = H1ServerConnection(now=0.0)
    for data, fast in ((CLIENT_REQUESTS["chunked"], False), (CLIENT_REQUESTS["curl json"], True)):
        events = feed(conn, data)
        assert [type(e) for e in events][-1] is EndOfRequest and conn._fast == fast
        conn.respond(200, [], b"ok", 0.0)
        out = conn.data_to_send()
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nok")
        assert conn._fast  # h11 holds nothing at the boundary: the next cycle is the fast path's


def test_fast_path_response_bytes() -> None:
    conn = H1ServerConnection(now=0.0)
    feed(conn, CLIENT_REQUESTS["connection close"])
    conn.send_head(200, [(b"content-type", b"application/grpc-web")])
    conn.send_body(b"abc")
    conn.end_response(0.0)
    assert conn.data_to_send() == (b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web\r\n"
                                   b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert conn.closing


def test_no_content_has_no_framing(h1: Factory) -> None:
    """204 without a length: neither content-length nor chunked (RFC 9110 8.6), on both paths."""
    conn = h1(now=0.0)
    feed(conn, CLIENT_REQUESTS["options"])
    conn.send_head(204, [(b"allow", b"POST")])
    conn.end_response(0.0)
    out = conn.data_to_send().lower()
    assert out.startswith(b"http/1.1 204 ") and b"content-length" not in out and b"chunked" not in out
    assert out.endswith(b"\r\n\r\n") and not conn.closing
