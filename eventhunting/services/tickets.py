"""Ticket commands and reads: issue, record mail, resend, check in, and the buyer's tickets."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from eventhunting.domain import tickets as rules
from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import CatalogEvent, EventNotFound, EventStatus
from eventhunting.domain.errors import RateLimited
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import OrderNotFound
from eventhunting.domain.tickets import (
    CheckedInTicket,
    CheckIn,
    InvalidTicket,
    IssuedTicket,
    IssueTickets,
    NotDoorStaff,
    OrderTickets,
    ResendTickets,
    TicketCheckedIn,
    TicketSeal,
    TicketStatus,
)
from eventhunting.services.accounts import ACCOUNTS
from eventhunting.services.catalog import EVENTS
from eventhunting.services.repository import Effects, Repository, StreamKind
from eventhunting.store import keys
from eventhunting.store.append import Claim, CounterChange, EventStore, StreamVersion
from eventhunting.store.claims import ticket_claim, ticket_code_claim
from eventhunting.store.counters import (
    CHECKED_IN_FIELD,
    GATE_FIELD_PREFIX,
    TICKET_TYPE_FIELD_PREFIX,
    checkin_deltas,
    checkins_counter,
    inventory_counter,
)
from eventhunting.store.redis_client import RedisClient
from eventhunting.tickets.qr_codes import TicketCode, sign_ticket_code, verify_ticket_code
from eventhunting.tickets.qr_keys import JsonWebKeySet, QrKeyRing

ORDER_TICKETS = StreamKind("order", rules.evolve)
"""Order streams folded for their tickets (the same `order-<id>` streams orders write)."""
TICKETS = StreamKind(rules.TICKET_STREAM_KIND, rules.evolve_checked_in)
"""`ticket-<id>`: a ticket's check-in, at most one event."""

# Refused because a drawn door code is taken in the event: draw again and decide.
CODE_TAKEN = "ticket_code_taken"
# Refused because the order moved on (a refund) between reading it and checking in.
ORDER_CHANGED = "order_changed"
# A check-in only adds to its event's counter, so this guard never refuses one.
CHECKIN_COUNT_GUARD = "checkin_count"
RESEND_LIMIT = 3
RESEND_WINDOW_SECONDS = 3_600
RESEND_SCRIPT = resources.files("eventhunting.services").joinpath("resend_throttle.lua").read_text()

Clock = Callable[[], datetime]


def resend_limit_key(partition: int, order_id: str) -> str:
    """The counter of an order's ticket-mail resends in the current window."""
    return f"{{p{partition}}}:resend-limit:{order_id}"


def draw_code() -> str:
    return rules.format_code(
        "".join(secrets.choice(rules.CODE_ALPHABET) for _ in range(rules.CODE_LENGTH))
    )


@dataclass(frozen=True, slots=True)
class DoorStaff:
    """Who scans: the account, and which events it may check tickets in at."""

    account_id: str
    is_admin: bool = False
    is_organizer: bool = False
    staff_events: frozenset[str] = frozenset()

    def may_check_in_somewhere(self) -> bool:
        return self.is_admin or self.is_organizer or bool(self.staff_events)

    def may_check_in_at(self, event_id: str, event: CatalogEvent | None) -> bool:
        """Whether these are door staff of the event: its staff, its organizer or an admin."""
        return (
            self.is_admin
            or event_id in self.staff_events
            or (event is not None and event.organizer_id == self.account_id)
        )


@dataclass(frozen=True, slots=True)
class TicketState:
    """A ticket of an order with its status now."""

    ticket: IssuedTicket
    status: TicketStatus
    checked_in: CheckedInTicket | None


@dataclass(frozen=True, slots=True)
class CheckedIn:
    ticket_id: str
    checked_in_at: datetime
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class TicketTypeCheckins:
    ticket_type_id: str
    name: str
    checked_in: int
    tickets: int


@dataclass(frozen=True, slots=True)
class CheckinSummary:
    """How many of an event's tickets have let someone in, from the write-side counters."""

    event_id: str
    checked_in: int
    tickets: int
    by_ticket_type: list[TicketTypeCheckins]
    by_gate: dict[str | None, int]


