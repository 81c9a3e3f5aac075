"""gmf.web's tests: the sans-IO codecs (test_web_codecs, test_web_http1) and the same codecs
against real clients (test_web_clients, test_web_hostile: Chromium, curl, connectrpc), with the
servers they run (gmf_server, connect_peer) as ``python -m tests.web.<name>`` processes, and how
GMF serves them beside gRPC (test_web_serving).

Importing it makes the generated code (tests.helpers) and the connectrpc stubs of the reference
peer (bench/peers/connect_gen) importable, here and in those processes alike.
"""

from __future__ import annotations

import sys

from tests.helpers import ROOT

PEERS = str(ROOT / "bench" / "peers")  # connect_gen, beside the bench peer that uses it too
if PEERS not in sys.path:
    sys.path.insert(0, PEERS)
