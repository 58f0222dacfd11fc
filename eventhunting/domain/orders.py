"""Orders: placing holds on tickets, and the decisions that pay, cancel or expire them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

import msgspec

from eventhunting.domain.catalog import CatalogEvent, EventNotFound, EventStatus
from eventhunting.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from eventhunting.domain.events import DomainEvent, registry

CURRENCY = "VND"
FREE_PAYMENT_METHOD = "free"


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"


# --- errors --------------------------------------------------------------------------------


class OrderNotFound(NotFound):
    code = "order_not_found"


class EventNotOnSale(Conflict):
    code = "event_not_on_sale"


class SaleClosed(Conflict):
    code = "sale_closed"


class SoldOut(Conflict):
    code = "sold_out"


class LimitExceeded(Conflict):
    code = "limit_exceeded"


class OrderNotPending(Conflict):
    code = "order_not_pending"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class NotOrderBuyer(Forbidden):
    code = "not_order_buyer"


# --- what an order is made of ---------------------------------------------------------------


class RequestedItem(msgspec.Struct, frozen=True, kw_only=True):
    """A ticket type and how many of it the buyer asks for."""

    ticket_type_id: str
    quantity: int


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """One ticket type of an order with the price frozen at the moment of ordering."""

    ticket_type_id: str
    name: str
    quantity: int
    unit_price: int
    amount: int


class ItemQuantity(msgspec.Struct, frozen=True, kw_only=True):
    """How many tickets of a ticket type an event moves between held, sold and free."""

    ticket_type_id: str
    quantity: int


# --- events --------------------------------------------------------------------------------


@registry.event("OrderPlaced", stream_kind="order")
class OrderPlaced(DomainEvent, frozen=True, kw_only=True):
    """A buyer holds tickets of one event until `expires_at`, at prices frozen in `items`."""

    order_id: str
    event_id: str
    buyer_id: str
    items: tuple[OrderLine, ...]
    total_amount: int
    currency: str = CURRENCY
    placed_at: datetime
    expires_at: datetime


@registry.event("OrderCancelled", stream_kind="order")
class OrderCancelled(DomainEvent, frozen=True, kw_only=True):
    """The buyer gave up a pending order; its held tickets are free again."""

    order_id: str
    event_id: str
    buyer_id: str
    items: tuple[ItemQuantity, ...]
    cancelled_at: datetime
    cancelled_by: str


@registry.event("OrderExpired", stream_kind="order")
class OrderExpired(DomainEvent, frozen=True, kw_only=True):
    """A pending order was not paid before its hold ran out; its held tickets are free again."""

    order_id: str
    event_id: str
    buyer_id: str
    items: tuple[ItemQuantity, ...]
    expired_at: datetime


@registry.event("OrderPaid", stream_kind="order")
class OrderPaid(DomainEvent, frozen=True, kw_only=True):
    """A pending order was paid in full; its held tickets are sold."""

    order_id: str
    event_id: str
    buyer_id: str
    items: tuple[ItemQuantity, ...]
    amount: int
    currency: str = CURRENCY
    method: str
    payment_reference: str | None = None
    paid_at: datetime


OrderEvent = OrderPlaced | OrderCancelled | OrderExpired | OrderPaid


# --- state ---------------------------------------------------------------------------------


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """An order folded from its stream; `version` is the number of events folded."""

    id: str
    event_id: str
    buyer_id: str
    status: OrderStatus
    items: tuple[OrderLine, ...]
    total_amount: int
    currency: str
    created_at: datetime
    expires_at: datetime
    version: int
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    payment_method: str | None = None

    @property
    def quantities(self) -> tuple[ItemQuantity, ...]:
        return tuple(
            ItemQuantity(ticket_type_id=line.ticket_type_id, quantity=line.quantity)
            for line in self.items
        )

    @property
    def ticket_count(self) -> int:
        return sum(line.quantity for line in self.items)


def evolve(order: Order | None, event: DomainEvent) -> Order:
    """The order after one more event of its stream."""
    if isinstance(event, OrderPlaced):
        if order is not None:
            raise ValueError(f"order {event.order_id} was placed twice")
        return Order(
            id=event.order_id,
            event_id=event.event_id,
            buyer_id=event.buyer_id,
            status=OrderStatus.PENDING,
            items=event.items,
            total_amount=event.total_amount,
            currency=event.currency,
            created_at=event.placed_at,
            expires_at=event.expires_at,
            version=1,
        )
    if order is None:
        raise ValueError(f"{type(event).__name__} before OrderPlaced")
    version = order.version + 1
    if isinstance(event, OrderPaid):
        return msgspec.structs.replace(
            order,
            status=OrderStatus.PAID,
            paid_at=event.paid_at,
            payment_method=event.method,
            version=version,
        )
    if isinstance(event, OrderCancelled):
        return msgspec.structs.replace(
            order, status=OrderStatus.CANCELLED, cancelled_at=event.cancelled_at, version=version
        )
    if isinstance(event, OrderExpired):
        return msgspec.structs.replace(
            order, status=OrderStatus.EXPIRED, expired_at=event.expired_at, version=version
        )
    # Events added to the order stream later (refunds, invoices) do not change these fields.
    return msgspec.structs.replace(order, version=version)


def fold(events: Iterable[DomainEvent]) -> Order | None:
    """The order described by its stream, or None for an empty stream."""
    order: Order | None = None
    for event in events:
        order = evolve(order, event)
    return order


# --- decisions -----------------------------------------------------------------------------


class PlaceOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Hold tickets of one event for a buyer."""

    order_id: str
    event_id: str
    buyer_id: str
    items: tuple[RequestedItem, ...]
    placed_at: datetime
    hold_seconds: int


