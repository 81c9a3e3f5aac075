"""Runs the test server in its own process (tests never fork next to grpcio channels).

Prints ``PORT <n>`` when all workers listen; SIGTERM or closing stdin -> graceful stop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.apps import build_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--options", default="{}", help="JSON of extra GmfServer keyword arguments")
    args = parser.parse_args()
    server = build_server(workers=args.workers, runtime=args.runtime, **json.loads(args.options))
    handle = server.start(args.address)
    print(f"PORT {handle.port}", flush=True)
    print(f"PIDS {' '.join(map(str, handle.worker_pids))}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    handle.stop(grace=args.grace)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main()
