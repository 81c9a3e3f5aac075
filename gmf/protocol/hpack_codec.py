"""HPACK for a gRPC server: a caching decoder and a stateless encoder.

Decoding uses the ``hpack`` package. gRPC clients repeat the same request headers, and after
the first request a block usually consists only of indexed fields, whose decoding depends
only on the block bytes and the dynamic table. We cache decoded blocks keyed by their bytes
and the dynamic table empties the cache whenever it changes (every insert or resize), so a
cached answer is always the answer the decoder would give. A block is cached only when its
own decoding left the table unchanged (the table's generation counter).

Compiled with mypyc (gmf/_native.py): a cached block costs the HTTP/2 core one native call
and one dict lookup. The decoded block and the table are Python classes, in hpack_blocks.

Encoding never uses the dynamic table: every field is a "literal without indexing" (name
from the static table where possible). That keeps the encoder stateless, so constant blocks
(response headers, OK trailers) are encoded once per process and reused verbatim.
"""

from __future__ import annotations

from hpack import Decoder

from .h2fields import Header
from .hpack_blocks import CountingTable, HeaderList

__all__ = ["CachingDecoder", "Header", "HeaderList", "encode_header", "encode_headers"]

# RFC 7541 Appendix A: static-table indexes for names we send.
_STATIC_NAME_INDEX: dict[bytes, int] = {
    b":status": 8,
    b"content-type": 31,
    b"content-length": 28,
}


class CachingDecoder:
    """hpack.Decoder plus a cache of blocks whose decoding did not touch the dynamic table."""

    def __init__(self, max_header_list_size: int = 65536, cache_limit: int = 128) -> None:
        """``max_header_list_size`` stops decoding a block (``OversizedHeaderListError``) as
        soon as its RFC 9113 header list size passes it: a bomb is never materialized.

        The decoder and its dynamic table are made by the first block: an idle
        connection (no request yet) does not pay for them (~1 KiB, most of it the table's
        empty deque; 10,000 idle connections per worker is a goal of issue 13)."""
        self._max_header_list_size = max_header_list_size
        self._decoder: Decoder | None = None
        self._table: CountingTable | None = None
        # Emptied by the table whenever it changes: a cached block is valid while it is there.
        self._cache: dict[bytes, HeaderList] = {}
        self._cache_limit = cache_limit

    @property
    def table_size(self) -> int:
        """Bytes in the HPACK dynamic table (0 before the first block)."""
        table = self._table
        return int(table._current_size) if table is not None else 0

    @property
    def cached_blocks(self) -> int:
        """Decoded blocks held by the cache (at most ``cache_limit``)."""
        return len(self._cache)

    def decode(self, block: bytes) -> HeaderList:
        """Decode one complete header block; raises hpack errors on malformed input. Whether
        the fields are valid HTTP is not checked here (``h2fields`` does, once per block)."""
        hit = self._cache.get(block)
        if hit is not None:
            return hit
        return self._decode_new(block)

    def _decode_new(self, block: bytes) -> HeaderList:
        table = self._table
        decoder = self._decoder
        if table is None or decoder is None:
            decoder = self._decoder = Decoder(max_header_list_size=self._max_header_list_size)
            table = self._table = CountingTable(self._cache.clear)
            decoder.header_table = table
        before = table.generation
        headers = HeaderList([(h[0], h[1]) for h in decoder.decode(block, raw=True)])
        if table.generation == before:
            if len(self._cache) >= self._cache_limit:
                self._cache.clear()
            self._cache[block] = headers
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
