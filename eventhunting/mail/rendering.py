"""Ticket and refund mail rendered from jinja2 templates into MIME messages ready for SMTP."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

import jinja2

from eventhunting.languages.catalogs import Language, catalog
from eventhunting.languages.choice import language_of
from eventhunting.languages.templates import install_languages
from eventhunting.mail.messages import RefundCompletedMail, TicketsMail
from eventhunting.tickets.qr_images import qr_png

CONTENT_ID_DOMAIN = "eventhunting"
# Control characters (line breaks above all) must never reach a header.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")


def template_environment() -> jinja2.Environment:
    """Templates under `mail/templates`: HTML ones escape every value, text ones do not; both
    take their words from the language catalogs (`t`, `eventhunting.languages`)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("eventhunting.mail", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return install_languages(environment)


def qr_content_id(ticket_id: str) -> str:
    """The Content-ID (without angle brackets) of a ticket's inline QR image."""
    return f"qr-{ticket_id}@{CONTENT_ID_DOMAIN}"


def header_text(text: str) -> str:
    return _CONTROL_CHARACTERS.sub(" ", text).strip()


class MailRenderer:
    """Builds the messages we send: multipart/alternative of text and HTML, images inline."""

    def __init__(self, *, sender: str) -> None:
        display_name, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError("the sender must be an email address (EVENTHUNTING_MAIL_FROM)")
        self.sender = Address(display_name=display_name, addr_spec=address)
        self.message_id_domain = address.rsplit("@", 1)[1]
        self.templates = template_environment()

    def tickets_message(self, mail: TicketsMail, *, message_id: str | None = None) -> EmailMessage:
        """The "your tickets" mail: each ticket's QR code as an inline PNG shown by cid:."""
        language = language_of(mail.buyer.locale)
        tickets = [
            {"ticket": ticket, "content_id": qr_content_id(ticket.ticket_id)}
            for ticket in mail.tickets
        ]
        message = self._message(
            "tickets", language, mail, {"mail": mail, "tickets": tickets}, message_id
        )
        html_part = message.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)
        for ticket in mail.tickets:
            html_part.add_related(
                qr_png(ticket.qr_payload),
                "image",
                "png",
                cid=f"<{qr_content_id(ticket.ticket_id)}>",
                filename=f"ticket-{ticket.ticket_id}.png",
                disposition="inline",
            )
        return message

    def refund_completed_message(
        self, mail: RefundCompletedMail, *, message_id: str | None = None
    ) -> EmailMessage:
        """The "refund completed" mail: amount, refunded tickets, order, credit note."""
        language = language_of(mail.buyer.locale)
        return self._message("refund_completed", language, mail, {"mail": mail}, message_id)

    def _message(
        self,
        purpose: str,
        language: Language,
        mail: TicketsMail | RefundCompletedMail,
        context: dict[str, Any],
        message_id: str | None,
    ) -> EmailMessage:
        context = {**context, "language": language}
        text = self.templates.get_template(f"{purpose}.txt").render(context)
        html = self.templates.get_template(f"{purpose}.html").render(context)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = Address(
            display_name=header_text(mail.buyer.name), addr_spec=mail.buyer.email
        )
        subject = catalog(language).text(f"mail.{purpose}.subject", title=mail.event.title)
        message["Subject"] = header_text(subject)
        message["Message-ID"] = message_id or make_msgid(
            purpose.replace("_", "-"), domain=self.message_id_domain
        )
        message["Date"] = formatdate(usegmt=True)
        message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        # After the body: add_alternative moves every Content-* header into the first part.
        message["Content-Language"] = language
        return message
