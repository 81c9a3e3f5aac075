"""HTTP answers to requests that are not RPCs: a status and a short text/plain body that says
what this server is, so ``curl`` and browsers show something useful instead of an empty 415.

``not_grpc(method)`` chooses the status for a request GMF's gRPC path cannot take (405 for a
method other than POST, 415 for a POST without ``content-type: application/grpc``);
``answer(status, headers, method)`` makes the header block and the body, which the connection
sends as HEADERS and flow-controlled DATA (``GrpcConnection.answer_http``, the one place the
per-request router of the web protocols calls for "none of the above").
"""

from __future__ import annotations

from .hpack_codec import Header, encode_headers

TEXT = (b"This is a gRPC server (GMF). Send gRPC requests: HTTP/2 POST with content-type "
        b"application/grpc to /package.Service/Method.\n")
_CONTENT_TYPE = (b"content-type", b"text/plain; charset=utf-8")
_NO_CONTENT = (204, 304)  # statuses that never carry a body (RFC 9110 6.4.1)


def not_grpc(method: bytes) -> tuple[int, list[Header]]:
    """The status (and its extra fields) for a request that is not gRPC."""
    if method != b"POST":
        return 405, [(b"allow", b"POST")]
    return 415, [(b"accept-post", b"application/grpc")]


def answer(status: int, headers: list[Header] | tuple[Header, ...], method: bytes) -> tuple[bytes, bytes]:
    """The header block and the body of an answer with this status: the text above, except for
    HEAD (the length only) and statuses that have no content."""
    fields: list[Header] = [(b":status", str(status).encode())]
    body = b""
    if status not in _NO_CONTENT and status >= 200:
        fields += [_CONTENT_TYPE, (b"content-length", str(len(TEXT)).encode())]
        body = b"" if method == b"HEAD" else TEXT
    return encode_headers(fields + list(headers)), body
