"""Orders: placing holds on tickets, paying for them, and the decisions that settle them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

import msgspec

from eventhunting.domain.catalog import CatalogEvent, EventNotFound, EventStatus
from eventhunting.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from eventhunting.domain.events import Command, DomainEvent, RecordedEvent, registry
from eventhunting.domain.events import fold as fold_history

STREAM_KIND = "order"
CURRENCY = "VND"
FREE_PAYMENT_METHOD = "free"
# Who cancels a pending order when nobody asked for it (`OrderCancelled.cancelled_by`).
SYSTEM_CANCELLER = "system"
# Why: its event was cancelled (`OrderCancelled.reason`).
HOLD_RELEASED_EVENT_CANCELLED = "event_cancelled"


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


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


class NotOrderBuyer(Forbidden):
    code = "not_order_buyer"


# --- what an order is made of ---------------------------------------------------------------


class RequestedItem(msgspec.Struct, frozen=True, kw_only=True):
    """A ticket type and how many of it the buyer asks for."""

    ticket_type_id: str
    quantity: int


class OrderLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One ticket type of an order with the price frozen at the moment of ordering."""

    ticket_type_id: str
    name: str
    quantity: int
    unit_price: int
    amount: int


class ItemQuantity(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """How many tickets of a ticket type an event moves between held, sold and free."""

    ticket_type_id: str
    quantity: int


# --- events --------------------------------------------------------------------------------


@registry.event("OrderPlaced", stream_kind=STREAM_KIND)
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


@registry.event("OrderCancelled", stream_kind=STREAM_KIND)
class OrderCancelled(DomainEvent, frozen=True, kw_only=True):
    """A pending order was given up by its buyer (or by the system, for a `reason`)."""

    order_id: str
    event_id: str
    buyer_id: str
    items: tuple[ItemQuantity, ...]
    cancelled_at: datetime
    cancelled_by: str
    reason: str | None = None


@registry.event("OrderExpired", stream_kind=STREAM_KIND)
class OrderExpired(DomainEvent, frozen=True, kw_only=True):
    """A pending order was not paid before its hold ran out; its held tickets are free again."""

    order_id: str
    event_id: str
    buyer_id: str
    items: tuple[ItemQuantity, ...]
    expired_at: datetime


@registry.event("OrderPaid", stream_kind=STREAM_KIND)
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
    invoice_number: str | None = None
    """The invoice issued with the payment (none for free orders)."""
    restocked: bool = False
    """Paid after the hold had been released: the tickets were taken again from stock."""


class PaymentStatus(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PaymentDetails(msgspec.Struct, frozen=True, kw_only=True):
    """What the gateway said about one payment attempt."""

    response_code: str
    transaction_status: str
    transaction_no: str | None = None
    bank_code: str | None = None
    bank_tran_no: str | None = None
    card_type: str | None = None
    pay_date: datetime | None = None


@registry.event("PaymentStarted", stream_kind=STREAM_KIND)
class PaymentStarted(DomainEvent, frozen=True, kw_only=True):
    """The buyer was sent to the gateway to pay `amount` under `txn_ref` until `expires_at`."""

    order_id: str
    txn_ref: str
    gateway: str
    amount: int
    currency: str = CURRENCY
    started_at: datetime
    expires_at: datetime
    bank_code: str | None = None
    locale: str | None = None


@registry.event("PaymentSucceeded", stream_kind=STREAM_KIND)
class PaymentSucceeded(DomainEvent, frozen=True, kw_only=True):
    """The gateway confirmed that the attempt `txn_ref` was paid."""

    order_id: str
    txn_ref: str
    amount: int
    currency: str = CURRENCY
    details: PaymentDetails
    recorded_at: datetime


@registry.event("PaymentFailed", stream_kind=STREAM_KIND)
class PaymentFailed(DomainEvent, frozen=True, kw_only=True):
    """The gateway reported the attempt `txn_ref` as not paid; the hold stays until it expires."""

    order_id: str
    txn_ref: str
    amount: int
    currency: str = CURRENCY
    details: PaymentDetails
    recorded_at: datetime


class InvoiceLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line; `amount` includes VAT, split as `amount_before_vat` + `vat_amount`."""

    description: str
    quantity: int
    unit_price: int
    amount: int
    vat_rate: int = 0
    """Percent."""
    vat_amount: int = 0
    amount_before_vat: int = 0


class InvoicePayment(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    transaction_no: str | None = None
    bank_code: str | None = None
    paid_at: datetime


@registry.event("InvoiceIssued", stream_kind=STREAM_KIND)
class InvoiceIssued(DomainEvent, frozen=True, kw_only=True):
    """An invoice numbered `number` (gapless in `series`) was issued for the paid order."""

    order_id: str
    event_id: str
    buyer_id: str
    organizer_id: str
    series: str
    sequence: int
    number: str
    issued_at: datetime
    lines: tuple[InvoiceLine, ...]
    total_amount: int
    currency: str = CURRENCY
    payment: InvoicePayment
    symbol: str | None = None
    """The e-invoice symbol (ký hiệu) of the series, carrying the year, e.g. `1K26TEH`."""
    vat_amount: int = 0
    amount_before_vat: int = 0


class InvoiceReference(msgspec.Struct, frozen=True, kw_only=True):
    """The invoice an adjusting invoice adjusts: its symbol, number and date."""

    symbol: str | None
    number: str
    issued_at: datetime


class CreditNoteLine(msgspec.Struct, frozen=True, kw_only=True):
    """What a credit note takes off one line of the original invoice (`line`, from 1).

    `quantity`, `amount`, `vat_amount` and `amount_before_vat` are negative; `unit_price`
    and `vat_rate` are the original line's.
    """

    line: int
    description: str
    quantity: int
    unit_price: int
    amount: int
    vat_rate: int
    vat_amount: int
    amount_before_vat: int


@registry.event("CreditNoteIssued", stream_kind=STREAM_KIND)
class CreditNoteIssued(DomainEvent, frozen=True, kw_only=True):
    """A credit note (adjusting invoice, negative amounts) numbered in the invoices' series."""

    order_id: str
    event_id: str
    buyer_id: str
    organizer_id: str
    refund_id: str
    series: str
    sequence: int
    number: str
    symbol: str
    issued_at: datetime
    adjusts: InvoiceReference
    lines: tuple[CreditNoteLine, ...]
    total_amount: int
    vat_amount: int
    amount_before_vat: int
    currency: str = CURRENCY
    reason: str


@registry.event("RefundRequested", stream_kind=STREAM_KIND)
class RefundRequested(DomainEvent, frozen=True, kw_only=True):
    """Money is to be given back for the payment `txn_ref` (a worker calls the gateway)."""

    order_id: str
    refund_id: str
    txn_ref: str
    amount: int
    currency: str = CURRENCY
    reason: str
    full: bool
    requested_at: datetime
    requested_by: str
    ticket_ids: tuple[str, ...] = ()
    """The tickets this refund voids (none for money we could not keep)."""
    items: tuple[ItemQuantity, ...] = ()
    """Tickets put back on sale per ticket type (none once the event has started)."""
    event_id: str | None = None
    buyer_id: str | None = None
    order_status: OrderStatus | None = None
    """The order's status after this refund; None when the order itself is not refunded."""


@registry.event("RefundCompleted", stream_kind=STREAM_KIND)
class RefundCompleted(DomainEvent, frozen=True, kw_only=True):
    """The gateway refunded `amount` for the refund `refund_id`."""

    order_id: str
    refund_id: str
    amount: int
    currency: str = CURRENCY
    transaction_no: str | None = None
    completed_at: datetime
    attempt: int | None = None
    """The gateway call (1, 2, ...) that gave the money back; None before attempts counted."""


@registry.event("RefundAttempted", stream_kind=STREAM_KIND)
class RefundAttempted(DomainEvent, frozen=True, kw_only=True):
    """The reconciler is about to call the gateway for attempt `attempt` of the refund, with
    `request_id` (the same for every call of that attempt); `sent_at` dates the first call,
    since VNPAY tells a repeated request id only on the same day (GMT+7)."""

    order_id: str
    refund_id: str
    attempt: int
    request_id: str
    sent_at: datetime


@registry.event("RefundFailed", stream_kind=STREAM_KIND)
class RefundFailed(DomainEvent, frozen=True, kw_only=True):
    """The gateway refused the refund `refund_id` (or its outcome is unknown); it is tried
    again at `retry_at`, or waits for an admin when `retry_at` is None."""

    order_id: str
    refund_id: str
    response_code: str
    message: str
    failed_at: datetime
    attempt: int | None = None
    """The gateway call (1, 2, ...) that failed; the next call is the next attempt."""
    outcome_unknown: bool = False
    """VNPAY saw the call but whether it gave the money back cannot be told: never sent again
    by the worker, only after an admin's `retry`."""
    retry_at: datetime | None = None
    """When the reconciler tries again (capped exponential backoff); None: an admin decides."""


class RefundResolution(StrEnum):
    RETRY = "retry"
    """Call the gateway again now, as the next attempt."""
    SETTLED = "settled"
    """The money went back outside this system's gateway calls (the note says how)."""


@registry.event("RefundResolved", stream_kind=STREAM_KIND)
class RefundResolved(DomainEvent, frozen=True, kw_only=True):
    """An admin resolved the failed refund `refund_id`: `retry` puts it back to `requested`
    for the reconciler now; `settled` completes it without a gateway call."""

    order_id: str
    refund_id: str
    resolution: RefundResolution
    note: str
    resolved_by: str
    resolved_at: datetime


OrderEvent = (
    OrderPlaced
    | OrderCancelled
    | OrderExpired
    | OrderPaid
    | PaymentStarted
    | PaymentSucceeded
    | PaymentFailed
    | InvoiceIssued
    | RefundRequested
    | RefundCompleted
    | RefundFailed
    | RefundAttempted
    | CreditNoteIssued
    | RefundResolved
)


# --- state ---------------------------------------------------------------------------------


class PaymentAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """One trip to the gateway and what came of it."""

    txn_ref: str
    amount: int
    started_at: datetime
    expires_at: datetime
    status: PaymentStatus = PaymentStatus.STARTED
    details: PaymentDetails | None = None


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    txn_ref: str
    amount: int
    reason: str
    status: str
    requested_at: datetime
    completed_at: datetime | None = None
    transaction_no: str | None = None
    ticket_ids: tuple[str, ...] = ()
    of_order: bool = False
    """A refund of the order's own payment (not of money we could not keep)."""
    failures: int = 0
    """How many gateway calls failed; the next call is attempt `failures + 1`."""
    sent_at: datetime | None = None
    """When the current attempt was first sent (RefundAttempted); None: not sent yet."""
    outcome_unknown: bool = False
    retry_at: datetime | None = None
    settled_by: str | None = None
    """The admin who marked it settled outside the gateway (with `note`)."""
    note: str | None = None

    @property
    def attempt(self) -> int:
        """The number of the next (or current) gateway call for this refund."""
        return self.failures + 1


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
    payment_reference: str | None = None
    """The gateway attempt that paid the order."""
    payments: tuple[PaymentAttempt, ...] = ()
    invoice: InvoiceIssued | None = None
    refunds: tuple[Refund, ...] = ()
    credit_notes: tuple[CreditNoteIssued, ...] = ()

    @property
    def invoice_number(self) -> str | None:
        return None if self.invoice is None else self.invoice.number

    def credit_note(self, refund_id: str) -> CreditNoteIssued | None:
        return next((c for c in self.credit_notes if c.refund_id == refund_id), None)

    def payment(self, txn_ref: str) -> PaymentAttempt | None:
        return next((p for p in self.payments if p.txn_ref == txn_ref), None)

    @property
    def quantities(self) -> tuple[ItemQuantity, ...]:
        return tuple(
            ItemQuantity(ticket_type_id=line.ticket_type_id, quantity=line.quantity)
            for line in self.items
        )

    @property
    def ticket_count(self) -> int:
        return sum(line.quantity for line in self.items)

    @property
    def order_refunds(self) -> tuple[Refund, ...]:
        """Refunds of the order's own payment (not of duplicate or unkeepable payments)."""
        return tuple(refund for refund in self.refunds if refund.of_order)

    @property
    def refunded_amount(self) -> int:
        """What was asked back of the order's payment, whether the gateway is done or not."""
        return sum(refund.amount for refund in self.order_refunds)

    @property
    def refunded_ticket_ids(self) -> frozenset[str]:
        return frozenset(t for refund in self.order_refunds for t in refund.ticket_ids)


def settled_refund(
    refund: Refund, event: RefundCompleted | RefundFailed | RefundResolved
) -> Refund:
    """A refund after its gateway outcome or an admin's resolution."""
    replace = msgspec.structs.replace
    if isinstance(event, RefundCompleted):
        return replace(
            refund,
            status="completed",
            completed_at=event.completed_at,
            transaction_no=event.transaction_no,
            outcome_unknown=False,
            retry_at=None,
        )
    if isinstance(event, RefundFailed):
        return replace(
            refund,
            status="failed",
            failures=refund.failures + 1,
            sent_at=None,
            outcome_unknown=event.outcome_unknown,
            retry_at=event.retry_at,
        )
    if event.resolution is RefundResolution.RETRY:
        return replace(
            refund, status="requested", outcome_unknown=False, retry_at=event.resolved_at
        )
    return replace(
        refund,
        status="completed",
        completed_at=event.resolved_at,
        outcome_unknown=False,
        retry_at=None,
        settled_by=event.resolved_by,
        note=event.note,
    )


def evolve(order: Order | None, recorded: RecordedEvent) -> Order:
    """The order after one more event of its stream."""
    event = recorded.data
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
            version=recorded.version,
        )
    if order is None:
        raise ValueError(f"{type(event).__name__} before OrderPlaced")
    replace = msgspec.structs.replace
    order = replace(order, version=recorded.version)
    if isinstance(event, OrderPaid):
        return replace(
            order,
            status=OrderStatus.PAID,
            paid_at=event.paid_at,
            payment_method=event.method,
            payment_reference=event.payment_reference,
        )
    if isinstance(event, OrderCancelled):
        return replace(order, status=OrderStatus.CANCELLED, cancelled_at=event.cancelled_at)
    if isinstance(event, OrderExpired):
        return replace(order, status=OrderStatus.EXPIRED, expired_at=event.expired_at)
    if isinstance(event, PaymentStarted):
        attempt = PaymentAttempt(
            txn_ref=event.txn_ref,
            amount=event.amount,
            started_at=event.started_at,
            expires_at=event.expires_at,
        )
        return replace(order, payments=(*order.payments, attempt))
    if isinstance(event, PaymentSucceeded | PaymentFailed):
        status = (
            PaymentStatus.SUCCEEDED if isinstance(event, PaymentSucceeded) else PaymentStatus.FAILED
        )
        payments = tuple(
            replace(p, status=status, details=event.details) if p.txn_ref == event.txn_ref else p
            for p in order.payments
        )
        return replace(order, payments=payments)
    if isinstance(event, InvoiceIssued):
        return replace(order, invoice=event)
    if isinstance(event, CreditNoteIssued):
        return replace(order, credit_notes=(*order.credit_notes, event))
    if isinstance(event, RefundRequested):
        refund = Refund(
            id=event.refund_id,
            txn_ref=event.txn_ref,
            amount=event.amount,
            reason=event.reason,
            status="requested",
            requested_at=event.requested_at,
            ticket_ids=event.ticket_ids,
            of_order=event.order_status is not None,
        )
        refunded_to = order.status if event.order_status is None else event.order_status
        return replace(order, refunds=(*order.refunds, refund), status=refunded_to)
    if isinstance(event, RefundAttempted):
        return replace(
            order,
            refunds=tuple(
                replace(r, sent_at=event.sent_at)
                if r.id == event.refund_id and r.attempt == event.attempt
                else r
                for r in order.refunds
            ),
        )
    if isinstance(event, RefundCompleted | RefundFailed | RefundResolved):
        return replace(
            order,
            refunds=tuple(
                settled_refund(r, event) if r.id == event.refund_id else r for r in order.refunds
            ),
        )
    return order


def fold(history: Iterable[RecordedEvent]) -> Order | None:
    """The order described by its stream, or None for an empty stream."""
    return fold_history(evolve, history)


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """An event with the stream position a fold needs, for folding decisions not yet stored."""

    data: DomainEvent
    version: int
    occurred_at: datetime


def after(order: Order | None, events: Sequence[DomainEvent], at: datetime) -> Order | None:
    """The order after events a decision returned, before they are stored."""
    version = 0 if order is None else order.version
    for offset, event in enumerate(events, start=1):
        order = evolve(order, Recorded(data=event, version=version + offset, occurred_at=at))
    return order


# --- decisions -----------------------------------------------------------------------------


class PlaceOrder(Command, frozen=True, kw_only=True):
    """Hold tickets of one event for a buyer."""

    event_id: str
    buyer_id: str
    items: tuple[RequestedItem, ...]


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


def decide_place(
    order: Order | None,
    command: PlaceOrder,
    *,
    event: CatalogEvent | None,
    order_id: str,
    now: datetime,
    hold_seconds: int,
) -> list[OrderEvent]:
    """OrderPlaced under the id the server drew (and OrderPaid at once when the total is 0),
    or the rule that says no; `event` is the catalog event as the server read it.

    Capacity and the buyer's running total depend on concurrent orders; they are guarded by
    the store in the same atomic append, so here they are only checked per request.
    """
    if order is not None:
        raise Conflict(f"order {order_id} exists already", code="order_exists")
    items = merge_items(command.items)
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
        order_id=order_id,
        event_id=command.event_id,
        buyer_id=command.buyer_id,
        items=tuple(lines),
        total_amount=total,
        placed_at=now,
        expires_at=now + timedelta(seconds=hold_seconds),
    )
    if total > 0:
        return [placed]
    placed_order = after(None, [placed], now)
    free = PayOrder(order_id=order_id, amount=0, method=FREE_PAYMENT_METHOD)
    return [placed, *decide_payment(placed_order, free, now=now)]


