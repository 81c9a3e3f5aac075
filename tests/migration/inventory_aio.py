"""The inventory service written for grpc.aio, the way its documentation writes one: async
handlers, ``grpc.aio.server()``, ``await server.start()``, ``await server.wait_for_termination()``,
a SIGTERM handler awaiting ``server.stop(grace)``.

It runs on grpc.aio or on GMF: ``INVENTORY_IMPL=grpc|gmf python inventory_aio.py``. The two
marked lines are the whole difference. Prints ``PORT <n>`` once serving; ``--otel FILE`` traces
every RPC with OpenTelemetry's aio server interceptor, one JSON line per span in FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import grpc
import inventory_pb2
import inventory_pb2_grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

if os.environ.get("INVENTORY_IMPL") == "gmf":
    import gmf.aio as server_impl  # line 1 of 2: the import (grpc stays imported for grpc.StatusCode & co)
else:
    server_impl = grpc.aio


class Inventory(inventory_pb2_grpc.InventoryServicer):
    def __init__(self) -> None:
        self.items: dict[str, int] = {}
        self.changed: asyncio.Condition | None = None  # made on the serving loop
        self.watches_ended = 0

    def _condition(self) -> asyncio.Condition:
        if self.changed is None:
            self.changed = asyncio.Condition()
        return self.changed

    def _stock(self, context, note: str = "") -> inventory_pb2.Stock:
        seen = [f"{m.key}={m.value.hex() if isinstance(m.value, bytes) else m.value}"
                for m in context.invocation_metadata() if m.key.startswith("x-")]
        return inventory_pb2.Stock(total=sum(self.items.values()), skus=len(self.items), metadata=seen, note=note)

    async def _add(self, sku: str, count: int) -> None:
        if count < 0:
            raise ValueError(f"negative count for {sku}")
        changed = self._condition()
        async with changed:
            self.items[sku] = self.items.get(sku, 0) + count
            changed.notify_all()

    async def Put(self, request, context):
        if not request.sku:
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("sku is required")
            return inventory_pb2.Stock()
        await self._add(request.sku, request.count)
        await context.send_initial_metadata((("x-served-by", "inventory"),))
        context.set_trailing_metadata((("x-total", str(sum(self.items.values()))),))
        return self._stock(context)

    async def Get(self, request, context):
        if request.sku not in self.items:
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.ResourceInfo(resource_type="sku", resource_name=request.sku))
            await context.abort_with_status(rpc_status.to_status(status_pb2.Status(
                code=code_pb2.NOT_FOUND, message=f"no such sku: {request.sku}", details=[detail])))
        return inventory_pb2.Item(sku=request.sku, count=self.items[request.sku])

    async def Watch(self, request, context):
        context.add_done_callback(self._watch_ended)
        changed = self._condition()
        while True:
            if request.sku in self.items:
                yield inventory_pb2.Item(sku=request.sku, count=self.items[request.sku])
            async with changed:
                await changed.wait()

    def _watch_ended(self, context) -> None:
        self.watches_ended += 1

    async def PutMany(self, request_iterator, context):
        async for item in request_iterator:
            await self._add(item.sku, item.count)
        return self._stock(context)

    async def Sync(self, request_iterator, context):
        async for item in request_iterator:
            await self._add(item.sku, item.count)
            yield self._stock(context, note=item.sku)

    async def Slow(self, request, context):
        await asyncio.sleep(request.seconds)
        remaining = context.time_remaining()
        shown = "none" if remaining is None else "long" if remaining > 1 else "short"
        return self._stock(context, note=f"remaining={shown} watches_ended={self.watches_ended} active=True")


def tracing(path: str):
    """OpenTelemetry's grpc aio server interceptor, exporting each span as a JSON line to ``path``."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    from tests.migration.tracing import tracer_provider

    return aio_server_interceptor(tracer_provider=tracer_provider(path))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--otel", default=None)
    parser.add_argument("--max-rpcs", type=int, default=None)
    args = parser.parse_args()
    interceptors = [tracing(args.otel)] if args.otel else None

    server = server_impl.server(interceptors=interceptors, maximum_concurrent_rpcs=args.max_rpcs,  # line 2 of 2
                                options=[("grpc.max_receive_message_length", 1024)])
    inventory_pb2_grpc.add_InventoryServicer_to_server(Inventory(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stopping = []
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: stopping.append(asyncio.ensure_future(server.stop(args.grace))))
    print(f"PORT {port}", flush=True)
    await server.wait_for_termination()
    print("TERMINATED", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
