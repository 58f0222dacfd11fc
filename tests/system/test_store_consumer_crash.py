"""A projector process killed with SIGKILL mid-batch loses nothing and applies nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from tests.support.basket_projection import APPLY_DELAY_VARIABLE
from tests.support.store_events import ItemAdded, store_test_registry

pytestmark = pytest.mark.system

PARTITIONS = 2
BASKETS = 8
ITEMS_PER_BASKET = 10


def start_projector(
    root: Path, store_redis_url: str, mongodb_url: str, database: str, consumer: str, delay: float
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.projector_process",
            "--redis",
            store_redis_url,
            "--mongodb",
            mongodb_url,
            "--database",
            database,
            "--partitions",
            str(PARTITIONS),
            "--consumer",
            consumer,
        ],
        cwd=root,
        env={**os.environ, APPLY_DELAY_VARIABLE: str(delay), "PYTHONPATH": str(root)},
    )


async def items_projected(database: Any) -> int:
    total = 0
    async for basket in database["baskets"].find({}):
        total += len(basket.get("items", []))
    return total


async def test_a_killed_projector_loses_nothing_and_applies_nothing_twice(
    store_redis: aioredis.Redis,
    store_redis_url: str,
    mongodb_url: str,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
    repository_root: Path,
) -> None:
    store = EventStore(store_redis, PARTITIONS, event_registry=store_test_registry)
    expected: dict[str, list[str]] = {}
    for index in range(BASKETS):
        partition = index % PARTITIONS
        stream = f"basket-{keys.new_id_in_partition(partition, PARTITIONS)}"
        expected[stream] = [f"{index}-{n}" for n in range(ITEMS_PER_BASKET)]
        for sku in expected[stream]:
            await store.append(
                AppendRequest(
                    partition=partition, stream=stream, events=[ItemAdded(sku=sku, quantity=1)]
                )
            )
    database = mongo_client[mongo_database_name]
    total = BASKETS * ITEMS_PER_BASKET
    # The killed process leaves its transaction open; MongoDB aborts it only after
    # transactionLifetimeLimitSeconds, and until then the survivor's commits conflict.
    previous = await mongo_client.admin.command(
        "getParameter", 1, transactionLifetimeLimitSeconds=1
    )
    await mongo_client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=2)
    try:
        await crash_and_recover(
            store_redis,
            store_redis_url,
            mongodb_url,
            database,
            mongo_database_name,
            repository_root,
            expected,
            total,
        )
    finally:
        await mongo_client.admin.command(
            "setParameter",
            1,
            transactionLifetimeLimitSeconds=previous["transactionLifetimeLimitSeconds"],
        )


async def crash_and_recover(
    store_redis: aioredis.Redis,
    store_redis_url: str,
    mongodb_url: str,
    database: Any,
    mongo_database_name: str,
    repository_root: Path,
    expected: dict[str, list[str]],
    total: int,
) -> None:

    doomed = start_projector(
        repository_root, store_redis_url, mongodb_url, mongo_database_name, "doomed", delay=0.02
    )
    try:
        async with asyncio.timeout(30):
            while await items_projected(database) < total // 4:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        # Let it get well into the next batch, then kill it without warning.
        await asyncio.sleep(0.05)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    projected_at_kill = await items_projected(database)
    assert projected_at_kill < total
    pending = sum(
        [
            int((await store_redis.xpending(keys.log_key(p), "projector"))["pending"])
            for p in range(PARTITIONS)
        ]
    )
    assert pending > 0

    survivor = start_projector(
        repository_root, store_redis_url, mongodb_url, mongo_database_name, "survivor", delay=0
    )
    try:
        async with asyncio.timeout(30):
            while await items_projected(database) < total:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            while sum(  # noqa: ASYNC110
                [
                    int((await store_redis.xpending(keys.log_key(p), "projector"))["pending"])
                    for p in range(PARTITIONS)
                ]
            ):
                await asyncio.sleep(0.05)
    finally:
        survivor.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert survivor.wait(timeout=10) == 0
        assert time.monotonic() - started < 5

    baskets = {b["_id"]: b async for b in database["baskets"].find({})}
    assert {stream: [i["sku"] for i in b["items"]] for stream, b in baskets.items()} == expected
