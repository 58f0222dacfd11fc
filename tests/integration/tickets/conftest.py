"""Ticket services on the private Redis: paid orders of a real buyer, keys, an SMTP sink."""

# The order fixtures are imported to be used here by name: their parameters "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eventhunting.domain.accounts import STREAM_KIND as ACCOUNT_STREAM_KIND
from eventhunting.domain.accounts import AccountRegistered
from eventhunting.domain.catalog import CatalogEvent
from eventhunting.domain.orders import Order, RequestedItem
from eventhunting.services.orders import OrderService
from eventhunting.services.tickets import TicketService
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.orders.conftest import (  # noqa: F401 - fixtures used by these tests
    ORGANIZER,
    ManualClock,
    NewEvent,
    TicketTypeSpec,
    catalog,
    clock,
    new_event,
    orders,
    store,
)
from tests.support.servers import SmtpSink, running_smtp_sink

__all__ = ["ORGANIZER", "ManualClock", "NewEvent", "TicketTypeSpec"]


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signing_ring(signing_key: Ed25519PrivateKey) -> QrKeyRing:
    return QrKeyRing(signing_key=signing_key)


@pytest.fixture
def tickets(
    store: EventStore, redis_client: aioredis.Redis, clock: ManualClock, signing_ring: QrKeyRing
) -> TicketService:
    return TicketService(store=store, redis=redis_client, clock=clock, verifying_ring=signing_ring)


Buyer = Callable[..., Awaitable[str]]


@pytest.fixture
def buyer(store: EventStore) -> Buyer:
    """Register an account straight in its stream; its id."""

    async def register(full_name: str = "Nguyễn Văn An", email: str = "an@example.test") -> str:
        partition = keys.partition_of(email, store.partitions)
        account_id = keys.new_id_in_partition(partition, store.partitions)
        await store.append(
            AppendRequest(
                partition=partition,
                stream=f"{ACCOUNT_STREAM_KIND}-{account_id}",
                events=[
                    AccountRegistered(
                        account_id=account_id,
                        email=email,
                        full_name=full_name,
                        password_hash="-",
                        roles=["customer"],
                    )
                ],
                expected_version=0,
            )
        )
        return account_id

    return register


PaidOrder = Callable[..., Awaitable[tuple[CatalogEvent, Order]]]


@pytest.fixture
def free_order(new_event: NewEvent, orders: OrderService) -> PaidOrder:
    """A free order (paid at once) of `quantity` seats by `buyer_id`, with its event."""

    async def place(
        buyer_id: str, quantity: int = 2, event: CatalogEvent | None = None
    ) -> tuple[CatalogEvent, Order]:
        if event is None:
            event = await new_event(TicketTypeSpec(name="Free entry", price=0, quantity=100))
        placement = await orders.place(
            buyer_id=buyer_id,
            event_id=event.id,
            items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=quantity)],
        )
        return event, placement.order

    return place


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with running_smtp_sink() as running:
        yield running


@pytest.fixture
async def sink_api(sink: SmtpSink) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sink.http_url, timeout=10) as client:
        for path in ("/api/messages", "/api/faults", "/api/counters"):
            (await client.delete(path)).raise_for_status()
        yield client


def messages_of(listing: list[dict[str, Any]], recipient: str) -> list[dict[str, Any]]:
    return [message for message in listing if recipient in message["to"]]
