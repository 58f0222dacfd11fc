"""Hypothesis interleavings of an IPN with its repeats, a second payment, an expiry and a cancel."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import CreateEvent, NewTicketType, PublishEvent, Venue
from eventhunting.domain.orders import (
    InvoiceIssued,
    OrderNotPending,
    OrderPaid,
    OrderStatus,
    PaymentSucceeded,
    RefundRequested,
    RequestedItem,
    SoldOut,
)
from eventhunting.payments.vnpay_signing import sign_query
from eventhunting.services.catalog import CatalogService
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.store import keys
from eventhunting.store.append import EventStore
from eventhunting.store.counters import inventory_counter
from tests.integration.orders.test_payments_ipn import CREDENTIALS

PARTITIONS = 4
ORGANIZER = Actor(account_id="organizer-1")
CONTENDERS = ("ipn", "ipn_again", "second_ipn", "expire", "cancel", "rival_order")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def ipn(txn_ref: str, amount: int) -> list[tuple[str, str]]:
    parameters = {
        "vnp_TmnCode": CREDENTIALS.tmn_code,
        "vnp_Amount": str(amount * 100),
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20261130153000",
        "vnp_TransactionNo": str(abs(hash(txn_ref)) % 10**8),
        "vnp_ResponseCode": "00",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": txn_ref,
        "vnp_OrderInfo": "race",
    }
    parameters["vnp_SecureHash"] = sign_query(parameters, CREDENTIALS.hash_secret)
    return list(parameters.items())


plans = st.fixed_dictionaries(
    {
        "order": st.permutations(CONTENDERS),
        "pauses": st.lists(st.floats(0, 0.004), min_size=len(CONTENDERS), max_size=len(CONTENDERS)),
        "hold_ran_out": st.booleans(),
        "capacity": st.integers(2, 3),
    }
)


async def race(redis_url: str, mongodb_url: str, plan: dict[str, Any]) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    database = mongo[f"race_{uuid.uuid4().hex[:10]}"]
    clock = Clock()
    try:
        store = EventStore(redis, PARTITIONS, clock=clock)
        catalog = CatalogService(store, database, clock)
        orders = OrderService(
            store=store, redis=redis, load_event=catalog.load_event, hold_seconds=600, clock=clock
        )
        payments = PaymentService(
            orders=orders,
            redis=redis,
            database=database,
            credentials=CREDENTIALS,
            pay_url="https://sandbox.example/pay",
            public_base_url="https://tickets.example",
            clock=clock,
        )
        created = await catalog.create_event(
            CreateEvent(
                by=ORGANIZER,
                title="Race night",
                description="",
                venue=Venue(name="Hall", address="1 Street"),
                province="ha-noi",
                starts_at=clock.now + timedelta(days=5),
                ends_at=clock.now + timedelta(days=5, hours=2),
                ticket_types=(NewTicketType(name="GA", price=100_000, quantity=plan["capacity"]),),
            )
        )
        event = (
            await catalog.publish_event(PublishEvent(event_id=created.event.id, by=ORGANIZER))
        ).event
        ticket_type_id = event.ticket_types[0].id
        item = [RequestedItem(ticket_type_id=ticket_type_id, quantity=2)]
        order = (await orders.place(buyer_id="buyer", event_id=event.id, items=item)).order
        first = await payments.start(order.id, buyer_id="buyer", client_ip="127.0.0.1")
        second = await payments.start(order.id, buyer_id="buyer", client_ip="127.0.0.1")
        if plan["hold_ran_out"]:
            clock.now += timedelta(seconds=601)
        answers: list[str] = []

        async def contender(name: str, pause: float) -> None:
            await asyncio.sleep(pause)
            if name in ("ipn", "ipn_again"):
                answers.append((await payments.handle_ipn(ipn(first.txn_ref, 200_000))).code)
            elif name == "second_ipn":
                answers.append((await payments.handle_ipn(ipn(second.txn_ref, 200_000))).code)
            elif name == "expire":
                await orders.expire(order.id)
            elif name == "cancel":
                try:
                    await orders.cancel(order.id, by="buyer")
                except OrderNotPending:
                    return
            else:
                # Sold out is one of the outcomes: the buyer's tickets may still be taken.
                with contextlib.suppress(SoldOut):
                    await orders.place(buyer_id="rival", event_id=event.id, items=item)

        await asyncio.gather(
            *(
                contender(name, pause)
                for name, pause in zip(plan["order"], plan["pauses"], strict=True)
            )
        )
        assert set(answers) <= {"00", "02"}
        assert answers.count("00") == 2, "each attempt's result is recorded exactly once"

        history = [e.data for e in (await orders.repository.load(order.id)).history]
        settled = await orders.get(order.id)
        succeeded = [e for e in history if isinstance(e, PaymentSucceeded)]
        paid = [e for e in history if isinstance(e, OrderPaid)]
        invoices = [e for e in history if isinstance(e, InvoiceIssued)]
        refunds = [e for e in history if isinstance(e, RefundRequested)]
        assert len(succeeded) == 2
        assert len(paid) == len(invoices) <= 1
        # Each payment bought the tickets or goes back in full, never both, never neither.
        assert len(paid) + len(refunds) == 2
        assert {r.txn_ref for r in refunds}.isdisjoint({p.payment_reference for p in paid})
        assert all(r.amount == 200_000 for r in refunds)

        partition = keys.partition_of(event.id, PARTITIONS)
        counter = (await store.read_counters(partition, [inventory_counter(ticket_type_id)]))[
            inventory_counter(ticket_type_id)
        ]
        rival_holds = (
            counter["held"] + counter["sold"] - (2 if settled.status is OrderStatus.PAID else 0)
        )
        assert counter["held"] >= 0
        assert counter["held"] + counter["sold"] <= plan["capacity"]
        assert counter["sold"] == (2 if settled.status is OrderStatus.PAID else 0)
        assert rival_holds in (0, 2)
    finally:
        await mongo.drop_database(database.name)
        await mongo.close()
        await redis.flushdb()
        await redis.aclose()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans)
def test_a_payment_racing_its_repeats_a_second_payment_an_expiry_a_cancel_and_a_rival_settles_once(
    store_redis_url: str, mongodb_url: str, plan: dict[str, Any]
) -> None:
    random.seed(0)
    asyncio.run(race(store_redis_url, mongodb_url, plan))
