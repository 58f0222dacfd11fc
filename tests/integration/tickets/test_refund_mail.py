"""The refund mail against a real SMTP sink: one per completed refund, in the buyer's language,
with the amount, the tickets, the credit note and the event; never twice."""

# The order fixtures are imported to be used here by name: their parameters "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

from email.message import EmailMessage

import httpx
import pytest

from eventhunting.consumers.mailer import refund_mail_purpose
from eventhunting.domain.catalog import CatalogEvent
from eventhunting.domain.orders import Order, RequestedItem
from eventhunting.domain.payments import RecordRefundResult
from eventhunting.mail.ledger import MailLedger
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.services.refunds import RefundService
from eventhunting.services.tickets import TicketService
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.orders.conftest import (  # noqa: F401 - fixtures
    ORGANIZER,
    ManualClock,
    NewEvent,
    TicketTypeSpec,
    archive_client,
    payments,
)
from tests.integration.orders.test_payments_races import ipn
from tests.integration.tickets.conftest import Buyer
from tests.integration.tickets.test_mailer import (  # noqa: F401 - a fixture
    LEASE,
    build_mailer,
    handle_everything,
    ledger,
    log_of,
    raw_messages,
)
from tests.support.servers import SmtpSink

PRICE = 99_999


@pytest.fixture
def refunds(orders: OrderService) -> RefundService:
    return RefundService(orders)


async def paid_order(
    orders: OrderService,
    payments: PaymentService,
    event: CatalogEvent,
    buyer_id: str,
    *,
    quantity: int,
    locale: str | None,
    attempts: int = 1,
) -> Order:
    """An order paid through the IPN by a buyer who chose `locale` on VNPAY's page; every one
    of `attempts` attempts is paid (a second one is money we cannot keep)."""
    placement = await orders.place(
        buyer_id=buyer_id,
        event_id=event.id,
        items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=quantity)],
    )
    order = placement.order
    links = [
        await payments.start(order.id, buyer_id=buyer_id, client_ip="203.0.113.5", locale=locale)
        for _ in range(attempts)
    ]
    for link in links:
        assert (await payments.handle_ipn(ipn(link.txn_ref, order.total_amount))).code == "00"
    return await orders.get(order.id)


def completed(order_id: str, refund_id: str) -> RecordRefundResult:
    return RecordRefundResult(
        order_id=order_id,
        refund_id=refund_id,
        completed=True,
        response_code="00",
        message="ok",
        transaction_no="88001122",
    )


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def refund_mails(messages: list[EmailMessage]) -> list[EmailMessage]:
    return [m for m in messages if str(m["Message-ID"]).startswith("<refund_completed-")]


