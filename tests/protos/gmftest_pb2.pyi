from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EchoRequest(_message.Message):
    __slots__ = ("message", "payload", "action", "code", "details", "sleep_seconds", "count")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    SLEEP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    message: str
    payload: bytes
    action: str
    code: int
    details: str
    sleep_seconds: float
    count: int
    def __init__(self, message: _Optional[str] = ..., payload: _Optional[bytes] = ..., action: _Optional[str] = ..., code: _Optional[int] = ..., details: _Optional[str] = ..., sleep_seconds: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class EchoReply(_message.Message):
    __slots__ = ("message", "payload", "index", "metadata")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    message: str
    payload: bytes
    index: int
    metadata: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, message: _Optional[str] = ..., payload: _Optional[bytes] = ..., index: _Optional[int] = ..., metadata: _Optional[_Iterable[str]] = ...) -> None: ...
