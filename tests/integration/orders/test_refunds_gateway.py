"""Refunds against the VNPAY sandbox: partial then the rest, and a cancelled event's orders."""

# Fixtures are imported to be used here by name: their parameters "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import pytest

from eventhunting.consumers.reconciler import Reconciler
from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import CancelEvent, CatalogEvent
from eventhunting.domain.orders import (
    Order,
    OrderCancelled,
    OrderStatus,
    RefundRequested,
    RequestedItem,
)
from eventhunting.payments.vnpay_api import VnpayGateway
from eventhunting.projections.base import Projector
from eventhunting.projections.orders import OrdersProjection
from eventhunting.services.catalog import CatalogService
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.services.refunds import RefundService
from eventhunting.services.tickets import TicketService
from eventhunting.store import keys
from eventhunting.store.append import EventStore
from eventhunting.store.counters import inventory_counter
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.orders.conftest import (
    ORGANIZER,
    ManualClock,
    NewEvent,
    TicketTypeSpec,
    pay_at_the_sandbox,
)
from tests.integration.orders.test_payments_gateway import (  # noqa: F401 - fixtures
    ipn_receiver,
    payments,
    sandbox,
    sandbox_process,
)
from tests.integration.tickets.conftest import signing_key, signing_ring, tickets  # noqa: F401
from tests.integration.vnpay.standin_harness import CREDENTIALS, Standin
from tests.support.leases import lease_of

PRICE = 120_000
BUYER = "buyer-1"


@pytest.fixture
async def reconciler(payments: PaymentService, sandbox: Standin) -> Any:
    async with VnpayGateway(CREDENTIALS, sandbox.api_url, timeout_seconds=2) as gateway:
        yield Reconciler(
            payments,
            gateway,
            gateway_attempts=2,
            retry_initial_seconds=0.05,
            refunds_per_second=200,
        )


@pytest.fixture
def refunds(payments: PaymentService) -> RefundService:
    return RefundService(payments.orders, payments.database, payments)


async def paid_at_the_sandbox(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    sandbox: Standin,
    clock: ManualClock,
    event: CatalogEvent,
    quantity: int,
) -> Order:
    """An order of `quantity` tickets paid at the sandbox, its result found by querydr."""
    placement = await orders.place(
        buyer_id=BUYER,
        event_id=event.id,
        items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=quantity)],
    )
    txn_ref = await pay_at_the_sandbox(payments, sandbox, clock, placement.order.id, BUYER)
    assert await reconciler.check_payment(txn_ref) == "payment_recorded"
    order = await orders.get(placement.order.id)
    assert order.status is OrderStatus.PAID
    return order


async def settle_requested(
    store: EventStore, reconciler: Reconciler, event: CatalogEvent
) -> list[str]:
    """Hand every RefundRequested of the event's partition to the reconciler, as delivered."""
    outcomes = []
    partition = keys.partition_of(event.id, store.partitions)
    for envelope in await store.read_log(partition, "0", count=10_000):
        if isinstance(envelope.data, RefundRequested):
            outcomes.append(
                await reconciler.settle_refund(envelope.data.order_id, envelope.data.refund_id)
            )
    return outcomes


async def project(store: EventStore, payments: PaymentService, event: CatalogEvent) -> None:
    projection = OrdersProjection()
    await projection.create_indexes(payments.database)
    projector = Projector(payments.database, [projection])
    partition = keys.partition_of(event.id, store.partitions)
    after = "0"
    while batch := await store.read_log(partition, after, count=50):
        await projector(batch, lease_of(batch))
        after = batch[-1].position or after


async def test_a_partial_refund_then_the_rest_are_both_given_back_through_the_gateway(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 2)
    issued = await tickets.issue(order.id, signing_ring)
    await refunds.request(
        order.id, by=ORGANIZER, reason="one seat", ticket_ids=[issued[0].ticket_id]
    )
    assert await settle_requested(store, reconciler, event) == ["refund_completed"]
    ledger = sandbox.ledger()["refunds"]
    assert [(r["amount"], r["transaction_type"]) for r in ledger] == [(PRICE, "03")]
    await refunds.request(order.id, by=ORGANIZER, reason="the rest")
    assert await settle_requested(store, reconciler, event) == ["settled", "refund_completed"]
    ledger = sandbox.ledger()["refunds"]
    assert sorted(r["amount"] for r in ledger) == [PRICE, PRICE]
    settled = await orders.get(order.id)
    assert settled.status is OrderStatus.REFUNDED
    assert [r.status for r in settled.refunds] == ["completed", "completed"]


