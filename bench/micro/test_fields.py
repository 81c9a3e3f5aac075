"""What the HTTP/2 core's request validation (gmf.protocol.h2fields) costs for a block it has
not seen: the check of the header list grpcio's client sends. A repeated block is served from
the HPACK cache with its verdict and is not checked again (test_frames, test_response)."""

from __future__ import annotations

import pytest
from conftest import REQUEST_HEADERS

pytestmark = pytest.mark.benchmark(group="hpack")


def test_gmf_check_request_fields(benchmark) -> None:
    fields = pytest.importorskip("gmf.protocol.h2fields")
    headers = list(REQUEST_HEADERS)
    verdict = benchmark(fields.check, headers)
    assert verdict.request_error is None
