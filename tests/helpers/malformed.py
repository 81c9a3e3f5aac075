"""Malformed requests (RFC 9113 8.1.1, 8.2, 8.3): header lists a server must answer with a
stream error PROTOCOL_ERROR, each named for what is wrong. The sans-IO core tests, the raw
socket tests against a real worker and the fuzz invariants share them."""

from __future__ import annotations

Fields = list[tuple[str, str]]

GRPC_PATH = "/helloworld.Greeter/SayHello"


def request(path: str = GRPC_PATH, extra: Fields | None = None) -> Fields:
    """A well-formed gRPC request's header list (plus ``extra`` regular fields)."""
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers"), *(extra or [])]


def _without(name: str) -> Fields:
    return [(n, v) for n, v in request() if n != name]


def _with_pseudo(name: str, value: str) -> Fields:
    fields = request()
    return fields[:4] + [(name, value)] + fields[4:]


MALFORMED_REQUESTS: dict[str, tuple[Fields, str]] = {
    "uppercase_name": (request(extra=[("X-Upper", "1")]), "8.2.1"),
    "uppercase_pseudo": ([(":Method" if n == ":method" else n, v) for n, v in request()], "8.2.1"),
    "space_in_name": (request(extra=[("x y", "1")]), "8.2.1"),
    "colon_in_name": (request(extra=[("x:y", "1")]), "8.2.1"),
    "non_ascii_name": (request(extra=[("x\u00e9", "1")]), "8.2.1"),
    "empty_name": (request(extra=[("", "1")]), "8.2.1"),
    "unknown_pseudo": (_with_pseudo(":foo", "bar"), "8.3"),
    "protocol_pseudo": (_with_pseudo(":protocol", "websocket"), "8.3 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)"),
    "status_in_request": (_with_pseudo(":status", "200"), "8.3.2"),
    "pseudo_after_regular": (request() + [(":authority", "late")], "8.3"),
    "connection": (request(extra=[("connection", "keep-alive")]), "8.2.2"),
    "keep_alive": (request(extra=[("keep-alive", "timeout=5")]), "8.2.2"),
    "proxy_connection": (request(extra=[("proxy-connection", "keep-alive")]), "8.2.2"),
    "transfer_encoding": (request(extra=[("transfer-encoding", "chunked")]), "8.2.2"),
    "upgrade": (request(extra=[("upgrade", "h2c")]), "8.2.2"),
    "te_not_trailers": ([(n, "trailers, deflate" if n == "te" else v) for n, v in request()], "8.2.2"),
    "missing_method": (_without(":method"), "8.3.1"),
    "missing_scheme": (_without(":scheme"), "8.3.1"),
    "missing_path": (_without(":path"), "8.3.1"),
    "empty_path": ([(n, "" if n == ":path" else v) for n, v in request()], "8.3.1"),
    "duplicate_method": (_with_pseudo(":method", "POST"), "8.3"),
    "duplicate_scheme": (_with_pseudo(":scheme", "http"), "8.3"),
    "duplicate_path": (_with_pseudo(":path", GRPC_PATH), "8.3"),
    "duplicate_authority": (_with_pseudo(":authority", "other"), "8.3"),
    "nul_in_value": (request(extra=[("x-v", "a\x00b")]), "8.2.1"),
    "cr_in_value": (request(extra=[("x-v", "a\rb")]), "8.2.1"),
    "lf_in_value": (request(extra=[("x-v", "a\nb")]), "8.2.1"),
    "leading_space_in_value": (request(extra=[("x-v", " a")]), "8.2.1"),
    "trailing_tab_in_value": (request(extra=[("x-v", "a\t")]), "8.2.1"),
    "lf_in_pseudo_value": ([(n, GRPC_PATH + "\n" if n == ":path" else v) for n, v in request()], "8.2.1"),
    "content_length_not_a_number": (request(extra=[("content-length", "12a")]), "8.1.1"),
    "content_length_conflicting": (request(extra=[("content-length", "5"), ("content-length", "6")]), "8.1.1"),
}

# Trailers (a second HEADERS with END_STREAM) that are malformed: pseudo-header fields, and
# the field rules every block follows.
MALFORMED_TRAILERS: dict[str, tuple[Fields, str]] = {
    "pseudo_in_trailers": ([(":status", "200"), ("x-t", "1")], "8.1"),
    "path_in_trailers": ([(":path", "/x")], "8.1"),
    "uppercase_in_trailers": ([("X-T", "1")], "8.2.1"),
    "connection_in_trailers": ([("connection", "close")], "8.2.2"),
    "cr_in_trailers": ([("x-t", "a\rb")], "8.2.1"),
}

# Well-formed variants that must still be served (no false positives).
WELL_FORMED_REQUESTS: dict[str, Fields] = {
    "grpc": request(),
    "te_trailers_any_case": [(n, "Trailers" if n == "te" else v) for n, v in request()],
    "no_te_no_authority": [(n, v) for n, v in request() if n not in ("te", ":authority")],
    "empty_value": request(extra=[("x-empty", "")]),
    "inner_space_and_tab": request(extra=[("x-v", "a b\tc")]),
    "visible_punctuation_name": request(extra=[("x-!#$%&'*+.^_`|~", "1")]),
    "non_ascii_value": request(extra=[("x-v", "caf\u00e9")]),
}
