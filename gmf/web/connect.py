"""The Connect protocol, sans-IO: unary POST and GET, streaming envelopes, errors, timeouts,
compression, and the protobuf JSON codec.

Spec: https://connectrpc.com/docs/protocol. What each piece answers:

- :func:`parse_unary_request` / :func:`parse_get_request`: the call's codec, compression and
  deadline from the headers (and the query of a GET), or an :class:`HttpAnswer` when the
  request cannot be a Connect call (415 for an unsupported codec, 405 for a GET to a method
  not marked ``idempotency_level = NO_SIDE_EFFECTS``). Errors of a well-formed Connect call
  raise ``gmf.protocol.grpc.GrpcError`` and go out as Connect error JSON:
  a malformed ``connect-timeout-ms`` or ``connect-protocol-version`` -> ``invalid_argument``;
  an unsupported ``content-encoding`` -> ``unimplemented`` listing the supported ones; a body
  over the limit -> ``resource_exhausted``; JSON that does not parse into the request type ->
  ``invalid_argument``.
- :class:`ConnectUnaryResponse` / :class:`ConnectStreamResponse`: the
  :class:`gmf.web.sink.ResponseEncoder` for each shape. Unary: 200 with the bare message, or
  the HTTP status of the code with ``{"code", "message", "details"}``; trailing metadata as
  ``trailer-`` headers. Streaming: 200, enveloped messages, then the end-stream message
  (flag 0x02) ``{"error": {...}, "metadata": {...}}``.
- :class:`ConnectStreamDecoder`: request envelopes (flag 0x01 = compressed with
  ``connect-content-encoding``; any other flag -> ``INTERNAL``, as gRPC framing errors).
- Compression: ``identity`` and ``gzip`` (stdlib). Responses are compressed with the first
  encoding the client accepts that GMF supports, when the body is at least ``compress_min``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

from ..protocol import grpc as g
from . import protojson
from .framing import MessageStream
from .sink import NOTHING, Head, Out

Header = tuple[bytes, bytes]

# ---------------------------------------------------------------------------- codes
CODE_NAMES: dict[int, str] = {
    g.CANCELLED: "canceled",
    g.UNKNOWN: "unknown",
    g.INVALID_ARGUMENT: "invalid_argument",
    g.DEADLINE_EXCEEDED: "deadline_exceeded",
    g.NOT_FOUND: "not_found",
    g.ALREADY_EXISTS: "already_exists",
    g.PERMISSION_DENIED: "permission_denied",
    g.RESOURCE_EXHAUSTED: "resource_exhausted",
    g.FAILED_PRECONDITION: "failed_precondition",
    g.ABORTED: "aborted",
    g.OUT_OF_RANGE: "out_of_range",
    g.UNIMPLEMENTED: "unimplemented",
    g.INTERNAL: "internal",
    g.UNAVAILABLE: "unavailable",
    g.DATA_LOSS: "data_loss",
    g.UNAUTHENTICATED: "unauthenticated",
}
CODES_BY_NAME = {name: code for code, name in CODE_NAMES.items()}

HTTP_STATUS: dict[int, int] = {
    g.CANCELLED: 499,
    g.UNKNOWN: 500,
    g.INVALID_ARGUMENT: 400,
    g.DEADLINE_EXCEEDED: 504,
    g.NOT_FOUND: 404,
    g.ALREADY_EXISTS: 409,
    g.PERMISSION_DENIED: 403,
    g.RESOURCE_EXHAUSTED: 429,
    g.FAILED_PRECONDITION: 400,
    g.ABORTED: 409,
    g.OUT_OF_RANGE: 400,
    g.UNIMPLEMENTED: 501,
    g.INTERNAL: 500,
    g.UNAVAILABLE: 503,
    g.DATA_LOSS: 500,
    g.UNAUTHENTICATED: 401,
}

# What a client infers from an HTTP status without a Connect error body (spec: HTTP to Error Code).
CODE_FROM_HTTP: dict[int, int] = {
    400: g.INTERNAL,
    401: g.UNAUTHENTICATED,
    403: g.PERMISSION_DENIED,
    404: g.UNIMPLEMENTED,
    429: g.UNAVAILABLE,
    502: g.UNAVAILABLE,
    503: g.UNAVAILABLE,
    504: g.UNAVAILABLE,
}


def code_from_http(status: int) -> int:
    return CODE_FROM_HTTP.get(status, g.UNKNOWN)


# ---------------------------------------------------------------------------- headers
UNARY_CODECS = {b"application/proto": "proto", b"application/json": "json"}
STREAM_CODECS = {b"application/connect+proto": "proto", b"application/connect+json": "json"}
STREAM_PREFIX = b"application/connect+"
SUPPORTED_ENCODINGS = ("gzip", "identity")
_SUPPORTED_TEXT = ", ".join(SUPPORTED_ENCODINGS)
_TIMEOUT_RE = re.compile(rb"^[0-9]{1,10}$")
MAX_TIMEOUT_MS = 10**10 - 1


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A plain HTTP answer for a request that cannot be served as a Connect call."""

    status: int
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""


