"""What enabling a standard service needs of the server it is enabled on. ``GmfServer`` is
one; the services are written against this, not against ``gmf.server`` (which imports them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import grpc

from ..rpc.registry import MethodRegistry


class ServiceHost(Protocol):
    @property
    def registry(self) -> MethodRegistry: ...

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None: ...

    def add_registered_method_handlers(self, service_name: str,
                                       method_handlers: dict[str, grpc.RpcMethodHandler]) -> None: ...

    def add_drain_callback(self, callback: Callable[[], Any]) -> None: ...
