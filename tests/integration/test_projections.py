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
    LogEntry,
    envelope_decoder,
)
from eventhunting.store.envelope import EventEnvelope
from tests.support.basket_projection import BasketProjection
from tests.support.store_events import BasketClosed, ItemAdded, store_test_registry

PARTITIONS = 2
FAST = ConsumerConfig(block_ms=50, count=20, claim_idle_ms=500, max_deliveries=3, retry_delay_ms=20)

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

    async def handle(batch: list[EventEnvelope]) -> None:
        await projector(batch)
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
    await projector(batch)
    await projector(batch)
    await projector(batch[:1])
    (document,) = await read_model(database)
    assert [item["sku"] for item in document["items"]] == ["a", "b"]
    checkpoint = await database[CHECKPOINTS_COLLECTION].find_one({"_id": "baskets:0"})
    assert checkpoint is not None
    assert checkpoint["position"] == batch[-1].position


async def test_a_failed_event_overtaken_by_another_aggregate_is_applied_on_retry(
    store: EventStore, database: Database
) -> None:
    flaky, other = basket(0), basket(0)
    await store.append(
        AppendRequest(partition=0, stream=flaky, events=[ItemAdded(sku="a", quantity=1)])
    )
    await store.append(
        AppendRequest(partition=0, stream=other, events=[ItemAdded(sku="b", quantity=1)])
    )
    first, second = await store.read_log(0)
    projection = BasketProjection()
    projector = Projector(database, [projection])
    original_apply = projection.apply
    calls = 0

    async def apply_failing_once(event: EventEnvelope, db: Database, session: Any) -> None:
        nonlocal calls
        if event.position == first.position and calls == 0:
            calls += 1
            raise ConnectionError("transient")
        await original_apply(event, db, session)

    projection.apply = apply_failing_once  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await projector([first])
    await projector([second])
    await projector([first])
    assert {d["_id"] for d in await read_model(database)} == {flaky, other}


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

    async def archive(entries: list[LogEntry]) -> None:
        await archiver(entries)
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