def merge_items(items: Sequence[RequestedItem]) -> tuple[RequestedItem, ...]:
    """One item per ticket type (quantities of repeated ticket types added), in first-seen order.

    Merging means a repeated ticket type is never counted twice against capacity or limits.
    """
    if not items:
        raise InvalidInput("An order needs at least one item.", field="items")
    errors = [
        {"field": f"items[{index}].quantity", "message": "must be at least 1"}
        for index, item in enumerate(items)
        if item.quantity < 1
    ]
    if errors:
        raise InvalidInput("Every quantity must be at least 1.", errors=errors)
    merged: dict[str, int] = {}
    for item in items:
        merged[item.ticket_type_id] = merged.get(item.ticket_type_id, 0) + item.quantity
    return tuple(
        RequestedItem(ticket_type_id=ticket_type_id, quantity=quantity)
        for ticket_type_id, quantity in merged.items()
    )


def decide_place(command: PlaceOrder, event: CatalogEvent | None) -> list[OrderEvent]:
    """OrderPlaced (and OrderPaid at once when the total is 0), or the rule that says no.

    Capacity and the buyer's running total depend on concurrent orders; they are guarded by
    the store in the same atomic append, so here they are only checked per request.
    """
    items = merge_items(command.items)
    now = command.placed_at
    if event is None or not event.is_public():
        raise EventNotFound(f"There is no event {command.event_id!r}.")
    if event.status is not EventStatus.PUBLISHED or now >= event.ends_at:
        raise EventNotOnSale(f"Event {event.id!r} is not on sale.")
    ticket_types = {ticket_type.id: ticket_type for ticket_type in event.ticket_types}
    unknown = [
        {"field": f"items[{index}].ticket_type_id", "message": "not a ticket type of this event"}
        for index, item in enumerate(command.items)
        if item.ticket_type_id not in ticket_types
    ]
    if unknown:
        raise InvalidInput("Some items are not ticket types of this event.", errors=unknown)
    lines: list[OrderLine] = []
    for item in items:
        ticket_type = ticket_types[item.ticket_type_id]
        if not event.is_on_sale(ticket_type, now):
            raise SaleClosed(
                f"Ticket type {ticket_type.name!r} is not on sale now.",
                ticket_type_id=ticket_type.id,
            )
        if ticket_type.max_per_order is not None and item.quantity > ticket_type.max_per_order:
            index = first_index(command.items, item.ticket_type_id)
            raise InvalidInput(
                f"At most {ticket_type.max_per_order} tickets of {ticket_type.name!r} per order.",
                code="max_per_order_exceeded",
                errors=[
                    {
                        "field": f"items[{index}].quantity",
                        "message": f"at most {ticket_type.max_per_order} per order",
                    }
                ],
            )
        lines.append(
            OrderLine(
                ticket_type_id=ticket_type.id,
                name=ticket_type.name,
                quantity=item.quantity,
                unit_price=ticket_type.price,
                amount=item.quantity * ticket_type.price,
            )
        )
    requested = sum(line.quantity for line in lines)
    limit = event.max_tickets_per_customer
    if limit is not None and requested > limit:
        raise LimitExceeded(f"At most {limit} tickets of this event per customer.", limit=limit)
    total = sum(line.amount for line in lines)
    placed = OrderPlaced(
        order_id=command.order_id,
        event_id=command.event_id,
        buyer_id=command.buyer_id,
        items=tuple(lines),
        total_amount=total,
        placed_at=now,
        expires_at=now + timedelta(seconds=command.hold_seconds),
    )
    if total > 0:
        return [placed]
    paid = decide_payment(evolve(None, placed), paid_at=now, amount=0, method=FREE_PAYMENT_METHOD)
    return [placed, paid]


