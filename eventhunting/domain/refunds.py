"""Refunds an organizer or admin asks for: which tickets, how much, and whether it may be."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime

from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import Conflict, InvalidInput
from eventhunting.domain.events import Command
from eventhunting.domain.orders import (
    ItemQuantity,
    OrderNotFound,
    OrderStatus,
    RefundRequested,
)
from eventhunting.domain.tickets import OrderTickets

REFUNDABLE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)
REFUND_EVENT_CANCELLED = "event_cancelled"


class NotRefundable(Conflict):
    code = "not_refundable"


class RefundExceedsPaid(Conflict):
    code = "refund_exceeds_paid"


class TicketCheckedInAlready(Conflict):
    code = "ticket_checked_in"


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
) -> list[RefundRequested]:
    """One RefundRequested for the chosen tickets, or the rule that says no.

    Only the event's organizer or an admin; only a paid (or partly refunded) order paid
    through the gateway; each ticket once; never more than paid minus what was asked back
    before; a checked-in ticket (`checked_in`) only when an admin forces it. The tickets go
    back on sale unless the event has started.
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
            if event_started
            else tuple(
                ItemQuantity(ticket_type_id=ticket_type_id, quantity=quantity)
                for ticket_type_id, quantity in quantities.items()
            ),
            event_id=order.event_id,
            buyer_id=order.buyer_id,
            order_status=OrderStatus.REFUNDED if amount == left else OrderStatus.PARTIALLY_REFUNDED,
        )
    ]
