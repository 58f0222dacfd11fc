"""Order services on the private Redis, with events created through the catalog service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import (
    CatalogEvent,
    CreateEvent,
    NewTicketType,
    PublishEvent,
    Venue,
)
from eventhunting.payments.vnpay import MerchantCredentials
from eventhunting.services.catalog import CatalogService
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.store.append import EventStore
from tests.integration.vnpay.standin_harness import SUCCESS_CARD, Buyer, Standin

PARTITIONS = 4
CREDENTIALS = MerchantCredentials(
    tmn_code="EVHTEST1", hash_secret="IPNTESTSECRET0123456789ABCDEFGH"
)
PAY_URL = "https://sandbox.example/paymentv2/vpcpay.html"
WRITE_THROUGH_APP = "payments-write-through"
HOLD_SECONDS = 600
ORGANIZER = Actor(account_id="organizer-1")


class ManualClock:
    """A clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(redis_client: aioredis.Redis, clock: ManualClock) -> EventStore:
    return EventStore(redis_client, PARTITIONS, clock=clock)


@pytest.fixture
def catalog(
    store: EventStore,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
    clock: ManualClock,
) -> CatalogService:
    return CatalogService(store, mongo_client[mongo_database_name], clock)


@pytest.fixture
def orders(
    store: EventStore, redis_client: aioredis.Redis, catalog: CatalogService, clock: ManualClock
) -> OrderService:
    return OrderService(
        store=store,
        redis=redis_client,
        load_event=catalog.load_event,
        hold_seconds=HOLD_SECONDS,
        clock=clock,
    )


@dataclass(frozen=True)
class TicketTypeSpec:
    name: str
    price: int
    quantity: int
    max_per_order: int | None = None


NewEvent = Callable[..., Awaitable[CatalogEvent]]


@pytest.fixture
def new_event(catalog: CatalogService, clock: ManualClock) -> NewEvent:
    """Create and publish an event with the given ticket types (in the given order)."""

    async def create(
        *specs: TicketTypeSpec,
        max_tickets_per_customer: int | None = None,
        publish: bool = True,
    ) -> CatalogEvent:
        command = CreateEvent(
            by=ORGANIZER,
            title="Flash sale night",
            description="",
            venue=Venue(name="Hall", address="1 Trang Tien"),
            province="ha-noi",
            starts_at=clock.now + timedelta(days=10),
            ends_at=clock.now + timedelta(days=10, hours=4),
            max_tickets_per_customer=max_tickets_per_customer,
            ticket_types=tuple(
                NewTicketType(
                    name=spec.name,
                    price=spec.price,
                    quantity=spec.quantity,
                    max_per_order=spec.max_per_order,
                )
                for spec in specs
            ),
        )
        created = await catalog.create_event(command)
        if not publish:
            return created.event
        published = await catalog.publish_event(
            PublishEvent(event_id=created.event.id, by=ORGANIZER)
        )
        return published.event

    return create


@pytest.fixture
async def archive_client(mongodb_url: str) -> Any:
    """The payments' own MongoDB client, named so a failpoint can take MongoDB from it alone."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, tz_aware=True, appname=WRITE_THROUGH_APP, serverSelectionTimeoutMS=2_000
    )
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def payments(
    orders: OrderService,
    redis_client: aioredis.Redis,
    archive_client: Any,
    mongo_database_name: str,
    clock: ManualClock,
) -> PaymentService:
    return PaymentService(
        orders=orders,
        redis=redis_client,
        database=archive_client[mongo_database_name],
        credentials=CREDENTIALS,
        pay_url=PAY_URL,
        public_base_url="https://tickets.example",
        clock=clock,
    )


async def pay_at_the_sandbox(
    payments: PaymentService,
    sandbox: Standin,
    clock: ManualClock,
    order_id: str,
    buyer_id: str,
    *,
    card: str = SUCCESS_CARD,
) -> str:
    """Start a payment of the order and pay it in the sandbox's pages with `card`; its
    txn_ref (the IPN may or may not have reached us)."""
    # The sandbox checks the pay URL's dates against its own clock.
    clock.now = clock.now.__class__.now(clock.now.tzinfo).replace(microsecond=0)
    link = await payments.start(order_id, buyer_id=buyer_id, client_ip="203.0.113.5")
    buyer = Buyer(sandbox)
    try:
        buyer.pay(link.payment_url, card_number=card)
    finally:
        buyer.client.close()
    return link.txn_ref
