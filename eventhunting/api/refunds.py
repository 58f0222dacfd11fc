"""Refund routes: an organizer or admin refunds a paid order; buyers and organizers list them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from eventhunting.api.auth import ADMIN, Principal, requires_roles, signed_in
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.api.orders import MAX_ID_LENGTH, MAX_IDEMPOTENCY_KEY_LENGTH
from eventhunting.api.paging import Page, page_schema
from eventhunting.api.parameters import DEFAULT_PAGE_SIZE, PageNumber, PageSize
from eventhunting.bootstrap import Services
from eventhunting.domain.orders import Refund, RefundResolution
from eventhunting.services.refunds import RefundService

MAX_REASON_LENGTH = 500
MAX_NOTE_LENGTH = 1_000
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


class AdminRefundView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A refund as admins follow it: the refund, its last gateway failure and resolution.

    `attempt` is the number of the last gateway call that failed (the next is one more);
    `outcome_unknown`: VNPAY saw that call but whether it refunded cannot be told (the worker
    never calls again; check the merchant portal, then `retry` or `settled`); `retry_at`:
    when the worker calls again by itself; `settled_by` and `note`: an admin marked it
    settled outside VNPAY.
    """

    id: str
    order_id: str
    ticket_ids: list[str]
    amount: int
    reason: str
    status: str
    requested_at: datetime
    completed_at: datetime | None = None
    vnpay_transaction_no: str | None = None
    event_id: str | None = None
    attempt: int | None = None
    response_code: str | None = None
    message: str | None = None
    failed_at: datetime | None = None
    outcome_unknown: bool = False
    retry_at: datetime | None = None
    settled_by: str | None = None
    note: str | None = None


class RefundResolve(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`retry`: call VNPAY again now (a new attempt); `settled`: the money went back outside
    VNPAY (the note says how; the refund is completed without a gateway call)."""

    resolution: RefundResolution
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NOTE_LENGTH)]


class RefundRetry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_LENGTH)] = ""


def admin_document_view(document: dict[str, Any]) -> AdminRefundView:
    return msgspec.convert(
        {**document, "id": document["_id"]}, AdminRefundView, from_attributes=False, strict=False
    )


def admin_refund_view(order_id: str, refund: Refund) -> AdminRefundView:
    return AdminRefundView(
        id=refund.id,
        order_id=order_id,
        ticket_ids=list(refund.ticket_ids),
        amount=refund.amount,
        reason=refund.reason,
        status=refund.status,
        requested_at=refund.requested_at,
        completed_at=refund.completed_at,
        vnpay_transaction_no=refund.transaction_no,
        attempt=refund.failures or None,
        outcome_unknown=refund.outcome_unknown,
        retry_at=refund.retry_at,
        settled_by=refund.settled_by,
        note=refund.note,
    )


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


class AdminRefundController(Controller):
    """`/api/v1/admin/refunds`: failed refunds, and an admin's way out for each."""

    path = "/api/v1/admin/refunds"
    tags = ["admin", "refunds"]
    guards = [requires_roles(ADMIN)]
    dependencies = {"refunds": Provide(provide_refunds, sync_to_thread=False)}

    @get(
        "",
        summary="Failed refunds of every order, oldest request first (admin)",
        description=(
            "The refunds VNPAY refused or whose outcome is unknown (read model; may lag a"
            " moment). The reconciler calls again by itself at `retry_at` (capped backoff),"
            " except for `outcome_unknown` ones, which wait for an admin."
        ),
    )
    async def failed_refunds(
        self,
        refunds: RefundService,
        principal: Principal,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Annotated[Page[AdminRefundView], page_schema("AdminRefundPage")]:
        documents, total = await refunds.failed(principal.actor, page=page, page_size=page_size)
        return Page(
            items=[admin_document_view(document) for document in documents],
            total=total,
            page=page,
            page_size=page_size,
        )

    @post(
        "/{refund_id:str}/resolve",
        summary="Resolve a failed refund: retry it now, or mark it settled outside VNPAY",
        description=(
            "Appends `RefundResolved` to the order's stream. `retry`: the refund is"
            " `requested` again and the reconciler calls VNPAY now, as a new attempt;"
            " `settled`: it is `completed` without a gateway call. Repeating a resolution"
            " that is done changes nothing and answers the same. 404 `refund_not_found`;"
            " 409 `refund_not_failed` (completed by VNPAY, or requested)."
        ),
        status_code=200,
        opt={PROBLEM_STATUSES: (404, 409)},
    )
    async def resolve_refund(
        self, refund_id: str, data: RefundResolve, refunds: RefundService, principal: Principal
    ) -> AdminRefundView:
        order_id, refund = await refunds.resolve(
            refund_id, by=principal.actor, resolution=data.resolution, note=data.note
        )
        return admin_refund_view(order_id, refund)

    @post(
        "/{refund_id:str}/retry",
        summary="Call VNPAY again now for a failed refund (a new attempt)",
        description=(
            "The same as `resolve` with `retry`. Repeating it while the refund is"
            " `requested` changes nothing. 404 `refund_not_found`; 409 `refund_not_failed`."
        ),
        status_code=200,
        opt={PROBLEM_STATUSES: (404, 409)},
    )
    async def retry_refund(
        self,
        refund_id: str,
        refunds: RefundService,
        principal: Principal,
        data: RefundRetry | None = None,
    ) -> AdminRefundView:
        order_id, refund = await refunds.resolve(
            refund_id,
            by=principal.actor,
            resolution=RefundResolution.RETRY,
            note="" if data is None else data.note,
        )
        return admin_refund_view(order_id, refund)
