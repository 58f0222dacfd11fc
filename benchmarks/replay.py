"""Replay throughput: rebuilding `sales` (and every read model) vs reading the same entries raw.

Run: .venv/bin/python -m benchmarks.replay [--events 200000] [--json report.json]
     .venv/bin/python -m benchmarks.replay --smoke          # a few seconds; CI runs it
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from pymongo import ASCENDING, AsyncMongoClient

from benchmarks.harness import machine_description, running_bench_redis
from benchmarks.store_append import cpu_seconds_of
from eventhunting.domain.catalog import EventDrafted, EventPublished, TicketTypeAdded, Venue
from eventhunting.domain.events import DomainEvent, registry
from eventhunting.domain.orders import (
    ItemQuantity,
    OrderCancelled,
    OrderExpired,
    OrderLine,
    OrderPaid,
    OrderPlaced,
)
from eventhunting.domain.sales import SalesTally
from eventhunting.projections.base import Database
from eventhunting.projections.registry import load_projections
from eventhunting.projections.replay import REPLAY_PAGE, heap_frozen, pages_from_logs, replay
from eventhunting.projections.sales import SalesProjection
from eventhunting.replay_jobs import replay_in_jobs
from eventhunting.settings import MongoSettings, RedisSettings, SalesSettings, StoreSettings
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore, stream_range
from eventhunting.store.archive import EVENTS_COLLECTION, Archiver, create_event_indexes
from eventhunting.store.consumer_groups import log_entry
from eventhunting.store_clients import StoreClients
from tests.support.servers import running_mongo_standin

PARTITIONS = 16
CATALOG_EVENTS = 32
CONCURRENT_APPENDS = 256
TARGET_RATIO = 0.25
"""The rebuild of `sales` from the logs should reach a quarter of the raw XRANGE rate."""


@dataclass
class Measure:
    name: str
    events: int
    seconds: float
    cpu_us_per_event: dict[str, float] | None = None
    """CPU per event of this process, Redis and the MongoDB stand-in (less sensitive to the
    other work on a shared machine than the rates)."""

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def order_events(
    event_id: str, ticket_types: list[tuple[str, int]], chooser: random.Random, now: datetime
) -> tuple[str, list[list[DomainEvent]]]:
    """One order's appends: placed (and paid at once when free), then maybe an outcome."""
    order_id = keys.new_id_in_partition(keys.partition_of(event_id, PARTITIONS), PARTITIONS)
    ticket_type_id, price = chooser.choice(ticket_types)
    quantity = chooser.randint(1, 4)
    placed = OrderPlaced(
        order_id=order_id,
        event_id=event_id,
        buyer_id=f"buyer-{chooser.randrange(10_000)}",
        items=(
            OrderLine(
                ticket_type_id=ticket_type_id,
                name="Seat",
                quantity=quantity,
                unit_price=price,
                amount=quantity * price,
            ),
        ),
        total_amount=quantity * price,
        placed_at=now,
        expires_at=now + timedelta(minutes=15),
    )
    items = (ItemQuantity(ticket_type_id=ticket_type_id, quantity=quantity),)
    common: dict[str, Any] = {
        "order_id": order_id,
        "event_id": event_id,
        "buyer_id": placed.buyer_id,
    }
    paid = OrderPaid(**common, items=items, amount=placed.total_amount, method="bench", paid_at=now)
    if price == 0:
        return order_id, [[placed, paid]]
    outcome = chooser.random()
    if outcome < 0.6:
        return order_id, [[placed], [paid]]
    if outcome < 0.8:
        cancelled = OrderCancelled(**common, items=items, cancelled_at=now, cancelled_by="b")
        return order_id, [[placed], [cancelled]]
    return order_id, [[placed], [OrderExpired(**common, items=items, expired_at=now)]]