def first_index(items: Sequence[RequestedItem], ticket_type_id: str) -> int:
    return next(i for i, item in enumerate(items) if item.ticket_type_id == ticket_type_id)


class CancelOrder(Command, frozen=True, kw_only=True):
    """The buyer gives up a pending order."""

    order_id: str
    by: str


class ReleaseHold(Command, frozen=True, kw_only=True):
    """The system cancels a pending order for a `reason` (its event was cancelled)."""

    order_id: str
    reason: str


class ExpireOrder(Command, frozen=True, kw_only=True):
    """Release the hold of an order whose time ran out."""

    order_id: str


class PayOrder(Command, frozen=True, kw_only=True):
    """Record full payment of a pending order by other means than the gateway (free orders)."""

    order_id: str
    amount: int
    method: str
    payment_reference: str | None = None


def decide_cancel(order: Order | None, command: CancelOrder, *, now: datetime) -> list[OrderEvent]:
    """Only the buyer cancels, and only while the order is pending."""
    order = require_order(order, command.order_id)
    if command.by != order.buyer_id:
        raise NotOrderBuyer("Only the buyer may cancel an order.")
    require_pending(order)
    return [
        OrderCancelled(
            order_id=order.id,
            event_id=order.event_id,
            buyer_id=order.buyer_id,
            items=order.quantities,
            cancelled_at=now,
            cancelled_by=command.by,
        )
    ]


