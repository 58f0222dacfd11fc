"""Refunds of paid orders against Redis: amounts, stock back on sale, races, check-in, keys."""

# The ticket fixtures are imported to be used here by name: their parameters "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import UpdateEvent
from eventhunting.domain.errors import IdempotencyKeyReused
from eventhunting.domain.orders import Order, OrderNotFound, OrderStatus, RequestedItem
from eventhunting.domain.refunds import NotRefundable, RefundExceedsPaid, TicketCheckedInAlready
from eventhunting.domain.tickets import InvalidTicket, IssuedTicket
from eventhunting.services.catalog import CatalogService
from eventhunting.services.orders import OrderService, buyer_counter
from eventhunting.services.payments import PaymentService
from eventhunting.services.refunds import RefundService
from eventhunting.services.tickets import DoorStaff, TicketService
from eventhunting.store import keys
from eventhunting.store.append import EventStore
from eventhunting.store.counters import inventory_counter
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.orders.conftest import ORGANIZER, NewEvent, TicketTypeSpec
from tests.integration.orders.test_payments_races import ipn
from tests.integration.tickets.conftest import signing_key, signing_ring, tickets  # noqa: F401

ADMIN = Actor("admin-1", is_admin=True)
BUYER = "buyer-1"
PRICE = 100_000

PaidOrder = Callable[[int], Awaitable[tuple[Order, tuple[IssuedTicket, ...]]]]


@pytest.fixture
def refunds(orders: OrderService) -> RefundService:
    return RefundService(orders)


@pytest.fixture
def paid_order(
    orders: OrderService,
    payments: PaymentService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    new_event: NewEvent,
) -> PaidOrder:
    """An order of `quantity` tickets paid through the IPN, with its tickets issued."""

    async def pay(quantity: int) -> tuple[Order, tuple[IssuedTicket, ...]]:
        event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
        placement = await orders.place(
            buyer_id=BUYER,
            event_id=event.id,
            items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=quantity)],
        )
        order = placement.order
        link = await payments.start(order.id, buyer_id=BUYER, client_ip="203.0.113.5")
        answer = await payments.handle_ipn(ipn(link.txn_ref, order.total_amount))
        assert answer.code == "00"
        issued = await tickets.issue(order.id, signing_ring)
        return await orders.get(order.id), issued

    return pay


async def sold_and_bought(store: EventStore, order: Order) -> tuple[int, int]:
    partition = keys.partition_of(order.event_id, store.partitions)
    inventory = inventory_counter(order.items[0].ticket_type_id)
    buyer = buyer_counter(order.event_id, order.buyer_id)
    counters = await store.read_counters(partition, [inventory, buyer])
    return counters[inventory].get("sold", 0), counters[buyer].get("tickets", 0)


async def test_a_full_refund_voids_the_order_and_puts_its_tickets_back_on_sale(
    refunds: RefundService, orders: OrderService, store: EventStore, paid_order: PaidOrder
) -> None:
    order, issued = await paid_order(3)
    assert await sold_and_bought(store, order) == (3, 3)
    requested = await refunds.request(order.id, by=ORGANIZER, reason="cancelled by buyer")
    assert requested.refund.amount == 3 * PRICE
    assert set(requested.refund.ticket_ids) == {t.ticket_id for t in issued}
    assert requested.refund.status == "requested"
    assert (await orders.get(order.id)).status is OrderStatus.REFUNDED
    assert await sold_and_bought(store, order) == (0, 0)
    with pytest.raises(NotRefundable):
        await refunds.request(order.id, by=ORGANIZER, reason="again")


async def test_an_event_that_does_not_restock_refunds_keeps_refunded_tickets_off_sale(
    refunds: RefundService,
    orders: OrderService,
    catalog: CatalogService,
    store: EventStore,
    paid_order: PaidOrder,
) -> None:
    order, issued = await paid_order(3)
    await catalog.update_event(
        UpdateEvent(event_id=order.event_id, by=ORGANIZER, restock_refunds=False)
    )
    requested = await refunds.request(
        order.id, by=ORGANIZER, reason="one seat", ticket_ids=[issued[0].ticket_id]
    )
    assert requested.refund.amount == PRICE
    # Still sold: the seat is not offered again; the buyer's count is left as it was too.
    assert await sold_and_bought(store, order) == (3, 3)
    await catalog.update_event(
        UpdateEvent(event_id=order.event_id, by=ORGANIZER, restock_refunds=True)
    )
    await refunds.request(
        order.id, by=ORGANIZER, reason="second seat", ticket_ids=[issued[1].ticket_id]
    )
    assert await sold_and_bought(store, order) == (2, 2)


