"""Dead letters for admins on a real Redis: listed without tracebacks, retried once per request,
handled again by the group's worker, archived at once for the archiver, refused for the
projector."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.consumers.dead_letter_retries import DeadLetterRetries, retry_key
from eventhunting.services.dead_letters import (
    DeadLetterNotFound,
    DeadLetterNotRetryable,
    DeadLetterService,
)
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from eventhunting.store.archive import EVENTS_COLLECTION
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    Lease,
    envelope_decoder,
)
from eventhunting.store.envelope import EventEnvelope
from tests.support.store_events import ItemAdded, store_test_registry

PARTITIONS = 2
FAST = ConsumerConfig(block_ms=50, count=10, lease_ms=2_000, max_deliveries=2, retry_delay_ms=20)
GROUP = "mailer"


@pytest.fixture
def store(store_redis: aioredis.Redis) -> EventStore:
    return EventStore(store_redis, PARTITIONS, event_registry=store_test_registry)


@pytest.fixture
def service(
    store_redis: aioredis.Redis,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> DeadLetterService:
    return DeadLetterService(store_redis, mongo_client[mongo_database_name], PARTITIONS)


class Handler:
    """Refuses `poison` while `broken`; records what it handled."""

    def __init__(self) -> None:
        self.broken = True
        self.handled: list[str] = []

    async def __call__(self, batch: list[EventEnvelope], lease: Lease) -> None:
        for event in batch:
            assert isinstance(event.data, ItemAdded)
            if event.data.sku == "poison" and self.broken:
                raise RuntimeError("cannot handle this one")
            self.handled.append(event.data.sku)


async def run_until(
    group: ConsumerGroup[EventEnvelope], done: Callable[[], Any], seconds: float = 10
) -> None:
    stop = asyncio.Event()
    runs = [
        asyncio.create_task(group.run(stop)),
        asyncio.create_task(DeadLetterRetries(group, interval_seconds=0.05).run(stop)),
    ]
    try:
        async with asyncio.timeout(seconds):
            while not await done():  # noqa: ASYNC110 - the condition is Redis state
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*runs), 5)


async def dead_lettered(
    store: EventStore, store_redis: aioredis.Redis, handler: Handler
) -> tuple[ConsumerGroup[EventEnvelope], str]:
    stream = f"basket-{keys.new_id_in_partition(0, PARTITIONS)}"
    for sku in ("poison", "fine"):
        await store.append(
            AppendRequest(partition=0, stream=stream, events=[ItemAdded(sku=sku, quantity=1)])
        )
    group: ConsumerGroup[EventEnvelope] = ConsumerGroup(
        store_redis,
        GROUP,
        "c1",
        PARTITIONS,
        handler,
        FAST,
        decode=envelope_decoder(store_test_registry),
    )

    async def given_up() -> bool:
        return "fine" in handler.handled

    await run_until(group, given_up)
    return group, stream


async def test_a_retried_dead_letter_is_handled_once_by_the_groups_worker(
    store: EventStore, store_redis: aioredis.Redis, service: DeadLetterService
) -> None:
    handler = Handler()
    group, stream = await dead_lettered(store, store_redis, handler)
    listed = await service.list()
    (letter,) = listed.items
    assert (letter.group, letter.stream, letter.version) == (GROUP, stream, 1)
    assert letter.event_type == "ItemAdded"
    assert letter.error == "RuntimeError: cannot handle this one"
    assert letter.deliveries == FAST.max_deliveries
    assert not letter.retried

    handler.broken = False
    await service.retry(GROUP, letter.id, by="admin")
    with pytest.raises(DeadLetterNotFound):
        await service.retry(GROUP, letter.id, by="admin")

    async def retried() -> bool:
        return await store_redis.xlen(retry_key(0, GROUP)) == 0

    await run_until(group, retried)
    assert handler.handled == ["fine", "poison"]
    assert (await service.list()).total == 0


async def test_a_retry_that_fails_again_goes_back_to_the_dead_letters(
    store: EventStore, store_redis: aioredis.Redis, service: DeadLetterService
) -> None:
    handler = Handler()
    group, _ = await dead_lettered(store, store_redis, handler)
    (letter,) = (await service.list()).items

    await service.retry(GROUP, letter.id, by="admin")

    async def dead_again() -> bool:
        return (await service.list()).total == 1

    await run_until(group, dead_again)
    (again,) = (await service.list()).items
    assert again.retried
    assert again.id != letter.id
    assert again.position == letter.position
    assert await store_redis.xlen(retry_key(0, GROUP)) == 0


async def test_the_archiver_archives_at_once_and_the_projector_refuses(
    store: EventStore,
    store_redis: aioredis.Redis,
    service: DeadLetterService,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    stream = f"basket-{keys.new_id_in_partition(1, PARTITIONS)}"
    await store.append(
        AppendRequest(partition=1, stream=stream, events=[ItemAdded(sku="a", quantity=1)])
    )
    ((position, fields),) = await store_redis.xrange(keys.log_key(1))
    for group in ("archiver", "projector"):
        await store_redis.xadd(
            keys.dead_letter_key(1, group),
            {
                **fields,
                b"position": position,
                b"group": group,
                b"deliveries": 5,
                b"error": b"Traceback (most recent call last):\n  ...\nValueError: bad",
                b"failed_at_ms": 1,
            },
        )
    letters = {letter.group: letter for letter in (await service.list()).items}
    assert letters["archiver"].error == "ValueError: bad"

    with pytest.raises(DeadLetterNotRetryable):
        await service.retry("projector", letters["projector"].id, by="admin")
    await service.retry("archiver", letters["archiver"].id, by="admin")

    archived = await mongo_client[mongo_database_name][EVENTS_COLLECTION].find_one(
        {"stream": stream}
    )
    assert archived is not None
    assert [letter.group for letter in (await service.list()).items] == ["projector"]
    with pytest.raises(DeadLetterNotFound):
        await service.retry("nobody", letters["projector"].id, by="admin")
