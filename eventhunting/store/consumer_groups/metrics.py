"""Prometheus metrics of the consumer runtime: throughput, failures, lag, pending, ownership."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge

from eventhunting.store import keys
from eventhunting.store.append import text
from eventhunting.store.redis_client import RedisClient

PROCESSED = Counter(
    "eventhunting_consumer_processed_total", "Log entries handled and acked.", ["group"]
)
FAILURES = Counter(
    "eventhunting_consumer_failures_total", "Handler failures on a single entry.", ["group"]
)
DEAD_LETTERED = Counter(
    "eventhunting_consumer_dead_lettered_total",
    "Entries moved to <group>:dead after too many deliveries.",
    ["group"],
)
LAG = Gauge(
    "eventhunting_consumer_lag",
    "Log entries not yet delivered to the group.",
    ["group", "partition"],
)
PENDING = Gauge(
    "eventhunting_consumer_pending",
    "Entries delivered to the group and not yet acked.",
    ["group", "partition"],
)
OWNED_PARTITIONS = Gauge(
    "eventhunting_consumer_owned_partitions",
    "Partitions whose lease this process holds.",
    ["group"],
)


async def export_group_metrics(redis: RedisClient, group: str, partitions: Iterable[int]) -> None:
    """Refresh the lag and pending gauges of `group` on `partitions` from XINFO GROUPS."""
    for partition in partitions:
        infos: Any = await redis.xinfo_groups(keys.log_key(partition))
        for info in infos:
            if text(info["name"]) == group:
                label = str(partition)
                LAG.labels(group, label).set(int(info.get("lag") or 0))
                PENDING.labels(group, label).set(int(info.get("pending") or 0))
