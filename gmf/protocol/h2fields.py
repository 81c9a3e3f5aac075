"""Is a decoded header block a well-formed HTTP/2 request, or well-formed trailers (RFC 9113
sections 8.1.1, 8.2 and 8.3)? Every MUST of those sections about what a server receives.

``check(headers)`` looks at a block once and gives its :class:`FieldCheck`: why it is malformed
as a request, why as trailers (``None``: it is not), and its ``content-length``. The HTTP/2 core
keeps the answer on the decoded :class:`~.hpack_codec.HeaderList`, and the HPACK decoder hands
out the same list for every repeat of a block, so a block is checked once however often a
client sends it. A malformed request or trailer block is a stream error PROTOCOL_ERROR
(section 8.1.1); the HPACK state is intact (the block was decoded), so the connection lives on.
"""

from __future__ import annotations

from collections.abc import Iterable

Header = tuple[bytes, bytes]

# 8.2.1: a field name MUST NOT contain 0x00-0x20, 0x41-0x5a (uppercase) or 0x7f-0xff, and no
# colon (pseudo-header fields start with one). What is left: these bytes.
_NAME_BYTES = bytes(b for b in range(0x21, 0x7F) if not 0x41 <= b <= 0x5A and b != 0x3A)
# 8.2.1: a field value MUST NOT contain NUL, LF or CR ...
_VALUE_BYTES = bytes(b for b in range(256) if b not in (0x00, 0x0A, 0x0D))
_WHITESPACE = b" \t"  # ... nor start or end with SP or HTAB
# 8.2.2: connection-specific fields; "te" is allowed with the value "trailers" only.
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
# 8.3.1: the request pseudo-header fields. (":protocol" needs SETTINGS_ENABLE_CONNECT_PROTOCOL,
# RFC 8441, which GMF does not send; ":status" is a response field.)
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})


class FieldCheck:
    """What :func:`check` found in one header block."""

    __slots__ = ("request_error", "trailers_error", "content_length")

    def __init__(self, request_error: str | None, trailers_error: str | None, content_length: int | None) -> None:
        self.request_error = request_error  # why the block is not a valid request; None: it is
        self.trailers_error = trailers_error  # why it is not valid trailers; None: it is
        self.content_length = content_length  # the request's content-length, None if absent


def _field_error(headers: Iterable[Header]) -> str | None:
    """What makes any field block malformed: bad names or values, connection-specific fields."""
    names: list[bytes] = []
    for name, value in headers:
        if not name:
            return "empty field name"
        names.append(name[1:] if name[0] == 0x3A else name)
        if value and (value.translate(None, _VALUE_BYTES) or value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
            return f"forbidden character or surrounding whitespace in the value of {name!r}"
        if name in CONNECTION_SPECIFIC:
            return f"connection-specific field {name.decode('latin-1')!r}"
        if name == b"te" and value.lower() != b"trailers":
            return "te other than 'trailers'"
    if b"".join(names).translate(None, _NAME_BYTES):
        bad = next(n for n in names if not n or n.translate(None, _NAME_BYTES))
        return f"field name {bad!r} with uppercase or forbidden characters"
    return None


def _request_error(headers: list[Header]) -> tuple[str | None, int | None]:
    """What makes a block malformed as a request (pseudo-header rules, content-length)."""
    seen: set[bytes] = set()
    regular = False
    content_length: int | None = None
    method = path = None
    for name, value in headers:
        if name[0] == 0x3A:  # b":"
            if regular:
                return f"pseudo-header {name!r} after a regular field", None
            if name not in REQUEST_PSEUDO:
                return f"{'response' if name == b':status' else 'unknown'} pseudo-header {name!r} in a request", None
            if name in seen:
                return f"duplicated {name.decode()}", None
            seen.add(name)
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
        else:
            regular = True
            if name == b"content-length":
                if not value.isdigit() or (content_length is not None and int(value) != content_length):
                    return f"invalid content-length {value!r}", None
                content_length = int(value)
    if method is None:
        return "missing :method", None
    if method == b"CONNECT":  # 8.5: only :method and :authority
        if b":scheme" in seen or path is not None or b":authority" not in seen:
            return "CONNECT request with :scheme or :path, or without :authority", None
    elif path is None or b":scheme" not in seen:
        return "missing :scheme or :path", None
    elif not path:
        return "empty :path", None
    return None, content_length


def check(headers: list[Header]) -> FieldCheck:
    """Check one decoded header block, as a request and as trailers (see the module doc)."""
    fields = _field_error(headers)
    request, content_length = _request_error(headers) if fields is None else (fields, None)
    if fields is None and any(name[0] == 0x3A for name, _ in headers):
        fields = "pseudo-header in trailers"
    return FieldCheck(request, fields, content_length)
