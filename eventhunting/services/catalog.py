"""Catalog commands through the repository; queries: live availability and catalog search."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from ulid import ULID

from eventhunting.domain import catalog
from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import (
    AddTicketType,
    CancelEvent,
    CatalogEvent,
    ChangeTicketType,
    CreateEvent,
    PublishEvent,
    TicketType,
    TicketTypeAdded,
    TicketTypeChanged,
    UpdateEvent,
)
from eventhunting.domain.errors import Conflict
from eventhunting.domain.events import DomainEvent
from eventhunting.projections.catalog import (
    CatalogQuery,
    OrganizerEventsQuery,
    events_of_organizer,
    search_catalog,
)
from eventhunting.projections.query_page import QueryPage
from eventhunting.services.repository import (
    Effects,
    Idempotency,
    Repository,
    Saved,
    StreamKind,
    fingerprint_of,
)
from eventhunting.store.append import CounterChange, CounterSet, EventStore
from eventhunting.store.counters import inventory_counter
from eventhunting.store.errors import GuardRejected
from eventhunting.store.keys import new_id_in_partition, partition_of

EVENTS = StreamKind(catalog.STREAM_KIND, catalog.evolve)
"""Catalog events' streams, `event-<id>`: the event and its ticket types."""

QUANTITY_BELOW_SOLD = "quantity_below_sold"


@dataclass(frozen=True, slots=True)
class EventWithAvailability:
    """An event as its stream says, with each ticket type's live `available` count."""

    event: CatalogEvent
    available: Mapping[str, int]


def available_from(counters: Mapping[str, int], ticket_type: TicketType) -> int:
    capacity = counters.get("capacity", ticket_type.quantity)
    return max(0, capacity - counters.get("held", 0) - counters.get("sold", 0))


def inventory_effects(_: CatalogEvent | None, events: Sequence[DomainEvent]) -> Effects:
    """Inventory counters move with the events: created with a ticket type, and the capacity
    follows the quantity under the guard held + sold <= capacity."""
    counters: list[CounterChange | CounterSet] = []
    for event in events:
        if isinstance(event, TicketTypeAdded):
            counters.append(
                CounterSet(
                    inventory_counter(event.ticket_type_id),
                    {"capacity": event.quantity, "held": 0, "sold": 0},
                )
            )
        elif isinstance(event, TicketTypeChanged) and event.quantity != event.previous_quantity:
            counters.append(
                CounterChange(
                    inventory_counter(event.ticket_type_id),
                    {"capacity": event.quantity - event.previous_quantity},
                    sum_fields=("held", "sold"),
                    ceiling_field="capacity",
                    code=QUANTITY_BELOW_SOLD,
                )
            )
    return Effects(counters=counters)


