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

Header = tuple[bytes, bytes]

# 8.2.1: a field name MUST NOT contain 0x00-0x20, 0x41-0x5a (uppercase) or 0x7f-0xff, nor a
# colon except the one that starts a pseudo-header field; a value MUST NOT contain NUL, LF or
# CR, nor start or end with SP or HTAB. Checked on all names (values) of a block at once,
# joined by NUL and mapped by a table to a few classes, with C-speed bytes operations:
# "a" allowed, "\x01" forbidden, ":" and " " (SP/HTAB) kept, NUL the separator (a NUL inside
# a name or value shows as one separator too many).
_NAME_CLASSES = bytes(
    b if b in (0x00, 0x3A) else 0x61 if 0x21 <= b <= 0x7E and not 0x41 <= b <= 0x5A else 0x01 for b in range(256)
)
_VALUE_CLASSES = bytes(
    0x00 if b == 0 else 0x01 if b in (0x0A, 0x0D) else 0x20 if b in (0x09, 0x20) else 0x61 for b in range(256)
)
# 8.2.2: connection-specific fields; "te" is allowed with the value "trailers" only.
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
# 8.3.1: the request pseudo-header fields. (":protocol" needs SETTINGS_ENABLE_CONNECT_PROTOCOL,
# RFC 8441, which GMF does not send; ":status" is a response field.)
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
_REQUIRED = frozenset({b":method", b":scheme", b":path"})


class FieldCheck:
    """What :func:`check` found in one header block."""

    __slots__ = ("request_error", "trailers_error", "content_length")

    def __init__(self, request_error: str | None, trailers_error: str | None, content_length: int | None) -> None:
        self.request_error = request_error  # why the block is not a valid request; None: it is
        self.trailers_error = trailers_error  # why it is not valid trailers; None: it is
        self.content_length = content_length  # the request's content-length, None if absent


def _field_error(names: tuple[bytes, ...], values: tuple[bytes, ...]) -> str | None:
    """What makes any field block malformed: bad names or values, connection-specific fields."""
    joined = b"\x00".join(names).translate(_NAME_CLASSES)
    if (b"\x01" in joined or b"a:" in joined or b"::" in joined  # a forbidden byte; a colon not first
            or b"\x00\x00" in joined or not joined or joined[0] == 0 or joined[-1] == 0  # an empty name
            or joined.count(0) != len(names) - 1):
        return f"field name empty, with uppercase or forbidden characters: {names!r}"
    joined = b"\x00".join(values).translate(_VALUE_CLASSES)
    if (b"\x01" in joined or b"\x00 " in joined or b" \x00" in joined or joined[:1] == b" " or joined[-1:] == b" "
            or joined.count(0) != len(values) - 1):
        return "forbidden character (NUL, CR, LF) or surrounding whitespace in a field value"
    if not CONNECTION_SPECIFIC.isdisjoint(names):
        return f"connection-specific field {next(n for n in names if n in CONNECTION_SPECIFIC).decode('latin-1')!r}"
    if b"te" in names and (values[names.index(b"te")].lower() != b"trailers" or names.count(b"te") > 1
                           and any(v.lower() != b"trailers" for n, v in zip(names, values, strict=True) if n == b"te")):
        return "te other than 'trailers'"
    return None


def _request_error(headers: list[Header], names: tuple[bytes, ...]) -> tuple[str | None, int | None]:
    """What makes a well-formed field block malformed as a request: the pseudo-header rules,
    content-length."""
    # names passed _field_error: a colon only starts a name, so this counts the pseudo-headers
    count = names[0][0] == 0x3A if names else 0
    count += b"\x00".join(names).count(b"\x00:")
    pseudo = dict(headers[:count])
    if len(pseudo) != count or not REQUEST_PSEUDO.issuperset(pseudo):  # duplicated, unknown, or one later
        return _pseudo_error(names), None
    method = pseudo.get(b":method")
    if method is None:
        return "missing :method", None
    if method == b"CONNECT":  # 8.5: only :method and :authority
        if len(pseudo) != 2 or b":authority" not in pseudo:
            return "CONNECT request with :scheme or :path, or without :authority", None
    elif not _REQUIRED.issubset(pseudo):
        return "missing :scheme or :path", None
    elif not pseudo[b":path"]:
        return "empty :path", None
    content_length: int | None = None
    if b"content-length" in names:
        for name, value in headers[count:]:
            if name == b"content-length":
                if not value.isdigit() or (content_length is not None and int(value) != content_length):
                    return f"invalid content-length {value!r}", None
                content_length = int(value)
    return None, content_length


def _pseudo_error(names: tuple[bytes, ...]) -> str:
    """Why the pseudo-header fields of a request are wrong (once it is known they are)."""
    seen: set[bytes] = set()
    regular = False
    for name in names:
        if name[0] != 0x3A:
            regular = True
        elif regular:
            return f"pseudo-header {name!r} after a regular field"
        elif name not in REQUEST_PSEUDO:
            return f"{'response' if name == b':status' else 'unknown'} pseudo-header {name!r} in a request"
        elif name in seen:
            return f"duplicated {name.decode()}"
        seen.add(name)
    return "bad pseudo-header fields"


def check(headers: list[Header]) -> FieldCheck:
    """Check one decoded header block, as a request and as trailers (see the module doc)."""
    if not headers:
        return FieldCheck("missing :method", None, None)
    names, values = zip(*headers, strict=True)
    fields = _field_error(names, values)
    if fields is not None:
        return FieldCheck(fields, fields, None)
    request, content_length = _request_error(headers, names)
    trailers = "pseudo-header in trailers" if names[0][0] == 0x3A or b"\x00:" in b"\x00".join(names) else None
    return FieldCheck(request, trailers, content_length)