async def test_cancelling_an_event_refunds_every_paid_order_once(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    refunds: RefundService,
    catalog: CatalogService,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 20))
    paid = [
        await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, n)
        for n in (1, 2, 3)
    ]
    unpaid = await orders.place(
        buyer_id=BUYER,
        event_id=event.id,
        items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=1)],
    )
    await catalog.cancel_event(CancelEvent(event_id=event.id, by=ORGANIZER, reason="storm"))
    await project(store, payments, event)
    partition = keys.partition_of(event.id, store.partitions)
    log = await store.read_log(partition, "0", count=10_000)
    # Delivered twice (a crash before the ack): the second delivery finds nothing to do.
    assert await reconciler.refund_cancelled_event(event.id) == 3
    await reconciler(log, lease_of(log))
    assert await settle_requested(store, reconciler, event) == ["refund_completed"] * 3
    ledger = sandbox.ledger()["refunds"]
    assert sorted(r["amount"] for r in ledger) == [PRICE, 2 * PRICE, 3 * PRICE]
    for order in paid:
        refunded = await orders.get(order.id)
        assert refunded.status is OrderStatus.REFUNDED
        assert len(refunded.refunds) == 1
    assert (await orders.get(unpaid.order.id)).refunds == ()
    await project(store, payments, event)
    for order in paid:
        document = await payments.database["orders"].find_one({"_id": order.id})
        assert document is not None
        assert document["status"] == "refunded"
    progress = await refunds.of_event(event.id, ORGANIZER)
    assert progress.counts == {"requested": 0, "completed": 3, "failed": 0}
    assert progress.failed == []
    with pytest.raises(Exception, match="no event"):
        await refunds.of_event(event.id, Actor("someone-else"))


async def test_cancelling_an_event_releases_its_holds_and_refunds_its_paid_order_once(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    catalog: CatalogService,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 20))
    ticket_type_id = event.ticket_types[0].id
    paid = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 1)
    holds = [
        await orders.place(
            buyer_id=buyer_id,
            event_id=event.id,
            items=[RequestedItem(ticket_type_id=ticket_type_id, quantity=quantity)],
        )
        for buyer_id, quantity in (("buyer-2", 2), ("buyer-3", 3))
    ]
    partition = keys.partition_of(event.id, store.partitions)
    counter = inventory_counter(ticket_type_id)
    assert (await store.read_counters(partition, [counter]))[counter]["held"] == 5
    await catalog.cancel_event(CancelEvent(event_id=event.id, by=ORGANIZER, reason="storm"))
    await project(store, payments, event)
    log = await store.read_log(partition, "0", count=10_000)
    await reconciler(log, lease_of(log))
    for hold in holds:
        released = await orders.get(hold.order.id)
        assert released.status is OrderStatus.CANCELLED
        assert released.refunds == ()
    cancellations = [
        e.data
        for e in await store.read_log(partition, "0", count=10_000)
        if isinstance(e.data, OrderCancelled)
    ]
    assert sorted(c.order_id for c in cancellations) == sorted(h.order.id for h in holds)
    assert {(c.cancelled_by, c.reason) for c in cancellations} == {("system", "event_cancelled")}
    stock = (await store.read_counters(partition, [counter]))[counter]
    assert stock["held"] == 0
    refunded = await orders.get(paid.id)
    assert [r.status for r in refunded.refunds] == ["requested"]
    assert refunded.refunds[0].amount == PRICE
    # Delivered again (a crash before the ack): the orders are settled, nothing is appended.
    after_first = await store.read_log(partition, "0", count=10_000)
    await reconciler(log, lease_of(log))
    assert await store.read_log(partition, "0", count=10_000) == after_first
    assert (await store.read_counters(partition, [counter]))[counter] == stock
    assert await reconciler.release_cancelled_event_holds(event.id) == 0
