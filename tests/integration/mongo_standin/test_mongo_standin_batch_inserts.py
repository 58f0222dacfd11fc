"""Batches of inserts: where ordered and unordered ones stop, and how they meet transactions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

Doc = dict[str, Any]

DUPLICATE_KEY = 11000
WRITE_CONFLICT = 112


def failures(raised: BulkWriteError) -> list[tuple[int, int, Doc, Doc]]:
    return [
        (e["index"], e["code"], e.get("keyPattern", {}), e.get("keyValue", {}))
        for e in raised.details["writeErrors"]
    ]


async def ids(db: AsyncDatabase[Doc], name: str) -> list[Any]:
    return sorted([d["_id"] async for d in db[name].find({}, {"_id": 1})])


async def test_ordered_insert_stops_at_an_id_repeated_in_the_batch(db: AsyncDatabase[Doc]) -> None:
    with pytest.raises(BulkWriteError) as raised:
        await db.things.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 1, "again": True}, {"_id": 3}])
    assert failures(raised.value) == [(2, DUPLICATE_KEY, {"_id": 1}, {"_id": 1})]
    assert raised.value.details["nInserted"] == 2
    assert await ids(db, "things") == [1, 2]
    assert await db.things.find_one({"_id": 1}) == {"_id": 1}


async def test_unordered_insert_skips_an_id_repeated_in_the_batch(db: AsyncDatabase[Doc]) -> None:
    with pytest.raises(BulkWriteError) as raised:
        await db.things.insert_many(
            [{"_id": 1}, {"_id": 2}, {"_id": 1, "again": True}, {"_id": 3}], ordered=False
        )
    assert failures(raised.value) == [(2, DUPLICATE_KEY, {"_id": 1}, {"_id": 1})]
    assert raised.value.details["nInserted"] == 3
    assert await ids(db, "things") == [1, 2, 3]


async def test_ordered_insert_stops_at_a_unique_key_taken_mid_batch(db: AsyncDatabase[Doc]) -> None:
    await db.accounts.create_index("email", unique=True)
    await db.accounts.insert_one({"_id": 0, "email": "taken@example.com"})
    with pytest.raises(BulkWriteError) as raised:
        await db.accounts.insert_many(
            [
                {"_id": 1, "email": "a@example.com"},
                {"_id": 2, "email": "taken@example.com"},
                {"_id": 3, "email": "b@example.com"},
            ]
        )
    assert failures(raised.value) == [
        (1, DUPLICATE_KEY, {"email": 1}, {"email": "taken@example.com"})
    ]
    assert await ids(db, "accounts") == [0, 1]
    await db.accounts.insert_one({"_id": 4, "email": "b@example.com"})


async def test_unordered_insert_fails_each_taken_unique_key_and_keeps_the_rest(
    db: AsyncDatabase[Doc],
) -> None:
    await db.accounts.create_index("email", unique=True)
    await db.accounts.insert_one({"_id": 0, "email": "taken@example.com"})
    with pytest.raises(BulkWriteError) as raised:
        await db.accounts.insert_many(
            [
                {"_id": 1, "email": "a@example.com"},
                {"_id": 2, "email": "taken@example.com"},
                {"_id": 3, "email": "b@example.com"},
                {"_id": 4, "email": "a@example.com"},
                {"_id": 0, "email": "c@example.com"},
                {"_id": 5, "email": "c@example.com"},
            ],
            ordered=False,
        )
    assert failures(raised.value) == [
        (1, DUPLICATE_KEY, {"email": 1}, {"email": "taken@example.com"}),
        (3, DUPLICATE_KEY, {"email": 1}, {"email": "a@example.com"}),
        (4, DUPLICATE_KEY, {"_id": 1}, {"_id": 0}),
    ]
    assert raised.value.details["nInserted"] == 3
    assert await ids(db, "accounts") == [0, 1, 3, 5]
    assert await db.accounts.count_documents({"email": "c@example.com"}) == 1


async def test_batch_written_while_a_transaction_reads_stays_out_of_its_snapshot(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.insert_one({"_id": "before"})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        assert await db.orders.count_documents({}, session=session) == 1
        await db.orders.insert_many([{"_id": f"batch-{n}"} for n in range(5)])
        assert await db.orders.count_documents({}, session=session) == 1
        assert await db.orders.find_one({"_id": "batch-2"}, session=session) is None
        assert await db.orders.count_documents({}) == 6
        await session.commit_transaction()
    assert await db.orders.count_documents({}) == 6


async def test_transaction_inserting_an_id_a_batch_committed_after_its_snapshot_fails(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.insert_one({"_id": "before"})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        assert await db.orders.find_one({"_id": "before"}, session=session) is not None
        await db.orders.insert_many([{"_id": "a"}, {"_id": "b"}, {"_id": "c"}])
        with pytest.raises(OperationFailure) as raised:
            await db.orders.insert_one({"_id": "b", "from": "transaction"}, session=session)
        assert raised.value.code in (WRITE_CONFLICT, DUPLICATE_KEY)
        await session.abort_transaction()
    assert await db.orders.find_one({"_id": "b"}) == {"_id": "b"}


async def test_batch_inserts_an_id_deleted_while_an_open_snapshot_still_sees_it(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.insert_one({"_id": "d", "version": 1})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        assert await db.orders.find_one({"_id": "d"}, session=session) == {"_id": "d", "version": 1}
        await db.orders.delete_one({"_id": "d"})
        await db.orders.insert_many([{"_id": "p"}, {"_id": "d", "version": 2}, {"_id": "q"}])
        assert await db.orders.find_one({"_id": "d"}, session=session) == {"_id": "d", "version": 1}
        assert await db.orders.find_one({"_id": "q"}, session=session) is None
        await session.commit_transaction()
    assert await ids(db, "orders") == ["d", "p", "q"]
    assert await db.orders.find_one({"_id": "d"}) == {"_id": "d", "version": 2}


async def test_batch_waits_at_an_id_an_open_transaction_inserted_and_stops_if_it_commits(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.insert_one({"_id": "setup"})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.orders.insert_one({"_id": "x", "from": "transaction"}, session=session)
        outside = asyncio.create_task(
            db.orders.insert_many([{"_id": "y"}, {"_id": "x"}, {"_id": "z"}])
        )
        await asyncio.sleep(0.3)
        assert not outside.done()
        await session.commit_transaction()
        with pytest.raises(BulkWriteError) as raised:
            await asyncio.wait_for(outside, 10)
    assert failures(raised.value) == [(1, DUPLICATE_KEY, {"_id": 1}, {"_id": "x"})]
    assert await ids(db, "orders") == ["setup", "x", "y"]
    assert await db.orders.find_one({"_id": "x"}) == {"_id": "x", "from": "transaction"}


async def test_batch_waits_at_a_unique_key_an_open_transaction_claimed_and_goes_on_if_it_aborts(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.accounts.create_index("email", unique=True)
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.accounts.insert_one({"_id": 0, "email": "x@example.com"}, session=session)
        outside = asyncio.create_task(
            db.accounts.insert_many(
                [
                    {"_id": 1, "email": "a@example.com"},
                    {"_id": 2, "email": "x@example.com"},
                    {"_id": 3, "email": "b@example.com"},
                ]
            )
        )
        await asyncio.sleep(0.3)
        assert not outside.done()
        await session.abort_transaction()
        result = await asyncio.wait_for(outside, 10)
    assert result.inserted_ids == [1, 2, 3]
    assert await ids(db, "accounts") == [1, 2, 3]
