"""gmf.web: gRPC-Web and Connect codecs, CORS and request routing (sans-IO units).

The same codecs are driven against real clients (Chromium, curl, connectrpc) in tests/web/.
"""

from __future__ import annotations

import base64
import gzip
import json

import helloworld_pb2  # importable: see tests/web/__init__.py
import pytest
import route_guide_pb2

from gmf.protocol import grpc as g
from gmf.web import connect, grpcweb
from gmf.web.cors import CorsPolicy
from gmf.web.route import Kind, classify
from gmf.web.sink import Out

pytestmark = pytest.mark.core  # the core server suite: CI runs it on every tested Python too

BIN = grpcweb.parse_content_type(b"application/grpc-web+proto")
TEXT = grpcweb.parse_content_type(b"application/grpc-web-text")


# ---------------------------------------------------------------------------- gRPC-Web
def test_content_types() -> None:
    for ct, text in [(b"application/grpc-web", False), (b"application/grpc-web+proto", False),
                     (b"application/grpc-web-text", True), (b"Application/gRPC-Web-Text+proto; charset=x", True)]:
        fmt = grpcweb.parse_content_type(ct)
        assert fmt is not None and fmt.text is text
    assert grpcweb.parse_content_type(b"application/grpc-web+json") is None
    assert grpcweb.parse_content_type(b"application/grpc") is None


def test_binary_request_decoding_in_pieces() -> None:
    assert BIN is not None
    dec = grpcweb.GrpcWebRequestDecoder(BIN, 1024)
    wire = g.frame_message(b"hello") + g.frame_message(b"")
    got = []
    for i in range(len(wire)):
        got += dec.feed(wire[i : i + 1])
    assert got == [b"hello", b""]
    dec.end()


def test_compressed_request_frames() -> None:
    assert BIN is not None
    frame = g.frame_message(gzip.compress(b"zipped"), compressed=True)
    assert grpcweb.GrpcWebRequestDecoder(BIN, 1024, "gzip").feed(frame) == [b"zipped"]
    for encoding, code in [(None, g.INTERNAL), ("identity", g.INTERNAL), ("zstd", g.UNIMPLEMENTED)]:
        with pytest.raises(g.GrpcError) as err:
            grpcweb.GrpcWebRequestDecoder(BIN, 1024, encoding).feed(frame)
        assert err.value.code == code
    with pytest.raises(g.GrpcError) as err:  # the limit applies after decompression too
        grpcweb.GrpcWebRequestDecoder(BIN, 10, "gzip").feed(g.frame_message(gzip.compress(b"x" * 100), compressed=True))
    assert err.value.code == g.RESOURCE_EXHAUSTED


def test_text_request_with_padding_between_chunks() -> None:
    assert TEXT is not None
    dec = grpcweb.GrpcWebRequestDecoder(TEXT, 1024)
    one, two = g.frame_message(b"ab"), g.frame_message(b"c")
    wire = base64.b64encode(one) + base64.b64encode(two)  # two padded segments back to back
    assert b"=" in wire[:-4]
    got = []
    for i in range(0, len(wire), 3):
        got += dec.feed(wire[i : i + 3])
    assert got == [b"ab", b"c"]
    dec.end()


@pytest.mark.parametrize("body", [b"!!!!", b"AB=C", b"QQ==Q===", b"A\x00AA"])
def test_invalid_base64_is_invalid_argument(body: bytes) -> None:
    assert TEXT is not None
    dec = grpcweb.GrpcWebRequestDecoder(TEXT, 1024)
    with pytest.raises(g.GrpcError) as err:
        dec.feed(body)
        dec.end()
    assert err.value.code == g.INVALID_ARGUMENT


def test_truncated_base64_and_truncated_frame() -> None:
    assert TEXT is not None and BIN is not None
    dec = grpcweb.GrpcWebRequestDecoder(TEXT, 1024)
    dec.feed(b"AAAAAA")
    with pytest.raises(g.GrpcError) as err:
        dec.end()
    assert err.value.code == g.INVALID_ARGUMENT
    dec2 = grpcweb.GrpcWebRequestDecoder(BIN, 1024)
    dec2.feed(g.frame_message(b"hello")[:-1])
    with pytest.raises(g.GrpcError) as err:
        dec2.end()
    assert err.value.code == g.INTERNAL


