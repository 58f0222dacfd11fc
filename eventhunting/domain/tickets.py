"""Tickets: one per seat of a paid order, mailed, voided by refunds, checked in once at the door."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from enum import StrEnum

import msgspec

from eventhunting.domain import orders
from eventhunting.domain.errors import Conflict, DomainError, ErrorKind, NotFound
from eventhunting.domain.events import Command, DomainEvent, RecordedEvent, registry
from eventhunting.domain.events import fold as fold_history
from eventhunting.domain.orders import (
    Order,
    OrderNotFound,
    OrderStatus,
    PaymentStarted,
    RefundRequested,
)
from eventhunting.domain.payments import REFUND_DUPLICATE_PAYMENT

TICKET_STREAM_KIND = "ticket"
TICKETS_MAIL = "tickets"
"""The mail purpose of the first "your tickets" mail of an order; resends are `resend:<n>`."""
# Short codes for typing at the door: no 0/O or 1/I/L, which people misread.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
MAX_GATE_LENGTH = 64


class TicketStatus(StrEnum):
    ISSUED = "issued"
    CHECKED_IN = "checked_in"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


# --- errors --------------------------------------------------------------------------------


class InvalidTicket(DomainError):
    """A scanned ticket does not admit anyone; `reason` tells the door staff why."""

    kind = ErrorKind.INVALID
    code = "invalid_ticket"
    title = "Invalid ticket"

    def __init__(self, detail: str, *, reason: str, field: str = "qr") -> None:
        # Every 422 names the field it refuses (`errors`), as the API promises.
        super().__init__(detail, reason=reason, errors=[{"field": field, "message": detail}])
        self.reason = reason


class AlreadyCheckedIn(Conflict):
    """The ticket was checked in before: the first scan won."""

    code = "already_checked_in"
    title = "Ticket already checked in"

    def __init__(self, detail: str, *, checked_in_at: datetime, gate: str | None) -> None:
        if gate is None:
            super().__init__(detail, checked_in_at=checked_in_at)
        else:
            super().__init__(detail, checked_in_at=checked_in_at, gate=gate)
        self.checked_in_at = checked_in_at


class NotDoorStaff(DomainError):
    """The caller may check no ticket in: not staff, organizer of an event, or admin."""

    kind = ErrorKind.FORBIDDEN
    code = "not_door_staff"
    title = "Forbidden"


class TicketNotFound(NotFound):
    code = "ticket_not_found"


class TicketsNotIssued(Conflict):
    code = "tickets_not_issued"


class TicketsVoid(Conflict):
    code = "tickets_void"


# --- events --------------------------------------------------------------------------------


class IssuedTicket(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One seat: its id, ticket type, holder, short door code and signed QR text."""

    ticket_id: str
    ticket_type_id: str
    holder_name: str
    code: str
    """`XXXX-XXXX` from `CODE_ALPHABET`, unique within the event, for typing at the door."""
    qr: str
    """The signed QR text (docs/tickets.md): ticket, event and ticket type ids, nothing personal."""


@registry.event("TicketsIssued", stream_kind="order")
class TicketsIssued(DomainEvent, frozen=True, kw_only=True):
    """The paid order's tickets, one per seat, issued once."""

    order_id: str
    event_id: str
    buyer_id: str
    tickets: tuple[IssuedTicket, ...]
    issued_at: datetime


@registry.event("TicketEmailRequested", stream_kind="order")
class TicketEmailRequested(DomainEvent, frozen=True, kw_only=True):
    """The buyer asked for the tickets mail again; `purpose` (`resend:<n>`) names that mail."""

    order_id: str
    purpose: str
    requested_at: datetime
    requested_by: str


@registry.event("TicketEmailSent", stream_kind="order")
class TicketEmailSent(DomainEvent, frozen=True, kw_only=True):
    """The SMTP server accepted the mail `purpose` of the order (tickets, resend, refund)."""

    order_id: str
    purpose: str
    message_id: str
    sent_at: datetime


@registry.event("TicketCheckedIn", stream_kind=TICKET_STREAM_KIND)
class TicketCheckedIn(DomainEvent, frozen=True, kw_only=True):
    """The ticket let someone in; the only event of its `ticket-<id>` stream."""

    ticket_id: str
    order_id: str
    event_id: str
    ticket_type_id: str
    checked_in_at: datetime
    checked_in_by: str
    gate: str | None = None


# --- the order as tickets see it -----------------------------------------------------------


