"""The Redis and MongoDB clients alone, from the store settings: what every process of the
system connects with first (`bootstrap` builds the services on them; `replay`, `restore` and
`export`, and a replay job's process, need nothing else)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.settings import StoreSettings
from eventhunting.store.redis_client import RedisClient, connect_redis

# Redis connections per process (per node of a cluster); more concurrent commands queue.
REDIS_MAX_CONNECTIONS = 128
REDIS_POOL_TIMEOUT_SECONDS = 10.0


@dataclass
class StoreClients:
    """The Redis and MongoDB clients alone: what `replay` and `restore` need."""

    redis: RedisClient
    mongo: AsyncMongoClient[dict[str, Any]]
    database: AsyncDatabase[dict[str, Any]]

    async def close(self) -> None:
        await self.redis.aclose()
        await self.mongo.close()


def connect_store(settings: StoreSettings) -> StoreClients:
    """Create the Redis and MongoDB clients (they connect lazily)."""
    # A burst of requests waits for a free connection instead of failing (a flash sale has
    # thousands of concurrent commands); `redis+cluster://` gives a Redis Cluster client.
    redis = connect_redis(
        settings.redis.url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_POOL_TIMEOUT_SECONDS,
    )
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb.url, tz_aware=True, serverSelectionTimeoutMS=5_000
    )
    return StoreClients(
        redis=redis,
        mongo=mongo,
        database=mongo[settings.mongodb.database],
    )
