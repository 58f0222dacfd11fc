"""Orders routes: place a hold, read and list orders, cancel a pending order."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from eventhunting.api.auth import Principal, principal_of, signed_in
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.api.paging import Page, page_schema
from eventhunting.api.parameters import DEFAULT_PAGE_SIZE, PageNumber, PageSize
from eventhunting.bootstrap import Services
from eventhunting.domain.orders import Order, OrderStatus, RequestedItem
from eventhunting.projections.orders import OrderQuery
from eventhunting.services.orders import OrderService

MAX_ITEMS = 50
MAX_QUANTITY = 1_000
MAX_ID_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 200

Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


class OrderItemCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ticket_type_id: Identifier
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)]


class OrderCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One or more ticket types of one event; a repeated ticket type adds up."""

    event_id: Identifier
    items: Annotated[list[OrderItemCreate], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]


class OrderItemView(msgspec.Struct, frozen=True, kw_only=True):
    ticket_type_id: str
    name: str
    quantity: int
    unit_price: int
    amount: int


class OrderView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An order; prices were frozen when it was placed, `total_amount` is integer VND."""

    id: str
    event_id: str
    buyer_id: str
    status: str
    items: list[OrderItemView]
    total_amount: int
    currency: str
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    invoice_number: str | None = None


def view_of(order: Order) -> OrderView:
    return OrderView(
        id=order.id,
        event_id=order.event_id,
        buyer_id=order.buyer_id,
        status=order.status.value,
        items=[
            OrderItemView(
                ticket_type_id=line.ticket_type_id,
                name=line.name,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
            )
            for line in order.items
        ],
        total_amount=order.total_amount,
        currency=order.currency,
        created_at=order.created_at,
        expires_at=order.expires_at,
        paid_at=order.paid_at,
        cancelled_at=order.cancelled_at,
        expired_at=order.expired_at,
        invoice_number=order.invoice_number,
    )


def view_of_document(document: dict[str, Any]) -> OrderView:
    return msgspec.convert(
        {**document, "id": document["_id"]}, OrderView, from_attributes=False, strict=False
    )


def provide_orders(state: State) -> OrderService:
    services: Services = state.services
    return services.orders


class OrderController(Controller):
    path = "/api/v1/orders"
    tags = ["orders"]
    guards = [signed_in]
    dependencies = {"orders": Provide(provide_orders, sync_to_thread=False)}

    @post(
        "",
        summary="Hold tickets of one event",
        description=(
            "All items or none. 409 `sold_out`, `limit_exceeded`, `sale_closed`,"
            " `event_not_on_sale`, `idempotency_key_reused`; 404 `event_not_found`;"
            " 422 `invalid_input` (also for ticket types of another event) and"
            " `max_per_order_exceeded`."
        ),
        status_code=201,
        opt={PROBLEM_STATUSES: (404, 409)},
    )
    async def place(
        self,
        request: Request[Any, Any, Any],
        data: OrderCreate,
        idempotency_key: Annotated[
            str | None,
            Parameter(
                header="Idempotency-Key",
                required=False,
                min_length=1,
                max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
            ),
        ] = None,
    ) -> OrderView:
        # The flash-sale route takes no dependencies: two of them cost a task group per
        # request. The guard has verified the caller already.
        principal = principal_of(request)
        services: Services = request.app.state.services
        placement = await services.orders.place(
            buyer_id=principal.account_id,
            event_id=data.event_id,
            items=[
                RequestedItem(ticket_type_id=item.ticket_type_id, quantity=item.quantity)
                for item in data.items
            ],
            idempotency_key=idempotency_key,
        )
        return view_of(placement.order)

    @get("", summary="The caller's orders (read model; may lag a moment)")
    async def mine(
        self,
        orders: OrderService,
        principal: Principal,
        status: OrderStatus | None = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Annotated[Page[OrderView], page_schema("OrderPage")]:
        found = await orders.list_for_buyer(
            OrderQuery(buyer_id=principal.account_id, status=status, page=page, page_size=page_size)
        )
        return Page(
            items=[view_of_document(document) for document in found.documents],
            total=found.total,
            page=page,
            page_size=page_size,
        )

    @get("/{order_id:str}", summary="One order, as of the last command (read-your-writes)")
    async def show(self, order_id: str, orders: OrderService, principal: Principal) -> OrderView:
        return view_of(
            await orders.get_visible(
                order_id, viewer_id=principal.account_id, viewer_is_admin=principal.is_admin
            )
        )

    @post(
        "/{order_id:str}/cancel",
        summary="The buyer cancels a pending order; its tickets are free at once",
        status_code=200,
        opt={PROBLEM_STATUSES: (403, 409)},
    )
    async def cancel(self, order_id: str, orders: OrderService, principal: Principal) -> OrderView:
        await orders.get_visible(
            order_id, viewer_id=principal.account_id, viewer_is_admin=principal.is_admin
        )
        return view_of(await orders.cancel(order_id, by=principal.account_id))