def parse_timeout_ms(value: bytes) -> float:
    """``connect-timeout-ms`` -> seconds; ``invalid_argument`` unless 1-10 ASCII digits."""
    if not _TIMEOUT_RE.match(value):
        raise g.GrpcError(g.INVALID_ARGUMENT, f"invalid connect-timeout-ms {value.decode('latin-1')!r}")
    return int(value) / 1000.0


def _media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


def _encoding(value: bytes | None) -> str | None:
    """A request's content coding -> None for identity; ``unimplemented`` when unsupported."""
    if value is None:
        return None
    name = value.strip().lower().decode("latin-1")
    if name in ("", "identity"):
        return None
    if name not in SUPPORTED_ENCODINGS:
        raise g.GrpcError(g.UNIMPLEMENTED, f"unknown compression {name!r}: supported encodings are {_SUPPORTED_TEXT}")
    return name


def choose_encoding(accept: bytes | None, request_encoding: str | None) -> str | None:
    """The response coding: the client's first accepted one GMF supports (None = identity)."""
    if accept is None:
        return request_encoding
    for token in accept.split(b","):
        name = token.split(b";", 1)[0].strip().lower().decode("latin-1")
        if name == "identity":
            return None
        if name in SUPPORTED_ENCODINGS:
            return name
    return None


@dataclass(slots=True)
class ConnectCall:
    """What the headers (and query) of a Connect request say about the call."""

    codec: str  # "proto" or "json"
    streaming: bool
    request_encoding: str | None  # None = identity
    response_encoding: str | None
    timeout: float | None  # seconds, from connect-timeout-ms
    message: bytes | None = None  # a GET request's message (already base64/percent decoded)


def _header_map(headers: list[Header]) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in headers:
        out[name] = out[name] + b", " + value if name in out else value
    return out


def _check_version(value: bytes | None, required: bool) -> None:
    if value is None:
        if required:
            raise g.GrpcError(g.INVALID_ARGUMENT, 'missing required header: set connect-protocol-version to "1"')
        return
    if value.strip() != b"1":
        raise g.GrpcError(g.INVALID_ARGUMENT, f'connect-protocol-version must be "1": got {value.decode("latin-1")!r}')


def parse_post_request(
    headers: list[Header], *, require_version: bool = False
) -> ConnectCall | HttpAnswer:
    """A POST whose content-type is a Connect one (unary or streaming)."""
    h = _header_map(headers)
    media = _media_type(h.get(b"content-type", b""))
    streaming = media.startswith(STREAM_PREFIX)
    codec = (STREAM_CODECS if streaming else UNARY_CODECS).get(media)
    if codec is None:
        accept = b"application/proto, application/json, application/connect+proto, application/connect+json"
        return HttpAnswer(415, [(b"accept-post", accept)])
    if not streaming:
        _check_version(h.get(b"connect-protocol-version"), require_version)
    timeout = parse_timeout_ms(h[b"connect-timeout-ms"]) if b"connect-timeout-ms" in h else None
    if streaming:
        req_enc = _encoding(h.get(b"connect-content-encoding"))
        resp_enc = choose_encoding(h.get(b"connect-accept-encoding"), req_enc)
    else:
        req_enc = _encoding(h.get(b"content-encoding"))
        resp_enc = choose_encoding(h.get(b"accept-encoding"), req_enc)
    return ConnectCall(codec, streaming, req_enc, resp_enc, timeout)


