"""Refund commands and reads: an organizer's or admin's refund of a paid order, and its list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import EventNotFound
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import Order, Refund, RefundRequested, RefundResolution
from eventhunting.domain.payments import RefundNotFound
from eventhunting.domain.refunds import (
    REFUND_EVENT_CANCELLED,
    NotRefundable,
    RequestRefund,
    ResolveRefund,
    decide_request_refund,
)
from eventhunting.domain.tickets import OrderTickets
from eventhunting.projections.orders import (
    EventRefunds,
    failed_refunds,
    order_of_refund,
    pending_orders_of_event,
    refundable_orders_of_event,
    refunds_of_event,
)
from eventhunting.services.orders import (
    OrderService,
    event_orders_index,
    order_effects,
    translate_guard,
)
from eventhunting.services.payments import PaymentService
from eventhunting.services.repository import Effects, Idempotency, Repository, fingerprint_of
from eventhunting.services.tickets import ORDER_TICKETS, TICKETS
from eventhunting.store import keys
from eventhunting.store.append import StreamVersion, text
from eventhunting.store.errors import GuardRejected

# Who refunds the paid orders of a cancelled event: an admin's rights, checked-in tickets too.
CANCELLATION_REFUNDER = Actor("refunder", is_admin=True)
# Refused because a ticket was checked in between reading its stream and the refund's append.
TICKET_CHECKED_IN_MEANWHILE = "ticket_checked_in_meanwhile"
# Orders of a cancelled event read from its index per round trip.
EVENT_ORDERS_BATCH = 500


@dataclass(frozen=True, slots=True)
class RequestedRefund:
    """The refund a request produced; `repeated` when an Idempotency-Key returned it again."""

    order_id: str
    refund: Refund
    repeated: bool


class RefundService:
    """Refunds on the order streams through the repository; the reconciler moves the money."""

    def __init__(
        self,
        orders: OrderService,
        database: AsyncDatabase[dict[str, Any]] | None = None,
        payments: PaymentService | None = None,
    ) -> None:
        self.orders = orders
        self.database = database
        self.payments = payments
        self.order_tickets = Repository(orders.store, ORDER_TICKETS)
        self.tickets = Repository(orders.store, TICKETS)

    async def request(
        self,
        order_id: str,
        *,
        by: Actor,
        reason: str,
        ticket_ids: Sequence[str] | None = None,
        force: bool = False,
        idempotency_key: str | None = None,
    ) -> RequestedRefund:
        """Append one RefundRequested (and the stock it frees) or raise the rule that says no.

        Tickets checked in are read from their `ticket-<id>` streams, which the append
        requires unchanged, so a check-in racing the refund is never missed.
        """
        partition = self.orders.partition_of(order_id)
        command = RequestRefund(
            order_id=order_id,
            by=by,
            reason=reason,
            ticket_ids=None if ticket_ids is None else tuple(ticket_ids),
            force=force,
        )
        refund_id = keys.new_id_in_partition(partition, self.orders.partitions)
        requested_at = self.orders.now()
        idempotency = None
        if idempotency_key is not None:
            idempotency = Idempotency(
                f"refund:{order_id}:{by.account_id}:{idempotency_key}", fingerprint_of(command)
            )
        read_versions: list[dict[str, int]] = []

        async def decide(state: OrderTickets | None) -> list[DomainEvent]:
            organizer_id = None
            event_started = False
            restock_refunds = True
            if state is not None:
                try:
                    # Fresh: the event's restock setting may have changed since it was cached.
                    event = await self.orders.event_terms(state.order.event_id, fresh=True)
                    organizer_id = event.organizer_id
                    event_started = requested_at >= event.starts_at
                    restock_refunds = event.restock_refunds
                except EventNotFound:
                    event_started = True
            versions: dict[str, int] = {}
            for ticket in () if state is None else state.tickets:
                checked = await self.tickets.find(ticket.ticket_id)
                versions[ticket.ticket_id] = 0 if checked is None else checked.version
            read_versions.append(versions)
            return list(
                decide_request_refund(
                    state,
                    command,
                    organizer_id=organizer_id,
                    checked_in=frozenset(t for t, version in versions.items() if version),
                    event_started=event_started,
                    refund_id=refund_id,
                    now=requested_at,
                    restock_refunds=restock_refunds,
                )
            )

        def effects(state: OrderTickets | None, events: list[DomainEvent]) -> Effects:
            counted = order_effects(events)
            versions = read_versions[-1]
            return Effects(
                counters=counted.counters,
                schedules=counted.schedules,
                stream_versions=[
                    StreamVersion(
                        TICKETS.stream(ticket_id), version, code=TICKET_CHECKED_IN_MEANWHILE
                    )
                    for ticket_id, version in versions.items()
                ],
            )

        try:
            saved = await self.order_tickets.decide_and_append(
                order_id,
                decide,
                effects=effects,
                idempotency=idempotency,
                actor=by.account_id,
                decide_again_on=lambda rejected: rejected.code == TICKET_CHECKED_IN_MEANWHILE,
            )
        except GuardRejected as rejected:
            raise translate_guard(rejected) from None
        assert saved is not None, "a refund request always decides an event"
        requested = saved.events[-1].data
        assert isinstance(requested, RefundRequested)
        refund = next(r for r in saved.state.order.refunds if r.id == requested.refund_id)
        return RequestedRefund(order_id=order_id, refund=refund, repeated=saved.repeated)

    async def of_order(self, order_id: str, viewer: Actor) -> tuple[Order, tuple[Refund, ...]]:
        """The order's refunds (also of payments it could not keep), for its buyer, its
        event's organizer or an admin (else 404)."""
        order = await self.orders.get_visible(
            order_id, viewer_id=viewer.account_id, viewer_is_admin=viewer.is_admin
        )
        return order, order.refunds

    async def refund_cancelled(self, order_id: str) -> bool:
        """Refund what is left of a cancelled event's order; False when nothing is left.

        Decided by the order's state, so doing it again (a redelivery, a second process)
        finds the order refunded and changes nothing.
        """
        try:
            await self.request(
                order_id, by=CANCELLATION_REFUNDER, reason=REFUND_EVENT_CANCELLED, force=True
            )
        except NotRefundable:
            return False
        return True

    async def resolve(
        self, refund_id: str, *, by: Actor, resolution: RefundResolution, note: str
    ) -> tuple[str, Refund]:
        """An admin's resolution of a failed refund (retry now, or settled outside VNPAY),
        appended to the order's stream; a repeat finds it resolved and appends nothing."""
        order_id = await order_of_refund(self.require_database(), refund_id)
        if order_id is None or not by.is_admin:
            raise RefundNotFound(f"There is no refund {refund_id!r}.")
        command = ResolveRefund(
            order_id=order_id,
            refund_id=refund_id,
            by=by,
            resolution=resolution,
            note=note,
        )
        await self.require_payments().resolve_refund(command)
        order = await self.orders.get(order_id)
        return order_id, next(r for r in order.refunds if r.id == refund_id)

    async def failed(
        self, viewer: Actor, *, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Every order's failed refunds (read model; may lag a moment), for admins."""
        if not viewer.is_admin:
            raise RefundNotFound("Only admins list failed refunds.")
        return await failed_refunds(self.require_database(), page=page, page_size=page_size)

    async def orders_of_event(self, event_id: str, *, offset: int = 0) -> list[str]:
        """The next batch of every order placed for the event, oldest first, from the index
        each placement writes in its own append: exact, so no order placed before the event
        was cancelled is missed (none can be placed after: a placement requires the event's
        stream unchanged, and the index only grows, so offsets stay put)."""
        partition = keys.partition_of(event_id, self.orders.partitions)
        members = await self.orders.redis.zrange(
            keys.schedule_key(partition, event_orders_index(event_id)),
            offset,
            offset + EVENT_ORDERS_BATCH - 1,
        )
        return [text(member) for member in members if isinstance(member, bytes | str)]

    async def refundable_orders(self, event_id: str, *, after: str = "") -> list[str]:
        """The next batch of the event's paid orders (read model), in id order."""
        return await refundable_orders_of_event(self.require_database(), event_id, after=after)

    async def pending_orders(self, event_id: str, *, after: str = "") -> list[str]:
        """The next batch of the event's pending orders (read model), released when the
        event is cancelled, in id order."""
        return await pending_orders_of_event(self.require_database(), event_id, after=after)

    async def of_event(self, event_id: str, viewer: Actor) -> EventRefunds:
        """Counts of the event's refunds by status and the failed ones (organizer or admin)."""
        event = await self.orders.event_terms(event_id, fresh=False)
        if not viewer.is_admin and event.organizer_id != viewer.account_id:
            raise EventNotFound(f"There is no event {event_id!r}.")
        return await refunds_of_event(self.require_database(), event_id)

    def require_payments(self) -> PaymentService:
        if self.payments is None:
            raise RuntimeError("resolving refunds needs the payment service (credit notes)")
        return self.payments

    def require_database(self) -> AsyncDatabase[dict[str, Any]]:
        if self.database is None:
            raise RuntimeError("listing refunds needs the read models' database")
        return self.database
