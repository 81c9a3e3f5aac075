"""Hypothesis strategies for what an HTTP/2 client may send to a gRPC server.

A *scenario* is the bytes of one connection (the preface, then frames of every type with
random flags, stream ids near the interesting values, valid HPACK header blocks from a
client-side ``hpack.Encoder`` kept across the connection, padding, CONTINUATION splits,
settings and window increments at the edges), optionally mutated (bit flips, truncation,
a corrupted length field), cut into random chunks, plus the choices the driver makes for
each request it receives (answer, reset, leave open, answer with more than the window).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hpack import Encoder
from hypothesis import strategies as st

from gmf.protocol import frames as f
from tests.helpers.malformed import MALFORMED_REQUESTS

MAX_SID = 0x7FFFFFFF

# Values at and around the limits RFC 9113 defines for settings and window increments.
EDGE_VALUES = [0, 1, 2, 100, 16383, 16384, 16385, 65534, 65535, 65536, (1 << 24) - 1, 1 << 24,
               MAX_SID - 1, MAX_SID, MAX_SID + 1, 0xFFFFFFFF]
SETTING_IDS = [0, f.SETTINGS_HEADER_TABLE_SIZE, f.SETTINGS_ENABLE_PUSH, f.SETTINGS_MAX_CONCURRENT_STREAMS,
               f.SETTINGS_INITIAL_WINDOW_SIZE, f.SETTINGS_MAX_FRAME_SIZE, f.SETTINGS_MAX_HEADER_LIST_SIZE,
               7, 8, 0xFFFF]
ERROR_CODES = [f.NO_ERROR, f.PROTOCOL_ERROR, f.CANCEL, f.ENHANCE_YOUR_CALM, 0xFF, 0xFFFFFFFF]

# What the driver does with a RequestReceived (see h2_target.Driver).
ACTIONS = ("unary", "reset", "open", "trailers_only", "big", "later", "drain_start", "shutdown")

_HEADER = struct.Struct(">BHBBL")


def frame(ftype: int, flags: int, sid: int, payload: bytes, length: int | None = None) -> bytes:
    """Raw frame bytes; ``length`` overrides the length field (a lie about the payload)."""
    n = len(payload) if length is None else length
    return _HEADER.pack((n >> 16) & 0xFF, n & 0xFFFF, ftype, flags, sid) + payload


def padded(flags: int, payload: bytes, pad: int | None) -> tuple[int, bytes]:
    if pad is None:
        return flags, payload
    return flags | f.FLAG_PADDED, bytes([pad]) + payload + b"\0" * pad


@dataclass
class Scenario:
    """One connection's input and the driver's choices; repr() is a reproducible example."""

    chunks: list[bytes]
    actions: list[str]
    response_size: int

    def __repr__(self) -> str:
        return f"Scenario(chunks={self.chunks!r}, actions={self.actions!r}, response_size={self.response_size})"


class _Client:
    """Per-scenario state the frame strategies share: the HPACK encoder and the next stream id."""

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.next_sid = 1


def stream_ids(client: _Client) -> st.SearchStrategy[int]:
    near = client.next_sid
    return st.one_of(
        st.sampled_from([0, 1, 2, 3, max(1, near - 2), near, near + 1, near + 2, MAX_SID, MAX_SID + 1, 0xFFFFFFFF]),
        st.integers(0, 64),
        st.integers(0, 0xFFFFFFFF),
    )


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Mostly a valid gRPC request; sometimes a broken one (missing or odd pseudo-headers,
    one of the malformed requests of tests/helpers/malformed.py, odd names and values)."""
    if draw(st.integers(0, 5)) == 0:
        return list(draw(st.sampled_from(sorted(MALFORMED_REQUESTS.items())))[1][0])
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", ""]))
    path = draw(st.sampled_from(["/gmftest.TestService/Unary", "/helloworld.Greeter/SayHello", "/x/y", "", "*"]))
    headers = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "fuzz"),
               ("content-type", draw(st.sampled_from(["application/grpc", "application/grpc+proto", "text/plain"]))),
               ("te", "trailers")]
    if draw(st.booleans()):
        headers.append(("grpc-timeout", draw(st.sampled_from(["1S", "100m", "99999999H", "0n", "bad", ""]))))
    if draw(st.booleans()):
        headers.append(("grpc-encoding", draw(st.sampled_from(["gzip", "identity", "br", "deflate"]))))
    extra = draw(st.lists(st.tuples(st.text("abcxyzAZ-_: \t", min_size=0, max_size=12), st.text(max_size=40)), max_size=4))
    headers += extra
    if draw(st.integers(0, 9)) == 0:
        headers = draw(st.permutations(headers))
    if draw(st.integers(0, 9)) == 0:
        headers.append(("x-big", "v" * draw(st.sampled_from([1000, 16500, 70000]))))
    return headers


