"""Refund decisions: who may refund, how much, which tickets, and what the order becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.orders import (
    ItemQuantity,
    OrderLine,
    OrderNotFound,
    OrderPaid,
    OrderPlaced,
    OrderStatus,
    PaymentDetails,
    PaymentStarted,
    PaymentSucceeded,
    Recorded,
    RefundRequested,
    stock_changes,
)
from eventhunting.domain.refunds import (
    NotRefundable,
    RefundExceedsPaid,
    RequestRefund,
    TicketCheckedInAlready,
    decide_request_refund,
)
from eventhunting.domain.tickets import IssuedTicket, OrderTickets, TicketsIssued, fold

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ORDER = "01JORDER00000000000000000A"
EVENT = "01JEVENT00000000000000000A"
TXN = f"{ORDER}01"
VIP, STANDARD = "01JTYPEVIP000000000000000A", "01JTYPESTD000000000000000A"
ORGANIZER = Actor("organizer")
ADMIN = Actor("admin", is_admin=True)

PLACED = OrderPlaced(
    order_id=ORDER,
    event_id=EVENT,
    buyer_id="buyer",
    items=(
        OrderLine(ticket_type_id=VIP, name="VIP", quantity=1, unit_price=100, amount=100),
        OrderLine(ticket_type_id=STANDARD, name="Std", quantity=2, unit_price=50, amount=100),
    ),
    total_amount=200,
    placed_at=NOW,
    expires_at=NOW + timedelta(minutes=15),
)
DETAILS = PaymentDetails(response_code="00", transaction_status="00", transaction_no="555")
PAYMENT = (
    PaymentStarted(
        order_id=ORDER,
        txn_ref=TXN,
        gateway="VNPAY",
        amount=200,
        started_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    ),
    PaymentSucceeded(order_id=ORDER, txn_ref=TXN, amount=200, details=DETAILS, recorded_at=NOW),
    OrderPaid(
        order_id=ORDER,
        event_id=EVENT,
        buyer_id="buyer",
        items=(),
        amount=200,
        method="VNPAY",
        payment_reference=TXN,
        paid_at=NOW,
    ),
)
ISSUED = TicketsIssued(
    order_id=ORDER,
    event_id=EVENT,
    buyer_id="buyer",
    tickets=tuple(
        IssuedTicket(ticket_id=t, ticket_type_id=tt, holder_name="An", code="X", qr="Q")
        for t, tt in (("T1", VIP), ("T2", STANDARD), ("T3", STANDARD))
    ),
    issued_at=NOW,
)


def history(*events: object) -> OrderTickets:
    state = fold(
        Recorded(data=event, version=version, occurred_at=NOW)  # type: ignore[arg-type]
        for version, event in enumerate((PLACED, *events), start=1)
    )
    assert state is not None
    return state


def paid(*more: object) -> OrderTickets:
    return history(*PAYMENT, ISSUED, *more)


def refund(
    state: OrderTickets,
    ticket_ids: tuple[str, ...] | None = None,
    *,
    by: Actor = ORGANIZER,
    force: bool = False,
    checked_in: frozenset[str] = frozenset(),
    event_started: bool = False,
    refund_id: str = "R1",
) -> RefundRequested:
    command = RequestRefund(
        order_id=ORDER,
        by=by,
        reason="asked",
        ticket_ids=ticket_ids,
        force=force,
    )
    [requested] = decide_request_refund(
        state,
        command,
        organizer_id=ORGANIZER.account_id,
        checked_in=checked_in,
        event_started=event_started,
        refund_id=refund_id,
        now=NOW,
    )
    return requested


def test_a_full_refund_gives_back_everything_paid_voids_every_ticket_and_restocks():
    requested = refund(paid())
    assert requested.amount == 200
    assert requested.full
    assert requested.txn_ref == TXN
    assert requested.ticket_ids == ("T1", "T2", "T3")
    assert set(requested.items) == {
        ItemQuantity(ticket_type_id=VIP, quantity=1),
        ItemQuantity(ticket_type_id=STANDARD, quantity=2),
    }
    assert requested.order_status is OrderStatus.REFUNDED
    after = paid(requested)
    assert after.order.status is OrderStatus.REFUNDED
    assert after.voided


def test_a_partial_refund_charges_the_chosen_tickets_prices_and_leaves_the_order_partly_refunded():
    requested = refund(paid(), ("T2",))
    assert requested.amount == 50
    assert not requested.full
    assert requested.items == (ItemQuantity(ticket_type_id=STANDARD, quantity=1),)
    assert stock_changes(requested) == [(STANDARD, 0, -1)]
    after = paid(requested)
    assert after.order.status is OrderStatus.PARTIALLY_REFUNDED
    assert after.order.refunded_amount == 50
    assert after.order.refunded_ticket_ids == {"T2"}


def test_refunding_the_rest_after_a_partial_refund_refunds_the_order():
    first = refund(paid(), ("T2",))
    rest = refund(paid(first), refund_id="R2")
    assert rest.amount == 150
    assert rest.ticket_ids == ("T1", "T3")
    assert not rest.full
    assert paid(first, rest).order.status is OrderStatus.REFUNDED


def test_a_ticket_refunded_once_is_never_refunded_again():
    first = refund(paid(), ("T2",))
    with pytest.raises(RefundExceedsPaid):
        refund(paid(first), ("T2", "T3"), refund_id="R2")


def test_a_refunded_order_cannot_be_refunded_again():
    first = refund(paid())
    with pytest.raises(NotRefundable):
        refund(paid(first), refund_id="R2")


def test_only_paid_orders_are_refundable():
    with pytest.raises(NotRefundable):
        refund(history())


def test_tickets_of_another_order_are_refused():
    with pytest.raises(InvalidInput):
        refund(paid(), ("T9",))


def test_buyers_and_strangers_are_told_there_is_no_such_order():
    with pytest.raises(OrderNotFound):
        refund(paid(), by=Actor("buyer"))


def test_a_checked_in_ticket_is_refunded_only_when_an_admin_forces_it():
    with pytest.raises(TicketCheckedInAlready):
        refund(paid(), ("T1",), checked_in=frozenset({"T1"}))
    with pytest.raises(TicketCheckedInAlready):
        refund(paid(), ("T1",), checked_in=frozenset({"T1"}), force=True)
    with pytest.raises(TicketCheckedInAlready):
        refund(paid(), ("T1",), by=ADMIN, checked_in=frozenset({"T1"}))
    forced = refund(paid(), ("T1",), by=ADMIN, force=True, checked_in=frozenset({"T1"}))
    assert forced.amount == 100


def test_tickets_do_not_go_back_on_sale_once_the_event_has_started():
    requested = refund(paid(), event_started=True)
    assert requested.items == ()
    assert stock_changes(requested) == []


def test_an_order_paid_before_its_tickets_were_issued_is_refunded_in_full_with_its_stock():
    requested = refund(history(*PAYMENT))
    assert requested.amount == 200
    assert requested.ticket_ids == ()
    assert sum(item.quantity for item in requested.items) == 3