def test_trailer_frame_in_a_request_and_oversized_message() -> None:
    assert BIN is not None
    with pytest.raises(g.GrpcError) as err:
        grpcweb.GrpcWebRequestDecoder(BIN, 1024).feed(grpcweb.trailer_frame(0, "", []))
    assert err.value.code == g.INTERNAL
    with pytest.raises(g.GrpcError) as err:
        grpcweb.GrpcWebRequestDecoder(BIN, 4).feed(g.frame_message(b"hello"))
    assert err.value.code == g.RESOURCE_EXHAUSTED


def _collect(outs: list[Out]) -> tuple[list, bytes, bool]:
    heads = [o.head for o in outs if o.head is not None]
    return heads, b"".join(o.body for o in outs), outs[-1].end


def test_streaming_response_binary() -> None:
    assert BIN is not None
    enc = grpcweb.GrpcWebResponse(BIN)
    outs = [enc.start([(b"x-a", b"1")]), enc.message(b"m1"), enc.message(b"m2"),
            enc.finish(g.NOT_FOUND, "no such thing é", [(b"x-t", b"2"), (b"x-b-bin", b"AAE")])]
    heads, body, ended = _collect(outs)
    assert len(heads) == 1 and heads[0].status == 200 and heads[0].content_length is None
    assert (b"content-type", b"application/grpc-web+proto") in heads[0].headers
    assert (b"x-a", b"1") in heads[0].headers
    messages, trailers = grpcweb.decode_response(body, text=False)
    assert messages == [b"m1", b"m2"] and ended
    assert dict(trailers) == {b"grpc-status": b"5", b"grpc-message": b"no such thing %C3%A9",
                              b"x-t": b"2", b"x-b-bin": b"AAE"}


def test_unary_response_text_has_content_length() -> None:
    assert TEXT is not None
    enc = grpcweb.GrpcWebResponse(TEXT, unary=True)
    assert enc.start([]).head is None and enc.message(b"reply").head is None
    out = enc.finish(g.OK, "", [])
    assert out.head is not None and out.head.content_length == len(out.body) and out.end
    assert (b"content-type", b"application/grpc-web-text") in out.head.headers
    messages, trailers = grpcweb.decode_response(out.body, text=True)
    assert messages == [b"reply"] and dict(trailers) == {b"grpc-status": b"0"}


def test_trailers_only_response() -> None:
    assert BIN is not None
    out = grpcweb.GrpcWebResponse(BIN).finish(g.UNIMPLEMENTED, "Method not found!", [])
    assert out.head is not None and out.head.status == 200 and out.end
    assert grpcweb.decode_response(out.body, text=False) == ([], [(b"grpc-status", b"12"),
                                                                  (b"grpc-message", b"Method not found!")])


# ---------------------------------------------------------------------------- Connect
def test_code_names_and_http_status_follow_the_spec() -> None:
    assert len(connect.CODE_NAMES) == 16 and connect.CODE_NAMES[g.CANCELLED] == "canceled"
    assert {connect.HTTP_STATUS[c] for c in (g.INVALID_ARGUMENT, g.FAILED_PRECONDITION, g.OUT_OF_RANGE)} == {400}
    assert connect.HTTP_STATUS[g.DEADLINE_EXCEEDED] == 504 and connect.HTTP_STATUS[g.UNIMPLEMENTED] == 501
    assert connect.HTTP_STATUS[g.RESOURCE_EXHAUSTED] == 429 and connect.HTTP_STATUS[g.CANCELLED] == 499
    assert connect.code_from_http(404) == g.UNIMPLEMENTED and connect.code_from_http(418) == g.UNKNOWN


@pytest.mark.parametrize("value, seconds", [(b"5000", 5.0), (b"1", 0.001), (b"9999999999", 9999999.999)])
def test_timeout(value: bytes, seconds: float) -> None:
    assert connect.parse_timeout_ms(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"-1", b"1.5", b"12345678901", b"5s", b" 5"])
