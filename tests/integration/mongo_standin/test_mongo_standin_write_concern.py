"""Write concerns: the ones a small replica set cannot meet are answered as MongoDB answers them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient, WriteConcern
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import WriteConcernError

Doc = dict[str, Any]

# More data-bearing members than the stand-in (one) or a test replica set has.
TOO_MANY_MEMBERS = 5


async def test_w_above_the_members_is_unsatisfiable_and_the_write_still_happens(
    db: AsyncDatabase[Doc],
) -> None:
    orders = db.get_collection("orders", write_concern=WriteConcern(w=TOO_MANY_MEMBERS))
    with pytest.raises(WriteConcernError) as raised:
        await orders.insert_one({"_id": 1})
    assert raised.value.code == 100
    assert (raised.value.details or {}).get("codeName") == "UnsatisfiableWriteConcern"
    assert not raised.value.has_error_label("RetryableWriteError")
    assert await db.orders.find_one({"_id": 1}) == {"_id": 1}


async def test_an_unknown_tag_is_an_unknown_write_concern_and_the_write_still_happens(
    db: AsyncDatabase[Doc],
) -> None:
    await db.orders.insert_one({"_id": 1, "paid": False})
    orders = db.get_collection("orders", write_concern=WriteConcern(w="nosuchtag"))
    with pytest.raises(WriteConcernError) as raised:
        await orders.update_one({"_id": 1}, {"$set": {"paid": True}})
    assert raised.value.code == 79
    assert (raised.value.details or {}).get("codeName") == "UnknownReplWriteConcern"
    assert await db.orders.find_one({"_id": 1}) == {"_id": 1, "paid": True}


async def test_an_unsatisfiable_write_concern_on_an_index_build_is_reported(
    db: AsyncDatabase[Doc],
) -> None:
    orders = db.get_collection("orders", write_concern=WriteConcern(w=TOO_MANY_MEMBERS))
    with pytest.raises(WriteConcernError) as raised:
        await orders.create_index("buyer")
    assert raised.value.code == 100
    assert "buyer_1" in await db.orders.index_information()


async def test_an_unsatisfiable_write_concern_on_commit_is_reported_after_committing(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    await db.orders.insert_one({"_id": "existing"})
    async with mongo_client.start_session() as session:
        await session.start_transaction(write_concern=WriteConcern(w=TOO_MANY_MEMBERS))
        await db.orders.insert_one({"_id": 1}, session=session)
        with pytest.raises(WriteConcernError) as raised:
            await session.commit_transaction()
    assert raised.value.code == 100
    assert not raised.value.has_error_label("TransientTransactionError")
    assert await db.orders.find_one({"_id": 1}) == {"_id": 1}


@pytest.mark.parametrize("w", ["majority", 1])
async def test_majority_and_one_are_satisfied(db: AsyncDatabase[Doc], w: int | str) -> None:
    orders = db.get_collection("orders", write_concern=WriteConcern(w=w))
    await orders.insert_one({"_id": 1})
    await orders.delete_one({"_id": 1})
    assert await db.orders.count_documents({}) == 0


async def test_unacknowledged_writes_are_applied(db: AsyncDatabase[Doc]) -> None:
    orders = db.get_collection("orders", write_concern=WriteConcern(w=0))
    await orders.insert_one({"_id": 1})
    for _ in range(100):
        if await db.orders.find_one({"_id": 1}) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the unacknowledged insert never arrived")
