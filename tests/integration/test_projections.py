"""The projector (batch + checkpoint in one transaction) and replay into fresh collections."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.projections.base import CHECKPOINTS_COLLECTION, PROJECTOR_GROUP, Projector
from eventhunting.projections.replay import replay
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from eventhunting.store.archive import ARCHIVER_GROUP, Archiver, create_event_indexes
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    Lease,
    LeaseLost,
    LogEntry,
    envelope_decoder,
)
from eventhunting.store.envelope import EventEnvelope
from tests.support.basket_projection import BasketProjection
from tests.support.store_events import BasketClosed, ItemAdded, store_test_registry

PARTITIONS = 2
FAST = ConsumerConfig(block_ms=50, count=20, lease_ms=2_000, max_deliveries=3, retry_delay_ms=20)

Database = Any


@pytest.fixture
def store(store_redis: aioredis.Redis) -> EventStore:
    return EventStore(store_redis, PARTITIONS, event_registry=store_test_registry)


@pytest.fixture
def database(mongo_client: AsyncMongoClient[dict[str, Any]], mongo_database_name: str) -> Database:
    return mongo_client[mongo_database_name]


def basket(partition: int) -> str:
    return f"basket-{keys.new_id_in_partition(partition, PARTITIONS)}"


async def write_baskets(store: EventStore, count: int = 6) -> int:
    written = 0
    for index in range(count):
        partition = index % PARTITIONS
        stream = basket(partition)
        for sku in ("a", "b"):
            await store.append(
                AppendRequest(
                    partition=partition,
                    stream=stream,
                    events=[ItemAdded(sku=f"{sku}{index}", quantity=index + 1)],
                )
            )
            written += 1
        if index % 2:
            await store.append(
                AppendRequest(
                    partition=partition, stream=stream, events=[BasketClosed(reason="paid")]
                )
            )
            written += 1
    return written


async def read_model(database: Database) -> list[dict[str, Any]]:
    return await database["baskets"].find({}).sort("_id").to_list()


async def run_group(group: ConsumerGroup[Any], pending: Any, total: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(group.run(stop))
    async with asyncio.timeout(20):
        while pending() < total:  # noqa: ASYNC110 - plain test state
            await asyncio.sleep(0.02)
    stop.set()
    await task


async def project_incrementally(
    store_redis: aioredis.Redis, database: Database, total: int
) -> None:
    projector = Projector(database, [BasketProjection()])
    seen: list[int] = []

    async def handle(batch: list[EventEnvelope], lease: Lease) -> None:
        await projector(batch, lease)
        seen.append(len(batch))

    group: ConsumerGroup[EventEnvelope] = ConsumerGroup(
        store_redis,
        PROJECTOR_GROUP,
        "p1",
        PARTITIONS,
        handle,
        FAST,
        decode=envelope_decoder(store_test_registry),
    )
    await run_group(group, lambda: sum(seen), total)


async def test_the_projector_applies_a_redelivered_batch_only_once(
    store: EventStore, database: Database
) -> None:
    stream = basket(0)
    for sku in ("a", "b"):
        await store.append(
            AppendRequest(partition=0, stream=stream, events=[ItemAdded(sku=sku, quantity=1)])
        )
    batch = await store.read_log(0)
    projector = Projector(database, [BasketProjection()])
    lease = Lease(partition=0, token=1, consumer="p1")
    await projector(batch, lease)
    await projector(batch, lease)
    await projector(batch[:1], lease)
    (document,) = await read_model(database)
    assert [item["sku"] for item in document["items"]] == ["a", "b"]
    checkpoint = await database[CHECKPOINTS_COLLECTION].find_one({"_id": "baskets:0"})
    assert checkpoint is not None
    assert checkpoint["position"] == batch[-1].position


async def test_a_projector_whose_lease_passed_on_cannot_commit_after_its_successor(
    store: EventStore, database: Database
) -> None:
    stream = basket(0)
    for sku in ("a", "b"):
        await store.append(
            AppendRequest(partition=0, stream=stream, events=[ItemAdded(sku=sku, quantity=1)])
        )
    first, second = await store.read_log(0)
    former = Lease(partition=0, token=5, consumer="former")
    successor = Lease(partition=0, token=9, consumer="successor")
    projector = Projector(database, [BasketProjection()])
    await projector([first], former)
    await projector([first, second], successor)
    with pytest.raises(LeaseLost):
        await projector([second], former)
    (document,) = await read_model(database)
    assert [item["sku"] for item in document["items"]] == ["a", "b"]
    checkpoint = await database[CHECKPOINTS_COLLECTION].find_one({"_id": "baskets:0"})
    assert checkpoint is not None
    assert checkpoint["fence"] == successor.token


async def test_replay_from_the_logs_and_from_the_archive_equals_the_incremental_build(
    store: EventStore, store_redis: aioredis.Redis, database: Database
) -> None:
    total = await write_baskets(store)
    await project_incrementally(store_redis, database, total)
    incremental = await read_model(database)
    checkpoints = await database[CHECKPOINTS_COLLECTION].find({}).sort("_id").to_list()
    assert len(incremental) == 6

    await create_event_indexes(database)
    archiver = Archiver(database)
    archived: list[int] = []

    async def archive(entries: list[LogEntry], lease: Lease) -> None:
        await archiver(entries, lease)
        archived.append(len(entries))

    group: ConsumerGroup[LogEntry] = ConsumerGroup(
        store_redis, ARCHIVER_GROUP, "a1", PARTITIONS, archive, FAST, decode=lambda e: e
    )
    await run_group(group, lambda: sum(archived), total)

    output = io.StringIO()
    report = await replay(
        database,
        [BasketProjection()],
        redis=store_redis,
        partitions=PARTITIONS,
        event_registry=store_test_registry,
        progress=output,
    )
    assert report.events == total
    assert await read_model(database) == incremental
    assert await database[CHECKPOINTS_COLLECTION].find({}).sort("_id").to_list() == checkpoints
    assert "replay" in output.getvalue()

    await database["baskets"].delete_many({})
    await replay(
        database,
        [BasketProjection()],
        partitions=PARTITIONS,
        from_archive=True,
        event_registry=store_test_registry,
        progress=io.StringIO(),
    )
    assert await read_model(database) == incremental
    indexes = {i["name"] for i in await (await database["baskets"].list_indexes()).to_list()}
    assert "closed_reason_1" in indexes
