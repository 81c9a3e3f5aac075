"""Browser- and curl-facing protocols, sans-IO: HTTP/1.1 (on h11), gRPC-Web, Connect, CORS.

Why a package of its own: ``gmf/protocol/`` is the gRPC-over-HTTP/2 core (frames, HPACK,
gRPC framing and status); what is here sits beside it and is chosen per connection (HTTP/1.1
vs HTTP/2, by ALPN or the first bytes) and per request (by content-type), reusing
``gmf.protocol.grpc`` for status codes, message framing, metadata and compression. Nothing here
touches a socket, an event loop or a clock: bytes and header lists in, events and bytes out.

Modules:

- :mod:`gmf.web.http1`: :class:`~gmf.web.http1.H1ServerConnection`, one HTTP/1.1 connection:
  keep-alive, bounded pipelining, size limits, deadlines for slow heads and bodies, the
  smuggling shapes refused with a defined answer.
- :mod:`gmf.web.route`: :func:`~gmf.web.route.classify`, which protocol one request speaks
  (gRPC, gRPC-Web binary/text, Connect unary/GET/streaming, CORS preflight), from its method,
  path and headers, with the HTTP answer for the ones that are none of them.
- :mod:`gmf.web.grpcweb`: request decoder (binary and base64 text) and response encoder
  (messages, trailers as the last frame of the body).
- :mod:`gmf.web.connect`: Connect unary (POST and GET), streaming envelopes, error JSON,
  ``connect-timeout-ms``, compression negotiation, the protobuf JSON codec.
- :mod:`gmf.web.framing`: :class:`~gmf.web.framing.MessageStream`, the length-prefixed and
  possibly compressed request messages gRPC-Web and Connect streaming share.
- :mod:`gmf.web.cors`: :class:`~gmf.web.cors.CorsPolicy`: preflight answers and the headers
  every cross-origin response needs.

The response side of every protocol has one shape, :class:`gmf.web.sink.ResponseEncoder`
(``start`` / ``message`` / ``finish``, each returning :class:`gmf.web.sink.Out` parts: a head,
body bytes, the end), so a Call can write to any of them through one seam; see
:mod:`gmf.rpc.web` for how the server serves them (docs/web.md).
"""
