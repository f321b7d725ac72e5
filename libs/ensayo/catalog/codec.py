"""Plain-JSON encoding of catalog dataclasses, for SQL rows, Redis snapshots and diffs.

One generic codec driven by type hints, so a new field needs no codec change. Decoding is
lenient about numbers given as strings (protobuf JSON writes int64 that way).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union

from ensayo.catalog.model import JsonObject, JsonValue

__all__ = ["decode", "diff", "dumps", "encode", "loads"]

_OUTPUT_ONLY = ("version", "update_time")

T = TypeVar("T")


_PLAIN = (str, int, float, bool, type(None))


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def encode(obj: object) -> Any:  # noqa: PLR0911  (one branch per type form)
    """A JSON-ready value for a dataclass, enum, datetime, tuple or plain value."""
    kind: type = type(obj)
    if kind in _PLAIN:  # the common case first: this runs per field on hot paths
        return obj
    if hasattr(kind, "__dataclass_fields__"):
        return {name: encode(getattr(obj, name)) for name in _field_names(kind)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    return obj


@cache
def _hints(cls: type) -> dict[str, Any]:
    # JsonObject's inner forward reference names JsonValue, which modules importing only
    # JsonObject do not hold: resolve it from the catalog model's namespace.
    namespace = {**vars(sys.modules[cls.__module__]), "JsonValue": JsonValue}
    return typing.get_type_hints(cls, globalns=namespace)


def decode(cls: type[T], data: Any) -> T:
    """Rebuild ``cls`` from ``encode``'s output; unknown keys are ignored (forward-compatible)."""
    return typing.cast(T, _decode(cls, data))


def _decode(tp: Any, data: Any) -> Any:  # noqa: PLR0911  (one branch per type form)
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner[0], data) if len(inner) == 1 else data
    if origin is tuple:
        return tuple(_decode(typing.get_args(tp)[0], v) for v in data)
    if origin in (list,):
        return [_decode(typing.get_args(tp)[0], v) for v in data]
    if origin is dict or tp is JsonObject:
        return dict(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        return tp(**{k: _decode(hints[k], v) for k, v in data.items() if k in names})
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if tp is datetime:
        return datetime.fromisoformat(data)
    if tp is float:
        return float(data)
    if tp is int:
        return int(data)
    if tp is bool:
        return bool(data)
    return data


def dumps(obj: object) -> str:
    """Compact, key-sorted JSON (stable, so equal objects give equal text)."""
    return json.dumps(encode(obj), separators=(",", ":"), sort_keys=True, allow_nan=False)


def loads(cls: type[T], text: str | bytes) -> T:
    """Inverse of ``dumps``."""
    return decode(cls, json.loads(text))


def diff(before: object | None, after: object) -> JsonObject:
    """Changed top-level fields as ``{field: {"before": ..., "after": ...}}``.

    Output-only fields are left out: this is the audit log's record of what a write changed.
    """
    old = encode(before) if before is not None else {}
    new = encode(after)
    changes: JsonObject = {}
    for name, value in new.items():
        if name in _OUTPUT_ONLY:
            continue
        if old.get(name) != value:
            changes[name] = {"before": old.get(name), "after": value}
    return changes
