from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ItemKey(_message.Message):
    __slots__ = ("sku",)
    SKU_FIELD_NUMBER: _ClassVar[int]
    sku: str
    def __init__(self, sku: _Optional[str] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("sku", "count")
    SKU_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    sku: str
    count: int
    def __init__(self, sku: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Stock(_message.Message):
    __slots__ = ("total", "skus", "metadata", "note")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SKUS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    total: int
    skus: int
    metadata: _containers.RepeatedScalarFieldContainer[str]
    note: str
    def __init__(self, total: _Optional[int] = ..., skus: _Optional[int] = ..., metadata: _Optional[_Iterable[str]] = ..., note: _Optional[str] = ...) -> None: ...

class Delay(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    def __init__(self, seconds: _Optional[float] = ...) -> None: ...
