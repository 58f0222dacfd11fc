"""Payments against the VNPAY sandbox: a lost IPN found by querydr, refunds done and refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.consumers.reconciler import GatewayUnreachable, Reconciler, refund_request_id
from eventhunting.domain.orders import OrderStatus, PaymentStatus, RequestedItem
from eventhunting.payments.vnpay_api import VnpayGateway
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from tests.integration.orders.conftest import (
    ManualClock,
    NewEvent,
    TicketTypeSpec,
    pay_at_the_sandbox,
)
from tests.integration.vnpay.standin_harness import (
    CREDENTIALS,
    Buyer,
    IpnReceiver,
    Standin,
    running_ipn_receiver,
    running_standin,
)


@pytest.fixture(scope="module")
def ipn_receiver() -> Iterator[IpnReceiver]:
    with running_ipn_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def sandbox_process(ipn_receiver: IpnReceiver) -> Iterator[Standin]:
    with running_standin(ipn_receiver.url, "--seed", "11") as standin:
        yield standin


@pytest.fixture
def sandbox(sandbox_process: Standin, ipn_receiver: IpnReceiver) -> Standin:
    sandbox_process.control("POST", "/reset")
    ipn_receiver.reset()
    # Every IPN is lost on the way: results reach us only through querydr.
    sandbox_process.switches(drop_ipns=True)
    return sandbox_process


@pytest.fixture
def payments(
    orders: OrderService,
    redis_client: aioredis.Redis,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
    clock: ManualClock,
    sandbox: Standin,
) -> PaymentService:
    return PaymentService(
        orders=orders,
        redis=redis_client,
        database=mongo_client[mongo_database_name],
        credentials=CREDENTIALS,
        pay_url=sandbox.pay_url,
        public_base_url="https://merchant.example",
        clock=clock,
    )


@pytest.fixture
async def reconciler(payments: PaymentService, sandbox: Standin) -> Any:
    async with VnpayGateway(CREDENTIALS, sandbox.api_url, timeout_seconds=2) as gateway:
        yield Reconciler(payments, gateway, gateway_attempts=2, retry_initial_seconds=0.05)


async def one_ticket_held(orders: OrderService, new_event: NewEvent) -> Any:
    event = await new_event(TicketTypeSpec("Standard", 120_000, 10))
    placement = await orders.place(
        buyer_id="buyer-1",
        event_id=event.id,
        items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=1)],
    )
    return placement.order


async def paid_at_the_sandbox(
    orders: OrderService,
    payments: PaymentService,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
    *,
    card: str = "9704198526191432198",
) -> tuple[Any, str]:
    order = await one_ticket_held(orders, new_event)
    txn_ref = await pay_at_the_sandbox(payments, sandbox, clock, order.id, "buyer-1", card=card)
    return order, txn_ref


async def test_a_lost_ipn_is_recovered_by_querydr(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    order, txn_ref = await paid_at_the_sandbox(orders, payments, new_event, sandbox, clock)
    assert (await orders.get(order.id)).status is OrderStatus.PENDING
    assert await reconciler.check_payment(txn_ref) == "payment_recorded"
    paid = await orders.get(order.id)
    assert paid.status is OrderStatus.PAID
    assert paid.invoice_number is not None
    assert await reconciler.check_payment(txn_ref) == "settled"


async def test_querydr_records_a_declined_card_as_a_failed_payment(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    order, txn_ref = await paid_at_the_sandbox(
        orders, payments, new_event, sandbox, clock, card="9704195798459170488"
    )
    assert await reconciler.check_payment(txn_ref) == "payment_recorded"
    pending = await orders.get(order.id)
    assert pending.status is OrderStatus.PENDING
    attempt = pending.payment(txn_ref)
    assert attempt is not None
    assert attempt.status is PaymentStatus.FAILED


async def test_an_abandoned_payment_page_records_nothing(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    order = await one_ticket_held(orders, new_event)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="203.0.113.5")
    assert await reconciler.check_payment(link.txn_ref) == "payment_not_made"
    attempt = (await orders.get(order.id)).payment(link.txn_ref)
    assert attempt is not None
    assert attempt.status is PaymentStatus.STARTED


async def double_paid(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> tuple[Any, str]:
    """An order paid twice at the sandbox (two tabs): the second payment must go back."""
    order, first = await paid_at_the_sandbox(orders, payments, new_event, sandbox, clock)
    second = await payments.start(order.id, buyer_id="buyer-1", client_ip="203.0.113.5")
    buyer = Buyer(sandbox)
    try:
        buyer.pay(second.payment_url)
    finally:
        buyer.client.close()
    await reconciler.check_payment(first)
    await reconciler.check_payment(second.txn_ref)
    paid = await orders.get(order.id)
    [refund] = paid.refunds
    assert refund.txn_ref == second.txn_ref
    return paid, refund.id


async def test_a_duplicate_payment_is_refunded_through_the_gateway_once(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    order, refund_id = await double_paid(orders, payments, reconciler, new_event, sandbox, clock)
    assert await reconciler.settle_refund(order.id, refund_id) == "refund_completed"
    assert await reconciler.settle_refund(order.id, refund_id) == "settled"
    [refund] = (await orders.get(order.id)).refunds
    assert refund.status == "completed"
    refunds = sandbox.ledger()["refunds"]
    assert len(refunds) == 1
    assert refunds[0]["amount"] == order.total_amount


async def test_a_refund_whose_answer_was_lost_is_confirmed_by_querydr_not_sent_twice(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    order, refund_id = await double_paid(orders, payments, reconciler, new_event, sandbox, clock)
    sandbox.switches(
        refund_failure_rate=1.0,
        refund_failure_mode="applied_then_timeout",
        refund_hang_seconds=3,
    )
    # The refund is made but its answer times out; the retry asks querydr before refunding.
    assert await reconciler.settle_refund(order.id, refund_id) == "refund_completed"
    assert len(sandbox.ledger()["refunds"]) == 1
    [refund] = (await orders.get(order.id)).refunds
    assert refund.status == "completed"


async def test_a_gateway_that_never_answers_leaves_the_refund_for_a_later_delivery(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    order, refund_id = await double_paid(orders, payments, reconciler, new_event, sandbox, clock)
    sandbox.switches(refund_failure_rate=1.0, refund_failure_mode="timeout", refund_hang_seconds=3)
    async with VnpayGateway(CREDENTIALS, sandbox.api_url, timeout_seconds=1) as gateway:
        once = Reconciler(payments, gateway, gateway_attempts=1, refund_retry_initial_seconds=30)
        with pytest.raises(GatewayUnreachable):
            await once.settle_refund(order.id, refund_id)
        [refund] = (await orders.get(order.id)).refunds
        assert refund.status == "requested"
        sandbox.switches(refund_failure_rate=0.0)
        # Delivered again: the same attempt, the same request id, which VNPAY saw (94) and
        # (querydr says) refunded nothing; so the refund is tried again as a new attempt.
        assert await once.settle_refund(order.id, refund_id) == "refund_failed"
        assert sandbox.ledger()["refunds"] == []
        clock.advance(30)
        assert await once.retry_refund(order.id, refund_id) == "refund_completed"
    [entry] = sandbox.ledger()["refunds"]
    assert entry["request_id"] == refund_request_id(refund_id, 2)


async def test_a_refund_the_gateway_refuses_is_recorded_as_failed(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    order, refund_id = await double_paid(orders, payments, reconciler, new_event, sandbox, clock)
    sandbox.switches(refund_failure_rate=1.0, refund_failure_mode="error")
    assert await reconciler.settle_refund(order.id, refund_id) == "refund_failed"
    [refund] = (await orders.get(order.id)).refunds
    assert refund.status == "failed"
    assert sandbox.ledger()["refunds"] == []
