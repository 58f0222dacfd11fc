"""The event-store contract against the Redis store on a private redis-server (the authority)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from eventhunting.domain.events import EventRegistry
from eventhunting.store import keys
from eventhunting.store.append import EventStore, text
from tests.contract.event_store_contract import (
    PARTITIONS,
    Clock,
    EventStoreContract,
    StoreFactory,
    fixed_clock,
)
from tests.support.store_events import store_test_registry


class RedisStoreFactory(StoreFactory):
    """Redis stores on the store-test database, which the `store_redis` fixture empties."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    def open(
        self, *, event_registry: EventRegistry = store_test_registry, clock: Clock = fixed_clock
    ) -> EventStore:
        return EventStore(self.redis, PARTITIONS, clock=clock, event_registry=event_registry)

    async def empty(self) -> None:
        await self.redis.flushdb()

    async def schedule(self, partition: int, name: str) -> dict[str, float]:
        reply: Any = await self.redis.zrange(
            keys.schedule_key(partition, name), 0, -1, withscores=True
        )
        return {text(member): float(score) for member, score in reply}


class TestRedisEventStore(EventStoreContract):
    @pytest.fixture
    def factory(self, store_redis: aioredis.Redis) -> StoreFactory:
        return RedisStoreFactory(store_redis)
