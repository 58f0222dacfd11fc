"""The archiver copies the logs into MongoDB; restore rebuilds Redis from that archive."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from eventhunting.store import keys
from eventhunting.store.append import (
    AppendRequest,
    Claim,
    CounterChange,
    CounterSet,
    EventStore,
    Numbering,
    ScheduleChange,
    stream_range,
)
from eventhunting.store.archive import (
    ARCHIVER_GROUP,
    EVENTS_COLLECTION,
    Archiver,
    create_event_indexes,
)
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    Lease,
    LogEntry,
    log_entry,
)
from eventhunting.store.envelope import EventMeta
from eventhunting.store.errors import GuardRejected
from eventhunting.store.redis_client import RedisClient, connect_redis
from eventhunting.store.restore import RedisNotEmpty, restore
from tests.support.redis_cluster import LocalCluster
from tests.support.redis_snapshot import event_store_snapshot
from tests.support.store_events import (
    BasketClosed,
    ItemAdded,
    ReceiptIssued,
    store_test_registry,
)

PARTITIONS = 3
FAST = ConsumerConfig(block_ms=50, count=50, lease_ms=2_000, max_deliveries=3, retry_delay_ms=20)

Database = Any


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
async def store_redis(
    request: pytest.FixtureRequest, store_redis_url: str
) -> AsyncIterator[RedisClient]:
    """These tests run on one redis-server and on the Redis Cluster (keys on three masters)."""
    url = store_redis_url
    if request.param == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        url = cluster.url
    client = connect_redis(url, max_connections=64, timeout=10)
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
def store(store_redis: RedisClient) -> EventStore:
    return EventStore(store_redis, PARTITIONS, event_registry=store_test_registry)


@pytest.fixture
def database(mongo_client: AsyncMongoClient[dict[str, Any]], mongo_database_name: str) -> Database:
    return mongo_client[mongo_database_name]


def basket(partition: int) -> str:
    return f"basket-{keys.new_id_in_partition(partition, PARTITIONS)}"


async def write_history(store: EventStore) -> int:
    """A mixed history: plain appends, guarded counters, claims, schedules, idempotent retries."""
    written = 0
    for partition in range(PARTITIONS):
        setup = await store.append(
            AppendRequest(
                partition=partition,
                stream=basket(partition),
                events=[ItemAdded(sku="setup", quantity=0)],
                counters=[CounterSet("inventory:t1", {"capacity": 4, "held": 0, "sold": 0})],
            )
        )
        written += len(setup.events)
        for index in range(6):
            stream = basket(partition)
            try:
                result = await store.append(
                    AppendRequest(
                        partition=partition,
                        stream=stream,
                        events=[ItemAdded(sku="t1", quantity=1), BasketClosed(reason="paid")],
                        expected_version=0,
                        meta=EventMeta(command_id=f"c{index}", actor="account-1"),
                        idempotency_id=f"hold-{partition}-{index}",
                        fingerprint="body",
                        counters=[
                            CounterChange(
                                "inventory:t1",
                                {"held": 1},
                                sum_fields=("held", "sold"),
                                ceiling_field="capacity",
                                code="sold_out",
                            )
                        ],
                        claims=[Claim(f"basket:{index}", stream, "taken")],
                        schedules=[
                            ScheduleChange("hold-expiry", stream, 1_740_000_000_000 + index),
                            ScheduleChange("hold-expiry", f"old-{index - 1}", None),
                        ],
                    )
                )
            except GuardRejected:
                continue
            written += len(result.events)
        for _ in range(3):
            numbered = await store.append(
                AppendRequest(
                    partition=partition,
                    stream=basket(partition),
                    events=[ReceiptIssued()],
                    numbering=RECEIPTS,
                )
            )
            written += len(numbered.events)
    return written


RECEIPTS = Numbering(
    name="receipts",
    field="issued",
    maximum=99,
    code="receipts_exhausted",
    number_fields=("sequence",),
    text_fields=("number",),
    text_prefix="R-",
    digits=4,
)


async def archive_everything(store_redis: RedisClient, database: Database, total: int) -> None:
    archiver = Archiver(database)
    archived: list[int] = []

    async def handle(entries: list[LogEntry], lease: Lease) -> None:
        await archiver(entries, lease)
        archived.append(len(entries))

    group: ConsumerGroup[LogEntry] = ConsumerGroup(
        store_redis, ARCHIVER_GROUP, "a1", PARTITIONS, handle, FAST, decode=lambda e: e
    )
    stop = asyncio.Event()
    task = asyncio.create_task(group.run(stop))
    async with asyncio.timeout(20):
        while sum(archived) < total:  # noqa: ASYNC110 - plain test state
            await asyncio.sleep(0.02)
    stop.set()
    await task


async def test_the_archiver_copies_every_event_once_with_its_indexes(
    store: EventStore, store_redis: RedisClient, database: Database
) -> None:
    await create_event_indexes(database)
    total = await write_history(store)
    await archive_everything(store_redis, database, total)
    events = database[EVENTS_COLLECTION]
    assert await events.count_documents({}) == total
    log = await store.read_log(0, count=1000)
    first = await events.find_one({"position": log[1].position})
    assert first is not None
    assert first["stream"] == log[1].stream
    assert first["type"] == "ItemAdded"
    assert first["data"] == {"sku": "t1", "quantity": 1}
    assert first["meta"]["command_id"] == "c0"
    index_names = {index["name"] for index in await (await events.list_indexes()).to_list()}
    assert {"stream_version", "event_id", "partition_position"} <= index_names


async def test_archiving_an_entry_again_changes_nothing(
    store: EventStore, store_redis: RedisClient, database: Database
) -> None:
    await create_event_indexes(database)
    total = await write_history(store)
    await archive_everything(store_redis, database, total)
    events = database[EVENTS_COLLECTION]
    before = await events.find({}).sort("_id").to_list()
    raw = await stream_range(store_redis, keys.log_key(1), "-", "+", count=5)
    await Archiver(database).archive([log_entry(1, entry_id, fields) for entry_id, fields in raw])
    assert await events.find({}).sort("_id").to_list() == before


async def test_restore_from_the_archive_gives_identical_streams_and_counters(
    store: EventStore, store_redis: RedisClient, database: Database
) -> None:
    await create_event_indexes(database)
    total = await write_history(store)
    await archive_everything(store_redis, database, total)
    original = await event_store_snapshot(store_redis)
    await store_redis.flushdb()

    output = io.StringIO()
    report = await restore(store_redis, database, PARTITIONS, progress=output)

    assert report.events == total
    assert await event_store_snapshot(store_redis) == original
    assert "restore" in output.getvalue()
    # The restored store keeps working: a repeated command is still recognised.
    again = await store.append(
        AppendRequest(
            partition=0,
            stream=basket(0),
            events=[ItemAdded(sku="t1", quantity=1)],
            idempotency_id="hold-0-0",
        )
    )
    assert again.duplicate
    assert again.fingerprint == "body"
    infos = await store_redis.xinfo_groups(keys.log_key(0))
    assert infos[0]["lag"] == 0
    # ... and numbers go on from the restored counter, gapless.
    numbered = await store.append(
        AppendRequest(partition=0, stream=basket(0), events=[ReceiptIssued()], numbering=RECEIPTS)
    )
    assert numbered.number == 4
    assert numbered.events[0].data == ReceiptIssued(sequence=4, number="R-0004")


async def test_restore_refuses_to_write_over_a_non_empty_store(
    store: EventStore, store_redis: RedisClient, database: Database
) -> None:
    await store.append(AppendRequest(partition=0, stream=basket(0), events=[BasketClosed()]))
    with pytest.raises(RedisNotEmpty):
        await restore(store_redis, database, PARTITIONS, progress=io.StringIO())
    assert await store_redis.xlen(keys.log_key(0)) == 1


async def test_a_forced_restore_replaces_the_event_store_keys_only(
    store: EventStore, store_redis: RedisClient, database: Database
) -> None:
    await store.append(AppendRequest(partition=0, stream=basket(0), events=[BasketClosed()]))
    await store_redis.set("session:abc", "kept")
    await restore(store_redis, database, PARTITIONS, force=True, progress=io.StringIO())
    assert await store_redis.xlen(keys.log_key(0)) == 0
    assert await store_redis.get("session:abc") == b"kept"
