"""The Python classes of the HPACK decoder (gmf/protocol/hpack_codec.py, compiled with mypyc,
holds the decoder itself): a decoded block, and the dynamic table that reports its changes.

They stay interpreted: ``HeaderList`` subclasses ``list`` and ``CountingTable`` the ``hpack``
package's ``HeaderTable``, which mypyc's native classes cannot do.
"""

from __future__ import annotations

from collections.abc import Callable

from hpack.table import HeaderTable

from .h2fields import FieldCheck, Header


class HeaderList(list[Header]):
    """A decoded header block. A block served from the cache is the same object each time,
    so what is derived from it is worked out once: ``check``, the HTTP/2 core's verdict on
    it (a ``h2fields.FieldCheck``), and ``summary``, the layer above's (the gRPC request fields)."""

    __slots__ = ("check", "summary")

    def __init__(self, headers: list[Header]) -> None:
        super().__init__(headers)
        self.check: FieldCheck | None = None
        self.summary: object = None


def _unchanged() -> None:
    pass


class CountingTable(HeaderTable):
    """A header table that counts its changes and calls ``on_change`` at each (the decoder
    drops its cached blocks), so a cached decode is always the one the table would give."""

    def __init__(self, on_change: Callable[[], object] = _unchanged) -> None:
        super().__init__()
        self.generation = 0
        self.on_change = on_change

    def add(self, name: bytes, value: bytes) -> None:  # type: ignore[override]
        self.generation += 1
        self.on_change()
        super().add(name, value)

    @property  # type: ignore[override]
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.generation += 1
        self.on_change()
        newmax = int(newmax)
        cursize = self._maxsize
        self._maxsize = newmax
        if newmax <= cursize:
            self._shrink()
