"""Catalog commands and queries: load, decide, append; live availability; catalog search."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from pymongo.asynchronous.database import AsyncDatabase
from ulid import ULID

from eventhunting.domain import catalog
from eventhunting.domain.catalog import (
    CatalogDomainEvent,
    CatalogEvent,
    EventChanges,
    EventDraft,
    EventNotFound,
    TicketType,
    TicketTypeChanged,
    TicketTypeChanges,
    TicketTypeDraft,
    inventory_counter,
)
from eventhunting.domain.errors import Conflict, DomainError
from eventhunting.projections.catalog import CatalogPage, CatalogQuery, search_catalog
from eventhunting.store import keys
from eventhunting.store.append import (
    AppendRequest,
    AppendResult,
    CounterChange,
    CounterSet,
    EventStore,
    earlier_result_decoder,
)
from eventhunting.store.envelope import EventMeta
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from eventhunting.store.keys import new_id_in_partition, partition_of

# A command on an event re-reads and re-decides when another command won the race for the
# stream; a few rounds, spread by a short random pause, settle any realistic contention
# among one event's organizers (each round at least one contender wins).
COMMAND_ATTEMPTS = 8
RETRY_PAUSE_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class Actor:
    """Who issues a command or reads: an account, and whether it is an admin."""

    account_id: str
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class EventWithAvailability:
    """An event as its stream says, with each ticket type's live `available` count."""

    event: CatalogEvent
    available: Mapping[str, int]


def fingerprint_of(command: msgspec.Struct) -> str:
    """A stable digest of a command, to tell a repeated request from a reused key."""
    return hashlib.sha256(msgspec.json.encode(command)).hexdigest()