@st.composite
def header_frames(draw: st.DrawFn, client: _Client, sid: int, end_stream: bool) -> bytes:
    """A HEADERS frame (maybe padded, with a priority field) and CONTINUATION frames."""
    block = client.encoder.encode(draw(header_lists()), huffman=draw(st.booleans()))
    flags = f.FLAG_END_STREAM if end_stream else 0
    prefix = b""
    if draw(st.booleans()):
        flags |= f.FLAG_PRIORITY
        prefix = struct.pack(">LB", draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 255)))
    pieces = draw(st.integers(1, 4))
    cut = [len(block) * i // pieces for i in range(pieces + 1)]
    parts = [block[cut[i] : cut[i + 1]] for i in range(pieces)]
    head_flags, head_payload = padded(flags | (f.FLAG_END_HEADERS if pieces == 1 else 0), prefix + parts[0],
                                      draw(st.none() | st.integers(0, 255)))
    out = [frame(f.HEADERS, head_flags, sid, head_payload)]
    for i, part in enumerate(parts[1:], start=2):
        out.append(frame(f.CONTINUATION, f.FLAG_END_HEADERS if i == pieces else 0, sid, part))
    return b"".join(out)


def grpc_message(size: int) -> bytes:
    return b"\0" + size.to_bytes(4, "big") + b"m" * size


@st.composite
def requests(draw: st.DrawFn, client: _Client) -> bytes:
    """A well-formed request on the next stream id: HEADERS, DATA (one message), END_STREAM."""
    sid = client.next_sid
    client.next_sid += 2
    if draw(st.booleans()):
        return draw(header_frames(client, sid, end_stream=True))
    body = grpc_message(draw(st.sampled_from([0, 5, 100, 20000])))
    data_flags, data = padded(f.FLAG_END_STREAM, body, draw(st.none() | st.integers(0, 20)))
    return draw(header_frames(client, sid, end_stream=False)) + frame(f.DATA, data_flags, sid, data)


_VALID_SETTING = {
    f.SETTINGS_HEADER_TABLE_SIZE: st.sampled_from([0, 100, 4096, 65536]),
    f.SETTINGS_ENABLE_PUSH: st.sampled_from([0, 1]),
    f.SETTINGS_MAX_CONCURRENT_STREAMS: st.sampled_from([0, 1, 100, 0xFFFFFFFF]),
    f.SETTINGS_INITIAL_WINDOW_SIZE: st.sampled_from([0, 1, 100, 16384, 65535, 1 << 20, MAX_SID]),
    f.SETTINGS_MAX_FRAME_SIZE: st.sampled_from([16384, 16385, 65536, (1 << 24) - 1]),
    f.SETTINGS_MAX_HEADER_LIST_SIZE: st.sampled_from([0, 100, 1 << 20]),
    0xFFFF: st.integers(0, 0xFFFFFFFF),  # unknown settings must be ignored
}


@st.composite
def settings_payloads(draw: st.DrawFn, valid: bool = True) -> bytes:
    if valid:
        keys = draw(st.lists(st.sampled_from(sorted(_VALID_SETTING)), max_size=4))
        pairs = [(k, draw(_VALID_SETTING[k])) for k in keys]
    else:
        pairs = draw(st.lists(st.tuples(st.sampled_from(SETTING_IDS),
                                        st.sampled_from(EDGE_VALUES) | st.integers(0, 0xFFFFFFFF)), max_size=6))
    return b"".join(struct.pack(">HL", k, v & 0xFFFFFFFF) for k, v in pairs)


@st.composite
def valid_frames(draw: st.DrawFn, client: _Client) -> bytes:
    """What a correct client sends between requests: window updates, pings, settings, resets."""
    opened = client.next_sid - 2
    sid = draw(st.integers(1, opened).map(lambda n: n | 1)) if opened >= 1 else 0
    kind = draw(st.sampled_from(["window_update", "ping", "settings", "settings_ack", "rst", "priority", "data",
                                 "unknown"]))
    if kind == "window_update":
        inc = draw(st.sampled_from([1, 100, 65535, 1 << 20]))
        return frame(f.WINDOW_UPDATE, 0, draw(st.sampled_from([0, sid])), struct.pack(">L", inc))
    if kind == "ping":
        return frame(f.PING, draw(st.sampled_from([0, f.FLAG_ACK])), 0, draw(st.binary(min_size=8, max_size=8)))
    if kind == "settings":
        return frame(f.SETTINGS, 0, 0, draw(settings_payloads()))
    if kind == "settings_ack":
        return frame(f.SETTINGS, f.FLAG_ACK, 0, b"")
    if kind == "rst" and sid:
        return frame(f.RST_STREAM, 0, sid, struct.pack(">L", draw(st.sampled_from(ERROR_CODES))))
    if kind == "priority" and sid:
        return frame(f.PRIORITY, 0, sid, struct.pack(">LB", draw(st.integers(0, MAX_SID)), 15))
    if kind == "data" and sid:  # a request-stream message, maybe after the stream ended (a stream error)
        flags, payload = padded(draw(st.sampled_from([0, f.FLAG_END_STREAM])), grpc_message(draw(st.integers(0, 50))),
                                draw(st.none() | st.integers(0, 10)))
        return frame(f.DATA, flags, sid, payload)
    return frame(draw(st.integers(10, 255)), draw(st.integers(0, 255)), sid, draw(st.binary(max_size=16)))


@st.composite
def any_frames(draw: st.DrawFn, client: _Client) -> bytes:
    """A request, a valid frame, or (one time in five) a frame of any type with random flags,
    stream id and a plausible-or-not payload."""
    choice = draw(st.integers(0, 9))
    if choice < 4:
        return draw(requests(client))
    if choice < 8:
        return draw(valid_frames(client))
    kind = draw(st.sampled_from(["headers", "data", "window_update", "settings", "ping",
                                 "rst", "goaway", "priority", "continuation", "push_promise", "unknown"]))
    sid = draw(stream_ids(client))
    flags = draw(st.integers(0, 255)) if draw(st.integers(0, 3)) == 0 else 0
    if kind == "headers":
        return draw(header_frames(client, sid, end_stream=draw(st.booleans())))
    if kind == "data":
        flags, payload = padded(flags & ~f.FLAG_PADDED, draw(st.binary(max_size=64)) or grpc_message(3),
                                draw(st.none() | st.integers(0, 255)))
        return frame(f.DATA, flags | draw(st.sampled_from([0, f.FLAG_END_STREAM])), sid, payload)
    if kind == "window_update":
        payload = struct.pack(">L", draw(st.sampled_from(EDGE_VALUES)) & 0xFFFFFFFF)
        return frame(f.WINDOW_UPDATE, flags, draw(st.sampled_from([0, sid])), payload[: draw(st.sampled_from([4, 4, 4, 3, 0]))])
    if kind == "settings":
        ack = draw(st.integers(0, 4)) == 0
        payload = b"" if ack and draw(st.booleans()) else draw(settings_payloads(valid=False))
        return frame(f.SETTINGS, f.FLAG_ACK if ack else flags & ~f.FLAG_ACK, draw(st.sampled_from([0, 0, 0, sid])), payload)
    if kind == "ping":
        size = draw(st.sampled_from([8, 8, 8, 0, 7, 9]))
        return frame(f.PING, flags, draw(st.sampled_from([0, 0, sid])), draw(st.binary(min_size=size, max_size=size)))
    if kind == "rst":
        payload = struct.pack(">L", draw(st.sampled_from(ERROR_CODES)))[: draw(st.sampled_from([4, 4, 2]))]
        return frame(f.RST_STREAM, flags, sid, payload)
    if kind == "goaway":
        payload = struct.pack(">LL", sid, draw(st.sampled_from(ERROR_CODES))) + draw(st.binary(max_size=16))
        return frame(f.GOAWAY, flags, draw(st.sampled_from([0, 0, sid])), payload[: draw(st.sampled_from([64, 64, 4]))])
    if kind == "priority":
        return frame(f.PRIORITY, flags, sid, draw(st.binary(min_size=5, max_size=5) | st.binary(max_size=8)))
    if kind == "continuation":
        return frame(f.CONTINUATION, flags, sid, draw(st.binary(max_size=32)))
    if kind == "push_promise":
        return frame(f.PUSH_PROMISE, flags, sid, draw(st.binary(max_size=32)))
    return frame(draw(st.integers(10, 255)), flags, sid, draw(st.binary(max_size=64)))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """Bit flips, a truncation or a corrupted length field, each sometimes."""
    out = bytearray(data)
    start = len(f.PREFACE) if draw(st.integers(0, 9)) else 0  # rarely corrupt the preface itself
    if len(out) <= start:
        return bytes(out)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(start, len(out) - 1))
        out[i] ^= 1 << draw(st.integers(0, 7))
    if draw(st.integers(0, 3)) == 0:  # overwrite three bytes that may be a length field
        i = draw(st.integers(start, len(out) - 1))
        out[i : i + 3] = draw(st.sampled_from([b"\xff\xff\xff", b"\x00\x40\x00", b"\x00\x40\x01", b"\x00\x00\x00"]))
    if draw(st.integers(0, 3)) == 0:
        del out[draw(st.integers(start, len(out))) :]
    return bytes(out)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Cut the byte stream where a network might: single bytes, frame halves, everything at once."""
    chunks = []
    pos = 0
    while pos < len(data):
        n = draw(st.sampled_from([1, 2, 9, 10, 100, 1000, len(data)]) | st.integers(1, 64))
        chunks.append(data[pos : pos + n])
        pos += n
    return chunks


@st.composite
def scenarios(draw: st.DrawFn, max_frames: int = 24) -> Scenario:
    client = _Client()
    start = f.PREFACE
    if draw(st.integers(0, 19)):  # almost always a SETTINGS frame first, as RFC 9113 requires
        start += frame(f.SETTINGS, 0, 0, draw(settings_payloads(valid=draw(st.integers(0, 9)) > 0)))
    body = b"".join(draw(st.lists(any_frames(client), min_size=2, max_size=max_frames)))
    data = start + body
    if draw(st.integers(0, 3)) == 0:
        data = draw(mutated(data))
    return Scenario(
        chunks=draw(chunked(data)),
        actions=draw(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=8)),
        response_size=draw(st.sampled_from([0, 10, 16384, 70000, 200000])),
    )
