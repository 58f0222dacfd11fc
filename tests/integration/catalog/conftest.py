"""Catalog service and read model on the private Redis and the MongoDB under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import CreateEvent, NewTicketType, Venue
from eventhunting.projections.base import Projector
from eventhunting.projections.catalog import CatalogProjection, create_catalog_indexes
from eventhunting.services.catalog import CatalogService
from eventhunting.store.append import EventStore
from tests.support.leases import lease_of

PARTITIONS = 4
ORGANIZER = Actor(account_id="organizer-1")
ADMIN = Actor(account_id="admin-1", is_admin=True)


class ManualClock:
    """A clock the test sets by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(redis_client: aioredis.Redis, clock: ManualClock) -> EventStore:
    return EventStore(redis_client, PARTITIONS, clock=clock)


@pytest.fixture
async def database(
    mongo_client: AsyncMongoClient[dict[str, Any]], mongo_database_name: str
) -> AsyncDatabase[dict[str, Any]]:
    database = mongo_client[mongo_database_name]
    await create_catalog_indexes(database)
    return database


@pytest.fixture
def catalog(
    store: EventStore, database: AsyncDatabase[dict[str, Any]], clock: ManualClock
) -> CatalogService:
    return CatalogService(store, database, clock)


def ticket(name: str = "Standard", **overrides: Any) -> NewTicketType:
    fields: dict[str, Any] = {"name": name, "price": 150_000, "quantity": 10}
    fields.update(overrides)
    return NewTicketType(**fields)


def event_draft(clock: ManualClock, **overrides: Any) -> CreateEvent:
    """The organizer's command to draft an event (`by` the test's organizer unless given)."""
    starts_at = clock.now + timedelta(days=20)
    fields: dict[str, Any] = {
        "by": ORGANIZER,
        "title": "Hòa nhạc mùa thu",
        "description": "Dàn nhạc giao hưởng",
        "venue": Venue(name="Nhà hát", address="1 Tràng Tiền"),
        "province": "ha-noi",
        "starts_at": starts_at,
        "ends_at": starts_at + timedelta(hours=3),
        "topics": ("classical",),
        "ticket_types": (ticket(),),
    }
    fields.update(overrides)
    fields["topics"] = tuple(fields["topics"])
    fields["ticket_types"] = tuple(fields["ticket_types"])
    return CreateEvent(**fields)


async def project_everything(store: EventStore, database: AsyncDatabase[dict[str, Any]]) -> int:
    """Feed every partition log to the catalog projection through the real projector
    (batch and checkpoint in one transaction); returns how many events it saw."""
    projector = Projector(database, [CatalogProjection()])
    seen = 0
    for partition in range(store.partitions):
        batch = await store.read_log(partition, count=10_000)
        if batch:
            await projector(batch, lease_of(batch))
            seen += len(batch)
    return seen
