"""The consumer-group runtime against a real Redis: ordering, acks, takeover, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore, stream_range
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    Lease,
    envelope_decoder,
)
from eventhunting.store.envelope import EventEnvelope
from tests.support.store_events import ItemAdded, store_test_registry

PARTITIONS = 2
FAST = ConsumerConfig(block_ms=50, count=10, lease_ms=2_000, max_deliveries=3, retry_delay_ms=20)


@pytest.fixture
def store(store_redis: aioredis.Redis) -> EventStore:
    return EventStore(store_redis, PARTITIONS, event_registry=store_test_registry)


def basket(partition: int) -> str:
    return f"basket-{keys.new_id_in_partition(partition, PARTITIONS)}"


async def add(store: EventStore, stream: str, sku: str) -> None:
    partition = keys.partition_of_stream(stream, PARTITIONS)
    await store.append(
        AppendRequest(partition=partition, stream=stream, events=[ItemAdded(sku=sku, quantity=1)])
    )


def consumer(
    store_redis: aioredis.Redis,
    handler: Callable[[list[EventEnvelope], Lease], Awaitable[None]],
    *,
    name: str = "c1",
    group: str = "test",
    config: ConsumerConfig = FAST,
) -> ConsumerGroup[EventEnvelope]:
    return ConsumerGroup(
        store_redis,
        group,
        name,
        PARTITIONS,
        handler,
        config,
        decode=envelope_decoder(store_test_registry),
    )


async def run_until(
    group: ConsumerGroup[EventEnvelope], done: Callable[[], bool], seconds: float = 10
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(group.run(stop))
    try:
        async with asyncio.timeout(seconds):
            while not done():  # noqa: ASYNC110 - the condition is plain test state
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def pending_count(store_redis: aioredis.Redis, group: str = "test") -> int:
    total = 0
    for partition in range(PARTITIONS):
        summary = await store_redis.xpending(keys.log_key(partition), group)
        total += int(summary["pending"])
    return total


async def test_every_entry_is_handled_in_partition_order_and_acked(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    streams = [basket(0), basket(0), basket(1)]
    for index in range(30):
        await add(store, streams[index % 3], str(index))
    seen: list[EventEnvelope] = []

    async def handle(batch: list[EventEnvelope], lease: Lease) -> None:
        assert len({event.partition for event in batch}) == 1
        seen.extend(batch)

    await run_until(consumer(store_redis, handle), lambda: len(seen) == 30)
    for partition in range(PARTITIONS):
        positions = [e.position or "" for e in seen if e.partition == partition]
        expected = [e.position for e in await store.read_log(partition, count=100)]
        assert positions == expected
    assert await pending_count(store_redis) == 0


async def test_a_poison_entry_holds_its_partition_in_order_until_it_is_dead_lettered(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    poisoned, other = basket(0), basket(0)
    await add(store, poisoned, "poison")
    await add(store, other, "fine-1")
    await add(store, poisoned, "after-poison")
    await add(store, other, "fine-2")
    handled: list[str] = []
    attempts: list[str] = []

    async def handle(batch: list[EventEnvelope], lease: Lease) -> None:
        for event in batch:
            assert isinstance(event.data, ItemAdded)
            attempts.append(event.data.sku)
            if event.data.sku == "poison":
                raise RuntimeError("cannot apply this event")
        handled.extend(e.data.sku for e in batch if isinstance(e.data, ItemAdded))

    before = (
        REGISTRY.get_sample_value("eventhunting_consumer_dead_lettered_total", {"group": "test"})
        or 0.0
    )
    await run_until(consumer(store_redis, handle), lambda: "fine-2" in handled)
    # Nothing after the poison entry ran before it was given up, then all ran in log order.
    before_the_rest = attempts[: attempts.index("fine-1")]
    assert set(before_the_rest) == {"poison"}
    assert len(before_the_rest) >= FAST.max_deliveries
    assert handled == ["fine-1", "after-poison", "fine-2"]
    dead = await stream_range(store_redis, keys.dead_letter_key(0, "test"), "-", "+")
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"s"] == poisoned.encode()
    assert int(fields[b"deliveries"]) == FAST.max_deliveries
    assert b"cannot apply this event" in fields[b"error"]
    assert attempts.count("poison") >= FAST.max_deliveries
    assert await pending_count(store_redis) == 0
    after = REGISTRY.get_sample_value(
        "eventhunting_consumer_dead_lettered_total", {"group": "test"}
    )
    assert after == before + 1


async def test_a_failing_entry_that_recovers_keeps_its_aggregate_in_order(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    flaky = basket(1)
    await add(store, flaky, "first")
    await add(store, flaky, "second")
    failures_left = 2
    handled: list[str] = []

    async def handle(batch: list[EventEnvelope], lease: Lease) -> None:
        nonlocal failures_left
        for event in batch:
            assert isinstance(event.data, ItemAdded)
            if event.data.sku == "first" and failures_left:
                failures_left -= 1
                raise ConnectionError("read model briefly unavailable")
        handled.extend(e.data.sku for e in batch if isinstance(e.data, ItemAdded))

    await run_until(consumer(store_redis, handle), lambda: len(handled) == 2)
    assert handled == ["first", "second"]
    assert await store_redis.xlen(keys.dead_letter_key(1, "test")) == 0


async def test_a_restarted_consumer_first_handles_its_own_pending_entries(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    stream = basket(0)
    await add(store, stream, "delivered-before-crash")
    group = consumer(store_redis, lambda batch, lease: asyncio.sleep(0), name="c1")
    await group.ensure_groups()
    await store_redis.xreadgroup("test", "c1", {keys.log_key(0): ">"}, count=10)
    handled: list[str] = []

    async def handle(batch: list[EventEnvelope], lease: Lease) -> None:
        handled.extend(e.data.sku for e in batch if isinstance(e.data, ItemAdded))

    await run_until(consumer(store_redis, handle, name="c1"), lambda: bool(handled))
    assert handled == ["delivered-before-crash"]
    assert await pending_count(store_redis) == 0


async def test_entries_left_idle_by_a_dead_consumer_are_taken_over(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    stream = basket(1)
    await add(store, stream, "orphan")
    await consumer(store_redis, lambda batch, lease: asyncio.sleep(0)).ensure_groups()
    await store_redis.xreadgroup("test", "dead-one", {keys.log_key(1): ">"}, count=10)
    handled: list[str] = []

    async def handle(batch: list[EventEnvelope], lease: Lease) -> None:
        handled.extend(e.data.sku for e in batch if isinstance(e.data, ItemAdded))

    await run_until(consumer(store_redis, handle, name="live-one"), lambda: bool(handled))
    assert handled == ["orphan"]
    assert await pending_count(store_redis) == 0


async def test_groups_are_created_idempotently(store_redis: aioredis.Redis) -> None:
    group = consumer(store_redis, lambda batch, lease: asyncio.sleep(0))
    await group.ensure_groups()
    await group.ensure_groups()
    infos = await store_redis.xinfo_groups(keys.log_key(0))
    assert [info["name"] for info in infos] == [b"test"]


async def test_lag_and_pending_are_exported_as_metrics(
    store: EventStore, store_redis: aioredis.Redis
) -> None:
    group = consumer(store_redis, lambda batch, lease: asyncio.sleep(0), group="metered")
    await group.ensure_groups()
    await add(store, basket(0), "a")
    await add(store, basket(0), "b")
    await group.ownership.refresh()
    await group.follow_ownership()
    await group.export_metrics()
    lag = REGISTRY.get_sample_value(
        "eventhunting_consumer_lag", {"group": "metered", "partition": "0"}
    )
    assert lag == 2
