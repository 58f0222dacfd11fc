"""Refund routes: an organizer or admin refunds a paid order; buyers and organizers list them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from eventhunting.api.auth import Principal, signed_in
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.api.orders import MAX_ID_LENGTH, MAX_IDEMPOTENCY_KEY_LENGTH
from eventhunting.bootstrap import Services
from eventhunting.domain.orders import Refund
from eventhunting.services.refunds import RefundService

MAX_REASON_LENGTH = 500
MAX_TICKETS = 1_000

TicketId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


class RefundCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Some tickets of the order (all that are left when `ticket_ids` is omitted).

    `force` lets an admin refund tickets that were checked in.
    """

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON_LENGTH)]
    ticket_ids: (
        Annotated[list[TicketId], msgspec.Meta(min_length=1, max_length=MAX_TICKETS)] | None
    ) = None
    force: bool = False


class RefundView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A refund; `status` is `requested`, `completed` or `failed`; `amount` is integer VND."""

    id: str
    order_id: str
    ticket_ids: list[str]
    amount: int
    reason: str
    status: str
    requested_at: datetime
    completed_at: datetime | None = None
    vnpay_transaction_no: str | None = None


class RefundList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[RefundView]


class RefundCounts(msgspec.Struct, frozen=True, kw_only=True):
    requested: int
    completed: int
    failed: int


class EventRefundProgress(msgspec.Struct, frozen=True, kw_only=True):
    """An event's refunds by status (read model; may lag a moment) and the failed ones."""

    counts: RefundCounts
    failed: list[RefundView]


def document_view(document: dict[str, Any]) -> RefundView:
    return msgspec.convert(
        {**document, "id": document["_id"]}, RefundView, from_attributes=False, strict=False
    )


def refund_view(order_id: str, refund: Refund) -> RefundView:
    return RefundView(
        id=refund.id,
        order_id=order_id,
        ticket_ids=list(refund.ticket_ids),
        amount=refund.amount,
        reason=refund.reason,
        status=refund.status,
        requested_at=refund.requested_at,
        completed_at=refund.completed_at,
        vnpay_transaction_no=refund.transaction_no,
    )


def provide_refunds(state: State) -> RefundService:
    services: Services = state.services
    return services.refunds


class RefundController(Controller):
    path = "/api/v1"
    tags = ["refunds"]
    guards = [signed_in]
    dependencies = {"refunds": Provide(provide_refunds, sync_to_thread=False)}

    @post(
        "/orders/{order_id:str}/refunds",
        summary="Refund a paid order, or some of its tickets (event organizer or admin)",
        description=(
            "Records the refund at once (its tickets are void, and back on sale while the"
            " event has not started); the reconciler gives the money back through VNPAY."
            " 409 `not_refundable`, `refund_exceeds_paid` (also for a ticket refunded"
            " before), `ticket_checked_in` (an admin may pass `force`),"
            " `idempotency_key_reused`; 404 when the caller may not refund the order."
        ),
        status_code=202,
        opt={PROBLEM_STATUSES: (404, 409)},
    )
    async def request_refund(
        self,
        order_id: str,
        data: RefundCreate,
        refunds: RefundService,
        principal: Principal,
        idempotency_key: Annotated[
            str | None,
            Parameter(
                header="Idempotency-Key",
                required=False,
                min_length=1,
                max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
            ),
        ] = None,
    ) -> Response[RefundView]:
        requested = await refunds.request(
            order_id,
            by=principal.actor,
            reason=data.reason,
            ticket_ids=data.ticket_ids,
            force=data.force,
            idempotency_key=idempotency_key,
        )
        return Response(refund_view(requested.order_id, requested.refund), status_code=202)

    @get(
        "/orders/{order_id:str}/refunds",
        summary="An order's refunds (its buyer, the event's organizer, admin)",
        opt={PROBLEM_STATUSES: (404,)},
    )
    async def order_refunds(
        self, order_id: str, refunds: RefundService, principal: Principal
    ) -> RefundList:
        order, found = await refunds.of_order(order_id, principal.actor)
        return RefundList(items=[refund_view(order.id, refund) for refund in found])

    @get(
        "/events/{event_id:str}/refunds",
        summary="An event's refunds by status and the failed ones (its organizer, admin)",
        description=(
            "Follows a cancelled event's refunds: counts of requested, completed and failed"
            " refunds and the failed ones (read model; may lag a moment). 404 for others."
        ),
        opt={PROBLEM_STATUSES: (404,)},
    )
    async def event_refunds(
        self, event_id: str, refunds: RefundService, principal: Principal
    ) -> EventRefundProgress:
        found = await refunds.of_event(event_id, principal.actor)
        return EventRefundProgress(
            counts=RefundCounts(**found.counts),
            failed=[document_view(document) for document in found.failed],
        )
