"""The sales read model: per-event figures, timeline buckets and the orders they depend on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from eventhunting.domain.catalog import EventDrafted
from eventhunting.domain.orders import STREAM_KIND as ORDER_STREAM_KIND
from eventhunting.domain.orders import OrderPlaced
from eventhunting.domain.sales import (
    BUCKET_COUNTERS,
    SALES_EVENT_TYPES,
    Granularity,
    OrderRecord,
    SalesTally,
)
from eventhunting.domain.tickets import TicketCheckedIn
from eventhunting.projections.base import Database, Document, FoldingProjection
from eventhunting.store.envelope import EventEnvelope

SALES_EVENTS = "sales_events"
"""One document per catalog event: details, counters per ticket type, orders by status,
the time-to-pay histogram, and `first_position` (its first partition-log entry)."""
SALES_TIMELINE = "sales_timeline"
"""One document per (event, granularity, bucket start) with activity: the bucket counters,
and the event's organizer for the per-organizer view."""
SALES_ORDERS = "sales_orders"
"""One document per order: what its later events need (lines, amounts, placed_at, status)."""


def bucket_id(event_id: str, granularity: Granularity, start: datetime) -> str:
    return f"{event_id}:{granularity.value}:{int(start.timestamp())}"


def as_utc(moment: datetime) -> datetime:
    """A datetime read back from MongoDB as aware UTC, whatever the client's `tz_aware`."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def order_document(record: OrderRecord) -> Document:
    # Spelled out: one per order of every replay, and a literal is several times cheaper
    # than converting the struct and renaming its id (tests compare it with the struct).
    return {
        "_id": record.order_id,
        "event_id": record.event_id,
        "organizer_id": record.organizer_id,
        "placed_at": record.placed_at,
        "total_amount": record.total_amount,
        "lines": [
            {
                "ticket_type_id": line.ticket_type_id,
                "quantity": line.quantity,
                "amount": line.amount,
            }
            for line in record.lines
        ],
        "status": record.status,
        "refunded_tickets": record.refunded_tickets,
    }


def order_record(document: Document) -> OrderRecord:
    fields = {key: value for key, value in document.items() if key != "_id"}
    fields["order_id"] = document["_id"]
    fields["placed_at"] = as_utc(document["placed_at"])
    return msgspec.convert(fields, OrderRecord)


ORDER_STREAM_PREFIX = f"{ORDER_STREAM_KIND}-"

Known = TypeVar("Known")


class SalesProjection(FoldingProjection[SalesTally]):
    """Folds catalog and order events with the domain's `SalesTally`, the same fold that
    answers `as_of` queries, and writes what a batch added with $set and $inc.

    Each fold (of a batch the projector was delivered, or of a replay page) takes what the
    batch needs from earlier ones (organizers of events whose orders it places, records of
    orders it moves on) from the fold before it, or reads them in two queries, folds the
    batch in memory, and writes one update per touched event, bucket and order: a batch
    costs a handful of round trips, not several per event.
    """

    name = "sales"
    collections = (SALES_EVENTS, SALES_TIMELINE, SALES_ORDERS)
    handles = SALES_EVENT_TYPES

    async def create_indexes(self, db: Database) -> None:
        await db[SALES_EVENTS].create_index([("organizer_id", ASCENDING)], name="organizer")
        await db[SALES_TIMELINE].create_index(
            [("event_id", ASCENDING), ("granularity", ASCENDING), ("start", ASCENDING)],
            name="event_granularity_start",
        )
        await db[SALES_TIMELINE].create_index(
            [("granularity", ASCENDING), ("start", ASCENDING), ("organizer_id", ASCENDING)],
            name="granularity_start_organizer",
        )
        await db[SALES_ORDERS].create_index([("event_id", ASCENDING)], name="event")

    async def fold(
        self,
        events: Sequence[EventEnvelope],
        db: Database,
        session: AsyncClientSession,
        previous: SalesTally | None,
    ) -> SalesTally:
        """Fold `events` (wanted ones, in log order per partition) into a tally of what they
        add."""
        tally = await self.tally_for(events, db, session, previous)
        for event in events:
            tally.apply(event.data, event.occurred_at)
            if isinstance(event.data, EventDrafted) and event.position is not None:
                tally.set(event.data.event_id, first_position=event.position)
        return tally

    async def write(self, folded: SalesTally, db: Database, session: AsyncClientSession) -> None:
        await write_tally(folded, db, session)

    async def tally_for(
        self,
        events: Sequence[EventEnvelope],
        db: Database,
        session: AsyncClientSession,
        previous: SalesTally | None,
    ) -> SalesTally:
        """An empty tally that knows the organizers and orders of earlier batches `events`
        need: from `previous` (the batch just before) first, from the database otherwise."""
        known_organizers = previous.organizers if previous is not None else {}
        known_orders = previous.orders if previous is not None else {}
        drafted: set[str] = set()
        placed: set[str] = set()
        event_ids: set[str] = set()
        order_ids: set[str] = set()
        for event in events:
            data = event.data
            if isinstance(data, OrderPlaced):
                placed.add(data.order_id)
                event_ids.add(data.event_id)
            elif isinstance(data, EventDrafted):
                drafted.add(data.event_id)
            elif isinstance(data, TicketCheckedIn):
                event_ids.add(data.event_id)
            elif event.stream.startswith(ORDER_STREAM_PREFIX):
                order_ids.add(event.stream.removeprefix(ORDER_STREAM_PREFIX))
        organizers, missing_events = known_and_missing(event_ids - drafted, known_organizers)
        orders, missing_orders = known_and_missing(order_ids - placed, known_orders)
        if missing_events:
            async for document in db[SALES_EVENTS].find(
                {"_id": {"$in": sorted(missing_events)}}, {"organizer_id": 1}, session=session
            ):
                organizers[document["_id"]] = document["organizer_id"]
        if missing_orders:
            async for document in db[SALES_ORDERS].find(
                {"_id": {"$in": sorted(missing_orders)}}, session=session
            ):
                orders[document["_id"]] = order_record(document)
        return SalesTally(organizers, orders)


def known_and_missing(
    ids: Iterable[str], known: Mapping[str, Known]
) -> tuple[dict[str, Known], list[str]]:
    """What `known` holds of `ids`, and the ids it does not hold (to be read)."""
    found: dict[str, Known] = {}
    missing: list[str] = []
    for identifier in ids:
        value = known.get(identifier)
        if value is None:
            missing.append(identifier)
        else:
            found[identifier] = value
    return found, missing


async def write_tally(tally: SalesTally, db: Database, session: AsyncClientSession) -> None:
    """Add what `tally` folded to the stored figures (upserting what is new)."""
    event_updates: list[UpdateOne] = []
    for event_id in sorted(set(tally.sets) | set(tally.increments)):
        update: Document = {}
        if tally.sets.get(event_id):
            update["$set"] = tally.sets[event_id]
        if tally.increments.get(event_id):
            update["$inc"] = tally.increments[event_id]
        event_updates.append(UpdateOne({"_id": event_id}, update, upsert=True))
    bucket_updates = [
        UpdateOne(
            {"_id": bucket_id(event_id, granularity, start)},
            {
                "$inc": counters,
                "$setOnInsert": {
                    "event_id": event_id,
                    "organizer_id": tally.organizers[event_id],
                    "granularity": granularity.value,
                    "start": start,
                },
            },
            upsert=True,
        )
        for (event_id, granularity, start), counters in tally.buckets.items()
    ]
    # An order placed in this batch was never applied before (the checkpoint says so), so it
    # is inserted (insert_many: the driver's cheapest path per document); an earlier order's
    # record only ever changes its status and refunds.
    placed: list[Document] = []
    changed: list[UpdateOne] = []
    for record in tally.changed_orders.values():
        if record.order_id in tally.earlier_orders:
            changes = {"status": record.status, "refunded_tickets": record.refunded_tickets}
            changed.append(UpdateOne({"_id": record.order_id}, {"$set": changes}))
        else:
            placed.append(order_document(record))
    if event_updates:
        await db[SALES_EVENTS].bulk_write(event_updates, session=session)
    if bucket_updates:
        await db[SALES_TIMELINE].bulk_write(bucket_updates, session=session)
    if placed:
        await db[SALES_ORDERS].insert_many(placed, session=session)
    if changed:
        await db[SALES_ORDERS].bulk_write(changed, session=session)


# --- queries ------------------------------------------------------------------------------


async def find_event_sales(db: Database, event_id: str) -> Document | None:
    return await db[SALES_EVENTS].find_one({"_id": event_id})


async def find_timeline(
    db: Database, event_id: str, granularity: Granularity, start: datetime, end: datetime
) -> list[Document]:
    """Buckets of one event starting in [start, end), oldest first."""
    cursor = db[SALES_TIMELINE].find(
        {
            "event_id": event_id,
            "granularity": granularity.value,
            "start": {"$gte": start, "$lt": end},
        },
        sort=[("start", ASCENDING)],
    )
    return [document async for document in cursor]


async def organizer_days(db: Database, start: datetime, end: datetime) -> list[Document]:
    """Day buckets summed per organizer and day for days starting in [start, end)."""
    pipeline: list[Document] = [
        {"$match": {"granularity": Granularity.DAY.value, "start": {"$gte": start, "$lt": end}}},
        {
            "$group": {
                "_id": {"organizer_id": "$organizer_id", "day": "$start"},
                "events": {"$sum": 1},
                **{name: {"$sum": f"${name}"} for name in BUCKET_COUNTERS},
            }
        },
        {"$sort": {"_id.day": 1, "_id.organizer_id": 1}},
    ]
    cursor = await db[SALES_TIMELINE].aggregate(pipeline)
    return [document async for document in cursor]


def timeline_documents(documents: Sequence[Document]) -> list[Document]:
    """Bucket documents with their start as aware UTC."""
    return [{**document, "start": as_utc(document["start"])} for document in documents]


def counters_of(document: Document) -> dict[str, Any]:
    return {name: int(document.get(name) or 0) for name in BUCKET_COUNTERS}