class CatalogService:
    """Organizers' commands on events and ticket types, and everyone's reads."""

    def __init__(
        self,
        store: EventStore,
        database: AsyncDatabase[dict[str, Any]],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.database = database
        self.clock = clock
        self.events = Repository(store, EVENTS)

    def partition_of_event(self, event_id: str) -> int:
        return self.events.partition_of(event_id)

    # --- reads --------------------------------------------------------------------------

    async def find_event(self, event_id: str) -> CatalogEvent | None:
        """The event's current state from its stream (one XRANGE), None when there is none.

        Not cached: a price or status read here decides an order, so it must be current.
        """
        return await self.events.find(event_id)

    async def load_event(self, event_id: str) -> CatalogEvent:
        """Like `find_event`, but an unknown id is 404 `event_not_found`."""
        return catalog.require_event(await self.find_event(event_id), event_id)

    async def availability(self, event: CatalogEvent) -> dict[str, int]:
        """Tickets left per ticket type, from the inventory counters (exact, not lagging)."""
        if not event.ticket_types:
            return {}
        counters = await self.store.read_counters(
            self.partition_of_event(event.id),
            [inventory_counter(ticket_type.id) for ticket_type in event.ticket_types],
        )
        return {
            ticket_type.id: available_from(counters[inventory_counter(ticket_type.id)], ticket_type)
            for ticket_type in event.ticket_types
        }

    async def event_detail(self, event_id: str, viewer: Actor | None) -> EventWithAvailability:
        """One event with live availability; drafts exist only for their organizer and admins."""
        event = await self.load_event(event_id)
        event.ensure_visible_to(
            viewer.account_id if viewer else None, is_admin=bool(viewer and viewer.is_admin)
        )
        return EventWithAvailability(event=event, available=await self.availability(event))

    async def ensure_manages_event(self, actor: Actor, event_id: str) -> None:
        """The event exists for `actor` (404 otherwise) and `actor` is its organizer or an
        admin (403 `not_event_organizer` otherwise)."""
        catalog.managed_event(await self.find_event(event_id), event_id, actor)

    async def search(self, query: CatalogQuery) -> QueryPage[CatalogEvent]:
        """Published (and cancelled, marked) events from the catalog read model."""
        return await search_catalog(self.database, query)

    async def events_of_organizer(self, query: OrganizerEventsQuery) -> QueryPage[CatalogEvent]:
        """An organizer's own events, drafts included, from the catalog read model."""
        return await events_of_organizer(self.database, query)

    # --- commands -----------------------------------------------------------------------

    async def create_event(
        self, command: CreateEvent, *, idempotency_key: str | None = None
    ) -> EventWithAvailability:
        """Draft an event with its ticket types and their inventory counters, atomically."""
        partitions = self.store.partitions
        idempotency = None
        if idempotency_key is None:
            event_id = str(ULID())
        else:
            idempotency = Idempotency(
                f"catalog:create-event:{command.by.account_id}:{idempotency_key}",
                fingerprint_of(command),
            )
            # A repeated request must find the first one's record, so the key picks the partition.
            event_id = new_id_in_partition(partition_of(idempotency.id, partitions), partitions)
        partition = self.partition_of_event(event_id)
        ticket_type_ids = [new_id_in_partition(partition, partitions) for _ in command.ticket_types]
        saved = await self.events.decide_and_append(
            event_id,
            lambda state: catalog.decide_create_event(
                state, command, event_id=event_id, ticket_type_ids=ticket_type_ids, now=self.clock()
            ),
            effects=inventory_effects,
            idempotency=idempotency,
            actor=command.by.account_id,
        )
        assert saved is not None, "drafting always decides events"
        if saved.repeated:
            return await self.event_detail(saved.state.id, command.by)
        event = saved.state
        return EventWithAvailability(
            event=event, available={t.id: t.quantity for t in event.ticket_types}
        )

    async def update_event(self, command: UpdateEvent) -> EventWithAvailability:
        saved = await self.events.decide_and_append(
            command.event_id,
            lambda state: catalog.decide_update_event(state, command, now=self.clock()),
            actor=command.by.account_id,
        )
        return await self.with_availability(saved, command.event_id)

    async def publish_event(self, command: PublishEvent) -> EventWithAvailability:
        saved = await self.events.decide_and_append(
            command.event_id,
            lambda state: catalog.decide_publish_event(state, command, now=self.clock()),
            actor=command.by.account_id,
        )
        return await self.with_availability(saved, command.event_id)

    async def cancel_event(self, command: CancelEvent) -> EventWithAvailability:
        saved = await self.events.decide_and_append(
            command.event_id,
            lambda state: catalog.decide_cancel_event(state, command),
            actor=command.by.account_id,
        )
        return await self.with_availability(saved, command.event_id)

    async def add_ticket_type(
        self, command: AddTicketType, *, idempotency_key: str | None = None
    ) -> tuple[TicketType, int]:
        """Add a ticket type and create its inventory counter in the same append."""
        event_id = command.event_id
        idempotency = None
        if idempotency_key is not None:
            idempotency = Idempotency(
                f"catalog:add-ticket-type:{event_id}:{command.by.account_id}:{idempotency_key}",
                fingerprint_of(command),
            )
        ticket_type_id = new_id_in_partition(
            self.partition_of_event(event_id), self.store.partitions
        )
        saved = await self.events.decide_and_append(
            event_id,
            lambda state: catalog.decide_add_ticket_type(
                state, command, ticket_type_id=ticket_type_id
            ),
            effects=inventory_effects,
            idempotency=idempotency,
            actor=command.by.account_id,
        )
        assert saved is not None, "adding always decides an event"
        if saved.repeated:
            # Answer as the first request did, with the ticket type as it is now.
            added = saved.events[0].data
            assert isinstance(added, TicketTypeAdded)
            detail = await self.event_detail(event_id, command.by)
            ticket_type = detail.event.ticket_type(added.ticket_type_id)
            return ticket_type, detail.available[ticket_type.id]
        return saved.state.ticket_type(ticket_type_id), command.ticket_type.quantity

    async def change_ticket_type(self, command: ChangeTicketType) -> tuple[TicketType, int]:
        """Change a ticket type; a quantity change moves the capacity counter in the same
        append, whose script refuses (409 `quantity_below_sold`) to go below held + sold."""
        try:
            saved = await self.events.decide_and_append(
                command.event_id,
                lambda state: catalog.decide_change_ticket_type(state, command),
                effects=inventory_effects,
                actor=command.by.account_id,
            )
        except GuardRejected as rejected:
            if rejected.code != QUANTITY_BELOW_SOLD:
                raise
            raise Conflict(
                "the quantity cannot go below the tickets already held or sold",
                code=QUANTITY_BELOW_SOLD,
                ticket_type_id=command.ticket_type_id,
            ) from None
        changed = await self.with_availability(saved, command.event_id)
        ticket_type = changed.event.ticket_type(command.ticket_type_id)
        return ticket_type, changed.available[ticket_type.id]

    async def with_availability(
        self, saved: Saved[CatalogEvent] | None, event_id: str
    ) -> EventWithAvailability:
        """The event a command left (read again when it had nothing to do), with live counts."""
        event = saved.state if saved is not None else await self.load_event(event_id)
        return EventWithAvailability(event=event, available=await self.availability(event))
