"""What each email says, as typed values: the buyer's tickets, and a completed refund."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """Who the mail is for; `locale` picks the language (see `languages.choice.language_of`)."""

    name: str
    email: str
    locale: str | None = None


class Venue(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    address: str


class EventDetails(msgspec.Struct, frozen=True, kw_only=True):
    """The event as the buyer needs it at the door; times carry their offset."""

    event_id: str
    title: str
    starts_at: datetime
    ends_at: datetime | None = None
    venue: Venue
    province: str | None = None


class MailedTicket(msgspec.Struct, frozen=True, kw_only=True):
    """One ticket: its id, the ticket type's name, and the signed QR text to show."""

    ticket_id: str
    ticket_type_name: str
    qr_payload: str


class OrderLineSummary(msgspec.Struct, frozen=True, kw_only=True):
    description: str
    quantity: int
    unit_price: int
    amount: int


class OrderSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The paid order, as on its invoice; amounts in VND."""

    order_id: str
    lines: tuple[OrderLineSummary, ...]
    total_amount: int
    paid_at: datetime | None = None
    invoice_number: str | None = None


class TicketsMail(msgspec.Struct, frozen=True, kw_only=True):
    """ "Your tickets": sent once per paid order, with each ticket's QR code inline."""

    buyer: Recipient
    event: EventDetails
    tickets: tuple[MailedTicket, ...]
    order: OrderSummary


class RefundedTicket(msgspec.Struct, frozen=True, kw_only=True):
    ticket_id: str
    ticket_type_name: str


class RefundCompletedMail(msgspec.Struct, frozen=True, kw_only=True):
    """ "Refund completed": the money is on its way back and these tickets no longer admit.

    `returned_payment` marks money we could not keep (a second payment of a paid order, or
    a late payment whose tickets were gone): nothing of the order changes, no credit note.
    """

    buyer: Recipient
    event: EventDetails
    order_id: str
    refund_id: str
    amount_refunded: int
    tickets_refunded: tuple[RefundedTicket, ...]
    completed_at: datetime
    reason: str | None = None
    credit_note_number: str | None = None
    """The credit note (adjusting invoice) issued for the refund, when the payment had an
    invoice."""
    returned_payment: bool = False
