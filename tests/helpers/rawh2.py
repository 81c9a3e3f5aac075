"""A tiny raw HTTP/2 client for protocol-violation tests (frames built by hand, parsed with
hyperframe, headers with hpack): the bytes a misbehaving or hostile peer would send."""

from __future__ import annotations

import socket
import struct
import time

from hpack import Decoder, Encoder
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


SETTINGS_EMPTY = frame(0x4, 0, 0, b"")


def refused(port: int, wait: float = 3.0, tls: bool = False) -> bool:
    """True when a new connection is closed at once, before any SETTINGS (over max_connections);
    False when the server sends something or nothing within ``wait`` (a TLS server waits for the
    ClientHello: ``tls=True`` sends nothing). In plaintext the probe sends the HTTP/2 preface
    first: on a port that also serves HTTP/1.1 the server chooses the protocol by the first
    bytes and says nothing before them."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    try:
        if not tls:
            try:
                s.sendall(PREFACE)
            except OSError:  # closed already
                return True
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        s.close()


class RawClient:
    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.encoder = Encoder()
        self.decoder = Decoder()
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(self) -> None:
        self.send(PREFACE + SETTINGS_EMPTY)

    def headers(self, stream_id: int, headers: list[tuple[str, str]], end_stream: bool = False) -> bytes:
        block = self.encoder.encode(headers)
        return frame(0x1, 0x4 | (0x1 if end_stream else 0), stream_id, block)

    def grpc_request(self, stream_id: int, path: str, body: bytes, extra: list[tuple[str, str]] | None = None) -> None:
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
                ("content-type", "application/grpc"), ("te", "trailers")] + (extra or [])
        self.send(self.headers(stream_id, hdrs) + frame(0x0, 0x1, stream_id, body))

    def frames(self, until: float = 3.0, stop=None) -> list[Frame]:
        """Read frames until the connection closes, ``stop(frame)`` is true, or time runs out."""
        out: list[Frame] = []
        end = time.monotonic() + until
        while time.monotonic() < end:
            while len(self._buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self._buf[:9]))
                if len(self._buf) < 9 + length:
                    break
                f.parse_body(memoryview(self._buf[9 : 9 + length]))
                self._buf = self._buf[9 + length :]
                out.append(f)
                if stop is not None and stop(f):
                    return out
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            self._buf += chunk
        return out

    def ping_roundtrip(self, timeout: float = 5.0) -> list[Frame]:
        """Send a PING and read frames until its ACK (returned with the frames before it): the
        server has then handled everything this client sent before the PING."""
        payload = struct.pack(">Q", time.monotonic_ns())
        self.send(frame(0x6, 0, 0, payload))
        frames = self.frames(until=timeout, stop=lambda f: f.type == 0x6 and "ACK" in f.flags and f.opaque_data == payload)
        assert frames and frames[-1].type == 0x6 and "ACK" in frames[-1].flags, f"no PING ACK within {timeout}s: {frames}"
        return frames

    def decode(self, block: bytes) -> dict[str, str]:
        return {k: v for k, v in self.decoder.decode(block)}

    def closed(self, wait: float = 3.0) -> bool:
        self.sock.settimeout(wait)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()
