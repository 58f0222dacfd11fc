"""The tickets read model: one document per ticket with its status, for lists and door counts."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.orders import RefundRequested
from eventhunting.domain.tickets import TicketCheckedIn, TicketsIssued, TicketStatus, voids_tickets
from eventhunting.projections.base import Projection
from eventhunting.store.envelope import EventEnvelope

TICKETS_COLLECTION = "tickets"


class TicketsProjection(Projection):
    """Keeps `tickets` in step with TicketsIssued, check-ins and refunds that void tickets.

    Status: `issued`, then `checked_in` (kept even if the order is refunded later: the
    holder came in) or `refunded`. Single-ticket reads fold the streams instead
    (`TicketService`); this model serves lists and counts, which may lag a moment.
    """

    name = "tickets"
    collections = (TICKETS_COLLECTION,)
    handles = frozenset({"TicketsIssued", "TicketCheckedIn", "RefundRequested"})

    async def create_indexes(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        await database[TICKETS_COLLECTION].create_index([("order_id", ASCENDING)], name="order_id")
        await database[TICKETS_COLLECTION].create_index(
            [("event_id", ASCENDING), ("status", ASCENDING)], name="event_status"
        )

    async def apply(
        self,
        event: EventEnvelope,
        database: AsyncDatabase[dict[str, Any]],
        session: AsyncClientSession,
    ) -> None:
        collection = database[TICKETS_COLLECTION]
        data = event.data
        if isinstance(data, TicketsIssued):
            for ticket in data.tickets:
                await collection.update_one(
                    {"_id": ticket.ticket_id},
                    {
                        "$setOnInsert": {
                            "order_id": data.order_id,
                            "event_id": data.event_id,
                            "buyer_id": data.buyer_id,
                            "ticket_type_id": ticket.ticket_type_id,
                            "holder_name": ticket.holder_name,
                            "code": ticket.code,
                            "status": TicketStatus.ISSUED.value,
                            "issued_at": data.issued_at,
                        }
                    },
                    upsert=True,
                    session=session,
                )
        elif isinstance(data, TicketCheckedIn):
            await collection.update_one(
                {"_id": data.ticket_id},
                {
                    "$set": {
                        "status": TicketStatus.CHECKED_IN.value,
                        "checked_in_at": data.checked_in_at,
                        "checked_in_by": data.checked_in_by,
                        "gate": data.gate,
                    }
                },
                session=session,
            )
        elif isinstance(data, RefundRequested) and (voids_tickets(data) or data.ticket_ids):
            # A refund naming its tickets voids those; an older one of the whole payment, all.
            selector: dict[str, Any] = {
                "order_id": data.order_id,
                "status": TicketStatus.ISSUED.value,
            }
            if data.ticket_ids:
                selector["_id"] = {"$in": list(data.ticket_ids)}
            await collection.update_many(
                selector, {"$set": {"status": TicketStatus.REFUNDED.value}}, session=session
            )


async def checkin_counts(database: AsyncDatabase[dict[str, Any]], event_id: str) -> dict[str, int]:
    """Tickets of an event by status (read model: may lag a moment)."""
    counts = {status.value: 0 for status in TicketStatus}
    cursor = await database[TICKETS_COLLECTION].aggregate(
        [{"$match": {"event_id": event_id}}, {"$group": {"_id": "$status", "count": {"$sum": 1}}}]
    )
    async for row in cursor:
        counts[str(row["_id"])] = int(row["count"])
    return counts
