"""The event-store contract against the Redis store on a private redis-server (the authority)
and on a private Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from eventhunting.domain.events import EventRegistry
from eventhunting.store import keys
from eventhunting.store.append import EventStore, text
from eventhunting.store.redis_client import RedisClient, connect_redis
from tests.contract.event_store_contract import (
    PARTITIONS,
    Clock,
    EventStoreContract,
    StoreFactory,
    fixed_clock,
)
from tests.support.redis_cluster import LocalCluster
from tests.support.store_events import store_test_registry


class RedisStoreFactory(StoreFactory):
    """Redis stores on the store-test database, which the `store_redis` fixture empties."""

    def __init__(self, redis: RedisClient) -> None:
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


@pytest.mark.cluster
class TestRedisClusterEventStore(EventStoreContract):
    """The same contract with the store's keys spread over three masters."""

    @pytest.fixture
    async def factory(self, redis_cluster: LocalCluster) -> AsyncIterator[StoreFactory]:
        redis_cluster.flush()
        client = connect_redis(redis_cluster.url, max_connections=64, timeout=10)
        try:
            yield RedisStoreFactory(client)
        finally:
            await client.aclose()
