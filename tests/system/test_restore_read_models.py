"""After `eventhunting restore` the read models agree with the restored store."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.domain.accounts import AccountRegistered
from eventhunting.projections.accounts import ACCOUNTS_COLLECTION, AccountsProjection
from eventhunting.projections.base import Projector
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from eventhunting.store.archive import Archiver, create_event_indexes
from eventhunting.store.consumer_groups import Lease, log_entry
from tests.support.leases import lease_of
from tests.support.system import with_database

PARTITIONS = 4


async def register(store: EventStore, name: str) -> str:
    partition = keys.partition_of(name, PARTITIONS)
    account_id = keys.new_id_in_partition(partition, PARTITIONS)
    await store.append(
        AppendRequest(
            partition=partition,
            stream=f"account-{account_id}",
            events=[
                AccountRegistered(
                    account_id=account_id,
                    email=f"{name}@example.com",
                    full_name=name,
                    password_hash="$argon2id$not-a-real-hash",
                    roles=["customer"],
                )
            ],
        )
    )
    return account_id


async def test_restore_drops_from_read_models_what_the_archive_never_got(
    store_redis_url: str,
    store_redis: aioredis.Redis,
    mongodb_url: str,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
    tmp_path: Path,
) -> None:
    database = mongo_client[mongo_database_name]
    store = EventStore(store_redis, PARTITIONS)
    archived = await register(store, "archived")
    await create_event_indexes(database)
    archiver = Archiver(database)
    for partition in range(PARTITIONS):
        entries = await store_redis.xrange(keys.log_key(partition))
        if entries:
            lease = Lease(partition=partition, token=1, consumer="test")
            await archiver([log_entry(partition, i, f) for i, f in entries], lease)
    # Projected, but lost with Redis before the archiver copied it.
    lost = await register(store, "lost")
    projector = Projector(database, [AccountsProjection()])
    for partition in range(PARTITIONS):
        batch = await store.read_log(partition)
        if batch:
            await projector(batch, lease_of(batch))
    assert {d["_id"] async for d in database[ACCOUNTS_COLLECTION].find({})} == {archived, lost}
    await store_redis.flushdb()

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventhunting.cli",
        "restore",
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "EVENTHUNTING_REDIS_URL": store_redis_url,
            "EVENTHUNTING_MONGODB_URL": with_database(mongodb_url, mongo_database_name),
            "EVENTHUNTING_PARTITIONS": str(PARTITIONS),
            "EVENTHUNTING_LOG_LEVEL": "WARNING",
        },
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, errors.decode()
    assert "rebuilt accounts" in errors.decode()
    assert {d["_id"] async for d in database[ACCOUNTS_COLLECTION].find({})} == {archived}
