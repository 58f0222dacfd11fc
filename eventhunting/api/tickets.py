"""Ticket routes: an order's tickets, their QR images, and sending the tickets mail again."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide

from eventhunting.api.auth import Principal, signed_in
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.services.tickets import TicketService, TicketState
from eventhunting.tickets.qr_images import qr_png, qr_svg

# Images of a ticket never change; a browser may keep them, nobody else (they admit people).
IMAGE_CACHE = CacheControlHeader(private=True, max_age=3600)


def provide_tickets(state: State) -> TicketService:
    tickets: TicketService = state.services.tickets
    return tickets


TICKETS_DEPENDENCY = {"tickets": Provide(provide_tickets, sync_to_thread=False)}


class TicketView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One ticket: `qr` is the signed text the door scans; `code` can be typed instead."""

    id: str
    code: str
    ticket_type_id: str
    holder_name: str
    status: str
    """`issued`, `checked_in` or `refunded`."""
    qr: str
    qr_png_url: str
    qr_svg_url: str
    checked_in_at: datetime | None = None
    gate: str | None = None


class TicketList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TicketView]


class ResendAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The mail is on its way: the mailer sends it as `purpose` (`resend:<n>`)."""

    order_id: str
    purpose: str


def view_of(found: TicketState) -> TicketView:
    ticket = found.ticket
    checked_in = found.checked_in
    return TicketView(
        id=ticket.ticket_id,
        code=ticket.code,
        ticket_type_id=ticket.ticket_type_id,
        holder_name=ticket.holder_name,
        status=found.status.value,
        qr=ticket.qr,
        qr_png_url=f"/api/v1/tickets/{ticket.ticket_id}/qr.png",
        qr_svg_url=f"/api/v1/tickets/{ticket.ticket_id}/qr.svg",
        checked_in_at=None if checked_in is None else checked_in.checked_in_at,
        gate=None if checked_in is None else checked_in.gate,
    )


class OrderTicketsController(Controller):
    """`/api/v1/orders/{order_id}/tickets`: the tickets of one order."""

    path = "/api/v1/orders/{order_id:str}/tickets"
    tags = ["tickets"]
    guards = [signed_in]
    dependencies = TICKETS_DEPENDENCY

    @get(
        "",
        summary="The order's tickets (buyer, the event's organizer, admin)",
        description="Read from the order's stream and each ticket's check-in stream, so a"
        " ticket shows the moment it is issued or checked in. `items` is empty until the"
        " mailer has issued the tickets (moments after payment).",
    )
    async def list_tickets(
        self, order_id: str, tickets: TicketService, principal: Principal
    ) -> TicketList:
        found = await tickets.tickets_of(order_id, principal.actor)
        return TicketList(items=[view_of(ticket) for ticket in found])

    @post(
        "/resend",
        summary="Send the tickets mail again (the buyer)",
        description="202: the mailer sends a new mail shortly. At most 3 per order an hour:"
        " 429 `resend_rate_limited` with Retry-After. 403 `not_order_buyer` for the event's"
        " organizer or an admin; 409 `tickets_not_issued` or `tickets_void` (refunded).",
        status_code=202,
        opt={PROBLEM_STATUSES: (403, 409, 429)},
    )
    async def resend(
        self, order_id: str, tickets: TicketService, principal: Principal
    ) -> ResendAccepted:
        purpose = await tickets.resend(order_id, principal.actor)
        return ResendAccepted(order_id=order_id, purpose=purpose)


class TicketImageController(Controller):
    """`/api/v1/tickets/{ticket_id}/qr.png|svg`: a ticket's QR code as an image."""

    path = "/api/v1/tickets/{ticket_id:str}"
    tags = ["tickets"]
    guards = [signed_in]
    dependencies = TICKETS_DEPENDENCY

    @get(
        "/qr.png",
        summary="The ticket's QR code as a PNG (buyer, the event's organizer, admin)",
        media_type="image/png",
        cache_control=IMAGE_CACHE,
    )
    async def png(
        self, ticket_id: str, tickets: TicketService, principal: Principal
    ) -> Response[bytes]:
        text = await tickets.ticket_qr(ticket_id, principal.actor)
        return Response(qr_png(text), media_type="image/png")

    @get(
        "/qr.svg",
        summary="The ticket's QR code as SVG, for printing",
        media_type="image/svg+xml",
        cache_control=IMAGE_CACHE,
    )
    async def svg(
        self, ticket_id: str, tickets: TicketService, principal: Principal
    ) -> Response[bytes]:
        text = await tickets.ticket_qr(ticket_id, principal.actor)
        return Response(qr_svg(text), media_type="image/svg+xml")


TICKET_ROUTES = [OrderTicketsController, TicketImageController]