def available_from(counters: Mapping[str, int], ticket_type: TicketType) -> int:
    capacity = counters.get("capacity", ticket_type.quantity)
    return max(0, capacity - counters.get("held", 0) - counters.get("sold", 0))


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

    def partition_of_event(self, event_id: str) -> int:
        return partition_of(event_id, self.store.partitions)

    # --- reads --------------------------------------------------------------------------

    async def find_event(self, event_id: str) -> CatalogEvent | None:
        """The event's current state from its stream (one XRANGE), None when there is none.

        Not cached: a price or status read here decides an order, so it must be current.
        """
        partition = self.partition_of_event(event_id)
        return catalog.fold(await self.store.read_stream(partition, catalog.event_stream(event_id)))

    async def load_event(self, event_id: str) -> CatalogEvent:
        """Like `find_event`, but an unknown id is 404 `event_not_found`."""
        state = await self.find_event(event_id)
        if state is None:
            raise EventNotFound(f"no event {event_id}")
        return state

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

    async def search(self, query: CatalogQuery) -> CatalogPage:
        """Published (and cancelled, marked) events from the catalog read model."""
        return await search_catalog(self.database, query)

    # --- commands -----------------------------------------------------------------------

    async def create_event(
        self, actor: Actor, draft: EventDraft, *, idempotency_key: str | None = None
    ) -> EventWithAvailability:
        """Draft an event with its ticket types and their inventory counters, atomically."""
        idempotency_id = (
            None
            if idempotency_key is None
            else f"catalog:create-event:{actor.account_id}:{idempotency_key}"
        )
        partitions = self.store.partitions
        if idempotency_id is None:
            event_id = str(ULID())
            partition = partition_of(event_id, partitions)
        else:
            # A repeated request must find the first one's record, so the key picks the partition.
            partition = partition_of(idempotency_id, partitions)
            event_id = new_id_in_partition(partition, partitions)
        ticket_type_ids = [new_id_in_partition(partition, partitions) for _ in draft.ticket_types]
        events = catalog.draft_event(
            event_id=event_id,
            organizer_id=actor.account_id,
            draft=draft,
            ticket_type_ids=ticket_type_ids,
            now=self.clock(),
        )
        result = await self.store.append(
            AppendRequest(
                partition=partition,
                stream=catalog.event_stream(event_id),
                events=events,
                expected_version=0,
                meta=EventMeta(actor=actor.account_id),
                idempotency_id=idempotency_id,
                fingerprint=fingerprint_of(draft) if idempotency_id else None,
                counters=_counters_for(events),
            )
        )
        if result.duplicate:
            _ensure_same_request(result, fingerprint_of(draft))
            first = result.events[0].data
            assert isinstance(first, catalog.EventDrafted)
            return await self.event_detail(first.event_id, actor)
        event = catalog.fold(result.events)
        assert event is not None
        return EventWithAvailability(
            event=event, available={t.id: t.quantity for t in event.ticket_types}
        )

    async def update_event(
        self, actor: Actor, event_id: str, changes: EventChanges
    ) -> EventWithAvailability:
        return await self._event_command(
            actor, event_id, lambda state: catalog.update_event(state, changes, now=self.clock())
        )

    async def publish_event(self, actor: Actor, event_id: str) -> EventWithAvailability:
        return await self._event_command(
            actor, event_id, lambda state: catalog.publish_event(state, now=self.clock())
        )

    async def cancel_event(
        self, actor: Actor, event_id: str, *, reason: str | None = None
    ) -> EventWithAvailability:
        return await self._event_command(
            actor, event_id, lambda state: catalog.cancel_event(state, reason=reason)
        )

    async def add_ticket_type(
        self,
        actor: Actor,
        event_id: str,
        draft: TicketTypeDraft,
        *,
        idempotency_key: str | None = None,
    ) -> tuple[TicketType, int]:
        """Add a ticket type and create its inventory counter in the same append."""
        partition = self.partition_of_event(event_id)
        idempotency_id = None
        fingerprint = fingerprint_of(draft)
        if idempotency_key is not None:
            idempotency_id = (
                f"catalog:add-ticket-type:{event_id}:{actor.account_id}:{idempotency_key}"
            )
            # Deciding again would refuse the repeat (the name is taken by the first request),
            # so a known key answers before any decision.
            earlier = await self._earlier_result(partition, idempotency_id)
            if earlier is not None:
                _ensure_same_request(earlier, fingerprint)
                return await self._ticket_type_added_by(actor, event_id, earlier)
        ticket_type_id = new_id_in_partition(partition, self.store.partitions)
        try:
            state, result = await self._command(
                actor,
                event_id,
                lambda state: catalog.add_ticket_type(
                    state, ticket_type_id=ticket_type_id, draft=draft
                ),
                idempotency_id=idempotency_id,
                fingerprint=fingerprint if idempotency_id else None,
            )
        except DomainError:
            # The same request may have raced this one in and taken the name: answer as it did.
            earlier = None
            if idempotency_id is not None:
                earlier = await self._earlier_result(partition, idempotency_id)
            if earlier is None:
                raise
            _ensure_same_request(earlier, fingerprint)
            return await self._ticket_type_added_by(actor, event_id, earlier)
        if result is not None and result.duplicate:
            return await self._ticket_type_added_by(actor, event_id, result)
        return state.ticket_type(ticket_type_id), draft.quantity

    async def change_ticket_type(
        self, actor: Actor, event_id: str, ticket_type_id: str, changes: TicketTypeChanges
    ) -> tuple[TicketType, int]:
        """Change a ticket type; a quantity change moves the capacity counter in the same
        append, whose script refuses (409 `quantity_below_sold`) to go below held + sold."""
        try:
            state, _ = await self._command(
                actor,
                event_id,
                lambda state: catalog.change_ticket_type(state, ticket_type_id, changes),
            )
        except GuardRejected as rejected:
            if rejected.code != "quantity_below_sold":
                raise
            raise Conflict(
                "the quantity cannot go below the tickets already held or sold",
                code="quantity_below_sold",
                ticket_type_id=ticket_type_id,
            ) from None
        available = await self.availability(state)
        return state.ticket_type(ticket_type_id), available[ticket_type_id]

    async def _event_command(
        self,
        actor: Actor,
        event_id: str,
        decide: Callable[[CatalogEvent], Sequence[CatalogDomainEvent]],
    ) -> EventWithAvailability:
        state, _ = await self._command(actor, event_id, decide)
        return EventWithAvailability(event=state, available=await self.availability(state))

    async def _command(
        self,
        actor: Actor,
        event_id: str,
        decide: Callable[[CatalogEvent], Sequence[CatalogDomainEvent]],
        *,
        idempotency_id: str | None = None,
        fingerprint: str | None = None,
    ) -> tuple[CatalogEvent, AppendResult | None]:
        """Load, check the actor may manage the event, decide, append at the version read;
        when another command won the race for the stream, read and decide again."""
        for attempt in range(1, COMMAND_ATTEMPTS + 1):
            state = await self.load_event(event_id)
            state.ensure_managed_by(actor.account_id, is_admin=actor.is_admin)
            events = decide(state)
            if not events:
                return state, None
            try:
                result = await self.store.append(
                    AppendRequest(
                        partition=self.partition_of_event(event_id),
                        stream=state.stream,
                        events=events,
                        expected_version=state.version,
                        meta=EventMeta(actor=actor.account_id),
                        idempotency_id=idempotency_id,
                        fingerprint=fingerprint,
                        counters=_counters_for(events),
                    )
                )
            except ConcurrencyError:
                if attempt == COMMAND_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, RETRY_PAUSE_SECONDS * attempt))
                continue
            if result.duplicate:
                _ensure_same_request(result, fingerprint)
                return await self.load_event(event_id), result
            for recorded in result.events:
                state = catalog.evolve(
                    state, recorded.data, version=recorded.version, occurred_at=recorded.occurred_at
                )
            return state, result
        raise AssertionError("unreachable")

    async def _earlier_result(self, partition: int, idempotency_id: str) -> AppendResult | None:
        stored = await self.store.redis.get(keys.idempotency_key(partition, idempotency_id))
        if stored is None:
            return None
        return await self.store.earlier_result(partition, earlier_result_decoder.decode(stored))

    async def _ticket_type_added_by(
        self, actor: Actor, event_id: str, earlier: AppendResult
    ) -> tuple[TicketType, int]:
        added = earlier.events[0].data
        assert isinstance(added, catalog.TicketTypeAdded)
        detail = await self.event_detail(event_id, actor)
        ticket_type = detail.event.ticket_type(added.ticket_type_id)
        return ticket_type, detail.available[ticket_type.id]


