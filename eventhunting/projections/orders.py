"""The orders read model: one document per order, for the buyer's list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.orders import (
    CreditNoteIssued,
    InvoiceIssued,
    OrderCancelled,
    OrderExpired,
    OrderPaid,
    OrderPlaced,
    OrderStatus,
    RefundCompleted,
    RefundFailed,
    RefundRequested,
    RefundResolution,
    RefundResolved,
)
from eventhunting.projections.base import Database, FoldingProjection
from eventhunting.store.envelope import EventEnvelope

ORDERS_COLLECTION = "orders"
INVOICES_COLLECTION = "invoices"
CREDIT_NOTES_COLLECTION = "credit_notes"
REFUNDS_COLLECTION = "refunds"
REFUND_STATUSES = ("requested", "completed", "failed")
REFUNDABLE_STATUSES = (OrderStatus.PAID.value, OrderStatus.PARTIALLY_REFUNDED.value)


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


async def refundable_orders_of_event(
    database: AsyncDatabase[dict[str, Any]], event_id: str, *, after: str = "", batch: int = 500
) -> list[str]:
    """Ids of the event's paid (or partly refunded) orders past `after`, in id order."""
    cursor = (
        database[ORDERS_COLLECTION]
        .find(
            {
                "event_id": event_id,
                "status": {"$in": list(REFUNDABLE_STATUSES)},
                "_id": {"$gt": after},
            },
            {"_id": 1},
        )
        .sort([("_id", ASCENDING)])
        .limit(batch)
    )
    return [str(document["_id"]) async for document in cursor]


async def pending_orders_of_event(
    database: AsyncDatabase[dict[str, Any]], event_id: str, *, after: str = "", batch: int = 500
) -> list[str]:
    """Ids of the event's pending orders (holds) past `after`, in id order."""
    cursor = (
        database[ORDERS_COLLECTION]
        .find(
            {"event_id": event_id, "status": OrderStatus.PENDING.value, "_id": {"$gt": after}},
            {"_id": 1},
        )
        .sort([("_id", ASCENDING)])
        .limit(batch)
    )
    return [str(document["_id"]) async for document in cursor]