class OrderTickets(msgspec.Struct, frozen=True, kw_only=True):
    """An order's stream folded for its tickets: the order, its tickets and their mail."""

    order: Order
    tickets: tuple[IssuedTicket, ...] = ()
    issued_at: datetime | None = None
    mails_sent: frozenset[str] = frozenset()
    mails_requested: tuple[str, ...] = ()
    voided: bool = False
    """A refund of the whole payment was asked for (or done): no ticket admits anyone."""
    payment_locale: str | None = None
    """The language the buyer chose on the payment page, the only one we know of."""

    @property
    def version(self) -> int:
        return self.order.version

    def ticket(self, ticket_id: str) -> IssuedTicket | None:
        return next((t for t in self.tickets if t.ticket_id == ticket_id), None)


def voids_tickets(refund: RefundRequested) -> bool:
    """A refund of everything paid for the order voids its tickets; giving back a second,
    duplicate payment does not (the order stays paid by the first)."""
    return refund.full and refund.reason != REFUND_DUPLICATE_PAYMENT


def evolve(state: OrderTickets | None, recorded: RecordedEvent) -> OrderTickets:
    """The order and its tickets after one more event of the order's stream."""
    order = orders.evolve(None if state is None else state.order, recorded)
    current = OrderTickets(order=order) if state is None else state
    replace = msgspec.structs.replace
    current = replace(current, order=order)
    event = recorded.data
    if isinstance(event, TicketsIssued):
        return replace(current, tickets=event.tickets, issued_at=event.issued_at)
    if isinstance(event, TicketEmailSent):
        return replace(current, mails_sent=current.mails_sent | {event.purpose})
    if isinstance(event, TicketEmailRequested):
        return replace(current, mails_requested=(*current.mails_requested, event.purpose))
    if isinstance(event, RefundRequested) and voids_tickets(event):
        return replace(current, voided=True)
    if isinstance(event, PaymentStarted) and event.locale is not None:
        return replace(current, payment_locale=event.locale)
    if order.status is OrderStatus.REFUNDED:
        return replace(current, voided=True)
    return current


def fold(history: Iterable[RecordedEvent]) -> OrderTickets | None:
    return fold_history(evolve, history)


def status_of(
    state: OrderTickets, ticket_id: str, checked_in: CheckedInTicket | None
) -> TicketStatus:
    """A ticket's status from its order and its check-in stream: checked in (the holder came
    in, whatever happened after), refunded (the whole payment, or this ticket), or issued."""
    if checked_in is not None:
        return TicketStatus.CHECKED_IN
    if is_refunded(state, ticket_id):
        return TicketStatus.REFUNDED
    return TicketStatus.ISSUED


def is_refunded(state: OrderTickets, ticket_id: str) -> bool:
    return state.voided or ticket_id in state.order.refunded_ticket_ids


# --- issuing -------------------------------------------------------------------------------


class TicketSeal(msgspec.Struct, frozen=True, kw_only=True):
    """What a ticket's QR code says (the QR module signs it)."""

    ticket_id: str
    event_id: str
    ticket_type_id: str


class IssueTickets(Command, frozen=True, kw_only=True):
    """Issue the tickets of a paid order, once."""

    order_id: str


def format_code(raw: str) -> str:
    """`ABCD2345` as people read it: `ABCD-2345`."""
    return f"{raw[:4]}-{raw[4:]}"


def normalise_code(typed: str) -> str:
    """A code as typed (any case, with or without dash or spaces) in its stored form."""
    compact = "".join(typed.split()).replace("-", "").upper()
    return format_code(compact) if len(compact) == CODE_LENGTH else compact


def decide_issue(
    state: OrderTickets | None,
    command: IssueTickets,
    *,
    holder_name: str,
    ticket_ids: Sequence[str],
    codes: Sequence[str],
    seal: Callable[[TicketSeal], str],
    now: datetime,
) -> list[DomainEvent]:
    """One ticket per seat of a paid order; nothing when issued already, unpaid or voided.

    `holder_name` is the buyer's name as the server read it; `ticket_ids` and `codes` are
    drawn by the server (at least one per seat); `seal` signs a ticket's QR text.
    """
    if state is None:
        raise OrderNotFound(f"There is no order {command.order_id!r}.")
    order = state.order
    if state.tickets or state.voided or order.status is not OrderStatus.PAID:
        return []
    seats = [line.ticket_type_id for line in order.items for _ in range(line.quantity)]
    if len(ticket_ids) < len(seats) or len(codes) < len(seats):
        raise ValueError("draw one ticket id and one code per seat")
    tickets = tuple(
        IssuedTicket(
            ticket_id=ticket_id,
            ticket_type_id=ticket_type_id,
            holder_name=holder_name,
            code=code,
            qr=seal(
                TicketSeal(
                    ticket_id=ticket_id, event_id=order.event_id, ticket_type_id=ticket_type_id
                )
            ),
        )
        for ticket_id, code, ticket_type_id in zip(ticket_ids, codes, seats, strict=False)
    )
    return [
        TicketsIssued(
            order_id=order.id,
            event_id=order.event_id,
            buyer_id=order.buyer_id,
            tickets=tickets,
            issued_at=now,
        )
    ]


