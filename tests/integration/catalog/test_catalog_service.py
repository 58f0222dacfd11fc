"""Catalog commands against the real event store: counters, idempotency and the quantity guard."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec
import pytest
import redis.asyncio as aioredis

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import (
    AddTicketType,
    CancelEvent,
    ChangeTicketType,
    EventNotFound,
    EventPublished,
    PublishEvent,
    UpdateEvent,
)
from eventhunting.domain.errors import Conflict, Forbidden
from eventhunting.services.catalog import CatalogService
from eventhunting.store.append import AppendRequest, CounterChange, EventStore
from eventhunting.store.counters import inventory_counter
from eventhunting.store.errors import GuardRejected
from eventhunting.store.keys import partition_of
from tests.integration.catalog.conftest import (
    ADMIN,
    ORGANIZER,
    ManualClock,
    event_draft,
    ticket,
)


async def counters_of(store: EventStore, event_id: str, ticket_type_id: str) -> dict[str, int]:
    name = inventory_counter(ticket_type_id)
    return (await store.read_counters(partition_of(event_id, store.partitions), [name]))[name]


async def hold(store: EventStore, event_id: str, ticket_type_id: str, quantity: int) -> None:
    """What an order hold does to the inventory: held += n under held + sold <= capacity."""
    partition = partition_of(event_id, store.partitions)
    await store.append(
        AppendRequest(
            partition=partition,
            stream=f"holdtest-{event_id}",
            # Any registered event will do: only the counter change matters here.
            events=[EventPublished(event_id=event_id)],
            counters=[
                CounterChange(
                    inventory_counter(ticket_type_id),
                    {"held": quantity},
                    sum_fields=("held", "sold"),
                    ceiling_field="capacity",
                    code="sold_out",
                )
            ],
        )
    )


async def test_creating_an_event_creates_each_ticket_types_inventory_counter(
    catalog: CatalogService, store: EventStore, clock: ManualClock
) -> None:
    created = await catalog.create_event(
        event_draft(clock, ticket_types=[ticket("A", quantity=7), ticket("B")])
    )
    first, second = created.event.ticket_types
    assert await counters_of(store, created.event.id, first.id) == {
        "capacity": 7,
        "held": 0,
        "sold": 0,
    }
    assert (await counters_of(store, created.event.id, second.id))["capacity"] == 10
    assert created.available == {first.id: 7, second.id: 10}


async def test_ticket_type_ids_live_in_the_events_partition(
    catalog: CatalogService, store: EventStore, clock: ManualClock
) -> None:
    created = await catalog.create_event(
        event_draft(clock, ticket_types=[ticket("A"), ticket("B"), ticket("C")])
    )
    partition = partition_of(created.event.id, store.partitions)
    assert {partition_of(t.id, store.partitions) for t in created.event.ticket_types} == {partition}


async def test_load_event_folds_the_stream_and_unknown_ids_are_event_not_found(
    catalog: CatalogService, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock))
    await catalog.publish_event(PublishEvent(event_id=created.event.id, by=ORGANIZER))
    loaded = await catalog.load_event(created.event.id)
    assert loaded.status == "published"
    assert loaded.version == 3
    with pytest.raises(EventNotFound):
        await catalog.load_event("01NOSUCHEVENT")
    assert await catalog.find_event("01NOSUCHEVENT") is None


async def test_a_repeated_create_with_the_same_key_returns_the_first_event(
    catalog: CatalogService, store: EventStore, clock: ManualClock, redis_client: aioredis.Redis
) -> None:
    draft = event_draft(clock)
    first = await catalog.create_event(draft, idempotency_key="k-1")
    again = await catalog.create_event(draft, idempotency_key="k-1")
    assert again.event == first.event
    streams = [key async for key in redis_client.scan_iter(match="*:stream:event-*")]
    assert len(streams) == 1


async def test_the_same_key_for_a_different_create_is_idempotency_key_reused(
    catalog: CatalogService, clock: ManualClock
) -> None:
    await catalog.create_event(event_draft(clock), idempotency_key="k-2")
    with pytest.raises(Conflict) as raised:
        await catalog.create_event(event_draft(clock, title="Other"), idempotency_key="k-2")
    assert raised.value.code == "idempotency_key_reused"


async def test_the_same_key_of_another_organizer_creates_another_event(
    catalog: CatalogService, clock: ManualClock
) -> None:
    draft = event_draft(clock)
    first = await catalog.create_event(draft, idempotency_key="shared")
    other = await catalog.create_event(
        msgspec.structs.replace(draft, by=Actor("organizer-2")), idempotency_key="shared"
    )
    assert other.event.id != first.event.id


async def test_adding_a_ticket_type_creates_its_counter_and_a_repeat_adds_nothing(
    catalog: CatalogService, store: EventStore, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock))
    added, available = await catalog.add_ticket_type(
        AddTicketType(
            event_id=created.event.id, by=ORGANIZER, ticket_type=ticket("VIP", quantity=3)
        ),
        idempotency_key="vip",
    )
    again, _ = await catalog.add_ticket_type(
        AddTicketType(
            event_id=created.event.id, by=ORGANIZER, ticket_type=ticket("VIP", quantity=3)
        ),
        idempotency_key="vip",
    )
    assert again == added
    assert available == 3
    assert (await counters_of(store, created.event.id, added.id))["capacity"] == 3
    assert len((await catalog.load_event(created.event.id)).ticket_types) == 2


async def test_raising_the_quantity_raises_the_capacity(
    catalog: CatalogService, store: EventStore, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock))
    ticket_type = created.event.ticket_types[0]
    changed, available = await catalog.change_ticket_type(
        ChangeTicketType(
            event_id=created.event.id, ticket_type_id=ticket_type.id, by=ORGANIZER, quantity=25
        )
    )
    assert changed.quantity == 25
    assert available == 25
    assert (await counters_of(store, created.event.id, ticket_type.id))["capacity"] == 25


async def test_the_quantity_cannot_drop_below_held_plus_sold_and_nothing_changes(
    catalog: CatalogService, store: EventStore, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock))
    event_id, ticket_type_id = created.event.id, created.event.ticket_types[0].id
    await hold(store, event_id, ticket_type_id, 6)
    with pytest.raises(Conflict) as raised:
        await catalog.change_ticket_type(
            ChangeTicketType(
                event_id=event_id, ticket_type_id=ticket_type_id, by=ORGANIZER, quantity=5
            )
        )
    assert raised.value.code == "quantity_below_sold"
    assert (await catalog.load_event(event_id)).version == created.event.version
    assert (await counters_of(store, event_id, ticket_type_id))["capacity"] == 10
    changed, available = await catalog.change_ticket_type(
        ChangeTicketType(event_id=event_id, ticket_type_id=ticket_type_id, by=ORGANIZER, quantity=6)
    )
    assert (changed.quantity, available) == (6, 0)


async def test_concurrent_quantity_reductions_racing_holds_never_go_below_held_plus_sold(
    catalog: CatalogService, store: EventStore, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock, ticket_types=[ticket(quantity=40)]))
    event_id, ticket_type_id = created.event.id, created.event.ticket_types[0].id

    async def reduce_to(quantity: int) -> str:
        try:
            await catalog.change_ticket_type(
                ChangeTicketType(
                    event_id=event_id,
                    ticket_type_id=ticket_type_id,
                    by=ORGANIZER,
                    quantity=quantity,
                )
            )
        except Conflict as refused:
            return refused.code
        return "ok"

    async def hold_one() -> str:
        try:
            await hold(store, event_id, ticket_type_id, 1)
        except GuardRejected as refused:
            return refused.code
        return "ok"

    outcomes = await asyncio.gather(
        *[hold_one() for _ in range(30)], *[reduce_to(q) for q in (35, 25, 15, 20, 10, 30)]
    )
    assert set(outcomes[:30]) <= {"ok", "sold_out"}
    assert set(outcomes[30:]) <= {"ok", "quantity_below_sold"}
    held = outcomes[:30].count("ok")
    counters = await counters_of(store, event_id, ticket_type_id)
    state = await catalog.load_event(event_id)
    assert counters["held"] == held
    assert counters["held"] + counters["sold"] <= counters["capacity"]
    assert counters["capacity"] == state.ticket_types[0].quantity


async def test_concurrent_changes_of_one_event_all_land(
    catalog: CatalogService, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock, ticket_types=[]))
    names = [f"Zone {letter}" for letter in "ABCDE"]
    await asyncio.gather(
        *[
            catalog.add_ticket_type(
                AddTicketType(event_id=created.event.id, by=ORGANIZER, ticket_type=ticket(name))
            )
            for name in names
        ],
        catalog.update_event(UpdateEvent(event_id=created.event.id, by=ORGANIZER, title="Renamed")),
    )
    state = await catalog.load_event(created.event.id)
    assert sorted(t.name for t in state.ticket_types) == names
    assert state.title == "Renamed"


async def test_only_the_organizer_or_an_admin_changes_an_event(
    catalog: CatalogService, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock))
    await catalog.publish_event(PublishEvent(event_id=created.event.id, by=ORGANIZER))
    with pytest.raises(Forbidden):
        await catalog.cancel_event(CancelEvent(event_id=created.event.id, by=Actor("someone-else")))
    cancelled = await catalog.cancel_event(
        CancelEvent(event_id=created.event.id, by=ADMIN, reason="venue closed")
    )
    assert cancelled.event.status == "cancelled"


async def test_publishing_after_the_end_is_event_ended(
    catalog: CatalogService, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock))
    clock.advance(timedelta(days=30))
    with pytest.raises(Conflict) as raised:
        await catalog.publish_event(PublishEvent(event_id=created.event.id, by=ORGANIZER))
    assert raised.value.code == "event_ended"


async def test_racing_repeats_of_one_keyed_add_add_one_ticket_type(
    catalog: CatalogService, clock: ManualClock
) -> None:
    created = await catalog.create_event(event_draft(clock))
    results = await asyncio.gather(
        *[
            catalog.add_ticket_type(
                AddTicketType(event_id=created.event.id, by=ORGANIZER, ticket_type=ticket("VIP")),
                idempotency_key="same",
            )
            for _ in range(4)
        ]
    )
    assert len({ticket_type.id for ticket_type, _ in results}) == 1
    assert len((await catalog.load_event(created.event.id)).ticket_types) == 2
