"""HTTP answers to requests that are not RPCs: a status and a short text/plain body that says
what this server is, so ``curl`` and browsers show something useful instead of an empty 415.

``not_grpc(method)`` chooses the status for a request GMF's gRPC path cannot take (405 for a
method other than POST, 415 for a POST without ``content-type: application/grpc``);
``content(status, method)`` is what such an answer carries (the text; HEAD: its length only;
204: nothing); ``answer(status, headers, method)`` makes it an HTTP/2 header block and body, which the
connection sends as HEADERS and flow-controlled DATA. Each connection has one ``answer_http``
over these (``GrpcConnection.answer_http`` on HTTP/2, ``Http1Connection.answer_http`` on
HTTP/1.1), the one place the per-request router of the web protocols (``gmf.rpc.web``) calls
for "none of the above", with the status and fields ``gmf.web.route`` chose.
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


def content(status: int, method: bytes) -> tuple[list[Header], int | None, bytes]:
    """What an answer with this status carries, on HTTP/2 and HTTP/1.1 alike: its content-type
    field, content length (None: no content) and body; the text above, except for HEAD (the
    length only) and statuses that have no content."""
    if status in _NO_CONTENT or status < 200:
        return [], None, b""
    return [_CONTENT_TYPE], len(TEXT), b"" if method == b"HEAD" else TEXT


def answer(status: int, headers: list[Header] | tuple[Header, ...], method: bytes) -> tuple[bytes, bytes]:
    """The HTTP/2 header block and the body of an answer with this status (:func:`content`)."""
    fields, length, body = content(status, method)
    block: list[Header] = [(b":status", str(status).encode()), *fields]
    if length is not None:
        block.append((b"content-length", str(length).encode()))
    return encode_headers(block + list(headers)), body
