"""The benchmark harness behind ``invoke bench`` (see docs/benchmarking.md); not installed.

``harness`` is the entry point (``python -m bench``); its pieces: ``h2load`` (the load
driver), ``servers`` (start, check and stop the compared servers), ``memory`` (idle
connections), ``results`` and ``report`` (medians, ratios, tables, charts), ``machine`` (what
was measured on), ``microbench`` (``--micro``: runs the pytest-benchmark suite in ``micro/``).
The peer servers are in ``peers/``. Everything runs from a checkout, found by
:func:`gmf.toolkit.checkout.root`.
"""

from __future__ import annotations

import sys

from gmf.toolkit.checkout import root

ROOT = root()  # servers and scripts start from the checkout, with it on PYTHONPATH
HELLOWORLD = ROOT / "examples" / "helloworld"  # the committed helloworld_pb2 code the clients use


def add_helloworld_to_path() -> None:
    """Make ``helloworld_pb2`` / ``helloworld_pb2_grpc`` importable."""
    if str(HELLOWORLD) not in sys.path:
        sys.path.insert(0, str(HELLOWORLD))
