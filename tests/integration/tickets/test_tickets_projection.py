"""The tickets read model follows issuing, check-ins and refunds, and counts an event's door."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from eventhunting.domain.orders import RefundRequested
from eventhunting.projections.base import Projector
from eventhunting.projections.tickets import TICKETS_COLLECTION, TicketsProjection, checkin_counts
from eventhunting.services.orders import ORDERS
from eventhunting.services.tickets import DoorStaff, TicketService
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.tickets.conftest import Buyer, PaidOrder
from tests.support.leases import lease_of


async def test_the_read_model_has_every_ticket_with_its_status(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    buyer: Buyer,
    free_order: PaidOrder,
    store: EventStore,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    database = mongo_client[mongo_database_name]
    projection = TicketsProjection()
    await projection.create_indexes(database)
    buyer_id = await buyer(full_name="Phạm Minh")
    event, kept = await free_order(buyer_id, quantity=2)
    _, refunded = await free_order(buyer_id, quantity=1, event=event)
    _, partly = await free_order(buyer_id, quantity=2, event=event)
    first, _ = await tickets.issue(kept.id, signing_ring)
    await tickets.issue(refunded.id, signing_ring)
    partly_kept, partly_refunded = await tickets.issue(partly.id, signing_ring)
    await store.append(
        AppendRequest(
            partition=keys.partition_of(partly.id, store.partitions),
            stream=ORDERS.stream(partly.id),
            events=[
                RefundRequested(
                    order_id=partly.id,
                    refund_id="r2",
                    txn_ref="-",
                    amount=0,
                    reason="cannot come",
                    full=False,
                    requested_at=tickets.now(),
                    requested_by="a",
                    ticket_ids=(partly_refunded.ticket_id,),
                )
            ],
            expected_version=(await tickets.order_tickets(partly.id)).version,
        )
    )
    await tickets.check_in(DoorStaff(account_id="a", is_admin=True), qr=first.qr, gate="North")
    version = (await tickets.order_tickets(refunded.id)).version
    await store.append(
        AppendRequest(
            partition=keys.partition_of(refunded.id, store.partitions),
            stream=ORDERS.stream(refunded.id),
            events=[
                RefundRequested(
                    order_id=refunded.id,
                    refund_id="r1",
                    txn_ref="-",
                    amount=0,
                    reason="event_cancelled",
                    full=True,
                    requested_at=tickets.now(),
                    requested_by="a",
                )
            ],
            expected_version=version,
        )
    )

    partition = keys.partition_of(event.id, store.partitions)
    projector = Projector(database, [projection])
    after = "0"
    while batch := await store.read_log(partition, after, count=3):
        await projector(batch, lease_of(batch))
        after = batch[-1].position or after

    documents = {d["_id"]: d async for d in database[TICKETS_COLLECTION].find({})}
    assert len(documents) == 5
    assert documents[partly_kept.ticket_id]["status"] == "issued"
    assert documents[partly_refunded.ticket_id]["status"] == "refunded"
    checked = documents[first.ticket_id]
    assert (checked["status"], checked["gate"], checked["holder_name"]) == (
        "checked_in",
        "North",
        "Phạm Minh",
    )
    assert await checkin_counts(database, event.id) == {
        "issued": 2,
        "checked_in": 1,
        "refunded": 2,
        "cancelled": 0,
    }