def _fresh_inventory(event: catalog.TicketTypeAdded) -> dict[str, int]:
    return {"capacity": event.quantity, "held": 0, "sold": 0}


def _counters_for(events: Sequence[CatalogDomainEvent]) -> list[CounterChange | CounterSet]:
    """Inventory counters move with the events: created with a ticket type, and the capacity
    follows the quantity under the guard held + sold <= capacity."""
    counters: list[CounterChange | CounterSet] = []
    for event in events:
        if isinstance(event, catalog.TicketTypeAdded):
            counters.append(
                CounterSet(inventory_counter(event.ticket_type_id), _fresh_inventory(event))
            )
        elif isinstance(event, TicketTypeChanged) and event.quantity != event.previous_quantity:
            counters.append(
                CounterChange(
                    inventory_counter(event.ticket_type_id),
                    {"capacity": event.quantity - event.previous_quantity},
                    sum_fields=("held", "sold"),
                    ceiling_field="capacity",
                    code="quantity_below_sold",
                )
            )
    return counters


def _ensure_same_request(result: AppendResult, fingerprint: str | None) -> None:
    if result.fingerprint is not None and result.fingerprint != fingerprint:
        raise Conflict(
            "this Idempotency-Key was used for a different request",
            code="idempotency_key_reused",
        )
