"""Ticket decisions: issuing once per paid order, voiding by refunds, resends, check-in rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventhunting.domain.orders import (
    OrderLine,
    OrderPaid,
    OrderPlaced,
    Recorded,
    RefundRequested,
)
from eventhunting.domain.payments import REFUND_DUPLICATE_PAYMENT
from eventhunting.domain.tickets import (
    AlreadyCheckedIn,
    CheckedInTicket,
    CheckIn,
    InvalidTicket,
    IssueTickets,
    OrderTickets,
    RecordMailSent,
    ResendTickets,
    TicketCheckedIn,
    TicketEmailSent,
    TicketSeal,
    TicketsIssued,
    TicketsNotIssued,
    TicketsVoid,
    decide_check_in,
    decide_issue,
    decide_mail_sent,
    decide_resend,
    fold,
    normalise_code,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ORDER = "01JORDER00000000000000000A"
EVENT = "01JEVENT00000000000000000A"
VIP, STANDARD = "01JTYPEVIP000000000000000A", "01JTYPESTD000000000000000A"


def seal(ticket: TicketSeal) -> str:
    return f"QR:{ticket.ticket_id}:{ticket.event_id}:{ticket.ticket_type_id}"


def history(*events: object) -> OrderTickets:
    placed = OrderPlaced(
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
    state = fold(
        Recorded(data=event, version=version, occurred_at=NOW)  # type: ignore[arg-type]
        for version, event in enumerate((placed, *events), start=1)
    )
    assert state is not None
    return state


PAID = OrderPaid(
    order_id=ORDER,
    event_id=EVENT,
    buyer_id="buyer",
    items=(),
    amount=200,
    method="VNPAY",
    payment_reference=f"{ORDER}01",
    paid_at=NOW,
)


def issue(state: OrderTickets) -> list[object]:
    return list(
        decide_issue(
            state,
            IssueTickets(order_id=ORDER),
            holder_name="An",
            ticket_ids=["T1", "T2", "T3"],
            codes=["AAAA-2222", "BBBB-3333", "CCCC-4444"],
            seal=seal,
            now=NOW,
        )
    )


def issued_state(*more: object) -> OrderTickets:
    (issued,) = issue(history(PAID))
    return history(PAID, issued, *more)


def refund(*, full: bool = True, reason: str = "event_cancelled") -> RefundRequested:
    return RefundRequested(
        order_id=ORDER,
        refund_id="R1",
        txn_ref=f"{ORDER}01",
        amount=200,
        reason=reason,
        full=full,
        requested_at=NOW,
        requested_by="admin",
    )


def check_in(ticket_id: str = "T2", **changes: object) -> CheckIn:
    fields: dict[str, object] = {
        "ticket_id": ticket_id,
        "event_id": EVENT,
        "ticket_type_id": STANDARD,
        "by": "staff",
        **changes,
    }
    return CheckIn(**fields)  # type: ignore[arg-type]


def test_a_paid_order_gets_one_ticket_per_seat_in_item_order() -> None:
    (issued,) = issue(history(PAID))

    assert isinstance(issued, TicketsIssued)
    assert [(t.ticket_id, t.ticket_type_id) for t in issued.tickets] == [
        ("T1", VIP),
        ("T2", STANDARD),
        ("T3", STANDARD),
    ]
    assert issued.tickets[1].qr == f"QR:T2:{EVENT}:{STANDARD}"
    assert {t.holder_name for t in issued.tickets} == {"An"}


def test_tickets_are_issued_once_and_never_for_unpaid_or_refunded_orders() -> None:
    assert issue(issued_state()) == []
    assert issue(history()) == []
    assert issue(history(PAID, refund())) == []


def test_giving_back_a_duplicate_payment_keeps_the_tickets_valid() -> None:
    state = issued_state(refund(reason=REFUND_DUPLICATE_PAYMENT))

    assert not state.voided
    assert decide_check_in(
        None, state, check_in(), may_check_in_event=True, event_cancelled=False, now=NOW
    )


def test_the_first_scan_is_recorded_and_a_later_one_names_the_first() -> None:
    state = issued_state()
    (checked,) = decide_check_in(
        None, state, check_in(gate="A"), may_check_in_event=True, event_cancelled=False, now=NOW
    )
    assert isinstance(checked, TicketCheckedIn)
    earlier = CheckedInTicket(
        ticket_id="T2", checked_in_at=NOW, checked_in_by="staff", gate="A", version=1
    )

    with pytest.raises(AlreadyCheckedIn) as again:
        decide_check_in(
            earlier, state, check_in(), may_check_in_event=True, event_cancelled=False, now=NOW
        )

    assert again.value.extra == {"checked_in_at": NOW, "gate": "A"}


@pytest.mark.parametrize(
    ("state", "command", "may", "cancelled", "reason"),
    [
        (issued_state(), check_in(), False, False, "other_event"),
        (
            issued_state(),
            check_in(door_event_id="01JOTHER0000000000000000AA"),
            True,
            False,
            "other_event",
        ),
        (issued_state(), check_in("T9"), True, False, "not_found"),
        (issued_state(), check_in(ticket_type_id=VIP), True, False, "not_found"),
        (history(PAID), check_in(), True, False, "not_found"),
        (issued_state(refund()), check_in(), True, False, "refunded"),
        (issued_state(), check_in(), True, True, "cancelled"),
    ],
)
def test_a_ticket_that_does_not_admit_says_why(
    state: OrderTickets, command: CheckIn, may: bool, cancelled: bool, reason: str
) -> None:
    with pytest.raises(InvalidTicket) as refused:
        decide_check_in(
            None, state, command, may_check_in_event=may, event_cancelled=cancelled, now=NOW
        )

    assert refused.value.reason == reason


def test_resends_are_numbered_and_only_for_valid_issued_tickets() -> None:
    ask = ResendTickets(order_id=ORDER, by="buyer")
    (first,) = decide_resend(issued_state(), ask, now=NOW)
    (second,) = decide_resend(issued_state(first), ask, now=NOW)

    assert (first.purpose, second.purpose) == ("resend:1", "resend:2")  # type: ignore[attr-defined]
    with pytest.raises(TicketsNotIssued):
        decide_resend(history(PAID), ask, now=NOW)
    with pytest.raises(TicketsVoid):
        decide_resend(issued_state(refund()), ask, now=NOW)


def test_a_sent_mail_is_recorded_once() -> None:
    sent = TicketEmailSent(order_id=ORDER, purpose="tickets", message_id="<m>", sent_at=NOW)
    mail_sent = RecordMailSent(order_id=ORDER, purpose="tickets", message_id="<m>", sent_at=NOW)

    assert decide_mail_sent(issued_state(), mail_sent)
    assert decide_mail_sent(issued_state(sent), mail_sent) == []


@pytest.mark.parametrize("typed", ["abcd-2345", "ABCD2345", " abcd 2345 ", "AbCd-2345"])
def test_a_typed_code_is_read_in_any_case_with_or_without_its_dash(typed: str) -> None:
    assert normalise_code(typed) == "ABCD-2345"
