"""What an idle HTTP/2 connection costs the core (issue 13: 10,000 idle connections per worker,
memory as before or better): no HPACK decoder state before the first header block, and a
bound on the heap it holds (the shared SETTINGS frame: test_h2_limits.py)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hpack import Encoder

from gmf.protocol.h2conn import H2ServerConnection, RequestReceived
from tests.helpers.rawh2 import PREFACE, SETTINGS_EMPTY, frame

pytestmark = pytest.mark.core

SETTINGS_ACK = frame(0x4, 0x1, 0, b"")
REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/helloworld.Greeter/SayHello"),
           (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")]
# Python heap one idle connection of the core holds after the handshake: ~1.1 KiB measured
# (pure and compiled); ~2.3 KiB before the HPACK state was made lazily and the SETTINGS shared.
IDLE_BYTES_MAX = 1600


def handshaken() -> H2ServerConnection:
    conn = H2ServerConnection()
    conn.initiate_connection()
    conn.receive_data(PREFACE + SETTINGS_EMPTY + SETTINGS_ACK)
    conn.data_to_send()
    return conn


def test_no_hpack_state_until_the_first_header_block():
    conn = handshaken()
    assert conn._decoder._decoder is None
    assert conn._decoder.table_size == 0 and conn._decoder.cached_blocks == 0
    block = Encoder().encode(REQUEST)
    events = conn.receive_data(frame(0x1, 0x4, 1, block))
    assert [type(e) for e in events] == [RequestReceived]
    assert events[0].headers[2] == (b":path", b"/helloworld.Greeter/SayHello")
    assert conn._decoder._decoder is not None and conn._decoder.table_size > 0  # the encoder indexed fields


def test_an_idle_connection_holds_little_heap():
    handshaken()  # module-level state made once (the shared SETTINGS frame)
    n = 500
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        conns = [handshaken() for _ in range(n)]
        gc.collect()
        per = (tracemalloc.get_traced_memory()[0] - before - 8 * n) / n  # less the list's slots
    finally:
        tracemalloc.stop()
    assert len(conns) == n
    assert per < IDLE_BYTES_MAX, f"{per:.0f} bytes per idle connection"
