"""The orders read model: one document per order, for the buyer's list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.orders import (
    InvoiceIssued,
    OrderCancelled,
    OrderExpired,
    OrderPaid,
    OrderPlaced,
    OrderStatus,
    RefundRequested,
)
from eventhunting.projections.base import Projection
from eventhunting.store.envelope import EventEnvelope

ORDERS_COLLECTION = "orders"
INVOICES_COLLECTION = "invoices"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderQuery:
    buyer_id: str
    status: OrderStatus | None = None
    page: int = 1
    page_size: int = 20


@dataclass(frozen=True, slots=True)
class OrderList:
    documents: list[dict[str, Any]]
    total: int


async def list_orders(database: AsyncDatabase[dict[str, Any]], query: OrderQuery) -> OrderList:
    """The buyer's orders, newest first."""
    selector: dict[str, Any] = {"buyer_id": query.buyer_id}
    if query.status is not None:
        selector["status"] = query.status.value
    collection = database[ORDERS_COLLECTION]
    total = await collection.count_documents(selector)
    cursor = (
        collection.find(selector)
        .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        .skip((query.page - 1) * query.page_size)
        .limit(query.page_size)
    )
    return OrderList(documents=[document async for document in cursor], total=total)


def placed_document(placed: OrderPlaced, version: int) -> dict[str, Any]:
    return {
        "_id": placed.order_id,
        "event_id": placed.event_id,
        "buyer_id": placed.buyer_id,
        "status": OrderStatus.PENDING.value,
        "items": msgspec.to_builtins(placed.items),
        "total_amount": placed.total_amount,
        "currency": placed.currency,
        "created_at": placed.placed_at,
        "expires_at": placed.expires_at,
        "version": version,
    }


def changes_of(event: object) -> dict[str, Any] | None:
    if isinstance(event, OrderPaid):
        changes: dict[str, Any] = {
            "status": OrderStatus.PAID.value,
            "paid_at": event.paid_at,
            "payment_method": event.method,
        }
        if event.invoice_number is not None:
            changes["invoice_number"] = event.invoice_number
        return changes
    if isinstance(event, OrderCancelled):
        return {"status": OrderStatus.CANCELLED.value, "cancelled_at": event.cancelled_at}
    if isinstance(event, OrderExpired):
        return {"status": OrderStatus.EXPIRED.value, "expired_at": event.expired_at}
    if isinstance(event, RefundRequested) and event.order_status is not None:
        return {"status": event.order_status.value}
    return None


def invoice_document(invoice: InvoiceIssued) -> dict[str, Any]:
    document: dict[str, Any] = msgspec.to_builtins(invoice, builtin_types=(datetime,))
    document["_id"] = invoice.number
    return document


class OrdersProjection(Projection):
    """Keeps `orders` and `invoices` in step with the order streams.

    An order becomes paid and its invoice exists together: OrderPaid and InvoiceIssued come
    in one append and are applied in one transaction. Each order document carries the version
    of the last event applied, so an event is applied only when it is newer than the document.
    """

    name = "orders"
    collections = (ORDERS_COLLECTION, INVOICES_COLLECTION)
    handles = frozenset(
        {
            "OrderPlaced",
            "OrderPaid",
            "OrderCancelled",
            "OrderExpired",
            "InvoiceIssued",
            "RefundRequested",
        }
    )

    async def create_indexes(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        await database[ORDERS_COLLECTION].create_index(
            [("buyer_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="buyer_newest_first",
        )
        await database[ORDERS_COLLECTION].create_index(
            [("buyer_id", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
            name="buyer_status_newest_first",
        )
        await database[ORDERS_COLLECTION].create_index(
            [("event_id", ASCENDING), ("status", ASCENDING)], name="event_status"
        )
        await database[INVOICES_COLLECTION].create_index(
            [("order_id", ASCENDING)], name="order_id", unique=True
        )
        await database[INVOICES_COLLECTION].create_index(
            [("series", ASCENDING), ("sequence", ASCENDING)], name="series_sequence", unique=True
        )

    async def apply(
        self,
        event: EventEnvelope,
        database: AsyncDatabase[dict[str, Any]],
        session: AsyncClientSession,
    ) -> None:
        collection = database[ORDERS_COLLECTION]
        data = event.data
        if isinstance(data, InvoiceIssued):
            await database[INVOICES_COLLECTION].update_one(
                {"_id": data.number},
                {"$setOnInsert": invoice_document(data)},
                upsert=True,
                session=session,
            )
            return
        if isinstance(data, OrderPlaced):
            await collection.update_one(
                {"_id": data.order_id},
                {"$setOnInsert": placed_document(data, event.version)},
                upsert=True,
                session=session,
            )
            return
        changes = changes_of(data)
        if changes is None or not isinstance(
            data, OrderPaid | OrderCancelled | OrderExpired | RefundRequested
        ):
            return
        await collection.update_one(
            {"_id": data.order_id, "version": {"$lt": event.version}},
            {"$set": {**changes, "version": event.version}},
            session=session,
        )
