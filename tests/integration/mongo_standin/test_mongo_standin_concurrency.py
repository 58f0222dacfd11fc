"""Many clients, threads and processes at once: operations on one document are atomic."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

Doc = dict[str, Any]

PROCESS_SCRIPT = """
import sys
from pymongo import MongoClient
url, database, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with MongoClient(url) as client:
    for _ in range(count):
        client[database].counters.update_one({"_id": "c"}, {"$inc": {"n": 1}})
"""


async def test_concurrent_async_clients_increment_exactly(
    mongodb_url: str, db: AsyncDatabase[Doc]
) -> None:
    await db.counters.insert_one({"_id": "c", "n": 0})
    clients: list[AsyncMongoClient[Doc]] = [AsyncMongoClient(mongodb_url) for _ in range(8)]
    try:

        async def bump(client: AsyncMongoClient[Doc]) -> None:
            counters = client[db.name].counters
            await asyncio.gather(
                *(counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}) for _ in range(50))
            )

        await asyncio.gather(*(bump(c) for c in clients))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    assert (await db.counters.find_one({"_id": "c"}) or {})["n"] == 400


def test_concurrent_threads_increment_exactly(
    sync_client: MongoClient[Doc], mongo_database_name: str
) -> None:
    counters = sync_client[mongo_database_name].counters
    counters.insert_one({"_id": "c", "n": 0})

    def bump(_: int) -> None:
        for _ in range(100):
            counters.update_one({"_id": "c"}, {"$inc": {"n": 1}})

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(bump, range(8)))
    assert (counters.find_one({"_id": "c"}) or {})["n"] == 800


def test_concurrent_processes_increment_exactly(
    mongodb_url: str, sync_client: MongoClient[Doc], mongo_database_name: str
) -> None:
    counters = sync_client[mongo_database_name].counters
    counters.insert_one({"_id": "c", "n": 0})
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_SCRIPT, mongodb_url, mongo_database_name, "100"]
        )
        for _ in range(3)
    ]
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0]
    assert (counters.find_one({"_id": "c"}) or {})["n"] == 300


async def test_competing_read_modify_write_transactions_lose_no_update(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.counters.insert_one({"_id": "c", "n": 0})

    async def read_then_write(session: AsyncClientSession) -> None:
        current = await db.counters.find_one({"_id": "c"}, session=session)
        assert current is not None
        await asyncio.sleep(0)
        await db.counters.update_one(
            {"_id": "c"}, {"$set": {"n": current["n"] + 1}}, session=session
        )

    async def worker() -> None:
        async with mongo_client.start_session() as session:
            for _ in range(10):
                await session.with_transaction(read_then_write)

    await asyncio.gather(*(worker() for _ in range(5)))
    assert (await db.counters.find_one({"_id": "c"}) or {})["n"] == 50


async def test_concurrent_upserts_of_one_key_create_one_document(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await asyncio.gather(
        *(
            db.checkpoints.update_one({"_id": "p0"}, {"$inc": {"seen": 1}}, upsert=True)
            for _ in range(30)
        )
    )
    assert await db.checkpoints.find_one({"_id": "p0"}) == {"_id": "p0", "seen": 30}