# --- mail ----------------------------------------------------------------------------------


class ResendTickets(Command, frozen=True, kw_only=True):
    """The buyer asks for the tickets mail again."""

    order_id: str
    by: str


def decide_resend(
    state: OrderTickets | None, command: ResendTickets, *, now: datetime
) -> list[DomainEvent]:
    """A new mail `resend:<n>` for the buyer of an order whose tickets are valid."""
    if state is None:
        raise OrderNotFound(f"There is no order {command.order_id!r}.")
    if command.by != state.order.buyer_id:
        raise orders.NotOrderBuyer("Only the buyer may have the tickets sent again.")
    if state.voided:
        raise TicketsVoid(f"The tickets of order {state.order.id!r} were refunded.")
    if not state.tickets:
        raise TicketsNotIssued(f"The tickets of order {state.order.id!r} are not issued yet.")
    return [
        TicketEmailRequested(
            order_id=state.order.id,
            purpose=f"resend:{len(state.mails_requested) + 1}",
            requested_at=now,
            requested_by=command.by,
        )
    ]


class RecordMailSent(Command, frozen=True, kw_only=True):
    """The mailer reports a mail of the order accepted by the SMTP server at `sent_at`."""

    order_id: str
    purpose: str
    message_id: str
    sent_at: datetime


def decide_mail_sent(state: OrderTickets | None, command: RecordMailSent) -> list[DomainEvent]:
    """Record a sent mail once per purpose."""
    if state is None or command.purpose in state.mails_sent:
        return []
    return [
        TicketEmailSent(
            order_id=state.order.id,
            purpose=command.purpose,
            message_id=command.message_id,
            sent_at=command.sent_at,
        )
    ]


# --- check-in ------------------------------------------------------------------------------


class CheckedInTicket(msgspec.Struct, frozen=True, kw_only=True):
    """A ticket's `ticket-<id>` stream folded: who let it in, when and where."""

    ticket_id: str
    checked_in_at: datetime
    checked_in_by: str
    gate: str | None
    version: int


def evolve_checked_in(state: CheckedInTicket | None, recorded: RecordedEvent) -> CheckedInTicket:
    event = recorded.data
    if not isinstance(event, TicketCheckedIn):
        raise ValueError(f"{type(event).__name__} in a ticket stream")
    if state is not None:
        # The stream never holds a second check-in: the first is kept.
        return msgspec.structs.replace(state, version=recorded.version)
    return CheckedInTicket(
        ticket_id=event.ticket_id,
        checked_in_at=event.checked_in_at,
        checked_in_by=event.checked_in_by,
        gate=event.gate,
        version=recorded.version,
    )


class CheckIn(Command, frozen=True, kw_only=True):
    """Let the holder of a verified ticket code in, once."""

    ticket_id: str
    event_id: str
    ticket_type_id: str
    by: str
    door_event_id: str | None = None
    """The event the door is for, when the scanner says so: a ticket of another is refused."""
    gate: str | None = None


def decide_check_in(
    checked_in: CheckedInTicket | None,
    state: OrderTickets | None,
    command: CheckIn,
    *,
    may_check_in_event: bool,
    event_cancelled: bool,
    now: datetime,
) -> list[DomainEvent]:
    """The first valid scan of a ticket wins; every later one is `AlreadyCheckedIn`.

    Refused as `invalid_ticket`, in this order: a ticket of an event the caller does not
    check in for (or not the door's event) `other_event`; a ticket its order does not list
    `not_found`; a refunded order `refunded`; a cancelled event `cancelled`.
    """
    if not may_check_in_event or (
        command.door_event_id is not None and command.door_event_id != command.event_id
    ):
        raise InvalidTicket("This ticket is for another event.", reason="other_event")
    ticket = None if state is None else state.ticket(command.ticket_id)
    if (
        state is None
        or ticket is None
        or state.order.event_id != command.event_id
        or ticket.ticket_type_id != command.ticket_type_id
    ):
        raise InvalidTicket("There is no such ticket.", reason="not_found")
    if is_refunded(state, command.ticket_id):
        raise InvalidTicket("This ticket was refunded.", reason="refunded")
    if event_cancelled:
        raise InvalidTicket("The event was cancelled.", reason="cancelled")
    if checked_in is not None:
        raise AlreadyCheckedIn(
            "This ticket was checked in already.",
            checked_in_at=checked_in.checked_in_at,
            gate=checked_in.gate,
        )
    return [
        TicketCheckedIn(
            ticket_id=command.ticket_id,
            order_id=state.order.id,
            event_id=command.event_id,
            ticket_type_id=command.ticket_type_id,
            checked_in_at=now,
            checked_in_by=command.by,
            gate=command.gate,
        )
    ]
