"""Check-in over HTTP: checking tickets in at the door, and the public keys of their QR codes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import CacheControlHeader

from eventhunting.api.auth import ORGANIZER, Principal, signed_in
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.api.tickets import TICKETS_DEPENDENCY
from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.tickets import MAX_GATE_LENGTH
from eventhunting.services.tickets import DoorStaff, TicketService
from eventhunting.tickets.qr_codes import MAX_TEXT_LENGTH
from eventhunting.tickets.qr_keys import JsonWebKeySet

PUBLIC_KEY_MAX_AGE_SECONDS = 300
"""Scanners may keep the keys this long; a key is published before it signs (docs/tickets.md)."""


def door_staff(principal: Principal) -> DoorStaff:
    return DoorStaff(
        account_id=principal.account_id,
        is_admin=principal.is_admin,
        is_organizer=principal.has_role(ORGANIZER),
        staff_events=principal.staff_events,
    )


class CheckinCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A scanned QR text (`qr`), or a typed door code (`code`) with the door's `event_id`.

    With `event_id`, a ticket of another event is refused (`other_event`) even for a caller
    who may check in at both; `gate` is kept with the check-in and shown to later scans.
    """

    qr: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LENGTH)] | None = None
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    gate: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_GATE_LENGTH)] | None = None


class Checkin(msgspec.Struct, frozen=True, kw_only=True):
    """The ticket let its holder in now."""

    ticket_id: str
    status: Literal["checked_in"] = "checked_in"
    checked_in_at: datetime


class TicketTypeCheckins(msgspec.Struct, frozen=True, kw_only=True):
    """One ticket type: tickets checked in, of `tickets` sold and not refunded."""

    ticket_type_id: str
    name: str
    checked_in: int
    tickets: int


class GateCheckins(msgspec.Struct, frozen=True, kw_only=True):
    """Tickets checked in at one gate (`null`: scans that named no gate)."""

    gate: str | None
    checked_in: int


class CheckinSummary(msgspec.Struct, frozen=True, kw_only=True):
    """An event's check-ins at `as_of`: exact, counted in the same write as each check-in."""

    event_id: str
    checked_in: int
    tickets: int
    by_ticket_type: list[TicketTypeCheckins]
    by_gate: list[GateCheckins]
    as_of: datetime


class CheckinController(Controller):
    """`/api/v1/checkins`: verifying tickets at the door, and each event's count."""

    path = "/api/v1"
    tags = ["check-in"]
    dependencies = TICKETS_DEPENDENCY

    @post(
        "/checkins",
        guards=[signed_in],
        status_code=200,
        summary="Check a ticket in at the door (the event's staff, its organizer, admin)",
        description="The first scan of a ticket wins, however many arrive at once. Later"
        " scans: 409 `already_checked_in` with the first `checked_in_at` (and `gate`). A"
        " ticket that does not admit: 422 `invalid_ticket` with `reason`: `malformed`,"
        " `unknown_key`, `bad_signature` (the QR text), `other_event`, `not_found`,"
        " `refunded`, `cancelled`. 403 `not_door_staff` for a caller who checks in nowhere.",
        opt={PROBLEM_STATUSES: (403, 409)},
    )
    async def check_in(
        self, data: CheckinCreate, tickets: TicketService, principal: Principal
    ) -> Checkin:
        if (data.qr is None) == (data.code is None):
            raise InvalidInput("Send either `qr` or `code`.", field="qr")
        if data.code is not None and data.event_id is None:
            raise InvalidInput("A typed code needs the door's `event_id`.", field="event_id")
        checked = await tickets.check_in(
            door_staff(principal),
            qr=data.qr,
            code=data.code,
            door_event_id=data.event_id,
            gate=data.gate,
        )
        return Checkin(ticket_id=checked.ticket_id, checked_in_at=checked.checked_in_at)

    @get(
        "/events/{event_id:str}/checkins/summary",
        guards=[signed_in],
        summary="How many of an event's tickets are checked in (its staff, organizer, admin)",
        description="`checked_in` of `tickets` (sold and not refunded now), per ticket type"
        " and per gate (`gate` null: scans that named none). Exact: each check-in moves the"
        " count in the same atomic write, so a scan's 200 is already counted. A ticket"
        " refunded after it let someone in stays checked in but no longer counts in"
        " `tickets`. 404 `event_not_found` for an event the caller may not see, 403"
        " `not_door_staff` for a caller who is not its door staff.",
        opt={PROBLEM_STATUSES: (403, 404)},
    )
    async def summary(
        self, event_id: str, tickets: TicketService, principal: Principal
    ) -> CheckinSummary:
        counted = await tickets.checkin_summary(door_staff(principal), event_id)
        return CheckinSummary(
            event_id=counted.event_id,
            checked_in=counted.checked_in,
            tickets=counted.tickets,
            by_ticket_type=[
                TicketTypeCheckins(
                    ticket_type_id=line.ticket_type_id,
                    name=line.name,
                    checked_in=line.checked_in,
                    tickets=line.tickets,
                )
                for line in counted.by_ticket_type
            ],
            by_gate=[
                GateCheckins(gate=gate, checked_in=count) for gate, count in counted.by_gate.items()
            ],
            as_of=tickets.now(),
        )

    @get(
        "/checkins/public-key",
        summary="Public keys that verify ticket QR codes",
        description="An RFC 7517 JWK set of Ed25519 keys (RFC 8037), the signing key first;"
        " `kid` is the key id a QR code carries, in hex. Empty when this API has no QR keys"
        " configured. See docs/tickets.md for the QR layout.",
        cache_control=CacheControlHeader(public=True, max_age=PUBLIC_KEY_MAX_AGE_SECONDS),
    )
    async def public_keys(self, tickets: TicketService) -> JsonWebKeySet:
        return tickets.public_keys()
