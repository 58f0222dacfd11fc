"""Ticket and refund mail: both languages, inline QR codes that scan, escaped user text."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from ulid import ULID

from eventhunting.mail.messages import (
    EventDetails,
    MailedTicket,
    OrderLineSummary,
    OrderSummary,
    Recipient,
    RefundCompletedMail,
    RefundedTicket,
    TicketsMail,
    Venue,
)
from eventhunting.mail.rendering import MailRenderer
from eventhunting.tickets.qr_codes import TicketCode, sign_ticket_code
from eventhunting.tickets.qr_keys import QrKeyRing

SENDER = "EventHunting <tickets@eventhunting.test>"
RING = QrKeyRing(signing_key=Ed25519PrivateKey.generate())
EVENT_ID, VIP_ID, STANDARD_ID = str(ULID()), str(ULID()), str(ULID())


def signed_ticket(ticket_type_id: str, name: str) -> MailedTicket:
    ticket_id = str(ULID())
    code = TicketCode(ticket_id=ticket_id, event_id=EVENT_ID, ticket_type_id=ticket_type_id)
    return MailedTicket(
        ticket_id=ticket_id, ticket_type_name=name, qr_payload=sign_ticket_code(code, RING)
    )


def event(title: str = "Đêm nhạc Trịnh Công Sơn") -> EventDetails:
    return EventDetails(
        event_id=EVENT_ID,
        title=title,
        starts_at=datetime(2026, 3, 14, 12, 30, tzinfo=UTC),  # 19:30 in Vietnam
        ends_at=datetime(2026, 3, 14, 15, 0, tzinfo=UTC),
        venue=Venue(name="Nhà hát Lớn", address="1 Tràng Tiền, Hoàn Kiếm"),
        province="Hà Nội",
    )


def tickets_mail(locale: str | None, *, title: str = "Đêm nhạc Trịnh Công Sơn") -> TicketsMail:
    tickets = (
        signed_ticket(VIP_ID, "VIP"),
        signed_ticket(VIP_ID, "VIP"),
        signed_ticket(STANDARD_ID, "Standard"),
    )
    return TicketsMail(
        buyer=Recipient(name="Nguyễn Văn An", email="an@example.test", locale=locale),
        event=event(title),
        tickets=tickets,
        order=OrderSummary(
            order_id=str(ULID()),
            lines=(
                OrderLineSummary(
                    description="VIP", quantity=2, unit_price=1_500_000, amount=3_000_000
                ),
                OrderLineSummary(
                    description="Standard", quantity=1, unit_price=450_000, amount=450_000
                ),
            ),
            total_amount=3_450_000,
            paid_at=datetime(2026, 3, 1, 2, 5, tzinfo=UTC),
            invoice_number="EH/26E-0000042",
        ),
    )


def render(mail: TicketsMail) -> EmailMessage:
    """Rendered and read back from the bytes an SMTP server would receive."""
    raw = MailRenderer(sender=SENDER).tickets_message(mail).as_bytes(policy=policy.SMTP)
    parsed = message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def inline_images(message: EmailMessage) -> dict[str, bytes]:
    return {
        str(part["Content-ID"]).strip("<>"): part.get_payload(decode=True)
        for part in message.walk()
        if part.get_content_type() == "image/png"
    }


@pytest.mark.parametrize(
    ("locale", "subject", "facts"),
    [
        (
            "vi",
            "Vé của bạn: Đêm nhạc Trịnh Công Sơn",
            [
                "19:30, Thứ Bảy, 14/03/2026 (GMT+7)",
                "Nhà hát Lớn, 1 Tràng Tiền, Hoàn Kiếm, Hà Nội",
                "1.500.000 ₫",
                "Tổng cộng: 3.450.000 ₫",
                "Số hóa đơn: EH/26E-0000042",
                "Vé 3/3: Standard",
            ],
        ),
        (
            "en",
            "Your tickets: Đêm nhạc Trịnh Công Sơn",
            [
                "Saturday, 14 March 2026, 19:30 (GMT+7)",
                "Nhà hát Lớn, 1 Tràng Tiền, Hoàn Kiếm, Hà Nội",
                "VND 1,500,000",
                "Total: VND 3,450,000",
                "Invoice number: EH/26E-0000042",
                "Ticket 3 of 3: Standard",
            ],
        ),
    ],
)
def test_the_tickets_mail_renders_the_key_facts_in_the_buyers_language(
    locale: str, subject: str, facts: list[str]
) -> None:
    mail = tickets_mail(locale)
    message = render(mail)
    assert message["Subject"] == subject
    assert message["Content-Language"] == locale
    assert message["To"].addresses[0].addr_spec == "an@example.test"
    assert message["From"].addresses[0].addr_spec == "tickets@eventhunting.test"
    assert message["Message-ID"].endswith("@eventhunting.test>")
    text, html = text_of(message), html_of(message)
    assert f'<html lang="{locale}">' in html
    for fact in [*facts, mail.event.title, mail.order.order_id]:
        assert fact in text
    for ticket in mail.tickets:
        assert ticket.ticket_id in text
        assert ticket.qr_payload in text  # door staff can type it when a scan fails
        assert ticket.ticket_id in html


def test_the_mime_tree_is_text_or_html_with_its_qr_images_related() -> None:
    message = render(tickets_mail("en"))
    assert message.get_content_type() == "multipart/alternative"
    text_part, related = message.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    kinds = [part.get_content_type() for part in related.iter_parts()]
    assert kinds == ["text/html", "image/png", "image/png", "image/png"]
    for image in list(related.iter_parts())[1:]:
        assert image.get_content_disposition() == "inline"


def test_the_html_shows_every_qr_by_cid_and_every_cid_has_its_image() -> None:
    mail = tickets_mail("vi")
    message = render(mail)
    referenced = re.findall(r'src="cid:([^"]+)"', html_of(message))
    images = inline_images(message)
    assert len(referenced) == len(mail.tickets)
    assert sorted(referenced) == sorted(images)
    assert len(set(referenced)) == 3


def test_each_inline_image_scans_back_to_its_tickets_signed_code() -> None:
    mail = tickets_mail("vi")
    message = render(mail)
    html = html_of(message)
    images = inline_images(message)
    for ticket in mail.tickets:
        # the image described as this ticket's QR code is this ticket's signed code
        tag = re.search(rf'<img src="cid:([^"]+)"[^>]*alt="[^"]*{ticket.ticket_id}"', html)
        assert tag is not None
        content_id = tag.group(1)
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(images[content_id])))
        assert [result.text for result in decoded] == [ticket.qr_payload]


@pytest.mark.parametrize("locale", ["vi", "en"])
def test_user_text_never_reaches_the_html_unescaped(locale: str) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    base = tickets_mail(locale, title=f"Rock {hostile}")
    mail = TicketsMail(
        buyer=Recipient(name=f"An {hostile}", email="an@example.test", locale=locale),
        event=EventDetails(
            event_id=EVENT_ID,
            title=base.event.title,
            starts_at=base.event.starts_at,
            venue=Venue(name=f"Hall {hostile}", address=f"Street {hostile}"),
            province=None,
        ),
        tickets=(
            MailedTicket(
                ticket_id=base.tickets[0].ticket_id,
                ticket_type_name=f"VIP {hostile}",
                qr_payload=base.tickets[0].qr_payload,
            ),
        ),
        order=OrderSummary(
            order_id=base.order.order_id,
            lines=(
                OrderLineSummary(
                    description=f"VIP {hostile}", quantity=1, unit_price=10, amount=10
                ),
            ),
            total_amount=10,
        ),
    )
    html = html_of(render(mail))
    assert "<script" not in html
    assert "<img src=x" not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 6
    assert "Rock <script>" in text_of(render(mail))  # plain text shows it as typed


def test_a_title_with_line_breaks_cannot_add_headers() -> None:
    message = render(tickets_mail("en", title="Gala\r\nBcc: victim@example.test"))
    assert message["Bcc"] is None
    assert message["Subject"] == "Your tickets: Gala Bcc: victim@example.test"


@pytest.mark.parametrize(
    ("locale", "subject", "facts"),
    [
        ("vi", "Đã hoàn tiền: Đêm nhạc Trịnh Công Sơn", ["Đã", "1.500.000 ₫", "Lý do: Đổi lịch"]),
        ("en", "Refund completed: Đêm nhạc Trịnh Công Sơn", ["VND 1,500,000", "Reason: Đổi lịch"]),
    ],
)
def test_the_refund_mail_says_how_much_and_which_tickets(
    locale: str, subject: str, facts: list[str]
) -> None:
    refunded = (
        RefundedTicket(ticket_id=str(ULID()), ticket_type_name="VIP"),
        RefundedTicket(ticket_id=str(ULID()), ticket_type_name="<b>VIP</b>"),
    )
    mail = RefundCompletedMail(
        buyer=Recipient(name="An", email="an@example.test", locale=locale),
        event=event(),
        order_id=str(ULID()),
        refund_id=str(ULID()),
        amount_refunded=1_500_000,
        tickets_refunded=refunded,
        completed_at=datetime(2026, 3, 2, 3, 0, tzinfo=UTC),
        reason="Đổi lịch",
    )
    raw = MailRenderer(sender=SENDER).refund_completed_message(mail).as_bytes(policy=policy.SMTP)
    message = message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == subject
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    text, html = text_of(message), html_of(message)
    for fact in [*facts[-2:], mail.order_id, mail.refund_id, *(t.ticket_id for t in refunded)]:
        assert fact in text
        assert fact in html
    assert "&lt;b&gt;VIP&lt;/b&gt;" in html
    assert "<b>VIP</b>" not in html


def test_the_renderer_refuses_a_sender_that_is_no_address() -> None:
    with pytest.raises(ValueError, match="EVENTHUNTING_MAIL_FROM"):
        MailRenderer(sender="EventHunting")


def test_a_given_message_id_is_kept_so_a_resent_copy_can_be_recognised() -> None:
    message = MailRenderer(sender=SENDER).tickets_message(
        tickets_mail("vi"), message_id="<tickets.order-1@eventhunting.test>"
    )
    assert message["Message-ID"] == "<tickets.order-1@eventhunting.test>"