async def write_history(redis: aioredis.Redis, events: int, seed: int) -> int:
    """Catalog events with paid, cancelled, expired and free orders: about `events` in all."""
    store = EventStore(redis, PARTITIONS)
    chooser = random.Random(seed)
    now = datetime.now(UTC)
    catalog: list[tuple[str, list[tuple[str, int]]]] = []
    written = 0
    for _ in range(CATALOG_EVENTS):
        partition = chooser.randrange(PARTITIONS)
        event_id = keys.new_id_in_partition(partition, PARTITIONS)
        ticket_types = [
            (keys.new_id_in_partition(partition, PARTITIONS), price)
            for price in (1_100_000, 330_000, 0)
        ]
        catalog.append((event_id, ticket_types))
        drafted: list[DomainEvent] = [
            EventDrafted(
                event_id=event_id,
                organizer_id=f"organizer-{chooser.randrange(8)}",
                title="Benchmark night",
                description="",
                venue=Venue(name="Stadium", address="1 Le Duan"),
                province="ho-chi-minh",
                starts_at=now + timedelta(days=30),
                ends_at=now + timedelta(days=30, hours=3),
            ),
            *(
                TicketTypeAdded(
                    event_id=event_id,
                    ticket_type_id=ticket_type_id,
                    name=f"Type {index}",
                    price=price,
                    quantity=1_000_000,
                )
                for index, (ticket_type_id, price) in enumerate(ticket_types)
            ),
            EventPublished(event_id=event_id),
        ]
        await store.append(
            AppendRequest(partition=partition, stream=f"event-{event_id}", events=drafted)
        )
        written += len(drafted)
    while written < events:
        first: list[Awaitable[Any]] = []
        later: list[tuple[int, str, list[DomainEvent]]] = []
        for _ in range(CONCURRENT_APPENDS):
            event_id, ticket_types = chooser.choice(catalog)
            order_id, appends = order_events(event_id, ticket_types, chooser, now)
            partition = keys.partition_of(event_id, PARTITIONS)
            first.append(
                store.append(
                    AppendRequest(
                        partition=partition, stream=f"order-{order_id}", events=appends[0]
                    )
                )
            )
            later.extend((partition, order_id, batch) for batch in appends[1:])
            written += sum(len(batch) for batch in appends)
        await asyncio.gather(*first)
        await asyncio.gather(
            *(
                store.append(AppendRequest(partition=p, stream=f"order-{o}", events=batch))
                for p, o, batch in later
            )
        )
    return written


async def raw_log_read(redis: aioredis.Redis) -> Measure:
    """XRANGE every partition log in pages of REPLAY_PAGE, as replay does, decoding nothing,
    with the heap frozen as replay freezes it (like for like)."""
    with heap_frozen():
        return await read_logs_raw(redis)


async def read_logs_raw(redis: aioredis.Redis) -> Measure:
    started = time.perf_counter()
    count = 0
    for partition in range(PARTITIONS):
        start = "-"
        while True:
            entries = await stream_range(
                redis, keys.log_key(partition), start, "+", count=REPLAY_PAGE
            )
            count += len(entries)
            if len(entries) < REPLAY_PAGE:
                break
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)
    return Measure("raw XRANGE", count, time.perf_counter() - started)


async def fold_in_memory(redis: aioredis.Redis) -> Measure:
    """Read, decode and fold every log entry with the sales fold, writing nothing: the
    client-side ceiling of a rebuild, and the per-entry cost of an `as_of` query."""
    with heap_frozen():
        return await fold_logs(redis)


async def fold_logs(redis: aioredis.Redis) -> Measure:
    started = time.perf_counter()
    count = 0
    tally = SalesTally()
    async for page in pages_from_logs(redis, range(PARTITIONS), registry, SalesProjection.handles):
        count += page.read
        for envelope in page.events:
            tally.apply(envelope.data, envelope.occurred_at)
    return Measure("sales fold in memory", count, time.perf_counter() - started)


async def raw_archive_read(database: Database) -> Measure:
    """A plain find over the archive in replay's order and batch size (heap frozen too)."""
    with heap_frozen():
        return await find_archive_raw(database)


async def find_archive_raw(database: Database) -> Measure:
    started = time.perf_counter()
    count = 0
    cursor = database[EVENTS_COLLECTION].find(
        {},
        sort=[("partition", ASCENDING), ("position_ms", ASCENDING), ("position_seq", ASCENDING)],
        batch_size=REPLAY_PAGE,
    )
    async for _ in cursor:
        count += 1
    return Measure("raw archive find", count, time.perf_counter() - started)


