"""A read that starts many unary calls answers in two halves (GrpcConnection._start_split):
the first half's answers are written, and handed to the kernel (the transport's ``send_now``,
where it has one), before the second half's handlers run; a read of up to 16 calls is
answered with one write. Driven through a real GrpcConnection (bench/cost.py's workload:
h2load's request bytes, the helloworld Greeter)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.cost import CountingTransport, Workload

END_STREAM = 0x1
HEADERS = 0x1


def answers(data: bytes) -> list[int]:
    """The stream ids of the responses that end in ``data`` (trailers: HEADERS + END_STREAM)."""
    ended = []
    view = memoryview(data)
    while view:
        length = int.from_bytes(view[:3], "big")
        ftype, flags = view[3], view[4]
        sid = int.from_bytes(view[5:9], "big") & 0x7FFFFFFF
        if ftype == HEADERS and flags & END_STREAM:
            ended.append(sid)
        view = view[9 + length:]
    return ended


class Recording(CountingTransport):
    """Records each write (the responses it ends) and each send_now, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    def write(self, data: Any) -> None:
        super().write(data)
        self.events.append(answers(bytes(data)))

    def send_now(self) -> None:
        self.events.append("send_now")


@pytest.mark.parametrize("with_send_now", [True, False])
def test_a_large_read_answers_its_first_half_before_serving_the_second(with_send_now: bool) -> None:
    work = Workload("unary", batch=40, timeout=False, size=100)
    transport = work.transport = Recording()
    if not with_send_now:  # asyncio's and uvloop's transports: write() sends already
        transport.send_now = None  # type: ignore[assignment,method-assign]
    work.start()
    try:
        transport.events.clear()
        work.run(1)
        sids = list(range(1, 80, 2))  # the read's 40 requests, in the order they were sent
        expected: list[Any] = [sids[:20], "send_now", sids[20:]] if with_send_now else [sids[:20], sids[20:]]
        assert transport.events == expected
        work.run(1)  # and the next read the same
        sids = list(range(81, 160, 2))
        assert [e for e in transport.events[len(expected):] if e != "send_now"] == [sids[:20], sids[20:]]
    finally:
        work.stop()


def test_a_read_of_up_to_16_calls_is_answered_in_one_write() -> None:
    work = Workload("unary", batch=16, timeout=False, size=100)
    transport = work.transport = Recording()
    work.start()
    try:
        transport.events.clear()
        work.run(3)
        assert transport.events == [list(range(1, 32, 2)), list(range(33, 64, 2)), list(range(65, 96, 2))]
    finally:
        work.stop()
