"""The mailer: issues a paid order's tickets and mails them, and tells buyers of completed
refunds; once per order and purpose."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Counter

from eventhunting.domain.orders import OrderPaid, RefundCompleted
from eventhunting.domain.tickets import (
    TICKETS_MAIL,
    OrderTickets,
    TicketEmailRequested,
    TicketsIssued,
)
from eventhunting.mail.ledger import MailLedger
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
from eventhunting.mail.smtp_mailer import SentMessage, SmtpMailer
from eventhunting.services.tickets import TicketService
from eventhunting.settings import Settings
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    Lease,
    unique_consumer_name,
)
from eventhunting.store.envelope import EventEnvelope
from eventhunting.tickets.qr_keys import QrKeyRing, signing_key_ring

if TYPE_CHECKING:
    from eventhunting.bootstrap import Services

logger = logging.getLogger("eventhunting.consumers.mailer")

MAILER_GROUP = "mailer"
# Orders of one batch handled at once (each: a few reads, an append, one SMTP delivery);
# entries of one order stay in log order.
CONCURRENCY = 16

MAILS = Counter(
    "eventhunting_mailer_mails_total",
    "Mails (tickets, refunds) by outcome: sent, or skipped because the ledger had them already.",
    ["outcome"],
)
ISSUED = Counter("eventhunting_mailer_tickets_issued_total", "Tickets issued by the mailer.")


class MailSender(Protocol):
    async def send(self, message: EmailMessage, /) -> SentMessage: ...


def check_settings(settings: Settings) -> None:
    """What the mailer needs besides the common settings; `SettingsError` naming the variable."""
    signing_key_ring(settings.qr)
    SmtpMailer.from_settings(settings.mail)


def order_id_of(envelope: EventEnvelope) -> str | None:
    data = envelope.data
    if isinstance(data, OrderPaid | TicketsIssued | TicketEmailRequested | RefundCompleted):
        return data.order_id
    return None


def refund_mail_purpose(refund_id: str) -> str:
    """The mail purpose (and ledger key) of a completed refund's mail: one per refund."""
    return f"refund_completed:{refund_id}"


