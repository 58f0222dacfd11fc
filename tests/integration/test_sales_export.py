"""`eventhunting export`: the archived history as Parquet or JSON lines, queried as analysts do."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.domain.accounts import AccountRegistered
from eventhunting.domain.sales import Granularity
from eventhunting.export import ExportQuery, export_history
from eventhunting.projections.base import Projector
from eventhunting.projections.sales import SalesProjection, find_timeline
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore, stream_range
from eventhunting.store.archive import Archiver, create_event_indexes
from eventhunting.store.consumer_groups import log_entry
from tests.support.leases import lease_of
from tests.support.sales_history import (
    PARTITION,
    PARTITIONS,
    Sale,
    SteppedClock,
    first_half,
    open_sale,
    second_half,
)
from tests.support.system import with_database

Database = Any

# The queries docs/analytics.md shows analysts: tickets sold per hour for one event.
DUCKDB_TICKETS_SOLD_PER_HOUR = """
SET TimeZone = 'UTC';
SELECT date_trunc('hour', occurred_at) AS hour, sum(item.quantity) AS tickets_sold
FROM (
    SELECT occurred_at, unnest(data_items) AS item
    FROM read_parquet($export)
    WHERE type = 'OrderPaid' AND data_event_id = $event_id
)
GROUP BY hour
ORDER BY hour
"""


def pandas_tickets_sold_per_hour(export: Path, event_id: str) -> pd.Series:
    events = pd.read_parquet(export)
    paid = events[(events["type"] == "OrderPaid") & (events["data_event_id"] == event_id)]
    items = paid.explode("data_items")
    tickets = items["data_items"].map(lambda item: item["quantity"])
    return tickets.groupby(items["occurred_at"].dt.floor("h")).sum()


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def store(store_redis: aioredis.Redis, clock: SteppedClock) -> EventStore:
    return EventStore(store_redis, PARTITIONS, clock=clock)


@pytest.fixture
def database(mongo_client: AsyncMongoClient[dict[str, Any]], mongo_database_name: str) -> Database:
    return mongo_client[mongo_database_name]


async def archived_sale(
    store: EventStore, store_redis: aioredis.Redis, clock: SteppedClock, database: Database
) -> Sale:
    """A sale with every order outcome, projected and archived, and an account beside it."""
    await store.append(
        AppendRequest(
            partition=PARTITION,
            stream=f"account-{keys.new_id_in_partition(PARTITION, PARTITIONS)}",
            events=[
                AccountRegistered(
                    account_id="a1",
                    email="buyer@example.test",
                    full_name="Buyer",
                    password_hash="$argon2id$v=19$secret",
                    roles=["customer"],
                )
            ],
        )
    )
    sale = await open_sale(store, clock)
    await first_half(sale)
    await second_half(sale)
    projection = SalesProjection()
    await projection.create_indexes(database)
    projector = Projector(database, [projection])
    after = "0"
    while batch := await store.read_log(PARTITION, after, count=50):
        await projector(batch, lease_of(batch))
        after = batch[-1].position or after
    await create_event_indexes(database)
    for partition in range(PARTITIONS):
        entries = await stream_range(store_redis, keys.log_key(partition), "-", "+")
        await Archiver(database).archive([log_entry(partition, i, f) for i, f in entries])
    return sale


async def hourly_tickets_sold(database: Database, event_id: str) -> list[tuple[datetime, int]]:
    buckets = await find_timeline(
        database,
        event_id,
        Granularity.HOUR,
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2100, 1, 1, tzinfo=UTC),
    )
    return [
        (bucket["start"].replace(tzinfo=UTC), bucket["tickets_sold"])
        for bucket in buckets
        if bucket.get("tickets_sold")
    ]


async def test_the_duckdb_and_pandas_queries_of_an_export_agree_with_the_sales_timeline(
    store: EventStore,
    store_redis: aioredis.Redis,
    clock: SteppedClock,
    database: Database,
    mongodb_url: str,
    mongo_database_name: str,
    store_redis_url: str,
    tmp_path: Path,
) -> None:
    sale = await archived_sale(store, store_redis, clock, database)
    export = tmp_path / "history.parquet"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventhunting.cli", "export", "--format", "parquet",
        "--event", sale.event_id, str(export),
        env={
            "PATH": "/usr/bin:/bin",
            "EVENTHUNTING_REDIS_URL": store_redis_url,
            "EVENTHUNTING_MONGODB_URL": with_database(mongodb_url, mongo_database_name),
            "EVENTHUNTING_PARTITIONS": str(PARTITIONS),
        },
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, errors = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, errors.decode()
    assert f"exported {len(sale.appended)} events" in errors.decode()

    expected = await hourly_tickets_sold(database, sale.event_id)
    assert len(expected) >= 2  # sales in more than one hour, or the comparison proves little
    answer = duckdb.execute(
        DUCKDB_TICKETS_SOLD_PER_HOUR, {"export": str(export), "event_id": sale.event_id}
    ).fetchall()
    assert [(hour.astimezone(UTC), int(tickets)) for hour, tickets in answer] == expected

    by_pandas = pandas_tickets_sold_per_hour(export, sale.event_id)
    assert [(hour.to_pydatetime(), int(n)) for hour, n in by_pandas.items()] == expected

    table = pq.read_table(export)
    assert set(table.column("stream").to_pylist()) <= {
        f"event-{sale.event_id}",
        *(f"order-{order_id}" for order_id in sale.order_ids),
    }


async def test_a_jsonl_export_has_every_event_flattened_and_no_secrets(
    store: EventStore,
    store_redis: aioredis.Redis,
    clock: SteppedClock,
    database: Database,
    tmp_path: Path,
) -> None:
    await archived_sale(store, store_redis, clock, database)
    export = tmp_path / "history.jsonl"
    report = await export_history(
        database,
        export,
        export_format="jsonl",
        query=ExportQuery(),
        partitions=PARTITIONS,
        progress=io.StringIO(),
    )
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    archived = await database["events"].count_documents({})
    assert report.rows == len(rows) == archived
    drafted = next(row for row in rows if row["type"] == "EventDrafted")
    assert drafted["data_venue_name"] == "Hall"
    assert {"event_id", "stream", "version", "occurred_at", "position", "actor"} <= set(drafted)
    account = next(row for row in rows if row["type"] == "AccountRegistered")
    assert account["data_email"] == "buyer@example.test"
    assert not any("password" in column for row in rows for column in row)
    assert "argon2" not in export.read_text()


async def test_since_and_until_keep_the_events_that_occurred_between(
    store: EventStore,
    store_redis: aioredis.Redis,
    clock: SteppedClock,
    database: Database,
    tmp_path: Path,
) -> None:
    await archived_sale(store, store_redis, clock, database)
    since = datetime(2026, 5, 1, tzinfo=UTC)
    until = since + timedelta(hours=1)
    export = tmp_path / "day.parquet"
    report = await export_history(
        database,
        export,
        export_format="parquet",
        query=ExportQuery(since=since, until=until),
        partitions=PARTITIONS,
        progress=io.StringIO(),
    )
    moments = pq.read_table(export).column("occurred_at").to_pylist()
    assert report.rows == len(moments) > 0
    assert all(since <= moment < until for moment in moments)
    everything = await database["events"].count_documents({})
    assert report.rows < everything
