"""Workers of one group split the partitions by fenced leases and take over a dead one's."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.projections.base import PROJECTOR_GROUP
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from tests.support.pipeline_worker import WorkerProcesses
from tests.support.redis_process import RedisProcess
from tests.support.store_events import ItemAdded, store_test_registry

pytestmark = pytest.mark.system

PARTITIONS = 8
LEASE_MS = 1_000


async def owners(redis: aioredis.Redis) -> dict[int, str]:
    """Partition -> the consumer holding its projector lease now."""
    held: dict[int, str] = {}
    for partition in range(PARTITIONS):
        value = await redis.get(keys.lease_key(partition, PROJECTOR_GROUP))
        if value is not None:
            held[partition] = value.decode().split(" ", 1)[1]
    return held


async def until_split_among(redis: aioredis.Redis, consumers: list[str], seconds: float) -> float:
    """Wait until every partition is held, by exactly `consumers`, fairly; the seconds it took."""
    started = time.monotonic()
    share = -(-PARTITIONS // len(consumers))
    async with asyncio.timeout(seconds):
        while True:
            held = await owners(redis)
            counts = Counter(held.values())
            if (
                len(held) == PARTITIONS
                and set(counts) == set(consumers)
                and max(counts.values()) <= share
            ):
                return time.monotonic() - started
            await asyncio.sleep(0.05)


async def test_workers_split_partitions_and_take_over_a_killed_ones_within_the_lease(
    tmp_path: Path,
    mongodb_url: str,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
    repository_root: Path,
) -> None:
    redis_server = RedisProcess(tmp_path / "redis")
    redis_server.start()
    redis = aioredis.Redis.from_url(redis_server.url)
    journal = tmp_path / "batches.jsonl"
    workers = WorkerProcesses(
        repository_root,
        redis_url=redis_server.url,
        mongodb_url=mongodb_url,
        database=mongo_database_name,
        partitions=PARTITIONS,
        journal=journal,
        options=["--groups", "projector", "--lease-ms", str(LEASE_MS), "--count", "5"],
    )
    store = EventStore(redis, PARTITIONS, event_registry=store_test_registry)
    streams = [
        f"basket-{keys.new_id_in_partition(index % PARTITIONS, PARTITIONS)}" for index in range(32)
    ]
    expected: dict[str, list[str]] = defaultdict(list)

    async def append(count: int) -> None:
        for index in range(count):
            stream = streams[index % len(streams)]
            sku = f"{len(expected[stream])}"
            expected[stream].append(sku)
            await store.append(
                AppendRequest(
                    partition=keys.partition_of_stream(stream, PARTITIONS),
                    stream=stream,
                    events=[ItemAdded(sku=sku, quantity=1)],
                )
            )
            await asyncio.sleep(0.002)

    # A killed worker leaves its transaction open until MongoDB's lifetime limit aborts it
    # (60 s by default); until then the survivors' commits on its documents wait.
    admin: Any = mongo_client.admin
    previous = await admin.command("getParameter", 1, transactionLifetimeLimitSeconds=1)
    await admin.command("setParameter", 1, transactionLifetimeLimitSeconds=2)
    try:
        first, second = workers.start(), workers.start()
        await until_split_among(redis, [first, second], seconds=10)
        writing = asyncio.create_task(append(600))
        third = workers.start()
        await until_split_among(redis, [first, second, third], seconds=10)

        killed = workers.kill(0)
        handover = await until_split_among(redis, [second, third], seconds=10)
        # The lease runs out, then a survivor's next renewal round (a third of it) takes it.
        assert handover < (LEASE_MS + LEASE_MS / 3) / 1000 + 0.5
        assert killed not in (await owners(redis)).values()
        await writing

        database = mongo_client[mongo_database_name]
        async with asyncio.timeout(30):
            while True:
                baskets = {
                    b["_id"]: [item["sku"] for item in b["items"]]
                    async for b in database["baskets"].find({})
                }
                if baskets == expected:
                    break
                await asyncio.sleep(0.1)
        assert workers.stop_all() == [0, 0]
        assert await owners(redis) == {}, "a stopped worker gives its leases back"
    finally:
        workers.kill_all()
        await admin.command(
            "setParameter",
            1,
            transactionLifetimeLimitSeconds=previous["transactionLifetimeLimitSeconds"],
        )
        await redis.aclose()
        redis_server.stop()

    # No entry was ever in the hands of two workers at once: per partition, the batches of
    # different consumers never overlap in time.
    batches: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in journal.read_text().splitlines():
        record = json.loads(line)
        batches[record["partition"]].append(record)
    assert {r["consumer"] for records in batches.values() for r in records} == {
        first,
        second,
        third,
    }
    for records in batches.values():
        records.sort(key=lambda record: record["started"])
        for earlier, later in itertools.pairwise(records):
            if earlier["consumer"] != later["consumer"]:
                assert earlier["ended"] <= later["started"]
                assert later["token"] > earlier["token"]