class TicketService:
    """Tickets on the order streams, check-ins on `ticket-<id>` streams, all through the
    repository; reads fold the streams (read-your-writes), never the read model."""

    def __init__(
        self,
        *,
        store: EventStore,
        redis: RedisClient,
        clock: Clock,
        verifying_ring: QrKeyRing,
        resend_limit: int = RESEND_LIMIT,
        resend_window_seconds: int = RESEND_WINDOW_SECONDS,
    ) -> None:
        self.store = store
        self.redis = redis
        self.clock = clock
        self.verifying_ring = verifying_ring
        self.resend_limit = resend_limit
        self.resend_window_seconds = resend_window_seconds
        self.partitions = store.partitions
        self.orders = Repository(store, ORDER_TICKETS)
        self.tickets = Repository(store, TICKETS)
        self.events = Repository(store, EVENTS)
        self.accounts = Repository(store, ACCOUNTS)
        self.resend_script = redis.register_script(RESEND_SCRIPT)

    def now(self) -> datetime:
        """Milliseconds, as the store and MongoDB keep them."""
        moment = self.clock()
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def partition_of(self, entity_id: str) -> int:
        return keys.partition_of(entity_id, self.partitions)

    def public_keys(self) -> JsonWebKeySet:
        """The keys that verify this API's QR codes, for scanners that check offline."""
        return self.verifying_ring.jwk_set()

    # --- reading ----------------------------------------------------------------------------

    async def order_tickets(self, order_id: str) -> OrderTickets:
        state = await self.orders.find(order_id)
        if state is None:
            raise OrderNotFound(f"There is no order {order_id!r}.")
        return state

    async def visible(self, order_id: str, viewer: Actor) -> OrderTickets:
        """The order's tickets if the viewer is its buyer, the event's organizer or an admin."""
        state = await self.order_tickets(order_id)
        if viewer.is_admin or state.order.buyer_id == viewer.account_id:
            return state
        event = await self.events.find(state.order.event_id)
        if event is None or event.organizer_id != viewer.account_id:
            raise OrderNotFound(f"There is no order {order_id!r}.")
        return state

    async def tickets_of(self, order_id: str, viewer: Actor) -> list[TicketState]:
        """Every ticket of the order with its status (empty until issued)."""
        state = await self.visible(order_id, viewer)
        checked = await asyncio.gather(*(self.tickets.find(t.ticket_id) for t in state.tickets))
        return [
            TicketState(
                ticket=ticket,
                status=rules.status_of(state, ticket.ticket_id, found),
                checked_in=found,
            )
            for ticket, found in zip(state.tickets, checked, strict=True)
        ]

    async def ticket_qr(self, ticket_id: str, viewer: Actor) -> str:
        """The QR text of one ticket the viewer may see (404 otherwise)."""
        order_id = await self.order_of_ticket(ticket_id)
        ticket = None
        if order_id is not None:
            try:
                ticket = (await self.visible(order_id, viewer)).ticket(ticket_id)
            except OrderNotFound:
                ticket = None
        if ticket is None:
            raise rules.TicketNotFound(f"There is no ticket {ticket_id!r}.")
        return ticket.qr

    async def order_of_ticket(self, ticket_id: str) -> str | None:
        return await self.store.read_claim(self.partition_of(ticket_id), ticket_claim(ticket_id))

    # --- issuing ----------------------------------------------------------------------------

    async def issue(self, order_id: str, signing_ring: QrKeyRing) -> tuple[IssuedTicket, ...]:
        """Issue a paid order's tickets once (nothing when issued already, unpaid or voided).

        Ticket ids are drawn in the order's partition; door codes are claimed unique within
        the event in the same append (a taken code is drawn again).
        """
        partition = self.partition_of(order_id)

        def seal(ticket: TicketSeal) -> str:
            return sign_ticket_code(
                TicketCode(
                    ticket_id=ticket.ticket_id,
                    event_id=ticket.event_id,
                    ticket_type_id=ticket.ticket_type_id,
                ),
                signing_ring,
            )

        command = IssueTickets(order_id=order_id)

        async def decide(state: OrderTickets | None) -> list[DomainEvent]:
            if state is None or state.tickets or state.voided:
                return rules.decide_issue(
                    state,
                    command,
                    holder_name="",
                    ticket_ids=(),
                    codes=(),
                    seal=seal,
                    now=self.now(),
                )
            seats = state.order.ticket_count
            account = await self.accounts.find(state.order.buyer_id)
            return rules.decide_issue(
                state,
                command,
                holder_name="" if account is None else account.full_name,
                ticket_ids=[
                    keys.new_id_in_partition(partition, self.partitions) for _ in range(seats)
                ],
                codes=[draw_code() for _ in range(seats)],
                seal=seal,
                now=self.now(),
            )

        def effects(state: OrderTickets | None, events: list[DomainEvent]) -> Effects:
            claims: list[Claim] = []
            for event in events:
                if isinstance(event, rules.TicketsIssued):
                    for ticket in event.tickets:
                        claims.append(Claim(ticket_claim(ticket.ticket_id), order_id, "conflict"))
                        claims.append(
                            Claim(
                                ticket_code_claim(event.event_id, ticket.code),
                                ticket.ticket_id,
                                CODE_TAKEN,
                            )
                        )
            return Effects(claims=claims)

        saved = await self.orders.decide_and_append(
            order_id,
            decide,
            effects=effects,
            actor="mailer",
            decide_again_on=lambda rejected: rejected.code == CODE_TAKEN,
        )
        if saved is None:
            return ()
        return saved.state.tickets

    async def record_mail_sent(
        self, order_id: str, *, purpose: str, message_id: str, sent_at: datetime
    ) -> None:
        command = rules.RecordMailSent(
            order_id=order_id, purpose=purpose, message_id=message_id, sent_at=sent_at
        )
        await self.orders.decide_and_append(
            order_id, lambda state: rules.decide_mail_sent(state, command), actor="mailer"
        )

    async def resend(self, order_id: str, by: Actor) -> str:
        """Ask the mailer for the tickets mail again; the purpose of the new mail.

        At most `resend_limit` per order in `resend_window_seconds` (429 with Retry-After).
        """
        state = await self.visible(order_id, by)
        command = ResendTickets(order_id=order_id, by=by.account_id)
        rules.decide_resend(state, command, now=self.now())  # refuse before a slot is taken
        taken, left_ms = await self.resend_script(
            keys=[resend_limit_key(self.partition_of(order_id), order_id)],
            args=[self.resend_limit, self.resend_window_seconds * 1000],
        )
        if not int(taken):
            raise RateLimited(
                f"The tickets of this order were sent {self.resend_limit} times in the last"
                f" {self.resend_window_seconds // 60} minutes; try again later.",
                code="resend_rate_limited",
                retry_after_seconds=max(1, math.ceil(int(left_ms) / 1000)),
            )
        saved = await self.orders.decide_and_append(
            order_id,
            lambda state: rules.decide_resend(state, command, now=self.now()),
            actor=by.account_id,
        )
        assert saved is not None
        requested = saved.state.mails_requested
        return requested[-1]

    # --- check-in ---------------------------------------------------------------------------

    async def check_in(
        self,
        staff: DoorStaff,
        *,
        qr: str | None = None,
        code: str | None = None,
        door_event_id: str | None = None,
        gate: str | None = None,
    ) -> CheckedIn:
        """Check a ticket in by its QR text (or its door code and the door's event), once.

        The check-in is the first event of the ticket's own stream, appended at version 0:
        of any number of concurrent scans exactly one is written, the others read it and get
        `AlreadyCheckedIn`. The append also requires the order's stream to be where the
        decision read it, so a refund recorded meanwhile is never missed.
        """
        if not staff.may_check_in_somewhere():
            raise NotDoorStaff(
                "Only the event's staff, its organizer or an admin check tickets in."
            )
        ticket_id, event_id, ticket_type_id = await self.identify(qr, code, door_event_id)
        event = await self.events.find(event_id)
        may_check_in = staff.may_check_in_at(event_id, event)
        order_id = await self.order_of_ticket(ticket_id)
        command = CheckIn(
            ticket_id=ticket_id,
            event_id=event_id,
            ticket_type_id=ticket_type_id,
            by=staff.account_id,
            door_event_id=door_event_id,
            gate=gate,
        )
        read: list[OrderTickets | None] = []

        async def decide(checked_in: CheckedInTicket | None) -> list[DomainEvent]:
            state = None if order_id is None else await self.orders.find(order_id)
            read.append(state)
            return rules.decide_check_in(
                checked_in,
                state,
                command,
                may_check_in_event=may_check_in,
                event_cancelled=cancelled(event),
                now=self.now(),
            )

        def effects(_: CheckedInTicket | None, events: list[DomainEvent]) -> Effects:
            state = read[-1]
            assert state is not None
            stream = ORDER_TICKETS.stream(state.order.id)
            # The event's count moves in the same append as the check-in: exact, never lagging.
            counters = [
                CounterChange(
                    checkins_counter(checked.event_id),
                    checkin_deltas(checked.ticket_type_id, checked.gate),
                    code=CHECKIN_COUNT_GUARD,
                )
                for checked in events
                if isinstance(checked, TicketCheckedIn)
            ]
            return Effects(
                counters=counters,
                stream_versions=[StreamVersion(stream, state.version, code=ORDER_CHANGED)],
            )

        saved = await self.tickets.decide_and_append(
            ticket_id,
            decide,
            effects=effects,
            actor=staff.account_id,
            decide_again_on=lambda rejected: rejected.code == ORDER_CHANGED,
        )
        assert saved is not None
        checked = saved.events[0].data
        assert isinstance(checked, TicketCheckedIn)
        return CheckedIn(ticket_id=ticket_id, checked_in_at=checked.checked_in_at)

    async def checkin_summary(self, staff: DoorStaff, event_id: str) -> CheckinSummary:
        """The event's check-ins so far, in all, per ticket type and per gate, beside its
        tickets sold and not refunded; for its door staff (404 `event_not_found` to those
        who may not see the event, 403 `not_door_staff` to others).

        Both come from the counters the appends move (a check-in and its count are one
        append), so the figures are exact the moment a scan is answered.
        """
        event = await self.events.find(event_id)
        if event is None:
            raise EventNotFound(f"no event {event_id}")
        if not staff.may_check_in_at(event_id, event):
            event.ensure_visible_to(staff.account_id, is_admin=staff.is_admin)
            raise NotDoorStaff("Only the event's staff, its organizer or an admin see its doors.")
        names = [checkins_counter(event_id)] + [
            inventory_counter(ticket_type.id) for ticket_type in event.ticket_types
        ]
        counters = await self.store.read_counters(self.partition_of(event_id), names)
        checkins = counters[checkins_counter(event_id)]
        by_ticket_type = [
            TicketTypeCheckins(
                ticket_type_id=ticket_type.id,
                name=ticket_type.name,
                checked_in=checkins.get(TICKET_TYPE_FIELD_PREFIX + ticket_type.id, 0),
                tickets=counters[inventory_counter(ticket_type.id)].get("sold", 0),
            )
            for ticket_type in event.ticket_types
        ]
        by_gate = {
            field.removeprefix(GATE_FIELD_PREFIX) or None: count
            for field, count in sorted(checkins.items())
            if field.startswith(GATE_FIELD_PREFIX)
        }
        return CheckinSummary(
            event_id=event_id,
            checked_in=checkins.get(CHECKED_IN_FIELD, 0),
            tickets=sum(line.tickets for line in by_ticket_type),
            by_ticket_type=by_ticket_type,
            by_gate=by_gate,
        )

    async def identify(
        self, qr: str | None, code: str | None, door_event_id: str | None
    ) -> tuple[str, str, str]:
        """Ticket, event and ticket type ids from a verified QR text or a door code."""
        if qr is not None:
            verified = verify_ticket_code(qr, self.verifying_ring)
            return verified.ticket_id, verified.event_id, verified.ticket_type_id
        if code is None or door_event_id is None:
            raise InvalidTicket(
                "Scan the QR code, or type the code with the event.",
                reason="malformed",
                field="event_id",
            )
        partition = self.partition_of(door_event_id)
        normalised = rules.normalise_code(code)
        ticket_id = await self.store.read_claim(
            partition, ticket_code_claim(door_event_id, normalised)
        )
        order_id = None if ticket_id is None else await self.order_of_ticket(ticket_id)
        state = None if order_id is None else await self.orders.find(order_id)
        ticket = None if state is None or ticket_id is None else state.ticket(ticket_id)
        if ticket is None:
            raise InvalidTicket(
                "There is no ticket with this code.", reason="not_found", field="code"
            )
        return ticket.ticket_id, door_event_id, ticket.ticket_type_id


def cancelled(event: CatalogEvent | None) -> bool:
    return event is not None and event.status is EventStatus.CANCELLED
