"""Credit notes of completed refunds: whatever the prices, the refunds and the order they
complete in, the invoice and its credit notes cancel out to the dong, per line and in total."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventhunting.domain.actors import Actor
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import (
    CreditNoteIssued,
    OrderLine,
    OrderPlaced,
    PaymentDetails,
    PaymentStarted,
    Recorded,
    RefundCompleted,
    RefundFailed,
    RefundRequested,
)
from eventhunting.domain.payments import (
    UNNUMBERED,
    RecordPaymentResult,
    RecordRefundResult,
    decide_payment_result,
    invoice_series,
    invoice_symbol,
)
from eventhunting.domain.refunds import (
    CreditNoteSeries,
    RequestRefund,
    decide_refund_settled,
    decide_request_refund,
)
from eventhunting.domain.tickets import IssuedTicket, OrderTickets, TicketsIssued, fold

NOW = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)  # 00:30 on 1 January 2027 in Vietnam
ORDER = "01JORDER00000000000000000A"
EVENT = "01JEVENT00000000000000000A"
TXN = f"{ORDER}01"
ORGANIZER = Actor("organizer")
SYMBOL = invoice_symbol(NOW)
SERIES = invoice_series(EVENT, SYMBOL)
DETAILS = PaymentDetails(response_code="00", transaction_status="00", transaction_no="555")


def state_of(events: list[DomainEvent]) -> OrderTickets:
    state = fold(
        Recorded(data=event, version=version, occurred_at=NOW)
        for version, event in enumerate(events, start=1)
    )
    assert state is not None
    return state


def paid_with_tickets(lines: list[tuple[int, int]]) -> list[DomainEvent]:
    """An order of `(unit price, quantity)` lines, paid with its invoice, issued."""
    items = tuple(
        OrderLine(
            ticket_type_id=f"01JTYPE{index:019d}",
            name=f"Type {index}",
            quantity=quantity,
            unit_price=price,
            amount=price * quantity,
        )
        for index, (price, quantity) in enumerate(lines)
    )
    total = sum(item.amount for item in items)
    events: list[DomainEvent] = [
        OrderPlaced(
            order_id=ORDER,
            event_id=EVENT,
            buyer_id="buyer",
            items=items,
            total_amount=total,
            placed_at=NOW,
            expires_at=NOW + timedelta(minutes=15),
        ),
        PaymentStarted(
            order_id=ORDER,
            txn_ref=TXN,
            gateway="VNPAY",
            amount=total,
            started_at=NOW,
            expires_at=NOW + timedelta(minutes=15),
        ),
    ]
    events += decide_payment_result(
        state_of(events).order,
        RecordPaymentResult(
            txn_ref=TXN,
            amount=total,
            succeeded=True,
            details=DETAILS,
        ),
        now=NOW,
        organizer_id="organizer",
        invoice_series=SERIES,
        invoice_symbol=SYMBOL,
        refund_id="unused",
    )
    tickets = [
        IssuedTicket(
            ticket_id=f"T{index}-{seat}",
            ticket_type_id=item.ticket_type_id,
            holder_name="An",
            code="X",
            qr="Q",
        )
        for index, item in enumerate(items)
        for seat in range(item.quantity)
    ]
    events.append(
        TicketsIssued(
            order_id=ORDER, event_id=EVENT, buyer_id="buyer", tickets=tuple(tickets), issued_at=NOW
        )
    )
    return events


def request(events: list[DomainEvent], refund_id: str, ticket_ids: list[str] | None) -> str:
    (requested,) = decide_request_refund(
        state_of(events),
        RequestRefund(
            order_id=ORDER,
            by=ORGANIZER,
            reason="asked",
            ticket_ids=None if ticket_ids is None else tuple(ticket_ids),
        ),
        organizer_id="organizer",
        checked_in=(),
        event_started=False,
        refund_id=refund_id,
        now=NOW,
    )
    events.append(requested)
    return refund_id


def settle(events: list[DomainEvent], refund_id: str, *, completed: bool = True) -> None:
    events += decide_refund_settled(
        state_of(events),
        RecordRefundResult(
            order_id=ORDER,
            refund_id=refund_id,
            completed=completed,
            response_code="00" if completed else "94",
            message="",
        ),
        series=CreditNoteSeries(series=SERIES, symbol=SYMBOL),
        now=NOW,
    )


def assert_cancels_out(events: list[DomainEvent]) -> None:
    order = state_of(events).order
    invoice = order.invoice
    assert invoice is not None
    notes = order.credit_notes
    for position, line in enumerate(invoice.lines, start=1):
        credits = [c for note in notes for c in note.lines if c.line == position]
        for field in ("quantity", "amount", "vat_amount", "amount_before_vat"):
            assert getattr(line, field) + sum(getattr(c, field) for c in credits) == 0
    assert invoice.total_amount + sum(n.total_amount for n in notes) == 0
    assert invoice.vat_amount + sum(n.vat_amount for n in notes) == 0
    refunds = {r.id: r for r in order.refunds}
    for note in notes:
        assert note.total_amount == -refunds[note.refund_id].amount
        assert note.amount_before_vat + note.vat_amount == note.total_amount
        assert note.adjusts.number == invoice.number
    # The append numbers them (services/invoice_numbers.py); decided, they are unnumbered.
    assert {n.sequence for n in notes} <= {UNNUMBERED}


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.tuples(st.integers(1, 3_000_000), st.integers(1, 6)), min_size=1, max_size=4),
    data=st.data(),
)
def test_the_credit_notes_of_a_fully_refunded_order_cancel_its_invoice_to_the_dong(
    lines: list[tuple[int, int]], data: st.DataObject
) -> None:
    events = paid_with_tickets(lines)
    tickets = [t.ticket_id for t in state_of(events).tickets]
    order = data.draw(st.permutations(tickets))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(tickets)), max_size=len(tickets))))
    groups = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(tickets)], strict=True) if b > a]
    # The last group may be asked as "everything left", naming no ticket.
    rest = data.draw(st.booleans())
    refund_ids = [
        request(events, f"R{i}", None if rest and i == len(groups) - 1 else group)
        for i, group in enumerate(groups)
    ]
    for refund_id in data.draw(st.permutations(refund_ids)):
        settle(events, refund_id)
    assert_cancels_out(events)


def test_a_refused_refund_has_no_credit_note_until_it_completes() -> None:
    events = paid_with_tickets([(99_999, 3)])
    refund_id = request(events, "R1", ["T0-0"])
    settle(events, refund_id, completed=False)
    assert isinstance(events[-1], RefundFailed)
    assert state_of(events).order.credit_notes == ()
    settle(events, refund_id)
    assert isinstance(events[-2], RefundCompleted)
    note = events[-1]
    assert isinstance(note, CreditNoteIssued)
    assert [(c.quantity, c.amount, c.vat_amount, c.amount_before_vat) for c in note.lines] == [
        (-1, -99_999, -9_091, -90_908)
    ]
    # Issued after midnight in Vietnam: the symbol carries 2027.
    assert note.symbol == "1K27TEH" == note.adjusts.symbol
    settle(events, refund_id)  # settled already: nothing more
    assert isinstance(events[-1], CreditNoteIssued)
    assert len(state_of(events).order.credit_notes) == 1


@pytest.mark.parametrize("completed", [True, False])
def test_money_we_could_not_keep_has_no_credit_note(completed: bool) -> None:
    events = paid_with_tickets([(50_000, 1)])
    events.append(
        RefundRequested(
            order_id=ORDER,
            refund_id="R-dup",
            txn_ref=f"{ORDER}02",
            amount=50_000,
            reason="duplicate_payment",
            full=True,
            requested_at=NOW,
            requested_by="system",
        )
    )
    settle(events, "R-dup", completed=completed)
    assert not any(isinstance(e, CreditNoteIssued) for e in events)
