"""The grpcio client of the migration tests: ``python -m tests.migration.client PORT CHECK``
runs one scripted check against an inventory server and prints what it saw as one JSON
object (codes, details, messages, metadata), so the same check against grpcio and against
GMF can be compared outcome by outcome. One channel (one connection) per check: the calls
of a check share the server's state even where the server has one worker per core."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import inventory_pb2 as pb
import inventory_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

Outcome = dict[str, Any]


def outcome(call: Callable[[], Any]) -> Outcome:
    """What one call gave: its reply (as text) or its error's code and details."""
    try:
        reply = call()
    except grpc.RpcError as exc:
        return {"code": exc.code().name, "details": exc.details()}
    return {"code": "OK", "reply": _text(reply)}


def _text(message: Any) -> Any:
    if isinstance(message, list):
        return [_text(m) for m in message]
    return str(message).replace("\n", " ").strip() if message is not None else None


def unary(stub: inventory_pb2_grpc.InventoryStub) -> Outcome:
    out: Outcome = {}
    reply, call = stub.Put.with_call(pb.Item(sku="apple", count=3), metadata=(("x-user", "ada"), ("x-trace-bin", b"\x01\xff")),
                                     timeout=10)
    out["put"] = _text(reply)
    out["initial_metadata"] = [(k, v) for k, v in call.initial_metadata() if k.startswith("x-")]
    out["trailing_metadata"] = [(k, v) for k, v in call.trailing_metadata() if k.startswith("x-")]
    out["get"] = outcome(lambda: stub.Get(pb.ItemKey(sku="apple"), timeout=10))
    out["set_code"] = outcome(lambda: stub.Put(pb.Item(sku=""), timeout=10))
    out["exception"] = outcome(lambda: stub.Put(pb.Item(sku="pear", count=-1), timeout=10))
    out["unimplemented"] = outcome(lambda: stub.Audit(pb.ItemKey(sku="apple"), timeout=10))
    return out


def abort_with_status(stub: inventory_pb2_grpc.InventoryStub) -> Outcome:
    try:
        stub.Get(pb.ItemKey(sku="nothing"), timeout=10)
    except grpc.RpcError as exc:
        status = rpc_status.from_call(exc)
        assert status is not None, "no grpc-status-details-bin"
        info = error_details_pb2.ResourceInfo()
        status.details[0].Unpack(info)
        return {"code": exc.code().name, "details": exc.details(), "status_message": status.message,
                "detail": _text(info)}
    return {"code": "OK"}


def streams(stub: inventory_pb2_grpc.InventoryStub) -> Outcome:
    many = stub.PutMany(iter([pb.Item(sku="b", count=2), pb.Item(sku="c", count=5)]), timeout=10)
    synced = list(stub.Sync(iter([pb.Item(sku="d", count=1), pb.Item(sku="e", count=1)]), timeout=10))
    return {"put_many": _text(many), "sync": _text(synced)}


def watch(stub: inventory_pb2_grpc.InventoryStub) -> Outcome:
    """A blocking server-streaming Watch while Puts arrive on the same channel, then cancelled
    by the client: the worker goes on serving, the handler's callback runs."""
    stub.Put(pb.Item(sku="w", count=1), timeout=10)
    stream = stub.Watch(pb.ItemKey(sku="w"), timeout=30)
    seen: list[str] = []
    first = next(stream)
    seen.append(_text(first))
    started = time.monotonic()
    for _ in range(2):
        stub.Put(pb.Item(sku="w", count=1), timeout=5)  # the same channel: the same worker
        seen.append(_text(next(stream)))
    puts_took = time.monotonic() - started
    stream.cancel()
    ended = ""
    for _ in range(200):
        ended = stub.Slow(pb.Delay(seconds=0), timeout=5).note
        if "watches_ended=1" in ended:
            break
        time.sleep(0.02)
    return {"seen": seen, "puts_fast": puts_took < 3.0, "after_cancel": ended}


def deadlines(stub: inventory_pb2_grpc.InventoryStub) -> Outcome:
    out: Outcome = {}
    out["exceeded"] = outcome(lambda: stub.Slow(pb.Delay(seconds=3), timeout=0.3))
    out["remaining_long"] = outcome(lambda: stub.Slow(pb.Delay(seconds=0), timeout=30))
    out["remaining_none"] = outcome(lambda: stub.Slow(pb.Delay(seconds=0)))
    out["served_after"] = outcome(lambda: stub.Put(pb.Item(sku="z", count=1), timeout=10))
    return out


def concurrent(stub: inventory_pb2_grpc.InventoryStub) -> Outcome:
    """Four 1 s calls at once (each blocking its handler) finish together, not one after another,
    and a quick call in the meantime is not held behind them."""
    results: list[Outcome] = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: results.append(outcome(lambda: stub.Slow(pb.Delay(seconds=1), timeout=10))))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    quick_started = time.monotonic()
    quick = outcome(lambda: stub.Put(pb.Item(sku="q", count=1), timeout=10))
    quick_took = time.monotonic() - quick_started
    for thread in threads:
        thread.join()
    return {"slow": sorted(r["code"] for r in results), "together": time.monotonic() - started < 2.5,
            "quick": quick["code"], "quick_not_held": quick_took < 0.5}


def limits(stub: inventory_pb2_grpc.InventoryStub) -> Outcome:
    """Against a server made with maximum_concurrent_rpcs=2 (and a 1 KiB receive limit from
    its grpc options, on the aio service): three calls at once, and one large request."""
    results: list[str] = []
    futures = [stub.Slow.future(pb.Delay(seconds=1), timeout=10) for _ in range(3)]
    for future in futures:
        try:
            future.result()
            results.append("OK")
        except grpc.RpcError as exc:
            results.append(f"{exc.code().name}: {exc.details()}")
    return {"three_at_once": sorted(results), "large": outcome(lambda: stub.Put(pb.Item(sku="x" * 2000), timeout=10))}


def in_flight(stub: inventory_pb2_grpc.InventoryStub) -> Outcome:
    """Used by the shutdown test: a Slow call and a Watch in flight while the server stops;
    prints READY once both run, then what each ended with."""
    stub.Put(pb.Item(sku="s", count=1), timeout=10)
    results: dict[str, Any] = {}
    seconds = float(sys.argv[3])
    slow = stub.Slow.future(pb.Delay(seconds=seconds), timeout=60)
    stream = stub.Watch(pb.ItemKey(sku="s"), timeout=60)
    next(stream)
    print("READY", flush=True)
    try:
        for _ in stream:
            pass
        results["watch"] = {"code": "OK"}
    except grpc.RpcError as exc:
        results["watch"] = {"code": exc.code().name}
    results["slow"] = outcome(slow.result)
    results["slow"].pop("reply", None)  # its note: the counters of one process or one worker
    return results


CHECKS = {f.__name__: f for f in (unary, abort_with_status, streams, watch, deadlines, concurrent, limits, in_flight)}


def main() -> None:
    port, check = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        result = CHECKS[check](inventory_pb2_grpc.InventoryStub(channel))
    print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
