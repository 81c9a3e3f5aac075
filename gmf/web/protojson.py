"""Protobuf's canonical JSON mapping for plain messages, without json_format's per-field walk.

``google.protobuf.json_format`` walks the descriptors in Python for every message it converts
(~10 us to parse ``{"name": "x"}``, ~7 us to print a one-field reply): on the Connect JSON path
that is most of a request. For *plain* message types (every field singular and one of string,
bool, the 32- and 64-bit integers, double, enum, or a plain message; no oneof, map, repeated,
bytes, float, extension or well-known type) a :class:`Plan` made once per type does the same
mapping with one dict lookup per field.

It only takes what it can map exactly as json_format does: a value of any other JSON type for
a field (a string for an integer, ``null``, a float for an integer, ``"NaN"``, an unknown enum
name, ...) or a message type that is not plain makes :func:`parse` / :func:`to_json` return
None, and the caller asks json_format, so every result and every error message stay
json_format's (tests/web/test_web_codecs.py compares both on the same inputs).
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_STR, _BOOL, _INT, _DOUBLE, _ENUM, _MSG = range(6)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
          FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}  # printed as JSON strings
_MAX_SAFE = 2**53  # an int beyond it is not exactly a double: json_format decides


class Plan:
    """How one plain message type maps to JSON: by JSON key (json_name and proto name) for
    parsing, by field number for printing."""

    __slots__ = ("cls", "by_key", "by_number")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.by_key: dict[str, tuple[str, int, Any]] = {}
        self.by_number: dict[int, tuple[str, int, Any]] = {}


_PLANS: dict[Descriptor, Plan | None] = {}


def plan_for(cls: type) -> Plan | None:
    """The plan of a generated message class, or None when the type is not plain."""
    descriptor: Descriptor = cls.DESCRIPTOR  # type: ignore[attr-defined]
    if descriptor in _PLANS:
        return _PLANS[descriptor]
    _PLANS[descriptor] = None  # a type that contains itself is not plain
    plan = _make(cls, descriptor)
    _PLANS[descriptor] = plan
    return plan


def _make(cls: type, descriptor: Descriptor) -> Plan | None:
    if descriptor.full_name.startswith("google.protobuf.") or descriptor.oneofs or descriptor.extension_ranges:
        return None
    plan = Plan(cls)
    for field in descriptor.fields:
        if field.is_repeated:
            return None
        kind: int
        arg: Any = None
        if field.type == FieldDescriptor.TYPE_STRING:
            kind = _STR
        elif field.type == FieldDescriptor.TYPE_BOOL:
            kind = _BOOL
        elif field.type in _INT_RANGES:
            kind, arg = _INT, (_INT_RANGES[field.type], field.type in _INT64)
        elif field.type == FieldDescriptor.TYPE_DOUBLE:
            kind = _DOUBLE
        elif field.type == FieldDescriptor.TYPE_ENUM:
            enum = field.enum_type
            kind, arg = _ENUM, ({v.name: v.number for v in enum.values}, {v.number: v.name for v in enum.values})
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            sub = _sub_plan(cls, field)
            if sub is None:
                return None
            kind, arg = _MSG, sub
        else:  # bytes, float, group
            return None
        entry = (field.name, kind, arg)
        plan.by_key[field.json_name] = entry
        plan.by_key[field.name] = entry
        plan.by_number[field.number] = (field.json_name, kind, arg)
    return plan


def _sub_plan(cls: type, field: FieldDescriptor) -> Plan | None:
    from google.protobuf import message_factory

    return plan_for(message_factory.GetMessageClass(field.message_type))


def parse(plan: Plan, obj: dict[str, Any]) -> Any:
    """A JSON object (as ``json.loads`` gives it) -> the message; None: ask json_format."""
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        entry = plan.by_key.get(key)
        if entry is None:
            if key[:1] == "[":
                return None  # an extension's name
            continue  # an unknown field: ignored (ignore_unknown_fields)
        name, kind, arg = entry
        if kind == _STR:
            if type(value) is not str:
                return None
        elif kind == _INT:
            (low, high), _ = arg
            if type(value) is not int or not low <= value <= high:
                return None
        elif kind == _BOOL:
            if type(value) is not bool:
                return None
        elif kind == _DOUBLE:
            if type(value) is float:
                if not math.isfinite(value):
                    return None
            elif type(value) is int and -_MAX_SAFE <= value <= _MAX_SAFE:
                value = float(value)
            else:
                return None
        elif kind == _ENUM:
            value = arg[0].get(value) if type(value) is str else None
            if value is None:
                return None
        else:  # _MSG
            if type(value) is not dict:
                return None
            value = parse(arg, value)
            if value is None:
                return None
        if name in kwargs:
            return None  # the same field by its JSON and its proto name
        kwargs[name] = value
    try:
        return plan.cls(**kwargs)
    except (ValueError, TypeError):  # e.g. a string that is not valid UTF-8 for protobuf
        return None


def to_object(plan: Plan, message: Any) -> dict[str, Any] | None:
    """A message -> the JSON object json_format prints; None: ask json_format."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        entry = plan.by_number.get(field.number)
        if entry is None:
            return None  # an extension
        json_name, kind, arg = entry
        if kind == _INT:
            if arg[1]:
                value = str(value)
        elif kind == _DOUBLE:
            if not math.isfinite(value):
                return None
        elif kind == _ENUM:
            value = arg[1].get(value)
            if value is None:
                return None
        elif kind == _MSG:
            value = to_object(arg, value)
            if value is None:
                return None
        out[json_name] = value
    return out


def to_json(plan: Plan, message: Any) -> bytes | None:
    """What ``json_format.MessageToJson(message, indent=None)`` returns, encoded; None: ask it."""
    obj = to_object(plan, message)
    return None if obj is None else json.dumps(obj).encode()