async def archive_logs(redis: aioredis.Redis, database: Database) -> Measure:
    await create_event_indexes(database)
    archiver = Archiver(database)
    started = time.perf_counter()
    count = 0
    for partition in range(PARTITIONS):
        start = "-"
        while entries := await stream_range(redis, keys.log_key(partition), start, "+", 1_000):
            await archiver.archive([log_entry(partition, i, f) for i, f in entries])
            count += len(entries)
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)
    return Measure("archive", count, time.perf_counter() - started)


async def rebuild(
    name: str, database: Database, redis: aioredis.Redis, names: list[str] | None, archive: bool
) -> Measure:
    started = time.perf_counter()
    report = await replay(
        database,
        load_projections(names),
        redis=redis,
        partitions=PARTITIONS,
        from_archive=archive,
        progress=io.StringIO(),
    )
    return Measure(name, report.events, time.perf_counter() - started)


async def rebuild_in_jobs(
    name: str, settings: StoreSettings, clients: StoreClients, names: list[str], jobs: int
) -> Measure:
    """`eventhunting replay --jobs N`: the partitions spread over `jobs` processes (this one
    and spawned ones, whose start-up is part of the time)."""
    started = time.perf_counter()
    report = await replay_in_jobs(
        settings, clients, names=names, from_archive=False, jobs=jobs, progress=io.StringIO()
    )
    return Measure(name, report.events, time.perf_counter() - started)


@dataclass(frozen=True)
class Processes:
    """The processes a measure makes work: this one, Redis and the MongoDB stand-in."""

    redis_pid: int
    mongo_pid: int

    def cpu_seconds(self) -> dict[str, float]:
        # Replay jobs are spawned processes, counted once they have been waited for.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "client": time.process_time() + children.ru_utime + children.ru_stime,
            "redis": cpu_seconds_of(self.redis_pid),
            "mongo": cpu_seconds_of(self.mongo_pid),
        }


