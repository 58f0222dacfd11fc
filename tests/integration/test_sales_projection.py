"""The sales read model: live projection, replay from logs and archive, and folding as of a time."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from eventhunting.domain import catalog
from eventhunting.domain.catalog import (
    CatalogEvent,
)
from eventhunting.domain.errors import Forbidden
from eventhunting.domain.sales import Granularity, fold_sales
from eventhunting.projections import replay as replay_module
from eventhunting.projections.base import CHECKPOINTS_COLLECTION, Projector
from eventhunting.projections.replay import ReplayReport, replay
from eventhunting.projections.sales import (
    SALES_EVENTS,
    SALES_ORDERS,
    SALES_TIMELINE,
    SalesProjection,
)
from eventhunting.replay_jobs import ReplayJobFailed, replay_in_jobs
from eventhunting.services.sales import SalesQuery, SalesService
from eventhunting.settings import MongoSettings, RedisSettings, SalesSettings, StoreSettings
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore, stream_range
from eventhunting.store.archive import Archiver, create_event_indexes
from eventhunting.store.consumer_groups import log_entry
from eventhunting.store_clients import StoreClients
from tests.support.leases import lease_of
from tests.support.sales_history import (
    ORGANIZER,
    PARTITION,
    PARTITIONS,
    Sale,
    SteppedClock,
    first_half,
    open_sale,
    redis_now,
    second_half,
)
from tests.support.system import with_database

Database = Any


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def store(store_redis: aioredis.Redis, clock: SteppedClock) -> EventStore:
    return EventStore(store_redis, PARTITIONS, clock=clock)


@pytest.fixture
async def databases(
    mongo_client: AsyncMongoClient[dict[str, Any]], mongo_database_name: str
) -> AsyncIterator[tuple[Database, Database]]:
    """Two fresh databases: one the projector builds, one replay builds."""
    second = f"{mongo_database_name}_replay_{uuid.uuid4().hex[:6]}"
    try:
        yield mongo_client[mongo_database_name], mongo_client[second]
    finally:
        await mongo_client.drop_database(second)


async def project_live(store: EventStore, database: Database) -> None:
    """The projector's path: small batches, each in its own transaction with checkpoints."""
    projection = SalesProjection()
    await projection.create_indexes(database)
    projector = Projector(database, [projection])
    after = "0"
    while batch := await store.read_log(PARTITION, after, count=3):
        await projector(batch, lease_of(batch))
        after = batch[-1].position or after


async def read_models(database: Database) -> dict[str, list[dict[str, Any]]]:
    return {
        name: await database[name].find({}).sort("_id").to_list()
        for name in (SALES_EVENTS, SALES_TIMELINE, SALES_ORDERS)
    }


async def archive_everything(store_redis: aioredis.Redis, database: Database) -> None:
    await create_event_indexes(database)
    archiver = Archiver(database)
    for partition in range(PARTITIONS):
        entries = await stream_range(store_redis, keys.log_key(partition), "-", "+")
        await archiver.archive([log_entry(partition, i, fields) for i, fields in entries])


@pytest.mark.parametrize("page", [replay_module.REPLAY_PAGE, 2])
async def test_replay_from_logs_and_archive_builds_what_the_projector_built(
    store: EventStore,
    store_redis: aioredis.Redis,
    clock: SteppedClock,
    databases: tuple[Database, Database],
    monkeypatch: pytest.MonkeyPatch,
    page: int,
) -> None:
    # Pages of two entries split every order's events across pages (and the archive's
    # cursor batches within a partition): what a page needs of earlier ones is read back.
    monkeypatch.setattr(replay_module, "REPLAY_PAGE", page)
    live, rebuilt = databases
    sale = await open_sale(store, clock)
    await first_half(sale)
    await second_half(sale)
    await sale.check_in(await sale.place(Free=1), "Free")
    await project_live(store, live)
    built = await read_models(live)
    assert len(built[SALES_EVENTS]) == 2
    assert len(built[SALES_ORDERS]) == 8
    projected = next(event for event in built[SALES_EVENTS] if event["_id"] == sale.event_id)
    assert projected["ticket_types"][sale.ticket_types["Free"][0]]["checked_in"] == 1

    report = await replay(
        rebuilt,
        [SalesProjection()],
        redis=store_redis,
        partitions=PARTITIONS,
        progress=io.StringIO(),
    )
    assert report.events == sum(
        [await store_redis.xlen(keys.log_key(p)) for p in range(PARTITIONS)]
    )
    for partition, position in report.last_positions.items():
        [(last, _)] = await store_redis.xrevrange(keys.log_key(partition), count=1)
        assert position == last.decode()
    assert await read_models(rebuilt) == built

    await archive_everything(store_redis, rebuilt)
    for name in (SALES_EVENTS, SALES_TIMELINE, SALES_ORDERS):
        await rebuilt[name].delete_many({})
    await replay(
        rebuilt,
        [SalesProjection()],
        partitions=PARTITIONS,
        from_archive=True,
        progress=io.StringIO(),
    )
    assert await read_models(rebuilt) == built


