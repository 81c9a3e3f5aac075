"""HPACK for a gRPC server: a caching decoder and a stateless encoder.

Decoding uses the ``hpack`` package. gRPC clients repeat the same request headers, and after
the first request a block usually consists only of indexed fields, whose decoding depends
only on the block bytes and the dynamic table. We cache decoded blocks keyed by their bytes
and invalidate the cache whenever the dynamic table changes (a generation counter bumped on
every insert or resize), so a cached answer is always the answer the decoder would give.

Encoding never uses the dynamic table: every field is a "literal without indexing" (name
from the static table where possible). That keeps the encoder stateless, so constant blocks
(response headers, OK trailers) are encoded once per process and reused verbatim.
"""

from __future__ import annotations

from hpack import Decoder
from hpack.table import HeaderTable

from .h2fields import FieldCheck, Header

# RFC 7541 Appendix A: static-table indexes for names we send.
_STATIC_NAME_INDEX: dict[bytes, int] = {
    b":status": 8,
    b"content-type": 31,
    b"content-length": 28,
}


class HeaderList(list[Header]):
    """A decoded header block. A block served from the cache is the same object each time,
    so what is derived from it is worked out once: ``check``, the HTTP/2 core's verdict on
    it (a ``h2fields.FieldCheck``), and ``summary``, the layer above's (the gRPC request fields)."""

    __slots__ = ("check", "summary")

    def __init__(self, headers: list[Header]) -> None:
        super().__init__(headers)
        self.check: FieldCheck | None = None
        self.summary: object = None


class _CountingTable(HeaderTable):
    """A header table that counts its changes, so cached decodes can be invalidated."""

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    def add(self, name: bytes, value: bytes) -> None:  # type: ignore[override]
        self.generation += 1
        super().add(name, value)

    @property  # type: ignore[override]
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.generation += 1
        newmax = int(newmax)
        cursize = self._maxsize
        self._maxsize = newmax
        if newmax <= cursize:
            self._shrink()


_UNSTARTED = _CountingTable()  # the table of a decoder before its first block (never written)


class CachingDecoder:
    """hpack.Decoder plus a cache of blocks whose decoding did not touch the dynamic table."""

    __slots__ = ("_decoder", "_table", "_cache", "_cache_limit", "_max_header_list_size")

    def __init__(self, max_header_list_size: int = 65536, cache_limit: int = 128) -> None:
        """``max_header_list_size`` stops decoding a block (``OversizedHeaderListError``) as
        soon as its RFC 9113 header list size passes it: a bomb is never materialized.

        The decoder and its dynamic table are made by the first block: an idle
        connection (no request yet) does not pay for them (~1 KiB, most of it the table's
        empty deque; 10,000 idle connections per worker is a goal of issue 13)."""
        self._max_header_list_size = max_header_list_size
        self._decoder: Decoder | None = None
        self._table = _UNSTARTED  # the cache is empty until then: the hot path needs no check
        self._cache: dict[bytes, tuple[int, HeaderList]] = {}
        self._cache_limit = cache_limit

    def _start(self) -> _CountingTable:
        self._decoder = Decoder(max_header_list_size=self._max_header_list_size)
        table = self._table = _CountingTable()
        self._decoder.header_table = table
        return table

    @property
    def table_size(self) -> int:
        """Bytes in the HPACK dynamic table (0 before the first block)."""
        return self._table._current_size

    @property
    def cached_blocks(self) -> int:
        """Decoded blocks held by the cache (at most ``cache_limit``)."""
        return len(self._cache)

    def decode(self, block: bytes) -> HeaderList:
        """Decode one complete header block; raises hpack errors on malformed input. Whether
        the fields are valid HTTP is not checked here (``h2fields`` does, once per block)."""
        table = self._table
        hit = self._cache.get(block)
        if hit is not None and hit[0] == table.generation:
            return hit[1]
        if table is _UNSTARTED:
            table = self._start()
        before = table.generation
        decoder = self._decoder
        assert decoder is not None  # made with the table
        headers = HeaderList([(h[0], h[1]) for h in decoder.decode(block, raw=True)])  # type: ignore[misc]
        if table.generation == before:
            if len(self._cache) >= self._cache_limit:
                self._cache.clear()
            self._cache[block] = (before, headers)
        return headers


def _encode_int(value: int, prefix_bits: int, first_byte: int) -> bytearray:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytearray((first_byte | value,))
    out = bytearray((first_byte | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return out


def _encode_string(data: bytes) -> bytes:
    return bytes(_encode_int(len(data), 7, 0)) + data


def encode_header(name: bytes, value: bytes) -> bytes:
    """One field as "literal header field without indexing" (RFC 7541 6.2.2)."""
    if name == b":status":
        if value == b"200":
            return b"\x88"  # indexed: static entry 8 is ":status: 200"
    index = _STATIC_NAME_INDEX.get(name, 0)
    if index:
        return bytes(_encode_int(index, 4, 0x00)) + _encode_string(value)
    return b"\x00" + _encode_string(name) + _encode_string(value)


def encode_headers(headers: list[Header] | tuple[Header, ...]) -> bytes:
    """Encode a header list without touching any dynamic table (stateless, cacheable)."""
    return b"".join([encode_header(n, v) for n, v in headers])
