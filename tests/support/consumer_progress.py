"""Whether a consumer group has handled a partition log to its end (for tests that wait)."""

from __future__ import annotations

from typing import Any

from eventhunting.store import keys
from eventhunting.store.append import text
from eventhunting.store.consumer_groups.entries import position_key
from eventhunting.store.redis_client import RedisClient


async def handled_to_the_end(redis: RedisClient, group: str, partition: int) -> bool:
    """The group was handed every entry of the partition log and acknowledged them all.

    Read from the group's last delivered id and pending count, not from XINFO's `lag`: a
    replica promoted by a failover may not know the group's read counter, and then reports
    no lag or a stale one.
    """
    log = keys.log_key(partition)
    infos: Any = await redis.xinfo_groups(log)
    info = next((i for i in infos if text(i["name"]) == group), None)
    if info is None or int(info["pending"]):
        return False
    last: Any = await redis.xrevrange(log, "+", "-", count=1)
    if not last:
        return True
    delivered = position_key(text(info["last-delivered-id"]))
    return delivered >= position_key(text(last[0][0]))