class WriteCommands(CommandListener):
    """The write commands a client sends (the driver's own command monitoring)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update", "delete"):
            self.names.append(f"{event.command_name} {event.command[event.command_name]}")

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


async def test_the_projector_writes_a_delivered_batch_at_once_with_its_checkpoint(
    store: EventStore,
    clock: SteppedClock,
    mongodb_url: str,
    databases: tuple[Database, Database],
) -> None:
    expected, _ = databases
    sale = await open_sale(store, clock)
    await first_half(sale)
    await second_half(sale)
    batch = await store.read_log(PARTITION, "0", count=1_000)
    assert len(batch) > 20
    await project_live(store, expected)

    writes = WriteCommands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, event_listeners=[writes]
    )
    try:
        database = client[f"{expected.name}_batch"]
        projection = SalesProjection()
        await projection.create_indexes(database)
        writes.names.clear()
        await Projector(database, [projection])(batch, lease_of(batch))
        built = await read_models(database)
    finally:
        await client.drop_database(f"{expected.name}_batch")
        await client.close()

    # One write per collection for the whole batch, not several per event.
    assert sorted(writes.names) == [
        "insert sales_orders",
        "update projection_checkpoints",
        "update sales_events",
        "update sales_timeline",
    ]
    assert built == await read_models(expected)


async def event_of(store: EventStore, event_id: str) -> CatalogEvent:
    state = catalog.fold(await store.read_stream(PARTITION, f"event-{event_id}"))
    assert state is not None
    return state


async def test_figures_as_of_a_time_fold_only_the_events_logged_until_then(
    store: EventStore,
    store_redis: aioredis.Redis,
    clock: SteppedClock,
    databases: tuple[Database, Database],
) -> None:
    database, _ = databases
    sale = await open_sale(store, clock)
    await first_half(sale)
    await asyncio.sleep(0.005)
    between = await redis_now(store_redis)  # log entry ids are Redis milliseconds
    await asyncio.sleep(0.005)
    until_between = list(sale.appended)
    await second_half(sale)
    # At the door: two tickets of a paid order of this event, and one of another event in
    # the same partition (which must not count here).
    door = await sale.place(Free=2)
    await sale.check_in(door, "Free")
    await sale.check_in(door, "Free")
    other = Sale(store, clock)
    await other.open({"GA": 0})
    await other.check_in(await other.place(GA=1), "GA")
    await project_live(store, database)

    async def load(event_id: str) -> CatalogEvent:
        return await event_of(store, event_id)

    service = SalesService(store, database, load, clock=lambda: clock.now + timedelta(days=1))
    owner = {"account_id": ORGANIZER, "is_admin": False}
    span = SalesQuery(
        granularity=Granularity.MINUTE,
        start=datetime(2026, 4, 30, tzinfo=UTC),
        end=datetime(2026, 5, 2, tzinfo=UTC),
    )
    now = await service.event_sales(sale.event_id, span, **owner)
    later = await service.event_sales(
        sale.event_id,
        SalesQuery(
            granularity=span.granularity,
            start=span.start,
            end=span.end,
            as_of=clock.now + timedelta(days=365),
        ),
        **owner,
    )
    then = await service.event_sales(
        sale.event_id,
        SalesQuery(granularity=span.granularity, start=span.start, end=span.end, as_of=between),
        **owner,
    )

    # Folding the whole log answers what the read model answers.
    later.as_of = None
    assert later == now
    assert now.orders.placed == 7
    assert (now.orders.paid, now.orders.cancelled, now.orders.expired, now.orders.pending) == (
        5,
        1,
        0,
        1,
    )
    assert now.tickets.checked_in == 2
    assert [t.tickets.checked_in for t in now.ticket_types] == [0, 0, 2]
    assert sum(item.tickets_checked_in for item in now.timeline.items) == 2
    assert now.time_to_pay.orders == 3
    assert now.time_to_pay.median_seconds == 420  # 30 s, 423 s and 960 s (the late one)
    assert [t.name for t in now.ticket_types] == ["VIP", "Standard", "Free"]

    # As of the time between the halves, only the first half counts.
    assert then.as_of == between
    expected = fold_sales(until_between)
    assert then.orders.placed == expected.document(sale.event_id)["orders"]["placed"] == 4
    assert then.orders.paid == 3
    assert then.revenue.gross == 2 * 1_100_000 + 4 * 330_000
    assert then.revenue.vat == 200_000 + 120_000
    assert len(then.timeline.items) < len(now.timeline.items)
    assert then.time_to_pay.median_seconds == 30
    assert then.tickets.checked_in == 0


async def test_figures_are_only_for_the_events_organizer_or_an_admin(
    store: EventStore, clock: SteppedClock, databases: tuple[Database, Database]
) -> None:
    database, _ = databases
    sale = await open_sale(store, clock)

    async def load(event_id: str) -> CatalogEvent:
        return await event_of(store, event_id)

    service = SalesService(store, database, load, clock=clock)
    with pytest.raises(Forbidden):
        await service.event_sales(sale.event_id, SalesQuery(), account_id="someone", is_admin=False)
    admin = await service.event_sales(
        sale.event_id, SalesQuery(), account_id="admin", is_admin=True
    )
    assert admin.orders.placed == 0  # nothing projected yet: zeros, not an error


@dataclass(frozen=True)
class JobServers:
    """The test servers a replay's spawned jobs connect to, by URL."""

    redis: aioredis.Redis
    redis_url: str
    mongo: AsyncMongoClient[dict[str, Any]]
    mongodb_url: str

    async def replay_sales(
        self, database: Database, jobs: int, *, from_archive: bool = False
    ) -> ReplayReport:
        settings = StoreSettings(
            redis=RedisSettings(url=self.redis_url),
            mongodb=MongoSettings(url=with_database(self.mongodb_url, database.name)),
            sales=SalesSettings(partitions=PARTITIONS),
            log_level="WARNING",
        )
        return await replay_in_jobs(
            settings,
            StoreClients(redis=self.redis, mongo=self.mongo, database=database),
            names=["sales"],
            from_archive=from_archive,
            jobs=jobs,
            progress=io.StringIO(),
        )


