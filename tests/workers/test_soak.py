"""A short soak (`invoke soak` runs the long one): 50,000 unary RPCs plus streaming calls over
many connections to 2 workers while a worker is SIGKILLed every 1.5 s. Every RPC must succeed
or return a status to its client (sent == succeeded + failed), the only failures allowed are
UNAVAILABLE (a call cut by a kill) and DEADLINE_EXCEEDED, and streams that end OK carry
every message."""

from __future__ import annotations

import pytest

from soak import harness as soak


@pytest.mark.slow
def test_soak_50k_rpcs_with_worker_kills_accounts_for_every_rpc():
    lines: list[str] = []
    config = soak.SoakConfig(rpcs=50_000, connections=16, streaming=300, kill_every=1.5, workers=2, clients=2,
                             concurrency=32, deadline=10.0, min_success=0.97, progress_every=5.0, seed=1)
    report = soak.run(config, out=lines.append)
    text = "\n".join(lines)
    total = report.total
    assert report.kills >= 1, text
    assert total.sent == 50_300 and total.sent == total.ok + total.failures, text
    assert set(total.failed) <= soak.EXPECTED_FAILURES, text
    assert report.messages > 0 and report.kinds["server_stream"].ok > 0 and report.kinds["bidi"].ok > 0, text
    assert report.passed, text
