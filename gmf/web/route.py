"""Which protocol one HTTP request speaks, from its method, target and headers.

The accept point chooses HTTP/1.1 or HTTP/2 per connection; this chooses per request, for
both: gRPC (``application/grpc*`` over HTTP/2, today's path, unchanged), gRPC-Web binary or
text, Connect unary (POST), Connect GET, Connect streaming, or a CORS preflight. What is none of
them gets an :class:`Answer` (the HTTP status to send, with no RPC started):

=====================================================  ======================================
request                                                answer
=====================================================  ======================================
``OPTIONS`` with origin + access-control-request-method  preflight (``gmf.web.cors``)
other ``OPTIONS``                                       204 with ``allow: POST, GET, OPTIONS``
POST ``application/grpc`` over HTTP/1.1                 415 (gRPC needs HTTP/2; use gRPC-Web)
POST with another content-type                          415 with ``accept-post`` (what is served)
GET without a ``?...`` query                          405 with ``allow: POST``
any other method                                        405 with ``allow: POST, GET, OPTIONS``
=====================================================  ======================================

Each answer has ``gmf.protocol.plain``'s text body (the connection's ``answer_http``, as for
HTTP/2 requests that are not gRPC with the web protocols off), except 204 and HEAD.

The method path is ``/pkg.Service/Method``; a Connect routing prefix is not supported.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import connect, grpcweb
from .cors import CorsPolicy

Header = tuple[bytes, bytes]


class Kind(enum.Enum):
    GRPC = "grpc"
    GRPC_WEB = "grpc-web"
    CONNECT_UNARY = "connect-unary"
    CONNECT_STREAM = "connect-stream"
    CONNECT_GET = "connect-get"
    PREFLIGHT = "preflight"
    ANSWER = "answer"


@dataclass(slots=True)
class Route:
    kind: Kind
    path: str  # "/pkg.Service/Method", without the query
    query: bytes = b""
    grpc_web: grpcweb.GrpcWebFormat | None = None
    status: int = 0  # for Kind.ANSWER
    headers: list[Header] = field(default_factory=list)  # for Kind.ANSWER


_WEB_MEDIA = (b"application/grpc-web, application/grpc-web-text, application/proto, application/json, "
              b"application/connect+proto, application/connect+json")
_ACCEPT_POST = (b"accept-post", _WEB_MEDIA)  # HTTP/1.1: gRPC needs HTTP/2
_ACCEPT_POST_H2 = (b"accept-post", b"application/grpc, " + _WEB_MEDIA)
_ALLOW_ALL = (b"allow", b"POST, GET, OPTIONS")


def classify(method: bytes, target: bytes, headers: Iterable[Header], *, http2: bool = False) -> Route:
    """``method`` and ``target`` as sent (``:method``/``:path`` on HTTP/2); names lower-case."""
    path, _, query = target.partition(b"?")
    spath = path.decode("latin-1")
    content_type = b""
    header_list = headers if isinstance(headers, list) else list(headers)
    for name, value in header_list:
        if name == b"content-type":
            content_type = value
            break
    if method == b"POST":
        media = content_type.split(b";", 1)[0].strip().lower()
        if media.startswith(b"application/grpc-web"):
            fmt = grpcweb.parse_content_type(media)
            if fmt is not None:
                return Route(Kind.GRPC_WEB, spath, grpc_web=fmt)
            return Route(Kind.ANSWER, spath, status=415, headers=[_ACCEPT_POST_H2 if http2 else _ACCEPT_POST])
        if media.startswith(b"application/grpc"):
            if http2:
                return Route(Kind.GRPC, spath)
            return Route(Kind.ANSWER, spath, status=415, headers=[_ACCEPT_POST])
        if media in connect.UNARY_CODECS:
            return Route(Kind.CONNECT_UNARY, spath)
        if media.startswith(connect.STREAM_PREFIX):
            return Route(Kind.CONNECT_STREAM, spath)
        return Route(Kind.ANSWER, spath, status=415, headers=[_ACCEPT_POST_H2 if http2 else _ACCEPT_POST])
    if method == b"GET":
        if query:
            return Route(Kind.CONNECT_GET, spath, query=query)
        return Route(Kind.ANSWER, spath, status=405, headers=[(b"allow", b"POST")])
    if method == b"OPTIONS":
        if CorsPolicy.is_preflight(method, header_list):
            return Route(Kind.PREFLIGHT, spath)
        return Route(Kind.ANSWER, spath, status=204, headers=[_ALLOW_ALL])
    return Route(Kind.ANSWER, spath, status=405, headers=[_ALLOW_ALL])