@pytest.mark.parametrize(
    ("locale", "subject", "one_seat", "rest", "credit_note"),
    [
        (None, "Đã hoàn tiền: ", "99.999 ₫", "199.998 ₫", "Hóa đơn điều chỉnh giảm"),
        ("en", "Refund completed: ", "VND 99,999", "VND 199,998", "Credit note"),
    ],
)
async def test_each_completed_refund_mails_the_buyer_once_in_their_language(
    locale: str | None,
    subject: str,
    one_seat: str,
    rest: str,
    credit_note: str,
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    ledger: MailLedger,
    sink: SmtpSink,
    sink_api: httpx.AsyncClient,
    buyer: Buyer,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    buyer_id = await buyer(full_name="Trần Bình", email="binh@example.test")
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_order(orders, payments, event, buyer_id, quantity=3, locale=locale)
    mailer = build_mailer(tickets, ledger, signing_ring, sink, attempts=3)
    await handle_everything(mailer, tickets, order.id)  # issued and mailed
    issued = (await tickets.order_tickets(order.id)).tickets
    first = await refunds.request(
        order.id, by=ORGANIZER, reason="Đổi chỗ ngồi", ticket_ids=[issued[0].ticket_id]
    )
    second = await refunds.request(order.id, by=ORGANIZER, reason="event_cancelled")
    await handle_everything(mailer, tickets, order.id)
    # Asked for, not given back yet: no mail.
    assert refund_mails(await raw_messages(sink_api, "binh@example.test")) == []

    for requested in (first, second):
        clock.advance(60)
        await payments.record_refund(completed(order.id, requested.refund.id))
    await handle_everything(mailer, tickets, order.id)
    # Every entry of the partition once more, as after a crash: nothing is sent again.
    await mailer(await log_of(tickets, order.id), LEASE)

    mails = refund_mails(await raw_messages(sink_api, "binh@example.test"))
    assert len(mails) == 2
    refunded = await orders.get(order.id)
    by_refund = {str(m["Message-ID"]): m for m in mails}
    expected_language = "en" if locale == "en" else "vi"
    for requested, amount, ticket_ids in (
        (first, one_seat, [issued[0].ticket_id]),
        (second, rest, [t.ticket_id for t in issued[1:]]),
    ):
        refund_id = requested.refund.id
        message = by_refund[f"<refund_completed-{refund_id}.{order.id}@eventhunting.test>"]
        assert message["Subject"] == subject + event.title
        assert message["Content-Language"] == expected_language
        note = refunded.credit_note(refund_id)
        assert note is not None
        assert note.total_amount == -requested.refund.amount
        text, html = text_and_html(message)
        for fact in (amount, note.number, credit_note, order.id, refund_id, event.title):
            assert fact in text
            assert fact in html
        for ticket_id in ticket_ids:
            assert ticket_id in text
            assert ticket_id in html
        assert await ledger.already_sent(order.id, refund_mail_purpose(refund_id))
    # An organizer's reason as written; the system's in the buyer's language.
    assert any("Đổi chỗ ngồi" in text_and_html(m)[0] for m in mails)
    cancelled = "The event was cancelled." if locale == "en" else "Sự kiện đã bị hủy."
    assert any(cancelled in text_and_html(m)[0] for m in mails)
    state = await tickets.order_tickets(order.id)
    assert {refund_mail_purpose(first.refund.id), refund_mail_purpose(second.refund.id)} <= (
        state.mails_sent
    )


async def test_a_refund_mail_the_ledger_has_is_not_sent_again(
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    ledger: MailLedger,
    sink: SmtpSink,
    sink_api: httpx.AsyncClient,
    buyer: Buyer,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    buyer_id = await buyer(full_name="Phạm Chi", email="chi@example.test")
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_order(orders, payments, event, buyer_id, quantity=1, locale="en")
    requested = await refunds.request(order.id, by=ORGANIZER, reason="event_cancelled")
    await payments.record_refund(completed(order.id, requested.refund.id))
    purpose = refund_mail_purpose(requested.refund.id)
    # A mailer sent it and recorded it in the ledger, then died before the order's stream
    # said so: the redelivery finds the ledger's record and only completes the stream.
    assert await ledger.record_sent(order.id, purpose, "<earlier@eventhunting.test>", clock.now)
    mailer = build_mailer(tickets, ledger, signing_ring, sink, attempts=3)
    await handle_everything(mailer, tickets, order.id)
    assert refund_mails(await raw_messages(sink_api, "chi@example.test")) == []
    assert purpose in (await tickets.order_tickets(order.id)).mails_sent


async def test_money_we_could_not_keep_is_mailed_once_when_it_is_back(
    orders: OrderService,
    payments: PaymentService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    ledger: MailLedger,
    sink: SmtpSink,
    sink_api: httpx.AsyncClient,
    buyer: Buyer,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    buyer_id = await buyer(full_name="Đỗ Dung", email="dung@example.test")
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_order(orders, payments, event, buyer_id, quantity=2, locale="en", attempts=2)
    duplicate = order.refunds[-1]
    mailer = build_mailer(tickets, ledger, signing_ring, sink, attempts=3)
    await payments.record_refund(completed(order.id, duplicate.id))
    await handle_everything(mailer, tickets, order.id)
    await mailer(await log_of(tickets, order.id), LEASE)

    messages = await raw_messages(sink_api, "dung@example.test")
    (mail,) = refund_mails(messages)
    text, html = text_and_html(mail)
    for fact in ("VND 199,998", "could not keep", "had been paid already", order.id):
        assert fact in text
        assert fact in html
    assert "Credit note" not in text
    # The order stays paid: its tickets were mailed, and they still admit.
    assert len(messages) == 2
    assert not (await tickets.order_tickets(order.id)).voided