def test_bad_timeout_is_invalid_argument(value: bytes) -> None:
    with pytest.raises(g.GrpcError) as err:
        connect.parse_timeout_ms(value)
    assert err.value.code == g.INVALID_ARGUMENT


def test_unary_post_headers() -> None:
    call = connect.parse_post_request([(b"content-type", b"application/json; charset=utf-8"),
                                       (b"connect-protocol-version", b"1"), (b"connect-timeout-ms", b"250"),
                                       (b"content-encoding", b"gzip"), (b"accept-encoding", b"br, gzip")])
    assert isinstance(call, connect.ConnectCall)
    assert (call.codec, call.streaming, call.request_encoding, call.response_encoding, call.timeout) == (
        "json", False, "gzip", "gzip", 0.25)


def test_unary_post_refusals() -> None:
    answer = connect.parse_post_request([(b"content-type", b"application/xml")])
    assert isinstance(answer, connect.HttpAnswer) and answer.status == 415
    for headers, code in [([(b"connect-protocol-version", b"2")], g.INVALID_ARGUMENT),
                          ([(b"content-encoding", b"br")], g.UNIMPLEMENTED),
                          ([(b"connect-timeout-ms", b"soon")], g.INVALID_ARGUMENT)]:
        with pytest.raises(g.GrpcError) as err:
            connect.parse_post_request([(b"content-type", b"application/proto"), *headers])
        assert err.value.code == code
    with pytest.raises(g.GrpcError):
        connect.parse_post_request([(b"content-type", b"application/proto")], require_version=True)


def test_stream_headers_use_connect_prefixed_encodings() -> None:
    call = connect.parse_post_request([(b"content-type", b"application/connect+proto"),
                                       (b"connect-content-encoding", b"gzip"), (b"accept-encoding", b"identity")])
    assert isinstance(call, connect.ConnectCall) and call.streaming
    assert call.request_encoding == "gzip" and call.response_encoding == "gzip"


def test_get_request_query_forms() -> None:
    call = connect.parse_get_request(b"encoding=json&message=%7B%22name%22%3A%22Buf%22%7D&connect=v1", [], allowed=True)
    assert isinstance(call, connect.ConnectCall) and call.codec == "json" and call.message == b'{"name":"Buf"}'
    raw = helloworld_pb2.HelloRequest(name="x\x00y").SerializeToString()
    b64 = base64.urlsafe_b64encode(raw).rstrip(b"=")
    call = connect.parse_get_request(b"message=" + b64 + b"&base64=1&encoding=proto&unknown=1", [], allowed=True)
    assert isinstance(call, connect.ConnectCall) and call.message == raw
    padded = base64.urlsafe_b64encode(b"ab").replace(b"=", b"%3D")
    call = connect.parse_get_request(b"encoding=proto&base64=1&message=" + padded, [], allowed=True)
    assert isinstance(call, connect.ConnectCall) and call.message == b"ab"


def test_get_request_refusals() -> None:
    answer = connect.parse_get_request(b"encoding=json&message=%7B%7D", [], allowed=False)
    assert isinstance(answer, connect.HttpAnswer) and answer.status == 405
    answer = connect.parse_get_request(b"encoding=xml&message=x", [], allowed=True)
    assert isinstance(answer, connect.HttpAnswer) and answer.status == 415
    for query in [b"encoding=json", b"encoding=proto&base64=1&message=!!!", b"encoding=json&message=e30&connect=v2"]:
        with pytest.raises(g.GrpcError) as err:
            connect.parse_get_request(query, [], allowed=True)
        assert err.value.code == g.INVALID_ARGUMENT


def test_method_allows_get_reads_idempotency_level() -> None:
    assert connect.method_allows_get("/routeguide.RouteGuide/GetFeature")
    assert not connect.method_allows_get("/routeguide.RouteGuide/ListFeatures")
    assert not connect.method_allows_get("/helloworld.Greeter/SayHello")
    assert not connect.method_allows_get("/no.Such/Method")


