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
    RefundCompleted,
    RefundFailed,
    RefundRequested,
    RefundResolution,
    RefundResolved,
    stock_changes,
)
from eventhunting.domain.payments import RecordRefundResult, RefundNotFound, decide_refund_result
from eventhunting.domain.refunds import (
    NotRefundable,
    RefundExceedsPaid,
    RefundNotFailed,
    RequestRefund,
    ResolveRefund,
    TicketCheckedInAlready,
    decide_request_refund,
    decide_resolve_refund,
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
    restock_refunds: bool = True,
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
        restock_refunds=restock_refunds,
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


def test_tickets_stay_off_sale_when_the_event_does_not_restock_refunds():
    requested = refund(paid(), restock_refunds=False)
    assert requested.amount == 200
    assert requested.items == ()
    assert stock_changes(requested) == []


def result(attempt: int | None, *, completed: bool) -> RecordRefundResult:
    return RecordRefundResult(
        order_id=ORDER,
        refund_id="R1",
        completed=completed,
        response_code="00" if completed else "99",
        message="",
        attempt=attempt,
        retry_at=None if completed else NOW + timedelta(minutes=1),
    )


def test_a_failure_counts_an_attempt_and_a_stale_attempts_failure_changes_nothing():
    requested = refund(paid())
    [failed] = decide_refund_result(paid(requested).order, result(1, completed=False), now=NOW)
    assert isinstance(failed, RefundFailed)
    assert (failed.attempt, failed.retry_at) == (1, NOW + timedelta(minutes=1))
    after = paid(requested, failed).order
    assert (after.refunds[0].status, after.refunds[0].attempt) == ("failed", 2)
    assert decide_refund_result(after, result(1, completed=False), now=NOW) == []
    [again] = decide_refund_result(after, result(2, completed=False), now=NOW)
    assert isinstance(again, RefundFailed)


def test_the_money_going_back_is_recorded_whatever_attempt_reports_it_and_only_once():
    requested = refund(paid())
    [failed] = decide_refund_result(paid(requested).order, result(1, completed=False), now=NOW)
    [completed] = decide_refund_result(
        paid(requested, failed).order, result(1, completed=True), now=NOW
    )
    assert isinstance(completed, RefundCompleted)
    done = paid(requested, failed, completed).order
    assert done.refunds[0].status == "completed"
    assert decide_refund_result(done, result(2, completed=True), now=NOW) == []
    assert decide_refund_result(done, result(2, completed=False), now=NOW) == []


def resolve(state: OrderTickets, resolution: RefundResolution, *, by: Actor = ADMIN) -> list:
    command = ResolveRefund(
        order_id=ORDER, refund_id="R1", by=by, resolution=resolution, note="by bank transfer"
    )
    return list(decide_resolve_refund(state.order, command, now=NOW))


def test_an_admin_retries_or_settles_only_a_failed_refund_and_a_repeat_changes_nothing():
    requested = refund(paid())
    [failed] = decide_refund_result(paid(requested).order, result(1, completed=False), now=NOW)
    with pytest.raises(RefundNotFailed):
        resolve(paid(requested), RefundResolution.SETTLED)
    with pytest.raises(RefundNotFound):
        resolve(paid(requested, failed), RefundResolution.RETRY, by=ORGANIZER)
    [retried] = resolve(paid(requested, failed), RefundResolution.RETRY)
    assert isinstance(retried, RefundResolved)
    again = paid(requested, failed, retried)
    assert (again.order.refunds[0].status, again.order.refunds[0].retry_at) == ("requested", NOW)
    assert resolve(again, RefundResolution.RETRY) == []
    [settled] = resolve(paid(requested, failed), RefundResolution.SETTLED)
    done = paid(requested, failed, settled)
    assert done.order.refunds[0].status == "completed"
    assert (done.order.refunds[0].settled_by, done.order.refunds[0].note) == (
        "admin",
        "by bank transfer",
    )
    assert resolve(done, RefundResolution.SETTLED) == []
    with pytest.raises(RefundNotFailed):
        resolve(done, RefundResolution.RETRY)
