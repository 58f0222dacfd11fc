"""BSON values as hashable keys with MongoDB's equality, and values at dotted paths."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Hashable
from typing import Any

from bson import Binary, Decimal128, Int64, ObjectId, Regex, Timestamp
from bson.max_key import MaxKey
from bson.min_key import MinKey

Key = Hashable


def value_key(value: Any) -> Key:
    """A hashable form of a BSON value that is equal exactly when MongoDB calls the values equal."""
    kind = type(value)
    if kind is str or kind is ObjectId or kind is int or kind is float or kind is Int64:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return ("bool", value)
    if value is None:
        return ("null",)
    if kind is dict:
        return ("object", tuple((k, value_key(v)) for k, v in value.items()))
    if kind is list or kind is tuple:
        return ("array", tuple(value_key(v) for v in value))
    if kind is datetime.datetime:
        return ("date", value)
    if kind is Decimal128:
        return value.to_decimal()  # type: ignore[no-any-return]
    if isinstance(value, Binary):
        return ("binary", value.subtype, bytes(value))
    if isinstance(value, bytes):
        return ("binary", 0, value)
    if isinstance(value, uuid.UUID):
        return ("binary", 4, value.bytes)
    if isinstance(value, Timestamp):
        return ("timestamp", value.time, value.inc)
    if isinstance(value, MinKey):
        return ("minKey",)
    if isinstance(value, MaxKey):
        return ("maxKey",)
    if isinstance(value, Regex):
        return ("regex", value.pattern, value.flags)
    if isinstance(value, dict):
        return ("object", tuple((k, value_key(v)) for k, v in value.items()))
    if isinstance(value, int | float):
        return value
    return (type(value).__name__, repr(value))


def path_values(document: Any, path: list[str]) -> list[Any]:
    """Values at a dotted path, descending into arrays as MongoDB's index keys do."""
    if not path:
        return [document]
    if isinstance(document, dict):
        if path[0] not in document:
            return []
        return path_values(document[path[0]], path[1:])
    if isinstance(document, list):
        if path[0].isdigit():
            index = int(path[0])
            return path_values(document[index], path[1:]) if index < len(document) else []
        found: list[Any] = []
        for element in document:
            if isinstance(element, dict | list):
                found.extend(path_values(element, path))
        return found
    return []