def _b64url(value: str) -> bytes:
    raw = value.encode("ascii", errors="strict")
    raw = raw.rstrip(b"=")
    try:
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise g.GrpcError(g.INVALID_ARGUMENT, "invalid base64 in the message query parameter") from None


def parse_get_request(
    query: bytes, headers: list[Header], *, allowed: bool, require_version: bool = False
) -> ConnectCall | HttpAnswer:
    """A Connect GET: ``?encoding=json|proto&message=...[&base64=1][&compression=gzip][&connect=v1]``.

    ``allowed`` says whether the method is marked ``NO_SIDE_EFFECTS`` (see
    :func:`method_allows_get`); otherwise the answer is 405 with ``allow: POST``.
    """
    if not allowed:
        return HttpAnswer(405, [(b"allow", b"POST")])
    try:
        params = dict(parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise g.GrpcError(g.INVALID_ARGUMENT, "query string is not ASCII") from None
    codec = params.get("encoding")
    if codec not in ("proto", "json"):
        return HttpAnswer(415)
    version = params.get("connect")
    if version is not None and version != "v1":
        raise g.GrpcError(g.INVALID_ARGUMENT, f'connect query parameter must be "v1": got {version!r}')
    if version is None and require_version:
        raise g.GrpcError(g.INVALID_ARGUMENT, 'missing required query parameter: set connect to "v1"')
    if "message" not in params:
        raise g.GrpcError(g.INVALID_ARGUMENT, "missing message query parameter")
    text = params["message"]
    if params.get("base64") == "1":
        message = _b64url(text)
    else:
        message = text.encode("utf-8")  # parse_qsl already percent-decoded it
    h = _header_map(headers)
    req_enc = _encoding(params["compression"].encode("latin-1")) if "compression" in params else None
    timeout = parse_timeout_ms(h[b"connect-timeout-ms"]) if b"connect-timeout-ms" in h else None
    resp_enc = choose_encoding(h.get(b"accept-encoding"), req_enc)
    return ConnectCall(codec, False, req_enc, resp_enc, timeout, message)


def method_allows_get(full_name: str) -> bool:
    """True when the method (``pkg.Service.Method`` or ``/pkg.Service/Method``) is marked
    ``idempotency_level = NO_SIDE_EFFECTS`` in a descriptor the process has imported."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    name = full_name.lstrip("/").replace("/", ".")
    try:
        method = descriptor_pool.Default().FindMethodByName(name)
    except KeyError:
        return False
    level = method.GetOptions().idempotency_level
    return bool(level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS)


def decode_unary_body(body: bytes, encoding: str | None, max_length: int) -> bytes:
    """The request's bare message: decompressed (never when empty), within ``max_length``."""
    if encoding is not None and body:
        return g.decompress(encoding, body, max_length)
    if len(body) > max_length:
        raise g.GrpcError(g.RESOURCE_EXHAUSTED, f"message size {len(body)} is larger than configured max {max_length}")
    return body


# ---------------------------------------------------------------------------- codecs
class MessageCodec(Protocol):
    name: str

    def decode(self, data: bytes) -> Any: ...

    def encode(self, message: Any) -> bytes: ...


class ProtoCodec:
    """Binary protobuf through grpcio's (de)serializers, exactly what a gRPC call uses."""

    name = "proto"
    __slots__ = ("_deserialize", "_serialize")

    def __init__(self, deserialize: Callable[[bytes], Any], serialize: Callable[[Any], bytes]) -> None:
        self._deserialize = deserialize
        self._serialize = serialize

    def decode(self, data: bytes) -> Any:
        try:
            return self._deserialize(data)
        except Exception:
            raise g.GrpcError(g.INVALID_ARGUMENT, "could not unmarshal the request message") from None

    def encode(self, message: Any) -> bytes:
        return self._serialize(message)


class JsonCodec:
    """Protobuf's canonical JSON mapping (``google.protobuf.json_format``; plain message types
    through :mod:`gmf.web.protojson`, which maps them the same way, faster)."""

    name = "json"
    __slots__ = ("_cls", "_plan")

    def __init__(self, message_class: type) -> None:
        self._cls = message_class
        self._plan = protojson.plan_for(message_class)

    def decode(self, data: bytes) -> Any:
        from google.protobuf import json_format

        if not data:
            return self._cls()
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            if self._plan is not None:
                fast = protojson.parse(self._plan, obj)
                if fast is not None:
                    return fast
            message = self._cls()
            json_format.ParseDict(obj, message, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError) as exc:  # JSONDecodeError/UnicodeDecodeError are ValueErrors
            raise g.GrpcError(g.INVALID_ARGUMENT, f"could not unmarshal the JSON request: {exc}") from None
        return message

    def encode(self, message: Any) -> bytes:
        from google.protobuf import json_format

        if self._plan is not None and type(message) is self._cls:
            fast = protojson.to_json(self._plan, message)
            if fast is not None:
                return fast
        return json_format.MessageToJson(message, indent=None).encode()


def message_class_of(deserializer: Callable[[bytes], Any]) -> type | None:
    """The message class behind grpcio's ``request_deserializer`` (``Msg.FromString``)."""
    owner = getattr(deserializer, "__self__", None)
    return owner if isinstance(owner, type) else None


# ---------------------------------------------------------------------------- errors
def _status_details(raw: bytes) -> list[dict[str, str]]:
    """``grpc-status-details-bin`` (a google.rpc.Status) -> Connect error ``details``."""
    from google.protobuf import any_pb2

    details: list[dict[str, str]] = []
    pos = 0
    try:
        while pos < len(raw):
            key, pos = _varint(raw, pos)
            wire = key & 7
            if wire == 0:
                _, pos = _varint(raw, pos)
            elif wire == 2:
                length, pos = _varint(raw, pos)
                chunk = raw[pos : pos + length]
                pos += length
                if key >> 3 == 3:
                    any_msg = any_pb2.Any.FromString(chunk)
                    details.append({
                        "type": any_msg.type_url.rsplit("/", 1)[-1],
                        "value": base64.b64encode(any_msg.value).rstrip(b"=").decode(),
                    })
            else:
                break
    except Exception:
        return details
    return details


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def error_object(code: int, message: str, metadata: Sequence[Header] = ()) -> dict[str, Any]:
    err: dict[str, Any] = {"code": CODE_NAMES.get(code, "unknown")}
    if message:
        err["message"] = message
    for name, value in metadata:
        if name == b"grpc-status-details-bin":
            raw = base64.b64decode(value + b"=" * (-len(value) % 4))
            details = _status_details(raw)
            if details:
                err["details"] = details
    return err


def error_json(code: int, message: str, metadata: Sequence[Header] = ()) -> bytes:
    return json.dumps(error_object(code, message, metadata), separators=(",", ":")).encode()


def _user_metadata(metadata: Sequence[Header]) -> list[Header]:
    return [(n, v) for n, v in metadata if n != b"grpc-status-details-bin"]


def error_answer(exc: g.GrpcError) -> HttpAnswer:
    """A unary Connect error before any handler ran (bad headers, undecodable body)."""
    return HttpAnswer(HTTP_STATUS.get(exc.code, 500), [(b"content-type", b"application/json")],
                      error_json(exc.code, exc.message))


# ---------------------------------------------------------------------------- unary responses
class ConnectUnaryResponse:
    """:class:`gmf.web.sink.ResponseEncoder` for a unary Connect call: everything at ``finish``."""

    __slots__ = ("_codec", "_compress_min", "_encoding", "_head_sent", "_metadata", "_payload")

    def __init__(self, call: ConnectCall, *, compress_min: int = 1024) -> None:
        self._codec = call.codec
        self._encoding = call.response_encoding
        self._compress_min = compress_min
        self._metadata: list[Header] = []
        self._payload: bytes | None = None
        self._head_sent = False

    @property
    def head_sent(self) -> bool:
        return self._head_sent

    def start(self, metadata: list[Header]) -> Out:
        if self._head_sent:
            raise RuntimeError("initial metadata was already sent")
        self._head_sent = True
        self._metadata = list(metadata)
        return NOTHING

    def message(self, payload: bytes) -> Out:
        if self._payload is not None:
            raise g.GrpcError(g.INTERNAL, "a unary call answered more than one message")
        self._head_sent = True
        self._payload = payload
        return NOTHING

    def finish(self, code: int, message: str, metadata: list[Header]) -> Out:
        trailers = [(b"trailer-" + n, v) for n, v in _user_metadata(metadata)]
        if code == g.OK and self._payload is None:
            code, message = g.INTERNAL, "the handler returned no response message"
        if code == g.OK:
            assert self._payload is not None
            status, body = 200, self._payload
            content_type = b"application/" + self._codec.encode()
        else:
            status, body = HTTP_STATUS.get(code, 500), error_json(code, message, metadata)
            content_type = b"application/json"
        headers = [(b"content-type", content_type)]
        if self._encoding is not None and len(body) >= self._compress_min:
            body = g.compress(self._encoding, body)
            headers.append((b"content-encoding", self._encoding.encode()))
        headers += self._metadata
        headers += trailers
        return Out(Head(status, headers, len(body)), body, True)


# ---------------------------------------------------------------------------- streaming
_ENVELOPE = struct.Struct(">BL")
FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return _ENVELOPE.pack(flags, len(payload)) + payload


class ConnectStreamDecoder:
    """Request envelopes -> messages (decompressed)."""

    __slots__ = ("_messages",)

    def __init__(self, call: ConnectCall, max_message_length: int) -> None:
        self._messages = MessageStream(max_message_length, call.request_encoding, "connect-content-encoding")

    def feed(self, data: bytes) -> list[bytes]:
        return self._messages.feed(data)

    def end(self) -> None:
        if self._messages.buffered:
            raise g.GrpcError(g.INVALID_ARGUMENT, "request body ended inside a message envelope")


def end_stream_json(code: int, message: str, metadata: list[Header]) -> bytes:
    obj: dict[str, Any] = {}
    if code != g.OK:
        obj["error"] = error_object(code, message, metadata)
    meta: dict[str, list[str]] = {}
    for name, value in _user_metadata(metadata):
        meta.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    if meta:
        obj["metadata"] = meta
    return json.dumps(obj, separators=(",", ":")).encode()


class ConnectStreamResponse:
    """:class:`gmf.web.sink.ResponseEncoder` for streaming Connect calls (always HTTP 200)."""

    __slots__ = ("_content_type", "_encoding", "_head_sent", "_compress_min")

    def __init__(self, call: ConnectCall, *, compress_min: int = 1024) -> None:
        self._content_type = STREAM_PREFIX + call.codec.encode()
        self._encoding = call.response_encoding
        self._compress_min = compress_min
        self._head_sent = False

    @property
    def head_sent(self) -> bool:
        return self._head_sent

    def _head(self, metadata: list[Header]) -> Head:
        self._head_sent = True
        headers = [(b"content-type", self._content_type)]
        if self._encoding is not None:
            headers.append((b"connect-content-encoding", self._encoding.encode()))
        return Head(200, headers + metadata)

    def start(self, metadata: list[Header]) -> Out:
        if self._head_sent:
            raise RuntimeError("initial metadata was already sent")
        return Out(self._head(list(metadata)))

    def _envelope(self, payload: bytes, flags: int) -> bytes:
        if self._encoding is not None and len(payload) >= self._compress_min:
            return envelope(g.compress(self._encoding, payload), flags | FLAG_COMPRESSED)
        return envelope(payload, flags)

    def message(self, payload: bytes) -> Out:
        head = None if self._head_sent else self._head([])
        return Out(head, self._envelope(payload, 0))

    def finish(self, code: int, message: str, metadata: list[Header]) -> Out:
        head = None if self._head_sent else self._head([])
        return Out(head, self._envelope(end_stream_json(code, message, metadata), FLAG_END_STREAM), True)


def decode_stream_response(body: bytes) -> tuple[list[bytes], dict[str, Any]]:
    """A whole streaming response body -> (messages, end-stream object): for tests and tools."""
    messages: list[bytes] = []
    end: dict[str, Any] = {}
    pos = 0
    while pos + 5 <= len(body):
        flags, length = _ENVELOPE.unpack_from(body, pos)
        payload = body[pos + 5 : pos + 5 + length]
        if flags & FLAG_COMPRESSED:
            payload = g.decompress("gzip", payload, 1 << 30)
        if flags & FLAG_END_STREAM:
            end = json.loads(payload)
        else:
            messages.append(payload)
        pos += 5 + length
    return messages, end