def pid_of_command(*words: str) -> int:
    """The process whose command line holds all `words` (the stand-in, by its port)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if all(word in command.split() for word in words):
                return int(entry.name)
    raise LookupError(f"no process runs {' '.join(words)}")


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(
    redis_url: str, mongodb_url: str, events: int, seed: int, jobs: int
) -> dict[str, Any]:
    redis = aioredis.Redis.from_url(redis_url)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    database = mongo["bench_replay"]
    clients = StoreClients(redis=redis, mongo=mongo, database=database)
    address = urlsplit(mongodb_url)
    settings = StoreSettings(
        redis=RedisSettings(url=redis_url),
        mongodb=MongoSettings(url=address._replace(path="/bench_replay").geturl()),
        sales=SalesSettings(partitions=PARTITIONS),
        log_level="WARNING",
    )
    jobs_name = f"sales from logs, {jobs} jobs"
    try:
        await mongo.drop_database("bench_replay")
        written = await write_history(redis, events, seed)
        archived = await archive_logs(redis, database)
        # One rebuild before measuring: first-use costs (imports, the stand-in's one complete
        # garbage collection after taking the archive) land here, not in whichever measure
        # happens to come first.
        await rebuild("warm-up", database, redis, ["sales"], archive=False)
        rss_before = max_rss_mib()
        measures: list[Measure] = []
        steps: list[Callable[[], Awaitable[Measure]]] = [
            lambda: raw_log_read(redis),
            lambda: rebuild("sales from logs", database, redis, ["sales"], archive=False),
            lambda: rebuild_in_jobs(jobs_name, settings, clients, ["sales"], jobs),
            lambda: rebuild("all read models from logs", database, redis, None, archive=False),
            lambda: raw_archive_read(database),
            lambda: rebuild("sales from archive", database, redis, ["sales"], archive=True),
            lambda: rebuild("all read models from archive", database, redis, None, archive=True),
            # Last: it keeps every order in one tally, which would hide what replay holds.
            lambda: fold_in_memory(redis),
        ]
        server: dict[str, Any] = await redis.info("server")
        processes = Processes(
            redis_pid=int(server["process_id"]),
            mongo_pid=pid_of_command(
                "eventhunting.standins.mongo", str(urlsplit(mongodb_url).port)
            ),
        )
        rss_after: dict[str, float] = {}
        for step in steps:
            before = processes.cpu_seconds()
            measure = await step()
            after = processes.cpu_seconds()
            measure.cpu_us_per_event = {
                name: round((after[name] - before[name]) / max(measure.events, 1) * 1e6, 2)
                for name in after
            }
            measures.append(measure)
            rss_after[measure.name] = round(max_rss_mib(), 1)
        by_name = {m.name: m for m in measures}
        raw_logs = by_name["raw XRANGE"].per_second
        raw_archive = by_name["raw archive find"].per_second
        return {
            "machine": machine_description(),
            "events": written,
            "jobs": jobs,
            "archive_events_per_second": round(archived.per_second),
            "measures": [{**asdict(m), "per_second": round(m.per_second)} for m in measures],
            "ratios": {
                "fold_in_memory_vs_raw_xrange": round(
                    by_name["sales fold in memory"].per_second / raw_logs, 3
                ),
                "sales_from_logs_vs_raw_xrange": round(
                    by_name["sales from logs"].per_second / raw_logs, 3
                ),
                "sales_from_logs_in_jobs_vs_raw_xrange": round(
                    by_name[jobs_name].per_second / raw_logs, 3
                ),
                "all_from_logs_vs_raw_xrange": round(
                    by_name["all read models from logs"].per_second / raw_logs, 3
                ),
                "sales_from_archive_vs_raw_find": round(
                    by_name["sales from archive"].per_second / raw_archive, 3
                ),
                "all_from_archive_vs_raw_find": round(
                    by_name["all read models from archive"].per_second / raw_archive, 3
                ),
                "sales_from_archive_vs_raw_xrange": round(
                    by_name["sales from archive"].per_second / raw_logs, 3
                ),
            },
            "max_rss_mib_before_rebuilds": round(rss_before, 1),
            "max_rss_mib_after_rebuilds": round(max_rss_mib(), 1),
            "max_rss_mib_after_each": rss_after,
        }
    finally:
        await mongo.drop_database("bench_replay")
        await mongo.close()
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--smoke", action="store_true", help="a few thousand events")
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    parser.add_argument(
        "--jobs", type=int, default=2, help="processes of the `replay --jobs` measure (default 2)"
    )
    arguments = parser.parse_args()
    events = 3_000 if arguments.smoke else arguments.events

    with (
        tempfile.TemporaryDirectory(prefix="bench-replay-") as data_dir,
        running_bench_redis(Path(data_dir), fsync="everysec") as redis_url,
        running_mongo_standin() as mongodb_url,
    ):
        report = asyncio.run(run(redis_url, mongodb_url, events, arguments.seed, arguments.jobs))

    print(report["machine"])
    archive_rate = report["archive_events_per_second"]
    print(f"{report['events']:,} events in {PARTITIONS} partitions; archive {archive_rate:,}/s")
    for measure in report["measures"]:
        rate, seconds = measure["per_second"], measure["seconds"]
        cpu = ", ".join(f"{name} {us}" for name, us in measure["cpu_us_per_event"].items())
        print(f"  {measure['name']:<32} {rate:>10,} events/s ({seconds:.2f} s; CPU µs/event {cpu})")
    for name, ratio in report["ratios"].items():
        print(f"  {name:<36} {ratio:.3f}")
    for key, label in (
        ("sales_from_logs_vs_raw_xrange", "one process"),
        ("sales_from_logs_in_jobs_vs_raw_xrange", f"{report['jobs']} jobs"),
    ):
        met = report["ratios"][key] >= TARGET_RATIO
        verdict = "met" if met else "not met"
        print(f"target: sales rebuild ({label}) >= {TARGET_RATIO} of raw XRANGE: {verdict}")
    print(
        f"max RSS: {report['max_rss_mib_before_rebuilds']} MiB before the rebuilds,"
        f" {report['max_rss_mib_after_rebuilds']} MiB after"
    )
    print("max RSS after each measure (MiB):", report["max_rss_mib_after_each"])
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
