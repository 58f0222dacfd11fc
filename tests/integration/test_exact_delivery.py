"""The projector never acknowledges an entry it did not apply: regressions of skipped events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect

from eventhunting.projections.base import PROJECTOR_GROUP, Projector
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    ConsumerGroupMissing,
    Lease,
    envelope_decoder,
)
from eventhunting.store.envelope import EventEnvelope
from tests.support.basket_projection import BasketProjection
from tests.support.redis_process import RedisProcess
from tests.support.store_events import ItemAdded, store_test_registry

PARTITIONS = 2
FAST = ConsumerConfig(block_ms=50, count=20, max_deliveries=3, retry_delay_ms=20, lease_ms=1_000)

Database = Any


@pytest.fixture
def store(store_redis: aioredis.Redis) -> EventStore:
    return EventStore(store_redis, PARTITIONS, event_registry=store_test_registry)


@pytest.fixture
def database(mongo_client: AsyncMongoClient[dict[str, Any]], mongo_database_name: str) -> Database:
    return mongo_client[mongo_database_name]


def basket() -> str:
    return f"basket-{keys.new_id_in_partition(0, PARTITIONS)}"


async def add(store: EventStore, stream: str, *skus: str) -> None:
    await store.append(
        AppendRequest(
            partition=0, stream=stream, events=[ItemAdded(sku=sku, quantity=1) for sku in skus]
        )
    )


class FlakyProjector:
    """The real projector, but the batches containing `sku` fail while `failing()` says so."""

    def __init__(self, database: Database, sku: str, failing: Callable[[], bool], error: Any):
        self.projector = Projector(database, [BasketProjection()])
        self.sku = sku
        self.failing = failing
        self.error = error
        self.failures = 0

    async def __call__(self, batch: list[EventEnvelope], lease: Lease) -> None:
        if self.failing() and any(
            isinstance(event.data, ItemAdded) and event.data.sku == self.sku for event in batch
        ):
            self.failures += 1
            raise self.error
        await self.projector(batch, lease)


def group_of(redis: aioredis.Redis, handler: Any, consumer: str) -> ConsumerGroup[EventEnvelope]:
    return ConsumerGroup(
        redis,
        PROJECTOR_GROUP,
        consumer,
        PARTITIONS,
        handler,
        FAST,
        decode=envelope_decoder(store_test_registry),
    )


async def baskets(database: Database) -> dict[str, list[str]]:
    return {
        basket["_id"]: [item["sku"] for item in basket["items"]]
        async for basket in database["baskets"].find({})
    }


async def run_until(
    group: ConsumerGroup[Any], done: Callable[[], Any], seconds: float = 10
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(group.run(stop))
    try:
        async with asyncio.timeout(seconds):
            while not await done():  # noqa: ASYNC110 - polls servers, not local state
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def nothing_pending(redis: aioredis.Redis) -> bool:
    for partition in range(PARTITIONS):
        if int((await redis.xpending(keys.log_key(partition), PROJECTOR_GROUP))["pending"]):
            return False
    return True


async def test_an_entry_held_behind_a_failed_one_is_applied_after_another_aggregate_committed(
    store: EventStore, store_redis: aioredis.Redis, database: Database
) -> None:
    held, other = basket(), basket()
    # Like a free order's OrderPlaced + OrderPaid: two events of one aggregate in one append.
    await add(store, held, "placed", "paid")
    await add(store, other, "elsewhere")
    failures_left = [1]

    def failing() -> bool:
        return failures_left[0] > 0

    projector = FlakyProjector(database, "placed", failing, RuntimeError("fails once"))
    original = projector.__call__

    async def handler(batch: list[EventEnvelope], lease: Lease) -> None:
        try:
            await original(batch, lease)
        except RuntimeError:
            failures_left[0] -= 1
            raise

    expected = {held: ["placed", "paid"], other: ["elsewhere"]}

    async def done() -> bool:
        return await baskets(database) == expected and await nothing_pending(store_redis)

    await run_until(group_of(store_redis, handler, "c1"), done)
    assert projector.failures == 1


async def test_entries_after_a_dead_lettered_one_are_still_applied(
    store: EventStore, store_redis: aioredis.Redis, database: Database
) -> None:
    poisoned, other = basket(), basket()
    await add(store, poisoned, "poison-pill", "after-the-pill")
    await add(store, other, "elsewhere")
    projector = Projector(database, [BasketProjection()])
    expected = {poisoned: ["after-the-pill"], other: ["elsewhere"]}

    async def done() -> bool:
        return await baskets(database) == expected and await nothing_pending(store_redis)

    await run_until(group_of(store_redis, projector, "c1"), done)
    assert await store_redis.xlen(keys.dead_letter_key(0, PROJECTOR_GROUP)) == 1


async def test_a_restart_while_an_entry_is_blocked_loses_nothing_behind_it(
    store: EventStore, store_redis: aioredis.Redis, database: Database
) -> None:
    blocked, other = basket(), basket()
    await add(store, blocked, "stuck", "behind")
    await add(store, other, "elsewhere")
    down = FlakyProjector(
        database, "stuck", lambda: True, AutoReconnect("read-model database unreachable")
    )

    async def failed_a_few_times() -> bool:
        return down.failures >= 3

    await run_until(group_of(store_redis, down, "before-restart"), failed_a_few_times)
    assert await baskets(database) == {}
    assert await store_redis.xlen(keys.dead_letter_key(0, PROJECTOR_GROUP)) == 0, (
        "an outage is waited out, never dead-lettered"
    )

    expected = {blocked: ["stuck", "behind"], other: ["elsewhere"]}

    async def done() -> bool:
        return await baskets(database) == expected and await nothing_pending(store_redis)

    projector = Projector(database, [BasketProjection()])
    await run_until(group_of(store_redis, projector, "after-restart"), done)


async def test_a_consumer_rides_out_a_redis_restart_and_goes_on(
    tmp_path: Path, database: Database
) -> None:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    redis = aioredis.Redis.from_url(server.url)
    store = EventStore(redis, PARTITIONS, event_registry=store_test_registry)
    stream = basket()
    projector = Projector(database, [BasketProjection()])
    group = group_of(redis, projector, "c1")
    stop = asyncio.Event()
    task = asyncio.create_task(group.run(stop))
    try:
        await add(store, stream, "before")
        async with asyncio.timeout(10):
            while await baskets(database) != {stream: ["before"]}:  # noqa: ASYNC110 - polls servers, not local state
                await asyncio.sleep(0.02)
        server.kill()
        await asyncio.sleep(1.5)
        assert not task.done(), "the consumer must wait for Redis, not exit"
        server.start()
        async with asyncio.timeout(10):
            while True:
                try:
                    await add(store, stream, "after")
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            while await baskets(database) != {stream: ["before", "after"]}:  # noqa: ASYNC110 - polls servers, not local state
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await redis.aclose()
        server.stop()


async def test_a_group_missing_from_a_wiped_redis_stops_the_consumer_with_a_clear_error(
    store: EventStore, store_redis: aioredis.Redis, database: Database
) -> None:
    group = group_of(store_redis, Projector(database, [BasketProjection()]), "c1")
    stop = asyncio.Event()
    task = asyncio.create_task(group.run(stop))
    async with asyncio.timeout(10):
        while not group.states:  # noqa: ASYNC110 - polls servers, not local state
            await asyncio.sleep(0.02)
    for partition in range(PARTITIONS):
        await store_redis.xgroup_destroy(keys.log_key(partition), PROJECTOR_GROUP)
    with pytest.raises(ConsumerGroupMissing, match="eventhunting restore"):
        await asyncio.wait_for(task, 10)
