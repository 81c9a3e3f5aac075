"""An inventory service written the way grpcio's documentation writes one: a sync servicer with
plain ``def`` handlers, a thread pool, ``add_insecure_port``, ``start()``,
``wait_for_termination()``, a SIGTERM handler calling ``stop(grace)``.

It runs on grpcio or on GMF: ``INVENTORY_IMPL=grpc|gmf python inventory_sync.py``. The two
marked lines are the whole difference. Prints ``PORT <n>`` once serving; with ``--otel FILE``
every RPC is traced by OpenTelemetry's grpc server interceptor, one JSON line per span in FILE.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from concurrent import futures

import grpc
import inventory_pb2
import inventory_pb2_grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

if os.environ.get("INVENTORY_IMPL") == "gmf":
    import gmf as server_impl  # line 1 of 2: the import (grpc stays imported for grpc.StatusCode & co)
else:
    server_impl = grpc


class Inventory(inventory_pb2_grpc.InventoryServicer):
    def __init__(self) -> None:
        self.items: dict[str, int] = {}
        self.changed = threading.Condition()
        self.version = 0
        self.watches_ended = 0

    def _stock(self, context, note: str = "") -> inventory_pb2.Stock:
        seen = [f"{m.key}={m.value.hex() if isinstance(m.value, bytes) else m.value}"
                for m in context.invocation_metadata() if m.key.startswith("x-")]
        return inventory_pb2.Stock(total=sum(self.items.values()), skus=len(self.items), metadata=seen, note=note)

    def _add(self, sku: str, count: int) -> None:
        if count < 0:
            raise ValueError(f"negative count for {sku}")
        with self.changed:
            self.items[sku] = self.items.get(sku, 0) + count
            self.version += 1
            self.changed.notify_all()

    def Put(self, request, context):
        if not request.sku:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("sku is required")
            return inventory_pb2.Stock()
        self._add(request.sku, request.count)
        context.send_initial_metadata((("x-served-by", "inventory"),))
        context.set_trailing_metadata((("x-total", str(sum(self.items.values()))),))
        return self._stock(context)

    def Get(self, request, context):
        if request.sku not in self.items:
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.ResourceInfo(resource_type="sku", resource_name=request.sku))
            context.abort_with_status(rpc_status.to_status(status_pb2.Status(
                code=code_pb2.NOT_FOUND, message=f"no such sku: {request.sku}", details=[detail])))
        return inventory_pb2.Item(sku=request.sku, count=self.items[request.sku])

    def Watch(self, request, context):
        context.add_callback(self._watch_ended)
        seen = -1
        while context.is_active():
            with self.changed:
                if self.version == seen:
                    self.changed.wait(0.5)
                if self.version == seen or request.sku not in self.items:
                    continue
                seen = self.version
                item = inventory_pb2.Item(sku=request.sku, count=self.items[request.sku])
            yield item

    def _watch_ended(self) -> None:
        self.watches_ended += 1

    def PutMany(self, request_iterator, context):
        for item in request_iterator:
            self._add(item.sku, item.count)
        return self._stock(context)

    def Sync(self, request_iterator, context):
        for item in request_iterator:
            self._add(item.sku, item.count)
            yield self._stock(context, note=item.sku)

    def Slow(self, request, context):
        deadline = time.monotonic() + request.seconds
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        remaining = context.time_remaining()
        shown = "none" if remaining is None else "long" if remaining > 1 else "short"
        return self._stock(context, note=f"remaining={shown} watches_ended={self.watches_ended} "
                                         f"active={context.is_active()}")


def tracing(path: str):
    """OpenTelemetry's grpc server interceptor, exporting each span as a JSON line to ``path``."""
    from opentelemetry.instrumentation.grpc import server_interceptor

    from tests.migration.tracing import tracer_provider

    return server_interceptor(tracer_provider=tracer_provider(path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--otel", default=None)
    parser.add_argument("--max-rpcs", type=int, default=None)
    args = parser.parse_args()
    interceptors = [tracing(args.otel)] if args.otel else None

    server = server_impl.server(futures.ThreadPoolExecutor(max_workers=10), interceptors=interceptors,  # line 2 of 2
                                maximum_concurrent_rpcs=args.max_rpcs, options=[("grpc.so_reuseport", 0)])
    inventory_pb2_grpc.add_InventoryServicer_to_server(Inventory(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(args.grace))
    print(f"PORT {port}", flush=True)
    server.wait_for_termination()
    print("TERMINATED", flush=True)


if __name__ == "__main__":
    main()
