"""Runs the test server in its own process (tests never fork next to grpcio channels):
``python -m tests.helpers.serve_app`` from the checkout (``servers.spawn`` does).

Prints ``PORT <n>`` when all workers listen; SIGTERM or closing stdin -> graceful stop.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from gmf import Placement
from tests.helpers.apps import build_server


def hook_kwargs(path: str) -> dict:
    import asyncio

    def record(event: str, info) -> None:
        with open(path, "a") as f:
            f.write(f"{event} {info.id} {info.cpu} {info.pid} {info.runtime}\n")

    def on_start(info) -> None:  # sync hook
        record("start", info)

    async def on_stop(info) -> None:  # async hook
        await asyncio.sleep(0)
        record("stop", info)

    return {"on_worker_start": on_start, "on_worker_stop": on_stop}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--options", default="{}", help="JSON of extra GmfServer keyword arguments")
    parser.add_argument("--placement", default=None, help="kind[:args], e.g. fixed:1, max_pack:2, fenced:0,1")
    parser.add_argument("--hooks-file", default=None, help="append worker start/stop hook calls to this file")
    args = parser.parse_args()
    kwargs = json.loads(args.options)
    if "tls" in kwargs:  # {"certificate_chain": PATH, "private_key": PATH, "root_certificates": PATH, ...}
        from gmf import ServerCredentials

        kwargs["tls"] = ServerCredentials.from_files(**kwargs["tls"])
    if args.placement:
        kwargs["placement"] = Placement.parse(args.placement)
    else:
        kwargs["workers"] = args.workers
    if args.hooks_file:
        kwargs.update(hook_kwargs(args.hooks_file))
    # Handlers first: a test may signal as soon as it reads PORT/PIDS. They only append to a
    # list: Event.set() in a handler deadlocks when the signal lands while this thread holds
    # the Event's lock inside wait() (seen about once in 30 runs on a loaded machine).
    signalled: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: signalled.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: signalled.append(signum))
    server = build_server(runtime=args.runtime, **kwargs)
    handle = server.start(args.address)
    print(f"PORT {handle.port}", flush=True)
    print(f"PIDS {' '.join(map(str, handle.worker_pids))}", flush=True)
    stdin_closed = threading.Event()  # set by the reader thread, never by a signal handler
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    while not signalled and not stdin_closed.wait(0.05):
        pass
    handle.stop(grace=args.grace)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main()
