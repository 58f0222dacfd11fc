"""One page of a list, as every list route answers it: `{items, total, page, page_size}`."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec
from litestar.params import KwargDefinition

ItemT = TypeVar("ItemT")


class Page(msgspec.Struct, Generic[ItemT], kw_only=True):
    items: list[ItemT]
    total: int
    """Items matching the query, on every page."""
    page: int
    page_size: int


def page_schema(name: str) -> KwargDefinition:
    """Names a page's OpenAPI schema (`EventPage`) in the route's return annotation:
    Litestar would otherwise name `Page[Event]` after the module path of `Event`."""
    return KwargDefinition(schema_component_key=name)
