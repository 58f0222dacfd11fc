"""A comparable snapshot of every event-store key in Redis (streams, hashes, strings, sets)."""

from __future__ import annotations

import json
from typing import Any

from eventhunting.store.redis_client import RedisClient


async def event_store_snapshot(redis: RedisClient) -> dict[str, Any]:
    """Key -> content, for every `{p<k>}:` key but leases; idempotency records compare as JSON."""
    snapshot: dict[str, Any] = {}
    async for raw_key in redis.scan_iter(match="{p*", count=1000):
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        if ":lease:" in key:
            continue  # consumer coordination, not event-store content
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "stream":
            snapshot[key] = await redis.xrange(key)
        elif kind == "hash":
            snapshot[key] = await redis.hgetall(key)
        elif kind == "zset":
            snapshot[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            value = await redis.get(key)
            snapshot[key] = json.loads(value) if ":idem:" in key else value
        else:
            snapshot[key] = kind
    return snapshot
