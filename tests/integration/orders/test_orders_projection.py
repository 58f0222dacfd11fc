"""The orders read model follows the order streams, once per event, and lists a buyer's orders."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from eventhunting.domain.catalog import CatalogEvent
from eventhunting.domain.orders import OrderStatus, RequestedItem
from eventhunting.projections.base import Projector
from eventhunting.projections.orders import (
    ORDERS_COLLECTION,
    OrderQuery,
    OrdersProjection,
    list_orders,
)
from eventhunting.services.orders import OrderService
from eventhunting.store import keys
from eventhunting.store.append import EventStore
from tests.support.leases import lease_of

from .conftest import HOLD_SECONDS, ManualClock, NewEvent, TicketTypeSpec


def one(event: CatalogEvent, quantity: int = 1) -> list[RequestedItem]:
    return [RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=quantity)]


async def project_partition(store: EventStore, projector: Projector, event: CatalogEvent) -> None:
    """Feed the whole partition log of `event` to the projector in small batches."""
    partition = keys.partition_of(event.id, store.partitions)
    after = "0"
    while batch := await store.read_log(partition, after, count=3):
        await projector(batch, lease_of(batch))
        after = batch[-1].position or after


async def test_the_read_model_follows_every_order_status(
    orders: OrderService,
    store: EventStore,
    new_event: NewEvent,
    clock: ManualClock,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    database = mongo_client[mongo_database_name]
    projection = OrdersProjection()
    await projection.create_indexes(database)
    event = await new_event(TicketTypeSpec("A", 1000, 20))
    paid = (await orders.place(buyer_id="b", event_id=event.id, items=one(event, 2))).order
    await orders.mark_paid(paid.id, amount=paid.total_amount, method="test")
    clock.advance(1)
    cancelled = (await orders.place(buyer_id="b", event_id=event.id, items=one(event))).order
    await orders.cancel(cancelled.id, by="b")
    clock.advance(1)
    expired = (await orders.place(buyer_id="b", event_id=event.id, items=one(event))).order
    clock.advance(HOLD_SECONDS)
    await orders.expire(expired.id)
    clock.advance(1)
    pending = (await orders.place(buyer_id="b", event_id=event.id, items=one(event, 3))).order
    await orders.place(buyer_id="someone-else", event_id=event.id, items=one(event))

    await project_partition(store, Projector(database, [projection]), event)

    found = await list_orders(database, OrderQuery(buyer_id="b"))
    assert found.total == 4
    assert [(d["_id"], d["status"]) for d in found.documents] == [
        (pending.id, "pending"),
        (expired.id, "expired"),
        (cancelled.id, "cancelled"),
        (paid.id, "paid"),
    ]
    assert found.documents[0]["items"][0]["quantity"] == 3
    only_paid = await list_orders(database, OrderQuery(buyer_id="b", status=OrderStatus.PAID))
    assert [d["_id"] for d in only_paid.documents] == [paid.id]
    second_page = await list_orders(database, OrderQuery(buyer_id="b", page=2, page_size=3))
    assert [d["_id"] for d in second_page.documents] == [paid.id]


async def test_applying_an_event_again_changes_nothing(
    orders: OrderService,
    store: EventStore,
    new_event: NewEvent,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    database = mongo_client[mongo_database_name]
    projection = OrdersProjection()
    event = await new_event(TicketTypeSpec("A", 1000, 20))
    order = (await orders.place(buyer_id="b", event_id=event.id, items=one(event))).order
    await orders.cancel(order.id, by="b")
    history = await store.read_stream(f"order-{order.id}")
    async with mongo_client.start_session() as session:
        for envelope in [*history, history[0], history[1], history[0]]:
            await projection.apply(envelope, database, session)
    document = await database[ORDERS_COLLECTION].find_one({"_id": order.id})
    assert document is not None
    assert (document["status"], document["version"]) == ("cancelled", 2)


async def test_a_whole_batch_builds_what_one_event_at_a_time_builds(
    orders: OrderService,
    store: EventStore,
    new_event: NewEvent,
    clock: ManualClock,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 20))
    paid_later = (await orders.place(buyer_id="b", event_id=event.id, items=one(event))).order
    paid = (await orders.place(buyer_id="b", event_id=event.id, items=one(event, 2))).order
    await orders.mark_paid(paid.id, amount=paid.total_amount, method="test")
    cancelled = (await orders.place(buyer_id="c", event_id=event.id, items=one(event))).order
    await orders.cancel(cancelled.id, by="c")
    clock.advance(HOLD_SECONDS + 1)
    await orders.mark_paid(paid_later.id, amount=paid_later.total_amount, method="test")
    partition = keys.partition_of(event.id, store.partitions)
    log = await store.read_log(partition, "0", count=1_000)
    # The first order's OrderPlaced alone in the first batch, everything else in the second.
    first = next(i for i, e in enumerate(log) if e.stream == f"order-{paid_later.id}") + 1

    async def build(name: str, batches: list[list[Any]]) -> dict[str, list[dict[str, Any]]]:
        database = mongo_client[f"{mongo_database_name}_{name}"]
        projection = OrdersProjection()
        await projection.create_indexes(database)
        projector = Projector(database, [projection])
        for batch in batches:
            await projector(batch, lease_of(batch))
        built = {
            name: await database[name].find({}).sort("_id").to_list()
            for name in projection.collections
        }
        await mongo_client.drop_database(database.name)
        return built

    one_by_one = await build("single", [[envelope] for envelope in log])
    batched = await build("batched", [log[:first], log[first:]])
    assert batched == one_by_one
    statuses = {d["_id"]: d["status"] for d in batched[ORDERS_COLLECTION]}
    assert statuses == {paid_later.id: "paid", paid.id: "paid", cancelled.id: "cancelled"}
