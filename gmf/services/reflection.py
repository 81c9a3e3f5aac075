"""Server reflection, ``grpc.reflection.v1.ServerReflection`` and its older name
``grpc.reflection.v1alpha.ServerReflection`` (grpcurl before 1.8.8 and most tools use it).

The answers come from grpcio-reflection's async servicer over the protobuf descriptor pool.
v1 and v1alpha messages are the same on the wire (only the package differs), so both services
share the one servicer; the v1 file descriptor, derived from v1alpha's, is added to the pool so
that reflection can describe itself under both names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

from ._deps import require
from .host import ServiceHost

require("grpc_reflection", "grpcio-reflection")

from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2  # noqa: E402
from grpc_reflection.v1alpha.reflection import aio as reflection_aio  # noqa: E402

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
SERVICE_NAMES = (V1_SERVICE, V1ALPHA_SERVICE)
V1_FILE = "grpc/reflection/v1/reflection.proto"


def register_v1_descriptor(pool: Any = None) -> None:
    """Add ``grpc/reflection/v1/reflection.proto`` to the pool (the default one) unless it is there."""
    pool = pool or descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto.FromString(v1alpha_pb2.DESCRIPTOR.serialized_pb)
    old, new = "." + v1alpha_pb2.DESCRIPTOR.package + ".", ".grpc.reflection.v1."
    proto.name, proto.package = V1_FILE, "grpc.reflection.v1"
    proto.ClearField("options")

    def rename(messages: Iterable[Any]) -> None:
        for message in messages:
            for field in message.field:
                if field.type_name.startswith(old):
                    field.type_name = new + field.type_name[len(old):]
            rename(message.nested_type)

    rename(proto.message_type)
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old):]
            method.output_type = new + method.output_type[len(old):]
    pool.AddSerializedFile(proto.SerializeToString())


class Reflection:
    """The ServerReflectionInfo handler; the service list is taken on the first request in
    each worker (registration is over by then)."""

    def __init__(self, service_names: Callable[[], Iterable[str]]) -> None:
        self._service_names = service_names
        self._servicer: Any = None

    async def ServerReflectionInfo(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        if self._servicer is None:
            self._servicer = reflection_aio.ReflectionServicer(sorted(set(self._service_names())))
        async for response in self._servicer.ServerReflectionInfo(request_iterator, context):
            yield response


def enable_reflection(server: ServiceHost, service_names: Iterable[str] | None = None) -> Reflection:
    """Serve reflection (v1 and v1alpha) on ``server``. ``service_names``: what ``list``
    shows; None = every service registered when serving starts (reflection and health too)."""
    register_v1_descriptor()
    if service_names is None:
        names: Callable[[], Iterable[str]] = server.registry.service_names
    else:
        fixed = (*service_names, *SERVICE_NAMES)
        names = lambda: fixed  # noqa: E731
    reflection = Reflection(names)
    handler = grpc.stream_stream_rpc_method_handler(
        reflection.ServerReflectionInfo,
        request_deserializer=v1alpha_pb2.ServerReflectionRequest.FromString,
        response_serializer=v1alpha_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in SERVICE_NAMES:
        server.add_registered_method_handlers(service, {"ServerReflectionInfo": handler})
    return reflection
