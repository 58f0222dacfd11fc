"""Collections and indexes created in a transaction: private until commit, gone after abort."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

Doc = dict[str, Any]
Create = Callable[[AsyncDatabase[Doc], AsyncClientSession], Awaitable[object]]


async def _by_insert(db: AsyncDatabase[Doc], session: AsyncClientSession) -> object:
    return await db.fresh.insert_one({"_id": 1}, session=session)


async def _by_upsert(db: AsyncDatabase[Doc], session: AsyncClientSession) -> object:
    return await db.fresh.update_one({"_id": 1}, {"$set": {"n": 1}}, upsert=True, session=session)


async def _by_find_and_modify(db: AsyncDatabase[Doc], session: AsyncClientSession) -> object:
    return await db.fresh.find_one_and_update(
        {"_id": 1}, {"$set": {"n": 1}}, upsert=True, session=session
    )


async def _by_create(db: AsyncDatabase[Doc], session: AsyncClientSession) -> object:
    await db.create_collection("fresh", session=session, check_exists=False)
    return await db.fresh.insert_one({"_id": 1}, session=session)


CREATIONS = [_by_insert, _by_upsert, _by_find_and_modify, _by_create]


@pytest.mark.parametrize("create", CREATIONS, ids=lambda c: c.__name__.removeprefix("_by_"))
async def test_a_collection_created_in_a_transaction_is_invisible_to_others_until_commit(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], create: Create
) -> None:
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await create(db, session)
        assert await db.fresh.find_one({"_id": 1}, session=session) is not None
        assert "fresh" not in await db.list_collection_names()
        assert await db.fresh.find_one({}) is None
        assert await db.fresh.count_documents({}) == 0
        await session.commit_transaction()
    assert "fresh" in await db.list_collection_names()
    assert await db.fresh.count_documents({}) == 1


@pytest.mark.parametrize("create", CREATIONS, ids=lambda c: c.__name__.removeprefix("_by_"))
async def test_a_collection_created_in_an_aborted_transaction_never_appears(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc], create: Create
) -> None:
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await create(db, session)
        await session.abort_transaction()
    assert "fresh" not in await db.list_collection_names()
    assert await db.fresh.find_one({}) is None


async def test_indexes_built_in_a_transaction_appear_at_commit(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.create_collection("fresh", session=session, check_exists=False)
        await db.fresh.create_index("email", unique=True, session=session)
        await db.fresh.insert_one({"_id": 1, "email": "a@example.com"}, session=session)
        with pytest.raises(DuplicateKeyError):
            await db.fresh.insert_one({"_id": 2, "email": "a@example.com"}, session=session)
        await session.abort_transaction()

        await session.start_transaction()
        await db.create_collection("fresh", session=session, check_exists=False)
        await db.fresh.create_index("email", unique=True, session=session)
        await db.fresh.insert_one({"_id": 1, "email": "a@example.com"}, session=session)
        assert await db.fresh.index_information() == {}
        await session.commit_transaction()
    indexes = await db.fresh.index_information()
    assert indexes["email_1"]["unique"] is True
    with pytest.raises(DuplicateKeyError):
        await db.fresh.insert_one({"_id": 2, "email": "a@example.com"})


async def test_indexes_built_in_an_aborted_transaction_never_appear(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.fresh.create_index("email", unique=True, session=session)
        await session.abort_transaction()
    assert await db.fresh.index_information() == {}
    await db.fresh.insert_many([{"email": "a@example.com"}, {"email": "a@example.com"}])
    assert await db.fresh.count_documents({}) == 2


async def test_a_write_outside_transactions_creates_the_collection_and_the_commit_conflicts(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.fresh.insert_one({"_id": "inside"}, session=session)
        # MongoDB 7.0 takes no lock for the uncommitted collection: this does not wait.
        await asyncio.wait_for(db.fresh.insert_one({"_id": "outside"}), 5)
        with pytest.raises(OperationFailure) as raised:
            await session.commit_transaction()
    assert raised.value.code == 112
    assert raised.value.has_error_label("TransientTransactionError")
    assert await db.fresh.find().to_list() == [{"_id": "outside"}]


async def test_two_transactions_creating_one_collection_the_later_commit_conflicts(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with mongo_client.start_session() as first, mongo_client.start_session() as second:
        await first.start_transaction()
        await second.start_transaction()
        await db.fresh.insert_one({"_id": 1}, session=first)
        await db.fresh.insert_one({"_id": 2}, session=second)
        await first.commit_transaction()
        with pytest.raises(OperationFailure) as raised:
            await second.commit_transaction()
    assert raised.value.code == 112
    assert raised.value.has_error_label("TransientTransactionError")
    assert await db.fresh.find().to_list() == [{"_id": 1}]


async def test_with_transaction_retries_after_losing_the_race_to_create_a_collection(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    attempts = 0

    async def record(session: AsyncClientSession) -> None:
        nonlocal attempts
        attempts += 1
        await db.fresh.insert_one({"_id": "projected"}, session=session)
        if attempts == 1:
            await db.fresh.insert_one({"_id": "elsewhere"})

    async with mongo_client.start_session() as session:
        await session.with_transaction(record)
    assert attempts == 2
    assert await db.fresh.find().sort("_id", 1).to_list() == [
        {"_id": "elsewhere"},
        {"_id": "projected"},
    ]


async def test_a_transaction_does_not_see_a_collection_created_after_its_snapshot(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.other.insert_one({"_id": 1})
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        assert await db.other.find_one({}, session=session) == {"_id": 1}
        await db.fresh.insert_one({"_id": "later"})
        # Its snapshot predates the collection, so it may create it, and loses at commit.
        await db.create_collection("fresh", session=session, check_exists=False)
        with pytest.raises(OperationFailure) as raised:
            await session.commit_transaction()
    assert raised.value.code == 112
    assert raised.value.has_error_label("TransientTransactionError")
    assert await db.fresh.find().to_list() == [{"_id": "later"}]


async def test_a_transaction_may_not_add_an_index_to_an_existing_collection(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.create_index("buyer")
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        assert await db.orders.create_index("buyer", session=session) == "buyer_1"
        with pytest.raises(OperationFailure) as raised:
            await db.orders.create_index("event", session=session)
        await session.abort_transaction()
    assert raised.value.code == 263
    assert set(await db.orders.index_information()) == {"_id_", "buyer_1"}


async def test_a_transaction_may_not_add_an_index_to_a_collection_it_filled(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with mongo_client.start_session() as session:
        await session.start_transaction()
        await db.create_collection("fresh", session=session, check_exists=False)
        await db.fresh.insert_one({"_id": 1, "email": "a@example.com"}, session=session)
        with pytest.raises(OperationFailure) as raised:
            await db.fresh.create_index("email", session=session)
        await session.abort_transaction()
    assert raised.value.code == 263
    assert "fresh" not in await db.list_collection_names()