async def test_partial_refunds_never_give_back_more_than_was_paid(
    refunds: RefundService, orders: OrderService, store: EventStore, paid_order: PaidOrder
) -> None:
    order, issued = await paid_order(3)
    first = await refunds.request(
        order.id, by=ORGANIZER, reason="one seat", ticket_ids=[issued[0].ticket_id]
    )
    assert first.refund.amount == PRICE
    assert (await orders.get(order.id)).status is OrderStatus.PARTIALLY_REFUNDED
    assert await sold_and_bought(store, order) == (2, 2)
    with pytest.raises(RefundExceedsPaid):
        await refunds.request(
            order.id,
            by=ORGANIZER,
            reason="again",
            ticket_ids=[issued[0].ticket_id, issued[1].ticket_id],
        )
    rest = await refunds.request(order.id, by=ADMIN, reason="the rest")
    assert rest.refund.amount == 2 * PRICE
    refunded = await orders.get(order.id)
    assert refunded.status is OrderStatus.REFUNDED
    assert refunded.refunded_amount == refunded.total_amount
    assert await sold_and_bought(store, order) == (0, 0)


async def test_of_concurrent_full_refunds_of_one_order_exactly_one_proceeds(
    refunds: RefundService, orders: OrderService, store: EventStore, paid_order: PaidOrder
) -> None:
    order, _ = await paid_order(2)
    results = await asyncio.gather(
        *(refunds.request(order.id, by=ADMIN, reason=f"try {n}") for n in range(6)),
        return_exceptions=True,
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(granted) == 1
    assert all(isinstance(r, NotRefundable) for r in refused), refused
    final = await orders.get(order.id)
    assert [r.amount for r in final.refunds] == [2 * PRICE]
    assert await sold_and_bought(store, order) == (0, 0)


async def test_of_concurrent_refunds_of_one_ticket_exactly_one_proceeds(
    refunds: RefundService, orders: OrderService, store: EventStore, paid_order: PaidOrder
) -> None:
    order, issued = await paid_order(2)
    seat = [issued[0].ticket_id]
    results = await asyncio.gather(
        *(
            refunds.request(order.id, by=ORGANIZER, reason="seat", ticket_ids=seat)
            for _ in range(6)
        ),
        return_exceptions=True,
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(granted) == 1
    assert all(isinstance(r, RefundExceedsPaid) for r in refused), refused
    final = await orders.get(order.id)
    assert final.status is OrderStatus.PARTIALLY_REFUNDED
    assert final.refunded_amount == PRICE
    assert await sold_and_bought(store, order) == (1, 1)


async def test_a_checked_in_ticket_is_refunded_only_when_an_admin_forces_it(
    refunds: RefundService, tickets: TicketService, paid_order: PaidOrder
) -> None:
    order, issued = await paid_order(2)
    door = DoorStaff(account_id=ORGANIZER.account_id, is_organizer=True)
    await tickets.check_in(door, qr=issued[0].qr)
    with pytest.raises(TicketCheckedInAlready):
        await refunds.request(order.id, by=ORGANIZER, reason="no", force=True)
    with pytest.raises(TicketCheckedInAlready):
        await refunds.request(order.id, by=ADMIN, reason="not forced")
    forced = await refunds.request(order.id, by=ADMIN, reason="forced", force=True)
    assert forced.refund.amount == 2 * PRICE


async def test_a_refunded_ticket_is_refused_at_the_door_and_the_others_still_admit(
    refunds: RefundService, tickets: TicketService, paid_order: PaidOrder
) -> None:
    order, issued = await paid_order(2)
    await refunds.request(
        order.id, by=ORGANIZER, reason="one seat", ticket_ids=[issued[0].ticket_id]
    )
    door = DoorStaff(account_id=ORGANIZER.account_id, is_organizer=True)
    with pytest.raises(InvalidTicket) as refused:
        await tickets.check_in(door, qr=issued[0].qr)
    assert refused.value.reason == "refunded"
    admitted = await tickets.check_in(door, qr=issued[1].qr)
    assert admitted.ticket_id == issued[1].ticket_id


async def test_an_idempotency_key_answers_the_first_refund_and_refuses_another_body(
    refunds: RefundService, orders: OrderService, paid_order: PaidOrder
) -> None:
    order, issued = await paid_order(2)
    ticket = [issued[0].ticket_id]
    first = await refunds.request(
        order.id, by=ORGANIZER, reason="seat", ticket_ids=ticket, idempotency_key="k1"
    )
    again = await refunds.request(
        order.id, by=ORGANIZER, reason="seat", ticket_ids=ticket, idempotency_key="k1"
    )
    assert again.repeated
    assert again.refund.id == first.refund.id
    assert len((await orders.get(order.id)).refunds) == 1
    with pytest.raises(IdempotencyKeyReused):
        await refunds.request(order.id, by=ORGANIZER, reason="other", idempotency_key="k1")


async def test_only_the_events_organizer_or_an_admin_may_refund(
    refunds: RefundService, paid_order: PaidOrder
) -> None:
    order, _ = await paid_order(1)
    for stranger in (Actor(BUYER), Actor("someone-else")):
        with pytest.raises(OrderNotFound):
            await refunds.request(order.id, by=stranger, reason="mine")
    _, listed = await refunds.of_order(order.id, Actor(BUYER))
    assert listed == ()