def test_unary_body_limits_and_compression() -> None:
    assert connect.decode_unary_body(gzip.compress(b"abc"), "gzip", 10) == b"abc"
    assert connect.decode_unary_body(b"", "gzip", 10) == b""  # zero-length is never decompressed
    for body, enc, code in [(b"x" * 11, None, g.RESOURCE_EXHAUSTED), (gzip.compress(b"x" * 100), "gzip", g.RESOURCE_EXHAUSTED),
                            (b"not gzip", "gzip", g.INTERNAL)]:
        with pytest.raises(g.GrpcError) as err:
            connect.decode_unary_body(body, enc, 10)
        assert err.value.code == code


def test_json_codec() -> None:
    codec = connect.JsonCodec(helloworld_pb2.HelloRequest)
    assert codec.decode(b'{"name": "John", "unknownField": 1}').name == "John"
    assert codec.decode(b"").name == ""
    assert json.loads(codec.encode(helloworld_pb2.HelloReply(message="hi"))) == {"message": "hi"}
    for bad in [b"{", b'{"name": 5}', b"[]", b"\xff"]:
        with pytest.raises(g.GrpcError) as err:
            codec.decode(bad)
        assert err.value.code == g.INVALID_ARGUMENT
    assert connect.message_class_of(helloworld_pb2.HelloRequest.FromString) is helloworld_pb2.HelloRequest
    proto = connect.ProtoCodec(helloworld_pb2.HelloRequest.FromString, helloworld_pb2.HelloReply.SerializeToString)
    with pytest.raises(g.GrpcError) as err:
        proto.decode(b"\xff\xff")
    assert err.value.code == g.INVALID_ARGUMENT


def _unary(codec: str = "proto", resp_enc: str | None = None) -> connect.ConnectUnaryResponse:
    return connect.ConnectUnaryResponse(connect.ConnectCall(codec, False, None, resp_enc, None))


def test_unary_success_response() -> None:
    enc = _unary("json")
    enc.start([(b"x-lead", b"1")])
    enc.message(b'{"message":"hi"}')
    out = enc.finish(g.OK, "", [(b"x-cost", b"7")])
    assert out.head is not None and out.head.status == 200 and out.head.content_length == len(out.body)
    assert out.head.headers[0] == (b"content-type", b"application/json")
    assert (b"x-lead", b"1") in out.head.headers and (b"trailer-x-cost", b"7") in out.head.headers
    assert out.body == b'{"message":"hi"}'


def test_unary_response_compressed_when_large_enough() -> None:
    enc = _unary("proto", "gzip")
    enc.message(b"a" * 2000)
    out = enc.finish(g.OK, "", [])
    assert out.head is not None and (b"content-encoding", b"gzip") in out.head.headers
    assert gzip.decompress(out.body) == b"a" * 2000
    small = _unary("proto", "gzip")
    small.message(b"a")
    assert small.finish(g.OK, "", []).body == b"a"


def test_unary_error_response_with_details() -> None:
    from google.protobuf import any_pb2

    detail = any_pb2.Any(type_url="type.googleapis.com/helloworld.HelloRequest",
                         value=helloworld_pb2.HelloRequest(name="d").SerializeToString())
    status_bin = b"\x08\x03" + b"\x12\x03bad" + b"\x1a" + bytes([len(detail.SerializeToString())]) + detail.SerializeToString()
    meta = [(b"grpc-status-details-bin", base64.b64encode(status_bin).rstrip(b"=")), (b"x-t", b"1")]
    out = _unary().finish(g.INVALID_ARGUMENT, "bad name", meta)
    assert out.head is not None and out.head.status == 400
    assert (b"content-type", b"application/json") in out.head.headers
    assert (b"trailer-x-t", b"1") in out.head.headers
    assert not any(n == b"trailer-grpc-status-details-bin" for n, _ in out.head.headers)
    body = json.loads(out.body)
    assert body["code"] == "invalid_argument" and body["message"] == "bad name"
    assert body["details"][0]["type"] == "helloworld.HelloRequest"
    value = body["details"][0]["value"]
    assert helloworld_pb2.HelloRequest.FromString(base64.b64decode(value + "=" * (-len(value) % 4))).name == "d"


