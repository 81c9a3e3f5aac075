"""grpcio's server ``options`` (channel arguments) as GmfServer keywords.

``grpc.server(options=[...])`` takes C-core channel arguments. The ones with a GMF meaning map
to GmfServer options below; the others are accepted and ignored, as grpcio itself ignores
arguments it does not know (docs/migration.md lists both).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import grpc

log = logging.getLogger("gmf")

_LARGEST = 2**31 - 1  # grpcio's -1 ("no limit") for the receive limit, which GMF keeps an int


def _seconds(ms: Any) -> float:
    return float(ms) / 1000.0


def _receive_limit(value: Any) -> int:
    return _LARGEST if int(value) < 0 else int(value)


def _send_limit(value: Any) -> int | None:
    return None if int(value) < 0 else int(value)


def _ping_strikes(value: Any) -> int:
    return _LARGEST if int(value) == 0 else int(value)  # grpc-core: 0 allows any number of bad pings


def _compression(value: Any) -> grpc.Compression | None:
    algorithm = grpc.Compression(int(value))
    return None if algorithm == grpc.Compression.NoCompression else algorithm


# channel argument -> (GmfServer keyword, conversion)
MAPPED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "grpc.max_receive_message_length": ("max_receive_message_length", _receive_limit),
    "grpc.max_send_message_length": ("max_send_message_length", _send_limit),
    "grpc.max_concurrent_streams": ("max_concurrent_streams", int),
    "grpc.max_metadata_size": ("max_header_list_size", int),
    "grpc.http2.min_recv_ping_interval_without_data_ms": ("keepalive_min_ping_interval", _seconds),
    "grpc.http2.min_ping_interval_without_data_ms": ("keepalive_min_ping_interval", _seconds),
    "grpc.http2.max_ping_strikes": ("max_ping_strikes", _ping_strikes),
    "grpc.max_connection_idle_ms": ("idle_timeout", _seconds),
    "grpc.default_compression_algorithm": ("compression", _compression),
}

# Accepted without effect: what they ask for is how GMF always works (grpc.so_reuseport: every
# worker listens with SO_REUSEPORT) or has no counterpart in it (server keepalive pings, the
# connection age limits, client-side arguments).
NO_EFFECT = frozenset({
    "grpc.so_reuseport",
    "grpc.keepalive_time_ms",
    "grpc.keepalive_timeout_ms",
    "grpc.keepalive_permit_without_calls",
    "grpc.http2.max_pings_without_data",
    "grpc.max_connection_age_ms",
    "grpc.max_connection_age_grace_ms",
    "grpc.enable_retries",
    "grpc.service_config",
    "grpc.primary_user_agent",
    "grpc.secondary_user_agent",
    "grpc.optimization_target",
    "grpc.enable_http_proxy",
    "grpc.resource_quota_size",
})


def gmf_keywords(options: Iterable[tuple[str, Any]] | None) -> dict[str, Any]:
    """The GmfServer keywords for grpcio ``options``; the rest are ignored (logged at debug level)."""
    keywords: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in options or ():
        mapped = MAPPED.get(name)
        if mapped is None:
            ignored.append(name)
            continue
        keyword, convert = mapped
        try:
            keywords[keyword] = convert(value)
        except (TypeError, ValueError):
            raise ValueError(f"grpc option {name}={value!r}: expected a number") from None
    if ignored:
        log.debug("grpc options without a GMF meaning, ignored: %s", ", ".join(ignored))
    return keywords
