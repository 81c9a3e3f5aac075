"""The fake connection the RPC-layer tests drive calls through (test_threads.py gives its own
a thread pool)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.rpc.fake_sink import FakeSink


@pytest.fixture
def sink() -> Iterator[FakeSink]:
    loop = asyncio.new_event_loop()
    fake = FakeSink(loop)
    yield fake
    fake.close()
    loop.run_until_complete(asyncio.sleep(0))  # callbacks the calls left scheduled
    loop.close()
