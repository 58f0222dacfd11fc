"""Placing, cancelling, expiring and paying orders against the real event store."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from eventhunting.domain.catalog import CancelEvent, CatalogEvent, ChangeTicketType
from eventhunting.domain.errors import DomainError, IdempotencyKeyReused, InvalidInput
from eventhunting.domain.orders import (
    EventNotOnSale,
    LimitExceeded,
    OrderNotPending,
    OrderStatus,
    RequestedItem,
    SoldOut,
)
from eventhunting.services.catalog import CatalogService
from eventhunting.services.orders import (
    HOLD_EXPIRY_SCHEDULE,
    ORDERS,
    ExpiryOutcome,
    OrderService,
    buyer_counter,
)
from eventhunting.store import keys
from eventhunting.store.append import EventStore, text
from eventhunting.store.counters import inventory_counter

from .conftest import HOLD_SECONDS, ORGANIZER, ManualClock, NewEvent, TicketTypeSpec


def item(event: CatalogEvent, index: int, quantity: int) -> RequestedItem:
    return RequestedItem(ticket_type_id=event.ticket_types[index].id, quantity=quantity)


async def inventory(store: EventStore, event: CatalogEvent, index: int = 0) -> dict[str, int]:
    name = inventory_counter(event.ticket_types[index].id)
    partition = keys.partition_of(event.id, store.partitions)
    return (await store.read_counters(partition, [name]))[name]


async def schedule(redis: aioredis.Redis, store: EventStore, event: CatalogEvent) -> list[str]:
    partition = keys.partition_of(event.id, store.partitions)
    members = await redis.zrange(keys.schedule_key(partition, HOLD_EXPIRY_SCHEDULE), 0, -1)
    return [text(member) for member in members if isinstance(member, bytes | str)]


async def test_placing_holds_tickets_and_schedules_the_expiry(
    orders: OrderService,
    store: EventStore,
    redis_client: aioredis.Redis,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("GA", 150_000, 10))
    placement = await orders.place(buyer_id="b1", event_id=event.id, items=[item(event, 0, 3)])
    order = placement.order
    assert order.status is OrderStatus.PENDING
    assert order.total_amount == 450_000
    assert order.expires_at == clock.now + timedelta(seconds=HOLD_SECONDS)
    assert keys.partition_of(order.id, store.partitions) == keys.partition_of(
        event.id, store.partitions
    )
    assert await inventory(store, event) == {"capacity": 10, "held": 3, "sold": 0}
    assert await schedule(redis_client, store, event) == [order.id]
    assert (await orders.get(order.id)) == order


async def test_an_order_is_all_or_nothing_across_ticket_types(
    orders: OrderService, store: EventStore, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 5), TicketTypeSpec("B", 1000, 1))
    with pytest.raises(SoldOut) as raised:
        await orders.place(
            buyer_id="b1", event_id=event.id, items=[item(event, 0, 2), item(event, 1, 2)]
        )
    assert raised.value.extra["ticket_type_id"] == event.ticket_types[1].id
    assert await inventory(store, event, 0) == {"capacity": 5, "held": 0, "sold": 0}
    assert await inventory(store, event, 1) == {"capacity": 1, "held": 0, "sold": 0}


async def test_repeated_ticket_types_are_merged_before_the_capacity_guard(
    orders: OrderService, store: EventStore, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 3))
    placement = await orders.place(
        buyer_id="b1", event_id=event.id, items=[item(event, 0, 1), item(event, 0, 2)]
    )
    assert [(line.quantity, line.amount) for line in placement.order.items] == [(3, 3000)]
    assert (await inventory(store, event))["held"] == 3


async def test_concurrent_buyers_never_oversell(
    orders: OrderService, store: EventStore, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 25))
    outcomes = await asyncio.gather(
        *(
            orders.place(buyer_id=f"b{n}", event_id=event.id, items=[item(event, 0, 2)])
            for n in range(40)
        ),
        return_exceptions=True,
    )
    sold_out = [o for o in outcomes if isinstance(o, SoldOut)]
    placed = [o for o in outcomes if not isinstance(o, BaseException)]
    assert (len(placed), len(sold_out)) == (12, 28)
    assert await inventory(store, event) == {"capacity": 25, "held": 24, "sold": 0}


async def test_one_buyer_racing_himself_stays_within_the_per_customer_limit(
    orders: OrderService, store: EventStore, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 100), max_tickets_per_customer=4)
    outcomes = await asyncio.gather(
        *(
            orders.place(buyer_id="eager", event_id=event.id, items=[item(event, 0, 1)])
            for _ in range(12)
        ),
        return_exceptions=True,
    )
    assert Counter(type(o).__name__ for o in outcomes) == {"Placement": 4, "LimitExceeded": 8}
    partition = keys.partition_of(event.id, store.partitions)
    name = buyer_counter(event.id, "eager")
    assert (await store.read_counters(partition, [name]))[name] == {"tickets": 4}
    assert (await inventory(store, event))["held"] == 4


async def test_released_tickets_count_again_towards_the_per_customer_limit(
    orders: OrderService, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 100), max_tickets_per_customer=2)
    first = await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 2)])
    with pytest.raises(LimitExceeded):
        await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 1)])
    await orders.cancel(first.order.id, by="b")
    assert (await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 2)])).order


async def test_a_repeated_idempotency_key_returns_the_first_order(
    orders: OrderService, store: EventStore, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 10))
    first = await orders.place(
        buyer_id="b", event_id=event.id, items=[item(event, 0, 2)], idempotency_key="k1"
    )
    again = await orders.place(
        buyer_id="b", event_id=event.id, items=[item(event, 0, 2)], idempotency_key="k1"
    )
    assert again.repeated
    assert again.order == first.order
    assert (await inventory(store, event))["held"] == 2


async def test_the_same_idempotency_key_with_another_body_is_refused(
    orders: OrderService, store: EventStore, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 10))
    other = await new_event(TicketTypeSpec("B", 1000, 10))
    await orders.place(
        buyer_id="b", event_id=event.id, items=[item(event, 0, 2)], idempotency_key="k1"
    )
    with pytest.raises(IdempotencyKeyReused):
        await orders.place(
            buyer_id="b", event_id=event.id, items=[item(event, 0, 3)], idempotency_key="k1"
        )
    with pytest.raises(IdempotencyKeyReused):
        await orders.place(
            buyer_id="b", event_id=other.id, items=[item(other, 0, 2)], idempotency_key="k1"
        )
    assert (await inventory(store, event))["held"] == 2
    assert (await inventory(store, other))["held"] == 0


async def test_idempotency_keys_belong_to_one_buyer(
    orders: OrderService, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 10))
    mine = await orders.place(
        buyer_id="b1", event_id=event.id, items=[item(event, 0, 1)], idempotency_key="same"
    )
    theirs = await orders.place(
        buyer_id="b2", event_id=event.id, items=[item(event, 0, 1)], idempotency_key="same"
    )
    assert mine.order.id != theirs.order.id
    assert not theirs.repeated


async def test_a_free_order_is_paid_at_once_and_sold(
    orders: OrderService, store: EventStore, redis_client: aioredis.Redis, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("Community", 0, 10))
    order = (await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 2)])).order
    assert order.status is OrderStatus.PAID
    assert order.paid_at is not None
    assert await inventory(store, event) == {"capacity": 10, "held": 0, "sold": 2}
    assert await schedule(redis_client, store, event) == []


async def test_cancelling_releases_at_once(
    orders: OrderService, store: EventStore, redis_client: aioredis.Redis, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 2))
    order = (await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 2)])).order
    cancelled = await orders.cancel(order.id, by="b")
    assert cancelled.status is OrderStatus.CANCELLED
    assert (await inventory(store, event))["held"] == 0
    assert await schedule(redis_client, store, event) == []
    with pytest.raises(OrderNotPending):
        await orders.cancel(order.id, by="b")
    assert (await orders.place(buyer_id="c", event_id=event.id, items=[item(event, 0, 2)])).order


async def test_the_expirer_releases_only_due_holds(
    orders: OrderService,
    store: EventStore,
    redis_client: aioredis.Redis,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    from eventhunting.consumers.expirer import expire_due

    event = await new_event(TicketTypeSpec("A", 1000, 10))
    early = (await orders.place(buyer_id="b1", event_id=event.id, items=[item(event, 0, 3)])).order
    clock.advance(10)
    late = (await orders.place(buyer_id="b2", event_id=event.id, items=[item(event, 0, 4)])).order
    clock.advance(HOLD_SECONDS - 5)
    assert await expire_due(orders, range(store.partitions), 100) == 1
    assert (await orders.get(early.id)).status is OrderStatus.EXPIRED
    assert (await orders.get(late.id)).status is OrderStatus.PENDING
    assert await inventory(store, event) == {"capacity": 10, "held": 4, "sold": 0}
    assert await schedule(redis_client, store, event) == [late.id]
    # A second expirer (or the same one after a restart) finds nothing left to do.
    assert await expire_due(orders, range(store.partitions), 100) == 0


async def test_expiring_twice_releases_once(
    orders: OrderService, store: EventStore, new_event: NewEvent, clock: ManualClock
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 10))
    order = (await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 3)])).order
    clock.advance(HOLD_SECONDS)
    outcomes = await asyncio.gather(*(orders.expire(order.id) for _ in range(5)))
    assert Counter(outcomes) == {ExpiryOutcome.EXPIRED: 1, ExpiryOutcome.SETTLED: 4}
    assert (await inventory(store, event))["held"] == 0
    assert len(await store.read_stream(ORDERS.stream(order.id))) == 2


async def test_payment_racing_expiry_and_cancel_has_exactly_one_winner(
    orders: OrderService, store: EventStore, new_event: NewEvent, clock: ManualClock
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 50))
    placed = [
        (await orders.place(buyer_id=f"b{n}", event_id=event.id, items=[item(event, 0, 2)])).order
        for n in range(10)
    ]
    clock.advance(HOLD_SECONDS)

    async def pay(order_id: str, amount: int) -> str:
        try:
            await orders.mark_paid(order_id, amount=amount, method="test")
        except OrderNotPending:
            return "lost"
        return "paid"

    async def cancel(order_id: str, buyer_id: str) -> str:
        try:
            await orders.cancel(order_id, by=buyer_id)
        except OrderNotPending:
            return "lost"
        return "cancelled"

    results = await asyncio.gather(
        *(
            contender
            for order in placed
            for contender in (
                pay(order.id, order.total_amount),
                cancel(order.id, order.buyer_id),
                orders.expire(order.id),
            )
        )
    )
    winners: Counter[OrderStatus] = Counter()
    for order in placed:
        final = await orders.get(order.id)
        assert final.version == 2
        winners[final.status] += 1
    held_sold = await inventory(store, event)
    paid = winners[OrderStatus.PAID]
    assert held_sold == {"capacity": 50, "held": 0, "sold": 2 * paid}
    assert results.count("paid") == paid
    assert sum(winners.values()) == 10


async def test_an_expired_order_cannot_be_paid(
    orders: OrderService, new_event: NewEvent, clock: ManualClock
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 5))
    order = (await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 1)])).order
    clock.advance(HOLD_SECONDS)
    assert await orders.expire(order.id) is ExpiryOutcome.EXPIRED
    with pytest.raises(OrderNotPending):
        await orders.mark_paid(order.id, amount=order.total_amount, method="test")


async def test_a_cancelled_event_is_not_on_sale(
    orders: OrderService, catalog: CatalogService, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 5))
    await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 1)])
    await catalog.cancel_event(CancelEvent(event_id=event.id, by=ORGANIZER))
    with pytest.raises(EventNotOnSale):
        await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 1)])


async def test_refusals_change_nothing(
    orders: OrderService, store: EventStore, redis_client: aioredis.Redis, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 5, max_per_order=2))
    before = await redis_client.dbsize()
    for items in ([item(event, 0, 3)], [RequestedItem(ticket_type_id="nope", quantity=1)]):
        with pytest.raises(InvalidInput):
            await orders.place(buyer_id="b", event_id=event.id, items=items)
    with pytest.raises(DomainError):
        await orders.place(buyer_id="b", event_id="missing-event", items=[item(event, 0, 1)])
    assert await redis_client.dbsize() == before
    assert await inventory(store, event) == {"capacity": 5, "held": 0, "sold": 0}


async def test_a_price_change_is_seen_by_the_next_order_at_once(
    orders: OrderService, catalog: CatalogService, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 5))
    first = await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 1)])
    await catalog.change_ticket_type(
        ChangeTicketType(
            event_id=event.id, ticket_type_id=event.ticket_types[0].id, by=ORGANIZER, price=1500
        )
    )
    second = await orders.place(buyer_id="b", event_id=event.id, items=[item(event, 0, 1)])
    assert (first.order.total_amount, second.order.total_amount) == (1000, 1500)


async def test_a_larger_quantity_is_sellable_at_once(
    orders: OrderService, catalog: CatalogService, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 1))
    await orders.place(buyer_id="b1", event_id=event.id, items=[item(event, 0, 1)])
    with pytest.raises(SoldOut):
        await orders.place(buyer_id="b2", event_id=event.id, items=[item(event, 0, 1)])
    await catalog.change_ticket_type(
        ChangeTicketType(
            event_id=event.id, ticket_type_id=event.ticket_types[0].id, by=ORGANIZER, quantity=2
        )
    )
    assert await orders.place(buyer_id="b2", event_id=event.id, items=[item(event, 0, 1)])


async def test_a_repeated_key_returns_the_order_even_after_the_sale_closed(
    orders: OrderService, catalog: CatalogService, new_event: NewEvent
) -> None:
    event = await new_event(TicketTypeSpec("A", 1000, 5))
    first = await orders.place(
        buyer_id="b", event_id=event.id, items=[item(event, 0, 1)], idempotency_key="k"
    )
    await catalog.cancel_event(CancelEvent(event_id=event.id, by=ORGANIZER))
    again = await orders.place(
        buyer_id="b", event_id=event.id, items=[item(event, 0, 1)], idempotency_key="k"
    )
    assert again.repeated
    assert again.order.id == first.order.id
