"""bench.cost drives a real GrpcConnection in-process: every kind measures what it was asked to,
and a plain def in the handler threads is waited for (its results arrive after the loop idles)."""

from __future__ import annotations

import pytest

from bench import cost


@pytest.mark.parametrize("kind", ["unary", "unary-sync", "stream", "bidi"])
def test_each_kind_measures_its_units(kind: str) -> None:
    result = cost.measure(kind, 16, 800, False, 100, True)
    assert result["units"] == 800 and result["kind"] == kind
    assert result["cpu_us_per_unit"] > 0 and result["python_calls_per_unit"] > 1
    assert result["bytes_out_per_unit"] > 100  # each request (message) was answered


@pytest.mark.parametrize("sync_handlers", ["threads", "auto"])
def test_a_read_waits_for_the_handler_threads(sync_handlers: str) -> None:
    """Every request of the measured reads is answered within them, wherever the def ran: the
    same bytes per request as inline (not only those that came back before the loop idled)."""
    inline = cost.measure("unary-sync", 16, 800, False, 100, False, "inline")
    threads = cost.measure("unary-sync", 16, 800, False, 100, False, sync_handlers)
    assert threads["units"] == inline["units"] == 800
    assert threads["bytes_out_per_unit"] == inline["bytes_out_per_unit"]


@pytest.mark.parametrize("kind", ["unary", "unary-sync", "stream", "bidi"])
def test_requests_leave_no_python_heap_behind(kind: str) -> None:
    """Issue 13's "RSS flat over millions of requests", in-process: after a warm-up of as many
    requests, 8,000 more keep a few KiB at most (freelists, a bidi call's buffers: 1.5-17 KiB
    measured, the same for 5,000 or 80,000), where keeping as little as 5 bytes per request (a
    stream id in a dict, a block in an unbounded cache) would keep 40,000."""
    result = cost.heap_growth(kind, 16, 8_000)
    assert result["units"] == 8_000
    assert result["heap_growth_bytes"] < 40_000, result


def test_an_idle_connection_holds_little_python_heap() -> None:
    """The memory shape's 10,000 idle connections, in-process: ~2.1-2.3 KiB of Python heap each
    (with this module's counting transport), ~3.3-3.5 KiB before the HPACK decoder was made by
    the first header block and the SETTINGS frame shared (tests/protocol/test_idle_memory.py
    bounds the HTTP/2 core alone)."""
    result = cost.idle_heap(300)
    assert result["protocol"] == "GrpcConnection" and result["connections"] == 300
    assert result["bytes_per_connection"] < 2_800, result
