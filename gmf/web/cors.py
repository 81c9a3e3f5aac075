"""CORS for gRPC-Web and Connect, sans-IO: the preflight answer and the headers of real responses.

Reference: https://connectrpc.com/docs/cors and PROTOCOL-WEB.md ("CORS preflight").

- A preflight is ``OPTIONS`` with ``origin`` and ``access-control-request-method``. From an
  allowed origin asking for ``POST`` or ``GET`` it gets ``204 No Content`` with the origin echoed,
  ``access-control-allow-methods: POST, GET``, the request headers it asked for allowed (the
  ones Connect and gRPC-Web clients send are always in the list), ``access-control-max-age`` and
  ``vary``. From any other origin, or for another method: ``403 Forbidden`` without CORS headers
  (the browser then refuses the call).
- Every other response to a request with an allowed ``origin`` carries
  ``access-control-allow-origin`` (echoed), ``vary: origin`` and ``access-control-expose-headers``
  with what the clients read (grpc-status, grpc-message, grpc-status-details-bin, encodings) plus
  the application's own (``expose_headers``; Connect unary trailers as ``trailer-NAME``).
  Responses to other origins get no CORS headers: the browser hides them from the page.

``CorsPolicy(allowed_origins=["*"])`` allows any origin (sent as ``*`` unless credentials are
allowed, in which case the origin is echoed, as the fetch spec requires).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Header = tuple[bytes, bytes]

REQUEST_HEADERS = (
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-content-encoding",
    "connect-accept-encoding",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
)
EXPOSED_HEADERS = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "grpc-accept-encoding",
    "content-encoding",
    "connect-content-encoding",
    "connect-accept-encoding",
)


@dataclass(frozen=True, slots=True)
class Preflight:
    status: int  # 204 allowed, 403 refused
    headers: list[Header]


@dataclass(slots=True)
class CorsPolicy:
    allowed_origins: Sequence[str]
    allow_credentials: bool = False
    max_age: int = 7200
    allow_headers: Sequence[str] = ()  # beyond REQUEST_HEADERS (e.g. "authorization")
    expose_headers: Sequence[str] = ()  # beyond EXPOSED_HEADERS
    _origins: frozenset[bytes] = field(init=False, repr=False)
    _any: bool = field(init=False, repr=False)
    _expose: bytes = field(init=False, repr=False)
    _allow: frozenset[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        origins = [o.rstrip("/").lower() for o in self.allowed_origins]
        self._any = "*" in origins
        self._origins = frozenset(o.encode() for o in origins if o != "*")
        self._expose = ", ".join([*EXPOSED_HEADERS, *(h.lower() for h in self.expose_headers)]).encode()
        self._allow = frozenset(h.lower().encode() for h in (*REQUEST_HEADERS, *self.allow_headers))

    def origin_allowed(self, origin: bytes) -> bool:
        return self._any or origin.rstrip(b"/").lower() in self._origins

    def _allow_origin(self, origin: bytes, vary: bool = True) -> list[Header]:
        if self._any and not self.allow_credentials:
            return [(b"access-control-allow-origin", b"*")]
        out = [(b"access-control-allow-origin", origin)]
        if vary:
            out.append((b"vary", b"origin"))
        if self.allow_credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    @staticmethod
    def is_preflight(method: bytes, headers: Iterable[Header]) -> bool:
        if method != b"OPTIONS":
            return False
        names = {name for name, _ in headers}
        return b"origin" in names and b"access-control-request-method" in names

    def preflight(self, headers: Iterable[Header]) -> Preflight:
        origin = b""
        method = b""
        requested: list[bytes] = []
        for name, value in headers:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                method = value.strip().upper()
            elif name == b"access-control-request-headers":
                requested += [h.strip().lower() for h in value.split(b",") if h.strip()]
        if not origin or not self.origin_allowed(origin) or method not in (b"POST", b"GET"):
            return Preflight(403, [(b"content-length", b"0")])
        allow = list(dict.fromkeys([*sorted(self._allow), *requested]))
        headers_out = self._allow_origin(origin, vary=False) + [
            (b"access-control-allow-methods", b"POST, GET"),
            (b"access-control-allow-headers", b", ".join(allow)),
            (b"access-control-max-age", str(self.max_age).encode()),
            (b"vary", b"origin, access-control-request-method, access-control-request-headers"),
        ]
        return Preflight(204, headers_out)

    def response_headers(self, origin: bytes | None) -> list[Header]:
        """Headers for an actual (non-preflight) response to a request with ``origin``."""
        if not origin or not self.origin_allowed(origin):
            return []
        return [*self._allow_origin(origin), (b"access-control-expose-headers", self._expose)]


_ORIGIN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]+/?$")


def check_origins(origins: object) -> tuple[str, ...]:
    """``cors_origins``: ``"*"`` or origins as browsers send them (``scheme://host[:port]``)."""
    if isinstance(origins, (str, bytes)) or not hasattr(origins, "__iter__"):
        raise ValueError(f"cors_origins must be a list of origins, e.g. ['https://app.example.com'] (got {origins!r})")
    checked = tuple(origins)
    for origin in checked:
        if not isinstance(origin, str) or (origin != "*" and not _ORIGIN.match(origin)):
            raise ValueError(f"cors_origins: {origin!r} is not an origin: expected '*' or scheme://host[:port], "
                             "e.g. https://app.example.com or http://localhost:3000")
    return checked
