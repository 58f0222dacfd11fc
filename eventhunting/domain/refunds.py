"""Refunds an organizer or admin asks for: which tickets, how much, and whether it may be."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime

import msgspec

from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import Conflict, InvalidInput
from eventhunting.domain.events import Command, DomainEvent
from eventhunting.domain.orders import (
    CreditNoteIssued,
    CreditNoteLine,
    InvoiceIssued,
    InvoiceReference,
    ItemQuantity,
    Order,
    OrderNotFound,
    OrderStatus,
    Refund,
    RefundCompleted,
    RefundRequested,
    RefundResolution,
    RefundResolved,
)
from eventhunting.domain.payments import (
    UNNUMBERED,
    RecordRefundResult,
    RefundNotFound,
    decide_refund_result,
    invoice_number,
)
from eventhunting.domain.tickets import OrderTickets
from eventhunting.domain.vat import vat_included_in

REFUNDABLE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)
REFUND_EVENT_CANCELLED = "event_cancelled"


class NotRefundable(Conflict):
    code = "not_refundable"


class RefundExceedsPaid(Conflict):
    code = "refund_exceeds_paid"


class TicketCheckedInAlready(Conflict):
    code = "ticket_checked_in"


class RefundNotFailed(Conflict):
    code = "refund_not_failed"


class RequestRefund(Command, frozen=True, kw_only=True):
    """Give back the money of some tickets of a paid order (all of them when none are named)."""

    order_id: str
    by: Actor
    reason: str
    ticket_ids: tuple[str, ...] | None = None
    force: bool = False


def decide_request_refund(
    state: OrderTickets | None,
    command: RequestRefund,
    *,
    organizer_id: str | None,
    checked_in: Collection[str],
    event_started: bool,
    refund_id: str,
    now: datetime,
    restock_refunds: bool = True,
) -> list[RefundRequested]:
    """One RefundRequested for the chosen tickets, or the rule that says no.

    Only the event's organizer or an admin; only a paid (or partly refunded) order paid
    through the gateway; each ticket once; never more than paid minus what was asked back
    before; a checked-in ticket (`checked_in`) only when an admin forces it. The tickets go
    back on sale unless the event has started or its `restock_refunds` setting is off.
    """
    if state is None:
        raise OrderNotFound(f"There is no order {command.order_id!r}.")
    order = state.order
    if not command.by.is_admin and command.by.account_id != organizer_id:
        # Buyers and strangers learn nothing about the order from this route.
        raise OrderNotFound(f"There is no order {order.id!r}.")
    if order.status not in REFUNDABLE or order.payment_reference is None:
        raise NotRefundable(
            f"Order {order.id!r} is {order.status.value}; only paid orders are refunded.",
            order_status=order.status.value,
        )
    refunded = order.refunded_ticket_ids
    if command.ticket_ids is None:
        chosen = [t for t in state.tickets if t.ticket_id not in refunded]
    else:
        by_id = {ticket.ticket_id: ticket for ticket in state.tickets}
        unknown = sorted(set(command.ticket_ids) - by_id.keys())
        if unknown or not command.ticket_ids:
            raise InvalidInput(
                "Name at least one ticket, each of this order.",
                errors=[
                    {"field": "ticket_ids", "message": f"not a ticket of this order: {t}"}
                    for t in unknown
                ],
            )
        again = sorted(set(command.ticket_ids) & refunded)
        if again:
            raise RefundExceedsPaid("Some tickets were refunded already.", ticket_ids=again)
        chosen = [by_id[t] for t in dict.fromkeys(command.ticket_ids)]
    entered = sorted(t.ticket_id for t in chosen if t.ticket_id in checked_in)
    if entered and not (command.force and command.by.is_admin):
        raise TicketCheckedInAlready(
            "Some tickets were checked in; only an admin may force their refund.",
            ticket_ids=entered,
        )
    prices = {line.ticket_type_id: line.unit_price for line in order.items}
    left = order.total_amount - order.refunded_amount
    if command.ticket_ids is None:
        # Everything left, also when the tickets were not issued yet.
        amount = left
        quantities = Counter(t.ticket_type_id for t in chosen)
        if not state.tickets:
            quantities = Counter({line.ticket_type_id: line.quantity for line in order.items})
    else:
        amount = sum(prices[t.ticket_type_id] for t in chosen)
        quantities = Counter(t.ticket_type_id for t in chosen)
    if amount <= 0 or amount > left:
        raise RefundExceedsPaid(
            f"Order {order.id!r} has {left} {order.currency} left to refund, not {amount}.",
            refundable=left,
        )
    payment = order.payment(order.payment_reference)
    paid = order.total_amount if payment is None else payment.amount
    return [
        RefundRequested(
            order_id=order.id,
            refund_id=refund_id,
            txn_ref=order.payment_reference,
            amount=amount,
            currency=order.currency,
            reason=command.reason,
            full=amount == paid,
            requested_at=now,
            requested_by=command.by.account_id,
            ticket_ids=tuple(t.ticket_id for t in chosen),
            items=()
            if event_started or not restock_refunds
            else tuple(
                ItemQuantity(ticket_type_id=ticket_type_id, quantity=quantity)
                for ticket_type_id, quantity in quantities.items()
            ),
            event_id=order.event_id,
            buyer_id=order.buyer_id,
            order_status=OrderStatus.REFUNDED if amount == left else OrderStatus.PARTIALLY_REFUNDED,
        )
    ]


# --- credit notes --------------------------------------------------------------------------


class CreditNoteSeries(msgspec.Struct, frozen=True, kw_only=True):
    """The invoice series a credit note takes its number in (the append takes the number)."""

    series: str
    symbol: str


def takes_credit_note(state: OrderTickets | None, refund_id: str) -> bool:
    """Whether completing the refund issues a credit note: a refund of the order's own
    invoiced payment that has none yet (money we could not keep was never invoiced)."""
    if state is None:
        return False
    order = state.order
    refund = next((r for r in order.refunds if r.id == refund_id), None)
    return (
        refund is not None
        and refund.of_order
        and order.invoice is not None
        and order.credit_note(refund_id) is None
    )


def decide_refund_settled(
    state: OrderTickets | None,
    command: RecordRefundResult,
    *,
    series: CreditNoteSeries,
    now: datetime,
) -> list[DomainEvent]:
    """RefundCompleted (with its credit note) or RefundFailed, once; nothing when settled.

    A completed refund of the order's invoiced payment gets a `CreditNoteIssued` in the same
    append, in `series` and `UNNUMBERED` (the append takes the series' next number); a
    refund that failed gets none (no money went back).
    """
    if state is None:
        raise OrderNotFound(f"There is no order {command.order_id!r}.")
    settled: list[DomainEvent] = list(decide_refund_result(state.order, command, now=now))
    completed = next((e for e in settled if isinstance(e, RefundCompleted)), None)
    if completed is None or not takes_credit_note(state, completed.refund_id):
        return settled
    invoice = state.order.invoice
    refund = next(r for r in state.order.refunds if r.id == completed.refund_id)
    assert invoice is not None
    return [*settled, credit_note(state, invoice, refund, series, completed.completed_at)]


def credit_note(
    state: OrderTickets,
    invoice: InvoiceIssued,
    refund: Refund,
    series: CreditNoteSeries,
    issued_at: datetime,
) -> CreditNoteIssued:
    """The adjusting invoice of one completed refund: the original's lines, negative."""
    lines = credit_note_lines(state, invoice, refund)
    order = state.order
    return CreditNoteIssued(
        order_id=order.id,
        event_id=order.event_id,
        buyer_id=order.buyer_id,
        organizer_id=invoice.organizer_id,
        refund_id=refund.id,
        series=series.series,
        sequence=UNNUMBERED,
        number=invoice_number(series.series, UNNUMBERED),
        symbol=series.symbol,
        issued_at=issued_at,
        adjusts=InvoiceReference(
            symbol=invoice.symbol, number=invoice.number, issued_at=invoice.issued_at
        ),
        lines=lines,
        total_amount=sum(line.amount for line in lines),
        vat_amount=sum(line.vat_amount for line in lines),
        amount_before_vat=sum(line.amount_before_vat for line in lines),
        currency=invoice.currency,
        reason=refund.reason,
    )


def credit_note_lines(
    state: OrderTickets, invoice: InvoiceIssued, refund: Refund
) -> tuple[CreditNoteLine, ...]:
    """Per original line, what the refund takes off it, negative.

    The refund's tickets are counted per ticket type (every ticket left when it names none:
    the tickets were never issued). Tickets that leave some of the line are credited at the
    unit price with the VAT split by `domain/vat.py`'s rule, as the original line was; the
    credit that takes the last tickets of a line takes exactly what is left of the line's
    amount, VAT and amount before VAT, so the original and all its credit notes add up to
    0 per line and in total, to the dong.
    """
    order = state.order
    types = {ticket.ticket_id: ticket.ticket_type_id for ticket in state.tickets}
    refunded = Counter(types[t] for t in refund.ticket_ids if t in types)
    lines: list[CreditNoteLine] = []
    for position, (item, original) in enumerate(
        zip(order.items, invoice.lines, strict=True), start=1
    ):
        earlier = [c for note in order.credit_notes for c in note.lines if c.line == position]
        quantity_left = original.quantity + sum(c.quantity for c in earlier)
        taken = refunded[item.ticket_type_id] if refund.ticket_ids else quantity_left
        if taken <= 0:
            continue
        if taken >= quantity_left:
            amount = original.amount + sum(c.amount for c in earlier)
            vat = original.vat_amount + sum(c.vat_amount for c in earlier)
            before_vat = original.amount_before_vat + sum(c.amount_before_vat for c in earlier)
            taken = quantity_left
        else:
            amount = taken * original.unit_price
            vat = vat_included_in(amount, original.vat_rate)
            before_vat = amount - vat
        lines.append(
            CreditNoteLine(
                line=position,
                description=original.description,
                quantity=-taken,
                unit_price=original.unit_price,
                amount=-amount,
                vat_rate=original.vat_rate,
                vat_amount=-vat,
                amount_before_vat=-before_vat,
            )
        )
    return tuple(lines)


# --- resolutions -----------------------------------------------------------------------------


class ResolveRefund(Command, frozen=True, kw_only=True):
    """An admin's way out for a failed refund: call the gateway again now, or mark it settled
    outside the gateway (the note says how)."""

    order_id: str
    refund_id: str
    by: Actor
    resolution: RefundResolution
    note: str


def decide_resolve_refund(
    order: Order | None, command: ResolveRefund, *, now: datetime
) -> list[RefundResolved]:
    """One RefundResolved for a failed refund; nothing when it is in the asked state already
    (a repeat); the rule that says no otherwise. Admins only."""
    refund = (
        None
        if order is None
        else next((r for r in order.refunds if r.id == command.refund_id), None)
    )
    if order is None or refund is None or not command.by.is_admin:
        raise RefundNotFound(f"There is no refund {command.refund_id!r}.")
    if command.resolution is RefundResolution.RETRY and refund.status == "requested":
        return []
    if (
        command.resolution is RefundResolution.SETTLED
        and refund.status == "completed"
        and refund.settled_by is not None
    ):
        return []
    if refund.status != "failed":
        raise RefundNotFailed(
            f"Refund {refund.id!r} is {refund.status}; only a failed refund is resolved.",
            refund_status=refund.status,
        )
    return [
        RefundResolved(
            order_id=order.id,
            refund_id=refund.id,
            resolution=command.resolution,
            note=command.note,
            resolved_by=command.by.account_id,
            resolved_at=now,
        )
    ]


def decide_refund_resolution(
    state: OrderTickets | None,
    command: ResolveRefund,
    *,
    now: datetime,
    series: CreditNoteSeries,
) -> list[DomainEvent]:
    """An admin's resolution of a failed refund (`decide_resolve_refund`). A `settled` one
    completes the refund in the same append, as a gateway's success would: RefundCompleted
    and, for the order's invoiced payment, its credit note in `series` (the append numbers
    it; the buyer gets the refund mail as for any completed refund)."""
    resolved = decide_resolve_refund(None if state is None else state.order, command, now=now)
    if not resolved or command.resolution is RefundResolution.RETRY:
        return list(resolved)
    settled = RecordRefundResult(
        order_id=command.order_id,
        refund_id=command.refund_id,
        completed=True,
        response_code="00",
        message="settled outside VNPAY",
    )
    return [*resolved, *decide_refund_settled(state, settled, series=series, now=now)]