async def failed_refunds(
    database: AsyncDatabase[dict[str, Any]], *, page: int, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    """Every order's failed refunds, oldest request first, one page; and how many there are."""
    collection = database[REFUNDS_COLLECTION]
    selector = {"status": "failed"}
    total = await collection.count_documents(selector)
    cursor = (
        collection.find(selector)
        .sort([("requested_at", ASCENDING), ("_id", ASCENDING)])
        .skip((page - 1) * page_size)
        .limit(page_size)
    )
    return [document async for document in cursor], total


async def order_of_refund(database: AsyncDatabase[dict[str, Any]], refund_id: str) -> str | None:
    """The order a refund belongs to (read model), or None when unknown."""
    document = await database[REFUNDS_COLLECTION].find_one({"_id": refund_id}, {"order_id": 1})
    return None if document is None else str(document["order_id"])


@dataclass(frozen=True, slots=True)
class EventRefunds:
    counts: dict[str, int]
    failed: list[dict[str, Any]]


async def refunds_of_event(
    database: AsyncDatabase[dict[str, Any]], event_id: str, *, failed_limit: int = 1_000
) -> EventRefunds:
    """How many of the event's refunds are requested, completed and failed; the failed ones."""
    collection = database[REFUNDS_COLLECTION]
    counts = {
        status: await collection.count_documents({"event_id": event_id, "status": status})
        for status in REFUND_STATUSES
    }
    cursor = (
        collection.find({"event_id": event_id, "status": "failed"})
        .sort([("requested_at", ASCENDING), ("_id", ASCENDING)])
        .limit(failed_limit)
    )
    return EventRefunds(counts=counts, failed=[document async for document in cursor])


def refund_document(requested: RefundRequested) -> dict[str, Any]:
    return {
        "_id": requested.refund_id,
        "order_id": requested.order_id,
        "event_id": requested.event_id,
        "ticket_ids": list(requested.ticket_ids),
        "amount": requested.amount,
        "reason": requested.reason,
        "status": "requested",
        "requested_at": requested.requested_at,
    }


def refund_changes(event: RefundFailed | RefundResolved) -> dict[str, Any]:
    """A refund document's fields after a failed gateway call or an admin's resolution."""
    if isinstance(event, RefundFailed):
        return {
            "status": "failed",
            "attempt": event.attempt,
            "response_code": event.response_code,
            "message": event.message,
            "failed_at": event.failed_at,
            "outcome_unknown": event.outcome_unknown,
            "retry_at": event.retry_at,
        }
    if event.resolution is RefundResolution.RETRY:
        return {"status": "requested", "outcome_unknown": False, "retry_at": event.resolved_at}
    return {
        "status": "completed",
        "completed_at": event.resolved_at,
        "outcome_unknown": False,
        "retry_at": None,
        "settled_by": event.resolved_by,
        "note": event.note,
    }


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


def credit_note_document(note: CreditNoteIssued) -> dict[str, Any]:
    document: dict[str, Any] = msgspec.to_builtins(note, builtin_types=(datetime,))
    document["_id"] = note.number
    return document


class OrdersProjection(FoldingProjection["OrderWrites"]):
    """Keeps `orders`, `invoices`, `credit_notes` and `refunds` in step with the order streams.

    An order becomes paid and its invoice exists together: OrderPaid and InvoiceIssued come
    in one append and are applied in one transaction. A credit note, the refund's
    `completed` status and the order document's `credit_notes` and `credited_amount` likewise
    (RefundCompleted and CreditNoteIssued: one append). Each order document carries the
    version of the last event applied, so an event is applied only when it is newer than the
    document.
    """

    name = "orders"
    collections = (
        ORDERS_COLLECTION,
        INVOICES_COLLECTION,
        REFUNDS_COLLECTION,
        CREDIT_NOTES_COLLECTION,
    )
    handles = frozenset(
        {
            "OrderPlaced",
            "OrderPaid",
            "OrderCancelled",
            "OrderExpired",
            "InvoiceIssued",
            "RefundRequested",
            "RefundCompleted",
            "RefundFailed",
            "CreditNoteIssued",
            "RefundResolved",
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
        await database[REFUNDS_COLLECTION].create_index(
            [("event_id", ASCENDING), ("status", ASCENDING)], name="event_status"
        )
        await database[REFUNDS_COLLECTION].create_index(
            [("status", ASCENDING), ("requested_at", ASCENDING), ("_id", ASCENDING)],
            name="status_oldest_first",
        )
        await database[INVOICES_COLLECTION].create_index(
            [("series", ASCENDING), ("sequence", ASCENDING)], name="series_sequence", unique=True
        )
        await database[CREDIT_NOTES_COLLECTION].create_index(
            [("series", ASCENDING), ("sequence", ASCENDING)], name="series_sequence", unique=True
        )
        await database[CREDIT_NOTES_COLLECTION].create_index(
            [("order_id", ASCENDING), ("sequence", ASCENDING)], name="order_id"
        )

    async def fold(
        self,
        events: Sequence[EventEnvelope],
        db: Database,
        session: AsyncClientSession,
        previous: OrderWrites | None,
    ) -> OrderWrites:
        """The writes of `events`, one ordered bulk write per collection.

        An order placed in the batch is written once, as it stands after the batch's later
        events of it (they are folded into its document in memory, under the same version
        rule); the other writes are those one event at a time would make, in the same order.
        Nothing is read, so the batch before does not matter.
        """
        writes = OrderWrites()
        for event in events:
            writes.add(event)
        return writes

    async def write(self, folded: OrderWrites, db: Database, session: AsyncClientSession) -> None:
        for collection, operations in folded.by_collection().items():
            if operations:
                await db[collection].bulk_write(operations, session=session)


class OrderWrites:
    """The writes of a batch of order events, per collection, in event order."""

    def __init__(self) -> None:
        self.placed: dict[str, dict[str, Any]] = {}
        self.orders: list[UpdateOne | dict[str, Any]] = []
        self.invoices: list[UpdateOne] = []
        self.refunds: list[UpdateOne] = []
        self.credit_notes: list[UpdateOne] = []

    def add(self, event: EventEnvelope) -> None:
        data = event.data
        if isinstance(data, InvoiceIssued):
            self.invoices.append(
                UpdateOne(
                    {"_id": data.number}, {"$setOnInsert": invoice_document(data)}, upsert=True
                )
            )
            return
        if isinstance(data, CreditNoteIssued):
            self.credit(data, event.version)
            self.credit_notes.append(
                UpdateOne(
                    {"_id": data.number},
                    {"$setOnInsert": credit_note_document(data)},
                    upsert=True,
                )
            )
            return
        if isinstance(data, RefundRequested):
            # Refunds of an event are counted by status (GET /events/{id}/refunds); admins
            # list the failed ones of every order (GET /admin/refunds).
            self.refunds.append(
                UpdateOne(
                    {"_id": data.refund_id}, {"$setOnInsert": refund_document(data)}, upsert=True
                )
            )
        if isinstance(data, RefundCompleted):
            self.refunds.append(
                UpdateOne(
                    {"_id": data.refund_id},
                    {
                        "$set": {
                            "status": "completed",
                            "completed_at": data.completed_at,
                            "vnpay_transaction_no": data.transaction_no,
                        }
                    },
                )
            )
            return
        if isinstance(data, RefundFailed | RefundResolved):
            self.refunds.append(
                UpdateOne(
                    {"_id": data.refund_id, "status": {"$ne": "completed"}},
                    {"$set": refund_changes(data)},
                )
            )
            return
        if isinstance(data, OrderPlaced):
            document = placed_document(data, event.version)
            self.placed[data.order_id] = document
            # Written where it was placed, once the whole batch is folded into it.
            self.orders.append(document)
            return
        changes = changes_of(data)
        if changes is None or not isinstance(
            data, OrderPaid | OrderCancelled | OrderExpired | RefundRequested
        ):
            return
        placed = self.placed.get(data.order_id)
        if placed is not None:
            if placed["version"] < event.version:
                placed.update(changes, version=event.version)
            return
        self.orders.append(
            UpdateOne(
                {"_id": data.order_id, "version": {"$lt": event.version}},
                {"$set": {**changes, "version": event.version}},
            )
        )

    def credit(self, note: CreditNoteIssued, version: int) -> None:
        """The order document lists the credit note and takes its amount off."""
        placed = self.placed.get(note.order_id)
        if placed is not None:
            if placed["version"] < version:
                placed["version"] = version
                placed.setdefault("credit_notes", []).append(note.number)
                placed["credited_amount"] = placed.get("credited_amount", 0) - note.total_amount
            return
        self.orders.append(
            UpdateOne(
                {"_id": note.order_id, "version": {"$lt": version}},
                {
                    "$set": {"version": version},
                    "$push": {"credit_notes": note.number},
                    "$inc": {"credited_amount": -note.total_amount},
                },
            )
        )

    def by_collection(self) -> dict[str, list[UpdateOne]]:
        # An order placed in the batch did not exist before it (the projector applies each
        # event once); $setOnInsert keeps a redelivery from writing it twice all the same.
        orders = [
            write
            if isinstance(write, UpdateOne)
            else UpdateOne({"_id": write["_id"]}, {"$setOnInsert": write}, upsert=True)
            for write in self.orders
        ]
        return {
            ORDERS_COLLECTION: orders,
            INVOICES_COLLECTION: self.invoices,
            REFUNDS_COLLECTION: self.refunds,
            CREDIT_NOTES_COLLECTION: self.credit_notes,
        }