def first_index(items: Sequence[RequestedItem], ticket_type_id: str) -> int:
    return next(i for i, item in enumerate(items) if item.ticket_type_id == ticket_type_id)


def decide_cancel(order: Order, *, by: str, now: datetime) -> OrderCancelled:
    """Only the buyer cancels, and only while the order is pending."""
    if by != order.buyer_id:
        raise NotOrderBuyer("Only the buyer may cancel an order.")
    require_pending(order)
    return OrderCancelled(
        order_id=order.id,
        event_id=order.event_id,
        buyer_id=order.buyer_id,
        items=order.quantities,
        cancelled_at=now,
        cancelled_by=by,
    )


def decide_expire(order: Order, *, now: datetime) -> OrderExpired | None:
    """OrderExpired once the hold ran out; None when there is nothing (or nothing yet) to do."""
    if order.status is not OrderStatus.PENDING or now < order.expires_at:
        return None
    return OrderExpired(
        order_id=order.id,
        event_id=order.event_id,
        buyer_id=order.buyer_id,
        items=order.quantities,
        expired_at=now,
    )


def decide_payment(
    order: Order,
    *,
    paid_at: datetime,
    amount: int,
    method: str,
    payment_reference: str | None = None,
) -> OrderPaid:
    """A pending order paid in full becomes paid; an expired or cancelled one cannot be.

    A payment that arrives after the deadline but before the expiry was recorded still wins:
    the order's version, not the clock, decides which of them happened first.
    """
    require_pending(order)
    if amount != order.total_amount:
        raise Conflict(
            f"Order {order.id!r} costs {order.total_amount} {order.currency}, not {amount}.",
            code="payment_amount_mismatch",
        )
    return OrderPaid(
        order_id=order.id,
        event_id=order.event_id,
        buyer_id=order.buyer_id,
        items=order.quantities,
        amount=amount,
        method=method,
        payment_reference=payment_reference,
        paid_at=paid_at,
    )


def require_pending(order: Order) -> None:
    if order.status is not OrderStatus.PENDING:
        raise OrderNotPending(
            f"Order {order.id!r} is {order.status.value}, not pending.",
            order_status=order.status.value,
        )


# --- what events do to the counters ---------------------------------------------------------


class StockChange(NamedTuple):
    """Change of the `held` and `sold` counters of one ticket type."""

    ticket_type_id: str
    held: int
    sold: int


def stock_changes(event: DomainEvent) -> list[StockChange]:
    """How an order event moves tickets between free, held and sold."""
    if isinstance(event, OrderPlaced):
        return [StockChange(line.ticket_type_id, line.quantity, 0) for line in event.items]
    if isinstance(event, OrderCancelled | OrderExpired):
        return [StockChange(item.ticket_type_id, -item.quantity, 0) for item in event.items]
    if isinstance(event, OrderPaid):
        return [
            StockChange(item.ticket_type_id, -item.quantity, item.quantity) for item in event.items
        ]
    return []


def buyer_ticket_change(event: DomainEvent) -> int:
    """How an order event changes the buyer's count of pending and paid tickets of the event."""
    if isinstance(event, OrderPlaced):
        return sum(line.quantity for line in event.items)
    if isinstance(event, OrderCancelled | OrderExpired):
        return -sum(item.quantity for item in event.items)
    return 0
