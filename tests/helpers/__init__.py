"""What the tests share: starting test servers (``servers``, which run ``serve_app`` with the
services of ``apps`` and ``faults_app``), ports (``net``), waiting on a condition (``poll``),
hostile-input checks (``hostile``), a raw HTTP/2 client (``rawh2``) and test certificates
(``tlscerts``). The tests' own code: it depends on neither the installed package's toolkit
nor the dev harness; the installed package does not depend on it (bench/ takes its port
helpers from ``net``).

Importing it makes the committed generated code importable (``helloworld_pb2``,
``route_guide_pb2``, ``streambench_pb2``, ``gmftest_pb2``, ...), in the test process and in
test servers alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout the tests run in
GENERATED = ("examples/helloworld", "examples/routeguide", "examples/streambench", "examples", "tests/protos")

for _sub in GENERATED:
    if str(ROOT / _sub) not in sys.path:
        sys.path.insert(0, str(ROOT / _sub))
