"""Indexes: unique and compound keys enforced, listed and dropped; duplicate key errors."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

Doc = dict[str, Any]


async def test_duplicate_id_raises_duplicate_key_error_with_key_value(
    db: AsyncDatabase[Doc],
) -> None:
    await db.things.insert_one({"_id": "a"})
    with pytest.raises(DuplicateKeyError) as raised:
        await db.things.insert_one({"_id": "a"})
    assert raised.value.code == 11000
    details = raised.value.details or {}
    assert details["keyPattern"] == {"_id": 1}
    assert details["keyValue"] == {"_id": "a"}


async def test_unique_index_rejects_a_second_document_with_the_key(db: AsyncDatabase[Doc]) -> None:
    name = await db.accounts.create_index("email", unique=True)
    assert name == "email_1"
    await db.accounts.insert_one({"email": "a@example.com"})
    with pytest.raises(DuplicateKeyError) as raised:
        await db.accounts.insert_one({"email": "a@example.com"})
    details = raised.value.details or {}
    assert details["keyPattern"] == {"email": 1}
    assert details["keyValue"] == {"email": "a@example.com"}
    with pytest.raises(DuplicateKeyError):
        await db.accounts.update_one(
            {"email": "b@example.com"}, {"$set": {"email": "a@example.com"}}, upsert=True
        )
    assert await db.accounts.count_documents({}) == 1


async def test_unique_key_is_free_again_after_the_holder_changes(db: AsyncDatabase[Doc]) -> None:
    await db.accounts.create_index("email", unique=True)
    await db.accounts.insert_one({"_id": 1, "email": "a@example.com"})
    await db.accounts.update_one({"_id": 1}, {"$set": {"email": "new@example.com"}})
    await db.accounts.insert_one({"_id": 2, "email": "a@example.com"})
    await db.accounts.delete_one({"_id": 2})
    await db.accounts.insert_one({"_id": 3, "email": "a@example.com"})
    assert await db.accounts.count_documents({}) == 2


async def test_compound_unique_index_compares_all_fields(db: AsyncDatabase[Doc]) -> None:
    await db.seats.create_index([("event", ASCENDING), ("seat", ASCENDING)], unique=True)
    await db.seats.insert_many(
        [{"event": 1, "seat": "A1"}, {"event": 2, "seat": "A1"}, {"event": 1, "seat": "A2"}]
    )
    with pytest.raises(DuplicateKeyError) as raised:
        await db.seats.insert_one({"event": 1, "seat": "A1"})
    assert (raised.value.details or {})["keyValue"] == {"event": 1, "seat": "A1"}


async def test_missing_fields_count_as_null_unless_sparse(db: AsyncDatabase[Doc]) -> None:
    await db.dense.create_index("code", unique=True)
    await db.dense.insert_one({"a": 1})
    with pytest.raises(DuplicateKeyError):
        await db.dense.insert_one({"a": 2})
    await db.sparse.create_index("code", unique=True, sparse=True)
    await db.sparse.insert_many([{"a": 1}, {"a": 2}])
    assert await db.sparse.count_documents({}) == 2


async def test_partial_unique_index_only_covers_matching_documents(db: AsyncDatabase[Doc]) -> None:
    await db.holds.create_index("seat", unique=True, partialFilterExpression={"active": True})
    await db.holds.insert_many([{"seat": "A1", "active": False}, {"seat": "A1", "active": True}])
    with pytest.raises(DuplicateKeyError):
        await db.holds.insert_one({"seat": "A1", "active": True})


async def test_unique_index_on_an_array_field_covers_each_element(db: AsyncDatabase[Doc]) -> None:
    await db.things.create_index("codes", unique=True)
    await db.things.insert_one({"codes": ["a", "b"]})
    with pytest.raises(DuplicateKeyError):
        await db.things.insert_one({"codes": ["c", "b"]})


async def test_unordered_insert_many_reports_every_duplicate(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 2})
    with pytest.raises(BulkWriteError) as raised:
        await db.things.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3}, {"_id": 1}], ordered=False)
    errors = raised.value.details["writeErrors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, 11000), (3, 11000)]
    assert raised.value.details["nInserted"] == 2


async def test_ordered_insert_many_stops_at_the_first_duplicate(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 2})
    with pytest.raises(BulkWriteError) as raised:
        await db.things.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3}])
    assert raised.value.details["nInserted"] == 1
    assert await db.things.find_one({"_id": 3}) is None


async def test_building_a_unique_index_over_duplicates_fails(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many([{"k": 1}, {"k": 1}])
    with pytest.raises(DuplicateKeyError):
        await db.things.create_index("k", unique=True)
    assert [i["name"] async for i in await db.things.list_indexes()] == ["_id_"]


async def test_indexes_are_listed_and_dropped(db: AsyncDatabase[Doc]) -> None:
    await db.things.create_indexes(
        [
            IndexModel([("a", ASCENDING)], name="a_up"),
            IndexModel([("b", ASCENDING), ("c", DESCENDING)], unique=True),
        ]
    )
    indexes = {i["name"]: i async for i in await db.things.list_indexes()}
    assert set(indexes) == {"_id_", "a_up", "b_1_c_-1"}
    assert indexes["b_1_c_-1"]["unique"] is True
    assert dict(indexes["b_1_c_-1"]["key"]) == {"b": 1, "c": -1}
    info = await db.things.index_information()
    assert info["a_up"]["key"] == [("a", 1)]
    await db.things.drop_index("a_up")
    assert "a_up" not in await db.things.index_information()
    await db.things.drop_indexes()
    assert list(await db.things.index_information()) == ["_id_"]


async def test_creating_the_same_index_twice_is_idempotent(db: AsyncDatabase[Doc]) -> None:
    await db.things.create_index("a", unique=True)
    await db.things.create_index("a", unique=True)
    assert len(await db.things.index_information()) == 2


async def test_same_name_with_other_options_conflicts(db: AsyncDatabase[Doc]) -> None:
    await db.things.create_index("a", name="by_a")
    with pytest.raises(OperationFailure) as raised:
        await db.things.create_index("a", name="by_a", unique=True)
    assert raised.value.code in (85, 86)


async def test_dropping_a_missing_index_fails_with_index_not_found(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({})
    with pytest.raises(OperationFailure) as raised:
        await db.things.drop_index("nope_1")
    assert raised.value.code == 27


async def test_the_id_index_cannot_be_dropped(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({})
    with pytest.raises(OperationFailure) as raised:
        await db.things.drop_index("_id_")
    assert raised.value.code == 72


async def test_a_dropped_unique_index_no_longer_refuses_its_key(db: AsyncDatabase[Doc]) -> None:
    await db.things.create_index("code", unique=True)
    await db.things.insert_many([{"_id": 1, "code": "a"}, {"_id": 2, "code": "b"}])
    await db.things.drop_index("code_1")
    await db.things.insert_many([{"_id": 3, "code": "a"}, {"_id": 4, "code": "a"}])
    assert await db.things.count_documents({"code": "a"}) == 3


async def test_a_renamed_collection_still_refuses_a_taken_unique_key(
    db: AsyncDatabase[Doc],
) -> None:
    await db.scratch.create_index("code", unique=True)
    await db.scratch.insert_one({"_id": 1, "code": "a"})
    await db.scratch.rename("final")
    with pytest.raises(BulkWriteError) as raised:
        await db.final.insert_many([{"_id": 2, "code": "b"}, {"_id": 3, "code": "a"}])
    [error] = raised.value.details["writeErrors"]
    assert (error["index"], error["keyValue"]) == (1, {"code": "a"})
    assert await db.final.count_documents({}) == 2