@pytest.fixture
def job_servers(
    store_redis: aioredis.Redis,
    store_redis_url: str,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongodb_url: str,
) -> JobServers:
    return JobServers(store_redis, store_redis_url, mongo_client, mongodb_url)


async def checkpoints_of(database: Database) -> list[dict[str, Any]]:
    return await database[CHECKPOINTS_COLLECTION].find({}).sort("_id").to_list()


@pytest.mark.parametrize("from_archive", [False, True])
async def test_replay_in_jobs_builds_what_the_projector_built(
    store: EventStore,
    store_redis: aioredis.Redis,
    job_servers: JobServers,
    clock: SteppedClock,
    databases: tuple[Database, Database],
    from_archive: bool,
) -> None:
    live, rebuilt = databases
    sale = await open_sale(store, clock)
    await first_half(sale)
    await second_half(sale)
    await project_live(store, live)
    built = await read_models(live)
    if from_archive:
        await archive_everything(store_redis, rebuilt)

    # More jobs than partitions: one per partition, the sale's in whichever job took it.
    report = await job_servers.replay_sales(rebuilt, jobs=3, from_archive=from_archive)

    assert report.events == await store_redis.xlen(keys.log_key(PARTITION))
    [(last, _)] = await store_redis.xrevrange(keys.log_key(PARTITION), count=1)
    assert report.last_positions == {PARTITION: last.decode()}
    assert await read_models(rebuilt) == built
    assert [c["position"] for c in await checkpoints_of(rebuilt)] == [last.decode()]


async def kill_the_spawned_job() -> None:
    """SIGKILL the replay's spawned job as soon as it exists (before or after it took a
    partition)."""
    async with asyncio.timeout(30):
        while True:
            if children := multiprocessing.active_children():
                break
            await asyncio.sleep(0.005)
    [job] = children
    assert job.pid is not None
    os.kill(job.pid, signal.SIGKILL)


@pytest.mark.parametrize("failure", ["an event the fold refuses", "a job killed mid-way"])
async def test_a_failed_replay_job_swaps_nothing_in(
    store: EventStore,
    job_servers: JobServers,
    clock: SteppedClock,
    databases: tuple[Database, Database],
    failure: str,
) -> None:
    database, _ = databases
    sale = await open_sale(store, clock)
    await first_half(sale)
    await project_live(store, database)
    built, checkpoints = await read_models(database), await checkpoints_of(database)
    if failure == "a job killed mid-way":
        await second_half(sale)  # logged, not projected: a swap would show it
        replaying = asyncio.create_task(job_servers.replay_sales(database, jobs=2))
        await kill_the_spawned_job()
        reported = "exit code -9"
    else:
        # The sales fold refuses a payment of an order never placed: the job that took
        # that partition (this process or the spawned one) fails.
        never_placed = keys.new_id_in_partition(PARTITION, PARTITIONS)
        placed = await sale.place(VIP=1)
        await store.append(
            AppendRequest(
                partition=PARTITION,
                stream=f"order-{never_placed}",
                events=[msgspec.structs.replace(sale.payment(placed), order_id=never_placed)],
            )
        )
        replaying = asyncio.create_task(job_servers.replay_sales(database, jobs=2))
        reported = f"order {never_placed} was never placed"

    with pytest.raises(ReplayJobFailed, match=reported):
        await replaying
    assert await read_models(database) == built
    assert await checkpoints_of(database) == checkpoints