@pytest.mark.parametrize("code", sorted(connect.CODE_NAMES))
def test_every_error_code_maps_to_its_status(code: int) -> None:
    out = _unary().finish(code, "m", [])
    assert out.head is not None and out.head.status == connect.HTTP_STATUS[code]
    assert json.loads(out.body) == {"code": connect.CODE_NAMES[code], "message": "m"}


def test_unary_ok_without_a_message_is_internal() -> None:
    out = _unary().finish(g.OK, "", [])
    assert out.head is not None and out.head.status == 500 and json.loads(out.body)["code"] == "internal"


def test_stream_response_and_end_stream_message() -> None:
    call = connect.ConnectCall("json", True, None, None, None)
    enc = connect.ConnectStreamResponse(call)
    outs = [enc.start([(b"x-a", b"1")]), enc.message(b"{}"), enc.finish(g.UNAVAILABLE, "overloaded", [(b"x-t", b"v")])]
    heads, body, ended = _collect(outs)
    assert len(heads) == 1 and heads[0].status == 200 and ended
    assert (b"content-type", b"application/connect+json") in heads[0].headers
    messages, end = connect.decode_stream_response(body)
    assert messages == [b"{}"]
    assert end == {"error": {"code": "unavailable", "message": "overloaded"}, "metadata": {"x-t": ["v"]}}
    ok = connect.ConnectStreamResponse(call).finish(g.OK, "", [])
    assert ok.head is not None and connect.decode_stream_response(ok.body) == ([], {})


def test_stream_decoder() -> None:
    call = connect.ConnectCall("proto", True, "gzip", None, None)
    dec = connect.ConnectStreamDecoder(call, 100)
    wire = connect.envelope(b"plain") + connect.envelope(gzip.compress(b"zipped"), connect.FLAG_COMPRESSED)
    assert dec.feed(wire) == [b"plain", b"zipped"]
    with pytest.raises(g.GrpcError) as err:
        dec.feed(connect.envelope(b"{}", connect.FLAG_END_STREAM))
    assert err.value.code == g.INTERNAL
    dec2 = connect.ConnectStreamDecoder(connect.ConnectCall("proto", True, None, None, None), 100)
    with pytest.raises(g.GrpcError):
        dec2.feed(connect.envelope(b"x", connect.FLAG_COMPRESSED))
    dec2 = connect.ConnectStreamDecoder(connect.ConnectCall("proto", True, None, None, None), 100)
    dec2.feed(connect.envelope(b"abc")[:4])
    with pytest.raises(g.GrpcError):
        dec2.end()