class Mailer:
    """The `mailer` group's handler.

    - `OrderPaid` issues the tickets (`TicketsService.issue`: decided by the order's stream,
      so a redelivered or duplicated entry issues nothing the second time).
    - `TicketsIssued` sends the tickets mail (purpose `tickets`); `TicketEmailRequested` a
      resend (`resend:<n>`). The ledger is asked before sending and written after the SMTP
      server accepted the mail; then `TicketEmailSent` is appended, once.
    - `RefundCompleted` sends the buyer the refund mail (purpose
      `refund_completed:<refund id>`), through the same ledger and `TicketEmailSent` steps,
      for every completed refund: of the order, or of money we could not keep.

    `SmtpMailer` retries transient failures inside one delivery; what it raises then is
    left to the consumer runtime: an outage (`MailServerUnavailable`) keeps the entry
    pending however long it lasts, anything else counts towards the dead letters.
    """

    def __init__(
        self,
        *,
        tickets: TicketService,
        ledger: MailLedger,
        sender: MailSender,
        renderer: MailRenderer,
        signing_ring: QrKeyRing,
        clock: Callable[[], datetime],
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.tickets = tickets
        self.ledger = ledger
        self.sender = sender
        self.renderer = renderer
        self.signing_ring = signing_ring
        self.clock = clock
        self.gate = asyncio.Semaphore(concurrency)

    async def __call__(self, batch: list[EventEnvelope], lease: Lease) -> None:
        by_order: dict[str, list[EventEnvelope]] = {}
        for envelope in batch:
            order_id = order_id_of(envelope)
            if order_id is not None:
                by_order.setdefault(order_id, []).append(envelope)
        outcomes = await asyncio.gather(
            *(self.handle_order(entries) for entries in by_order.values()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                # The others went through; the runtime tries the batch's entries one by one,
                # and the ones done already are found done.
                raise outcome

    async def handle_order(self, entries: list[EventEnvelope]) -> None:
        async with self.gate:
            for envelope in entries:
                await self.handle(envelope)

    async def handle(self, envelope: EventEnvelope) -> None:
        data = envelope.data
        if isinstance(data, OrderPaid):
            issued = await self.tickets.issue(data.order_id, self.signing_ring)
            ISSUED.inc(len(issued))
        elif isinstance(data, TicketsIssued):
            await self.deliver(data.order_id, TICKETS_MAIL)
        elif isinstance(data, TicketEmailRequested):
            await self.deliver(data.order_id, data.purpose)
        elif isinstance(data, RefundCompleted):
            await self.deliver_refund(data.order_id, data.refund_id)

    async def deliver(self, order_id: str, purpose: str) -> None:
        """Send the tickets mail `purpose` of the order unless the ledger has it; record it."""
        state = await self.tickets.order_tickets(order_id)
        if purpose in state.mails_sent or not state.tickets or state.voided:
            return
        await self.send_once(state, purpose, self.compose)

    async def deliver_refund(self, order_id: str, refund_id: str) -> None:
        """Tell the buyer the refund `refund_id` is done, once (purpose per refund)."""
        state = await self.tickets.order_tickets(order_id)
        purpose = refund_mail_purpose(refund_id)
        refund = next((r for r in state.order.refunds if r.id == refund_id), None)
        if purpose in state.mails_sent or refund is None or refund.status != "completed":
            return
        await self.send_once(state, purpose, self.compose_refund)

    async def send_once(
        self,
        state: OrderTickets,
        purpose: str,
        compose: Callable[[OrderTickets, str], Awaitable[EmailMessage]],
    ) -> None:
        """Send the mail `purpose` unless the ledger has it; record it in the ledger, then on
        the order's stream (`TicketEmailSent`)."""
        order_id = state.order.id
        sent = await self.ledger.sent_mail(order_id, purpose)
        if sent is None:
            message = await compose(state, purpose)
            delivered = await self.sender.send(message)
            sent_at = self.tickets.now()
            await self.ledger.record_sent(order_id, purpose, delivered.message_id, sent_at)
            message_id = delivered.message_id
            MAILS.labels("sent").inc()
            logger.info(
                "mail sent",
                extra={"order_id": order_id, "purpose": purpose, "attempts": delivered.attempts},
            )
        else:
            message_id, sent_at = sent.message_id, sent.sent_at
            MAILS.labels("already_sent").inc()
        await self.tickets.record_mail_sent(
            order_id, purpose=purpose, message_id=message_id, sent_at=sent_at
        )

    async def recipient_and_event(self, state: OrderTickets) -> tuple[Recipient, EventDetails]:
        order = state.order
        account = await self.tickets.accounts.find(order.buyer_id)
        event = await self.tickets.events.find(order.event_id)
        if account is None or event is None:
            raise LookupError(f"order {order.id} names a buyer or event that does not exist")
        return (
            Recipient(name=account.full_name, email=account.email, locale=state.payment_locale),
            EventDetails(
                event_id=event.id,
                title=event.title,
                starts_at=event.starts_at,
                ends_at=event.ends_at,
                venue=Venue(name=event.venue.name, address=event.venue.address),
                province=event.province,
            ),
        )

    def message_id(self, order_id: str, purpose: str) -> str:
        # One Message-ID per order and purpose, the same at every attempt: mail clients that
        # fold duplicate Message-IDs hide the rare second copy (docs/tickets.md, the window).
        return f"<{purpose.replace(':', '-')}.{order_id}@{self.renderer.message_id_domain}>"

    async def compose_refund(self, state: OrderTickets, purpose: str) -> EmailMessage:
        order = state.order
        refund = next(r for r in order.refunds if purpose == refund_mail_purpose(r.id))
        assert refund.completed_at is not None
        buyer, event = await self.recipient_and_event(state)
        names = {line.ticket_type_id: line.name for line in order.items}
        types = {ticket.ticket_id: ticket.ticket_type_id for ticket in state.tickets}
        credit_note = order.credit_note(refund.id)
        mail = RefundCompletedMail(
            buyer=buyer,
            event=event,
            order_id=order.id,
            refund_id=refund.id,
            amount_refunded=refund.amount,
            tickets_refunded=tuple(
                RefundedTicket(
                    ticket_id=ticket_id, ticket_type_name=names.get(types.get(ticket_id, ""), "")
                )
                for ticket_id in refund.ticket_ids
            ),
            completed_at=refund.completed_at,
            reason=refund.reason,
            credit_note_number=None if credit_note is None else credit_note.number,
            returned_payment=not refund.of_order,
        )
        return self.renderer.refund_completed_message(
            mail, message_id=self.message_id(order.id, purpose)
        )

    async def compose(self, state: OrderTickets, purpose: str) -> EmailMessage:
        order = state.order
        buyer, event = await self.recipient_and_event(state)
        names = {line.ticket_type_id: line.name for line in order.items}
        mail = TicketsMail(
            buyer=buyer,
            event=event,
            tickets=tuple(
                MailedTicket(
                    ticket_id=ticket.ticket_id,
                    ticket_type_name=names.get(ticket.ticket_type_id, ""),
                    qr_payload=ticket.qr,
                )
                for ticket in state.tickets
            ),
            order=OrderSummary(
                order_id=order.id,
                lines=tuple(
                    OrderLineSummary(
                        description=line.name,
                        quantity=line.quantity,
                        unit_price=line.unit_price,
                        amount=line.amount,
                    )
                    for line in order.items
                ),
                total_amount=order.total_amount,
                paid_at=order.paid_at,
                invoice_number=order.invoice_number,
            ),
        )
        return self.renderer.tickets_message(mail, message_id=self.message_id(order.id, purpose))


def build_mailer(services: Services, sender: MailSender) -> Mailer:
    settings = services.settings
    return Mailer(
        tickets=services.tickets,
        ledger=MailLedger(services.database),
        sender=sender,
        renderer=MailRenderer(sender=settings.mail.mail_from),
        signing_ring=signing_key_ring(settings.qr),
        clock=services.clock,
    )


async def run(services: Services, stop: asyncio.Event) -> None:
    """`eventhunting worker mailer`: issue and mail tickets until `stop`."""
    from eventhunting.consumers.dead_letter_retries import DeadLetterRetries

    # One sender for the life of the process: its SMTP connections outlive the batches.
    smtp = SmtpMailer.from_settings(services.settings.mail)
    mailer = build_mailer(services, smtp)
    group: ConsumerGroup[EventEnvelope] = ConsumerGroup(
        services.redis,
        MAILER_GROUP,
        unique_consumer_name(),
        services.settings.sales.partitions,
        mailer,
        ConsumerConfig(),
    )
    retries_stop = asyncio.Event()
    retrying = asyncio.create_task(DeadLetterRetries(group).run(retries_stop))
    try:
        await group.run(stop, prepare=mailer.ledger.create_indexes)
    finally:
        retries_stop.set()
        await retrying
        await smtp.aclose()