def decide_release_hold(
    order: Order | None, command: ReleaseHold, *, now: datetime
) -> list[OrderEvent]:
    """OrderCancelled by the system while the order is pending; nothing once it is settled
    (paid, cancelled or expired), so asking again changes nothing."""
    order = require_order(order, command.order_id)
    if order.status is not OrderStatus.PENDING:
        return []
    return [
        OrderCancelled(
            order_id=order.id,
            event_id=order.event_id,
            buyer_id=order.buyer_id,
            items=order.quantities,
            cancelled_at=now,
            cancelled_by=SYSTEM_CANCELLER,
            reason=command.reason,
        )
    ]


def decide_expire(order: Order | None, command: ExpireOrder, *, now: datetime) -> list[OrderEvent]:
    """OrderExpired once the hold ran out; nothing when there is nothing (or nothing yet) to do."""
    order = require_order(order, command.order_id)
    if order.status is not OrderStatus.PENDING or now < order.expires_at:
        return []
    return [
        OrderExpired(
            order_id=order.id,
            event_id=order.event_id,
            buyer_id=order.buyer_id,
            items=order.quantities,
            expired_at=now,
        )
    ]


def decide_payment(order: Order | None, command: PayOrder, *, now: datetime) -> list[OrderEvent]:
    """A pending order paid in full becomes paid; an expired or cancelled one cannot be.

    A payment that arrives after the deadline but before the expiry was recorded still wins:
    the order's version, not the clock, decides which of them happened first.
    """
    order = require_order(order, command.order_id)
    require_pending(order)
    if command.amount != order.total_amount:
        raise Conflict(
            f"Order {order.id!r} costs {order.total_amount} {order.currency},"
            f" not {command.amount}.",
            code="payment_amount_mismatch",
        )
    return [
        OrderPaid(
            order_id=order.id,
            event_id=order.event_id,
            buyer_id=order.buyer_id,
            items=order.quantities,
            amount=command.amount,
            method=command.method,
            payment_reference=command.payment_reference,
            paid_at=now,
        )
    ]


def require_order(order: Order | None, order_id: str) -> Order:
    if order is None:
        raise OrderNotFound(f"There is no order {order_id!r}.")
    return order


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
        # A late payment takes the tickets from stock again; an ordinary one moves held to sold.
        held = 0 if event.restocked else -1
        return [
            StockChange(item.ticket_type_id, held * item.quantity, item.quantity)
            for item in event.items
        ]
    if isinstance(event, RefundRequested):
        return [StockChange(item.ticket_type_id, 0, -item.quantity) for item in event.items]
    return []


def buyer_ticket_change(event: DomainEvent) -> int:
    """How an order event changes the buyer's count of pending and paid tickets of the event."""
    if isinstance(event, OrderPlaced):
        return sum(line.quantity for line in event.items)
    if isinstance(event, OrderCancelled | OrderExpired):
        return -sum(item.quantity for item in event.items)
    if isinstance(event, OrderPaid) and event.restocked:
        return sum(item.quantity for item in event.items)
    if isinstance(event, RefundRequested):
        return -sum(item.quantity for item in event.items)
    return 0
