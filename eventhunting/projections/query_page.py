"""One page of a read-model query: its items, how many match in all, and which page it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")


@dataclass(frozen=True, slots=True)
class QueryPage(Generic[ItemT]):
    items: list[ItemT]
    total: int
    page: int
    page_size: int
