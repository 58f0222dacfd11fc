"""Event types used by the event-store tests, in a registry of their own."""

from __future__ import annotations

from typing import Any

from eventhunting.domain.events import DomainEvent, EventRegistry

store_test_registry = EventRegistry()


@store_test_registry.event("ItemAdded", schema=2, stream_kind="basket")
class ItemAdded(DomainEvent, frozen=True, kw_only=True):
    """An item was put in a basket (schema 2 names the quantity `quantity`)."""

    sku: str
    quantity: int


@store_test_registry.upcaster("ItemAdded", from_schema=1)
def item_added_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    upcast = dict(data)
    upcast["quantity"] = upcast.pop("count")
    return upcast


@store_test_registry.event("BasketClosed", stream_kind="basket")
class BasketClosed(DomainEvent, frozen=True, kw_only=True):
    """A basket was closed."""

    reason: str = ""


@store_test_registry.event("ReceiptIssued", stream_kind="basket")
class ReceiptIssued(DomainEvent, frozen=True, kw_only=True):
    """A basket's receipt; a numbering append writes `sequence` and `number` (0 and
    `R-0000` as decided)."""

    sequence: int = 0
    number: str = "R-0000"
    note: str = ""


old_registry = EventRegistry()
"""The same basket vocabulary as an older build wrote it (ItemAdded schema 1)."""


@old_registry.event("ItemAdded", schema=1, stream_kind="basket")
class ItemAddedV1(DomainEvent, frozen=True, kw_only=True):
    sku: str
    count: int