# ---------------------------------------------------------------------------- CORS
def test_preflight_from_an_allowed_origin() -> None:
    cors = CorsPolicy(["https://app.example"], allow_headers=["authorization"])
    pre = cors.preflight([(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST"),
                          (b"access-control-request-headers", b"content-type,x-grpc-web,x-custom")])
    h = dict(pre.headers)
    assert pre.status == 204
    assert h[b"access-control-allow-origin"] == b"https://app.example"
    assert h[b"access-control-allow-methods"] == b"POST, GET"
    allowed = h[b"access-control-allow-headers"].split(b", ")
    assert {b"content-type", b"x-grpc-web", b"x-custom", b"connect-protocol-version", b"authorization"} <= set(allowed)
    assert h[b"access-control-max-age"] == b"7200" and b"origin" in h[b"vary"]


def test_preflight_refused() -> None:
    cors = CorsPolicy(["https://app.example"])
    for headers in [[(b"origin", b"https://evil.example"), (b"access-control-request-method", b"POST")],
                    [(b"origin", b"https://app.example"), (b"access-control-request-method", b"DELETE")]]:
        pre = cors.preflight(headers)
        assert pre.status == 403 and not any(n.startswith(b"access-control") for n, _ in pre.headers)


def test_actual_response_headers() -> None:
    cors = CorsPolicy(["https://app.example/"], expose_headers=["trailer-x-cost"])
    h = dict(cors.response_headers(b"https://APP.example"))
    assert h[b"access-control-allow-origin"] == b"https://APP.example" and h[b"vary"] == b"origin"
    exposed = h[b"access-control-expose-headers"].split(b", ")
    assert {b"grpc-status", b"grpc-message", b"grpc-status-details-bin", b"trailer-x-cost"} <= set(exposed)
    assert cors.response_headers(b"https://evil.example") == [] and cors.response_headers(None) == []
    star = CorsPolicy(["*"])
    assert dict(star.response_headers(b"https://any"))[b"access-control-allow-origin"] == b"*"
    creds = CorsPolicy(["*"], allow_credentials=True)
    h = dict(creds.response_headers(b"https://any"))
    assert h[b"access-control-allow-origin"] == b"https://any" and h[b"access-control-allow-credentials"] == b"true"


# ---------------------------------------------------------------------------- routing
@pytest.mark.parametrize("method, ct, http2, kind, status", [
    (b"POST", b"application/grpc-web+proto", False, Kind.GRPC_WEB, 0),
    (b"POST", b"application/grpc-web-text", True, Kind.GRPC_WEB, 0),
    (b"POST", b"application/grpc-web+json", False, Kind.ANSWER, 415),
    (b"POST", b"application/grpc", True, Kind.GRPC, 0),
    (b"POST", b"application/grpc+proto", False, Kind.ANSWER, 415),
    (b"POST", b"application/json", False, Kind.CONNECT_UNARY, 0),
    (b"POST", b"application/proto", True, Kind.CONNECT_UNARY, 0),
    (b"POST", b"application/connect+json", False, Kind.CONNECT_STREAM, 0),
    (b"POST", b"text/plain", False, Kind.ANSWER, 415),
    (b"PUT", b"application/json", False, Kind.ANSWER, 405),
])
def test_classify(method: bytes, ct: bytes, http2: bool, kind: Kind, status: int) -> None:
    route = classify(method, b"/helloworld.Greeter/SayHello", [(b"content-type", ct)], http2=http2)
    assert route.kind is kind and route.status == status and route.path == "/helloworld.Greeter/SayHello"


def test_classify_get_and_options() -> None:
    route = classify(b"GET", b"/routeguide.RouteGuide/GetFeature?encoding=json&message=%7B%7D", [])
    assert route.kind is Kind.CONNECT_GET and route.query == b"encoding=json&message=%7B%7D"
    assert classify(b"GET", b"/x/y", []).status == 405
    pre = classify(b"OPTIONS", b"/x/y", [(b"origin", b"o"), (b"access-control-request-method", b"POST")])
    assert pre.kind is Kind.PREFLIGHT
    assert classify(b"OPTIONS", b"/x/y", []).status == 204


def test_route_guide_get_feature_is_marked_no_side_effects() -> None:
    options = route_guide_pb2.DESCRIPTOR.services_by_name["RouteGuide"].methods_by_name["GetFeature"].GetOptions()
    assert options.idempotency_level == options.NO_SIDE_EFFECTS


# ---------------------------------------------------------------------------- JSON: protojson vs json_format
def _plain_types() -> dict[str, type]:
    import gmftest_pb2  # bytes and repeated fields: not plain
    from google.protobuf import duration_pb2, struct_pb2
    from grpc_health.v1 import health_pb2  # an enum field

    return {"HelloRequest": helloworld_pb2.HelloRequest, "Point": route_guide_pb2.Point,
            "Rectangle": route_guide_pb2.Rectangle, "Feature": route_guide_pb2.Feature,
            "RouteSummary": route_guide_pb2.RouteSummary, "HealthCheckResponse": health_pb2.HealthCheckResponse,
            "EchoRequest": gmftest_pb2.EchoRequest, "EchoReply": gmftest_pb2.EchoReply,
            "Duration": duration_pb2.Duration, "Struct": struct_pb2.Struct}


JSON_INPUTS = [
    {}, {"name": "x"}, {"name": "é\"\\\n"}, {"name": 5}, {"name": None}, {"name": True}, {"name": "\ud800"},
    {"latitude": 5, "longitude": -7}, {"latitude": "5"}, {"latitude": 5.0}, {"latitude": 5.5}, {"latitude": 2**31},
    {"latitude": -(2**31)}, {"latitude": True}, {"latitude": None},
    {"lo": {"latitude": 1}, "hi": {"latitude": 2, "longitude": 3}}, {"lo": None}, {"lo": "x"}, {"lo": {"latitude": "x"}},
    {"location": {"latitude": 1}, "name": "f"}, {"pointCount": 3, "point_count": 4}, {"point_count": 4, "elapsedTime": 9},
    {"unknown": 1, "name": "y"}, {"[ext.x]": 1}, {"status": "SERVING"}, {"status": 1}, {"status": "NOPE"},
    {"message": "m", "payload": "AAE=", "code": 3, "sleepSeconds": 1.5}, {"sleep_seconds": 1}, {"sleepSeconds": "NaN"},
    {"metadata": ["a"]}, {"seconds": "5", "nanos": 1}, {"fields": {"a": {"numberValue": 1}}},
]


def _json_format_parse(cls: type, obj: dict) -> bytes | str:
    from google.protobuf import json_format

    message = cls()
    try:
        json_format.ParseDict(obj, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError) as exc:
        return f"could not unmarshal the JSON request: {exc}"
    return message.SerializeToString(deterministic=True)


@pytest.mark.parametrize("type_name", list(_plain_types()))
def test_json_decode_is_json_formats(type_name: str) -> None:
    """Every input gives what json_format gives: the same message, or the same error."""
    cls = _plain_types()[type_name]
    codec = connect.JsonCodec(cls)
    for obj in JSON_INPUTS:
        try:
            ours: bytes | str = codec.decode(json.dumps(obj).encode()).SerializeToString(deterministic=True)
        except g.GrpcError as exc:
            assert exc.code == g.INVALID_ARGUMENT
            ours = exc.message
        assert ours == _json_format_parse(cls, obj), obj


def test_json_encode_is_json_formats() -> None:
    import gmftest_pb2
    from google.protobuf import json_format
    from grpc_health.v1 import health_pb2

    messages = [helloworld_pb2.HelloReply(), helloworld_pb2.HelloReply(message="Hello é \"x\"\n"),
                route_guide_pb2.Feature(name="f", location=route_guide_pb2.Point(latitude=-1, longitude=2**31 - 1)),
                route_guide_pb2.Rectangle(hi=route_guide_pb2.Point()), route_guide_pb2.RouteSummary(distance=7),
                health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING),
                health_pb2.HealthCheckResponse(status=99),  # an unknown value of an open enum
                gmftest_pb2.EchoReply(message="m", payload=b"\x00", metadata=["a", "b"]),
                gmftest_pb2.EchoRequest(sleep_seconds=float("inf")), gmftest_pb2.EchoRequest(sleep_seconds=0.1)]
    for message in messages:
        assert connect.JsonCodec(type(message)).encode(message) == json_format.MessageToJson(message, indent=None).encode()


def test_plain_types_take_the_fast_path() -> None:
    from gmf.web import protojson

    plain = {name for name, cls in _plain_types().items() if protojson.plan_for(cls) is not None}
    assert plain == {"HelloRequest", "Point", "Rectangle", "Feature", "RouteSummary", "HealthCheckResponse"}
    rect = protojson.parse(protojson.plan_for(route_guide_pb2.Rectangle), {"lo": {"latitude": 1}, "hi": {"longitude": 2}})
    assert rect == route_guide_pb2.Rectangle(lo=route_guide_pb2.Point(latitude=1), hi=route_guide_pb2.Point(longitude=2))
    reply = helloworld_pb2.HelloReply(message="hi")
    assert protojson.to_json(protojson.plan_for(helloworld_pb2.HelloReply), reply) == b'{"message": "hi"}'
