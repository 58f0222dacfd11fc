"""Multi-document transactions: isolation, atomic commit, abort, write conflicts and retries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure
from pymongo.synchronous.client_session import ClientSession

Doc = dict[str, Any]


async def test_transaction_sees_its_own_writes_and_others_do_not(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.insert_one({"_id": "kept", "state": "placed"})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.orders.insert_one({"_id": "new"}, session=session)
        await db.orders.update_one({"_id": "kept"}, {"$set": {"state": "paid"}}, session=session)
        assert await db.orders.find_one({"_id": "new"}, session=session) == {"_id": "new"}
        assert (await db.orders.find_one({"_id": "kept"}, session=session) or {})["state"] == "paid"
        assert await db.orders.count_documents({}, session=session) == 2
        assert await db.orders.find_one({"_id": "new"}) is None
        assert (await db.orders.find_one({"_id": "kept"}) or {})["state"] == "placed"
        assert await db.orders.count_documents({}) == 1
        await session.commit_transaction()
    assert await db.orders.find_one({"_id": "new"}) == {"_id": "new"}
    assert (await db.orders.find_one({"_id": "kept"}) or {})["state"] == "paid"


async def test_abort_leaves_no_trace(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.insert_many([{"_id": 1, "n": 1}, {"_id": 2, "n": 2}])
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.orders.insert_one({"_id": 3}, session=session)
        await db.orders.update_one({"_id": 1}, {"$inc": {"n": 100}}, session=session)
        await db.orders.delete_one({"_id": 2}, session=session)
        await db.fresh.insert_one({"_id": "x"}, session=session)
        await session.abort_transaction()
    assert await db.orders.find({}).sort("_id", 1).to_list() == [
        {"_id": 1, "n": 1},
        {"_id": 2, "n": 2},
    ]
    assert await db.fresh.find_one({"_id": "x"}) is None


async def test_context_manager_aborts_when_the_block_raises(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async def apply_then_fail() -> None:
        async with mongo_client.start_session() as session, await session.start_transaction():
            await db.orders.insert_one({"_id": "doomed"}, session=session)
            raise RuntimeError("projection failed")

    with pytest.raises(RuntimeError):
        await apply_then_fail()
    assert await db.orders.find_one({"_id": "doomed"}) is None


async def test_context_manager_commits_a_batch_atomically(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with mongo_client.start_session() as session, await session.start_transaction():
        await db.read_model.insert_many([{"_id": i} for i in range(5)], session=session)
        await db.checkpoints.update_one(
            {"_id": "orders:p0"}, {"$set": {"position": "5-0"}}, upsert=True, session=session
        )
    assert await db.read_model.count_documents({}) == 5
    assert await db.checkpoints.find_one({"_id": "orders:p0"}) == {
        "_id": "orders:p0",
        "position": "5-0",
    }


async def test_transaction_reads_one_snapshot(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.counters.insert_one({"_id": "c", "n": 1})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        assert (await db.counters.find_one({"_id": "c"}, session=session) or {})["n"] == 1
        await db.counters.update_one({"_id": "c"}, {"$set": {"n": 2}})
        await db.counters.insert_one({"_id": "later"})
        assert (await db.counters.find_one({"_id": "c"}, session=session) or {})["n"] == 1
        assert await db.counters.find_one({"_id": "later"}, session=session) is None
        await session.commit_transaction()
    assert (await db.counters.find_one({"_id": "c"}) or {})["n"] == 2


async def test_two_transactions_writing_one_document_conflict(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.counters.insert_one({"_id": "c", "n": 0})
    async with mongo_client.start_session() as first, mongo_client.start_session() as second:
        await first.start_transaction()
        await second.start_transaction()
        await db.counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}, session=first)
        with pytest.raises(OperationFailure) as raised:
            await db.counters.update_one({"_id": "c"}, {"$inc": {"n": 10}}, session=second)
        assert raised.value.code == 112
        assert raised.value.has_error_label("TransientTransactionError")
        await second.abort_transaction()
        await first.commit_transaction()
    assert (await db.counters.find_one({"_id": "c"}) or {})["n"] == 1


async def test_write_after_a_newer_commit_conflicts(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.counters.insert_one({"_id": "c", "n": 0})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.counters.find_one({"_id": "c"}, session=session)
        await db.counters.update_one({"_id": "c"}, {"$set": {"n": 5}})
        with pytest.raises(OperationFailure) as raised:
            await db.counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}, session=session)
        assert raised.value.code == 112
        assert raised.value.has_error_label("TransientTransactionError")
    assert (await db.counters.find_one({"_id": "c"}) or {})["n"] == 5


async def test_with_transaction_retries_after_a_write_conflict(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.counters.insert_one({"_id": "c", "n": 0})
    attempts = 0

    async def increment(session: AsyncClientSession) -> None:
        nonlocal attempts
        attempts += 1
        current = await db.counters.find_one({"_id": "c"}, session=session)
        assert current is not None
        if attempts == 1:
            await db.counters.update_one({"_id": "c"}, {"$inc": {"n": 100}})
        await db.counters.update_one(
            {"_id": "c"}, {"$set": {"n": current["n"] + 1}}, session=session
        )

    async with mongo_client.start_session() as session:
        await session.with_transaction(increment)
    assert attempts == 2
    assert (await db.counters.find_one({"_id": "c"}) or {})["n"] == 101


def test_sync_with_transaction_retries_after_a_write_conflict(
    sync_client: MongoClient[Doc], mongo_database_name: str
) -> None:
    counters = sync_client[mongo_database_name].counters
    counters.insert_one({"_id": "c", "n": 0})
    attempts = 0

    def increment(session: ClientSession) -> None:
        nonlocal attempts
        attempts += 1
        current = counters.find_one({"_id": "c"}, session=session)
        assert current is not None
        if attempts == 1:
            counters.update_one({"_id": "c"}, {"$inc": {"n": 100}})
        counters.update_one({"_id": "c"}, {"$set": {"n": current["n"] + 1}}, session=session)

    with sync_client.start_session() as session:
        session.with_transaction(increment)
    assert attempts == 2
    assert (counters.find_one({"_id": "c"}) or {})["n"] == 101


def test_sync_transaction_commits_and_aborts(
    sync_client: MongoClient[Doc], mongo_database_name: str
) -> None:
    orders = sync_client[mongo_database_name].orders
    with sync_client.start_session() as session:
        with session.start_transaction():
            orders.insert_one({"_id": "committed"}, session=session)
            assert orders.find_one({"_id": "committed"}) is None
        session.start_transaction()
        orders.insert_one({"_id": "aborted"}, session=session)
        session.abort_transaction()
    assert [d["_id"] for d in orders.find()] == ["committed"]


async def test_write_outside_transactions_waits_for_the_open_one(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.counters.insert_one({"_id": "c", "n": 0})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}, session=session)
        outside = asyncio.create_task(db.counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}))
        await asyncio.sleep(0.3)
        assert not outside.done()
        await session.commit_transaction()
        await asyncio.wait_for(outside, 10)
    assert (await db.counters.find_one({"_id": "c"}) or {})["n"] == 2


async def test_duplicate_key_inside_a_transaction_aborts_it(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.insert_one({"_id": "taken"})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.orders.insert_one({"_id": "first"}, session=session)
        with pytest.raises(DuplicateKeyError):
            await db.orders.insert_one({"_id": "taken"}, session=session)
        with pytest.raises(OperationFailure) as raised:
            await session.commit_transaction()
        assert raised.value.code == 251
    assert await db.orders.find_one({"_id": "first"}) is None


async def test_unique_key_held_by_an_open_transaction_is_refused_to_another(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.accounts.create_index("email", unique=True)
    async with mongo_client.start_session() as first, mongo_client.start_session() as second:
        await first.start_transaction()
        await second.start_transaction()
        await db.accounts.insert_one({"_id": 1, "email": "a@example.com"}, session=first)
        with pytest.raises(OperationFailure) as raised:
            await db.accounts.insert_one({"_id": 2, "email": "a@example.com"}, session=second)
        assert raised.value.code in (112, 11000)
        await second.abort_transaction()
        await first.commit_transaction()
    with pytest.raises(DuplicateKeyError):
        await db.accounts.insert_one({"_id": 3, "email": "a@example.com"})


async def test_reads_and_aggregations_inside_a_transaction_see_its_writes(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.buyers.insert_one({"_id": "u1", "name": "An"})
    async with mongo_client.start_session() as session, await session.start_transaction():
        await db.orders.insert_many(
            [{"_id": 1, "buyer": "u1", "amount": 5}, {"_id": 2, "buyer": "u1", "amount": 7}],
            session=session,
        )
        grouped = await (
            await db.orders.aggregate(
                [
                    {"$group": {"_id": "$buyer", "total": {"$sum": "$amount"}}},
                    {
                        "$lookup": {
                            "from": "buyers",
                            "localField": "_id",
                            "foreignField": "_id",
                            "as": "who",
                        }
                    },
                ],
                session=session,
            )
        ).to_list()
        assert grouped == [{"_id": "u1", "total": 12, "who": [{"_id": "u1", "name": "An"}]}]
        assert await db.orders.distinct("amount", session=session) in ([5, 7], [7, 5])
        cursor = db.orders.find({}, batch_size=1, session=session)
        assert [d["_id"] async for d in cursor] == [1, 2]


async def test_committing_twice_is_harmless(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.orders.insert_one({"_id": 1}, session=session)
        await session.commit_transaction()
        await session.commit_transaction()
    assert await db.orders.count_documents({}) == 1


async def test_transaction_open_too_long_is_aborted(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    parameter = await mongo_client.admin.command(
        {"getParameter": 1, "transactionLifetimeLimitSeconds": 1}
    )
    original = parameter["transactionLifetimeLimitSeconds"]
    await mongo_client.admin.command({"setParameter": 1, "transactionLifetimeLimitSeconds": 1})
    try:
        async with mongo_client.start_session() as session:
            await session.start_transaction()
            await db.orders.insert_one({"_id": "slow"}, session=session)
            await asyncio.sleep(3)
            with pytest.raises(OperationFailure) as raised:
                await session.commit_transaction()
            assert raised.value.code == 251
    finally:
        await mongo_client.admin.command(
            {"setParameter": 1, "transactionLifetimeLimitSeconds": original}
        )
    assert await db.orders.find_one({"_id": "slow"}) is None
