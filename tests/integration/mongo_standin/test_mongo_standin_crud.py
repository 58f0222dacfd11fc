"""Inserts, finds with cursors, updates, deletes, findAndModify, count and distinct."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from bson import Decimal128, Int64, ObjectId
from pymongo import (
    ASCENDING,
    DESCENDING,
    InsertOne,
    MongoClient,
    ReturnDocument,
    UpdateOne,
    WriteConcern,
)
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, WriteError
from pymongo.synchronous.database import Database

Doc = dict[str, Any]


async def test_inserted_document_is_found_by_id(db: AsyncDatabase[Doc]) -> None:
    result = await db.things.insert_one({"name": "ticket", "price": 10})
    assert isinstance(result.inserted_id, ObjectId)
    found = await db.things.find_one({"_id": result.inserted_id})
    assert found == {"_id": result.inserted_id, "name": "ticket", "price": 10}


async def test_bson_types_round_trip(db: AsyncDatabase[Doc]) -> None:
    moment = datetime.datetime(2026, 5, 1, 12, 30, 15, 123000)
    document = {
        "_id": "types",
        "long": Int64(2**40),
        "small_long": Int64(5),
        "decimal": Decimal128("10.25"),
        "when": moment,
        "nested": {"list": [1, "two", {"three": 3.0}], "none": None},
        "raw": b"\x00\x01",
        "flag": True,
    }
    await db.things.insert_one(document)
    found = await db.things.find_one({"_id": "types"})
    assert found == document
    assert isinstance(found["small_long"], Int64)


async def test_find_filters_sorts_skips_limits_and_projects(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many(
        [{"_id": i, "n": i, "even": i % 2 == 0, "tag": f"t{i % 3}"} for i in range(20)]
    )
    found = (
        await db.things.find({"even": True, "n": {"$gte": 4}}, {"n": 1, "_id": 0})
        .sort("n", DESCENDING)
        .skip(1)
        .limit(3)
        .to_list()
    )
    assert found == [{"n": 16}, {"n": 14}, {"n": 12}]
    by_tag = (
        await db.things.find({"tag": {"$in": ["t0", "t1"]}, "n": {"$lt": 6}})
        .sort([("tag", ASCENDING), ("n", DESCENDING)])
        .to_list()
    )
    assert [d["n"] for d in by_tag] == [3, 0, 4, 1]
    excluded = await db.things.find_one({"_id": 5}, {"tag": 0, "even": 0})
    assert excluded == {"_id": 5, "n": 5}


async def test_query_operators_match_like_mongodb(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many(
        [
            {"_id": 1, "tags": ["a", "b"], "size": {"w": 1}, "name": "Alpha"},
            {"_id": 2, "tags": ["b"], "size": {"w": 5}, "name": "beta"},
            {"_id": 3, "name": None},
        ]
    )

    async def ids(query: Doc) -> list[int]:
        return sorted([d["_id"] async for d in db.things.find(query)])

    assert await ids({"tags": "b"}) == [1, 2]
    assert await ids({"tags": {"$all": ["a", "b"]}}) == [1]
    assert await ids({"size.w": {"$gt": 2}}) == [2]
    assert await ids({"tags": {"$exists": False}}) == [3]
    assert await ids({"name": {"$regex": "^al", "$options": "i"}}) == [1]
    assert await ids({"$or": [{"_id": 1}, {"name": "beta"}]}) == [1, 2]
    assert await ids({"name": None}) == [3]
    assert await ids({"_id": {"$in": [3, 1, 9]}}) == [1, 3]
    assert await ids({"tags": {"$size": 1}}) == [2]
    assert await ids({"_id": {"$not": {"$gt": 1}}}) == [1]


async def test_cursor_fetches_every_batch_with_get_more(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many([{"_id": i} for i in range(250)])
    cursor = db.things.find({}, batch_size=7).sort("_id", ASCENDING)
    seen = [d["_id"] async for d in cursor]
    assert seen == list(range(250))


async def test_closing_a_cursor_early_kills_it(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many([{"_id": i} for i in range(50)])
    cursor = db.things.find({}, batch_size=5)
    first = await cursor.next()
    assert first["_id"] == 0
    await cursor.close()
    assert await db.things.count_documents({}) == 50


async def test_update_operators_change_documents(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one(
        {"_id": 1, "count": 1, "price": 10, "tags": ["a"], "old": 1, "gone": 1, "low": 5, "high": 5}
    )
    result = await db.things.update_one(
        {"_id": 1},
        {
            "$inc": {"count": 2},
            "$mul": {"price": 3},
            "$set": {"nested.value": "x"},
            "$unset": {"gone": ""},
            "$push": {"tags": {"$each": ["b", "c"]}},
            "$rename": {"old": "renamed"},
            "$min": {"low": 1},
            "$max": {"high": 9},
            "$currentDate": {"touched": True},
        },
    )
    assert (result.matched_count, result.modified_count) == (1, 1)
    found = await db.things.find_one({"_id": 1})
    assert found is not None
    touched = found.pop("touched")
    assert isinstance(touched, datetime.datetime)
    assert found == {
        "_id": 1,
        "count": 3,
        "price": 30,
        "tags": ["a", "b", "c"],
        "renamed": 1,
        "low": 1,
        "high": 9,
        "nested": {"value": "x"},
    }
    await db.things.update_one({"_id": 1}, {"$addToSet": {"tags": "a"}, "$pull": {"tags": "b"}})
    assert (await db.things.find_one({"_id": 1}) or {})["tags"] == ["a", "c"]


async def test_incrementing_a_long_keeps_it_a_long(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1, "n": Int64(1)})
    await db.things.update_one({"_id": 1}, {"$inc": {"n": 1}})
    found = await db.things.find_one({"_id": 1})
    assert found is not None
    assert isinstance(found["n"], Int64)
    assert found["n"] == 2


async def test_update_that_changes_nothing_reports_not_modified(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1, "a": 1})
    result = await db.things.update_one({"_id": 1}, {"$set": {"a": 1}})
    assert (result.matched_count, result.modified_count) == (1, 0)


async def test_update_many_changes_every_match(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many([{"_id": i, "group": i % 2, "seen": False} for i in range(10)])
    result = await db.things.update_many({"group": 1}, {"$set": {"seen": True}})
    assert (result.matched_count, result.modified_count) == (5, 5)
    assert await db.things.count_documents({"seen": True}) == 5


async def test_upsert_inserts_from_the_filter_and_set_on_insert(db: AsyncDatabase[Doc]) -> None:
    result = await db.things.update_one(
        {"_id": "checkpoint-1", "kind": "checkpoint"},
        {"$set": {"position": 5}, "$setOnInsert": {"created": True}},
        upsert=True,
    )
    assert result.upserted_id == "checkpoint-1"
    assert await db.things.find_one({"_id": "checkpoint-1"}) == {
        "_id": "checkpoint-1",
        "kind": "checkpoint",
        "position": 5,
        "created": True,
    }
    again = await db.things.update_one(
        {"_id": "checkpoint-1"},
        {"$set": {"position": 6}, "$setOnInsert": {"created": False}},
        upsert=True,
    )
    assert again.upserted_id is None
    assert again.matched_count == 1
    found = await db.things.find_one({"_id": "checkpoint-1"})
    assert found is not None
    assert (found["position"], found["created"]) == (6, True)


async def test_upsert_without_id_in_filter_generates_an_object_id(db: AsyncDatabase[Doc]) -> None:
    result = await db.things.update_one({"email": "a@b.c"}, {"$set": {"n": 1}}, upsert=True)
    assert isinstance(result.upserted_id, ObjectId)
    assert await db.things.find_one({"email": "a@b.c"}, {"_id": 0}) == {"email": "a@b.c", "n": 1}


async def test_array_filters_update_only_matching_elements(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one(
        {"_id": 1, "seats": [{"n": 1, "held": False}, {"n": 2, "held": False}]}
    )
    await db.things.update_one(
        {"_id": 1}, {"$set": {"seats.$[seat].held": True}}, array_filters=[{"seat.n": 2}]
    )
    found = await db.things.find_one({"_id": 1})
    assert found is not None
    assert found["seats"] == [{"n": 1, "held": False}, {"n": 2, "held": True}]


async def test_positional_operator_updates_the_matched_element(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1, "items": [{"sku": "a", "q": 1}, {"sku": "b", "q": 1}]})
    await db.things.update_one({"_id": 1, "items.sku": "b"}, {"$inc": {"items.$.q": 4}})
    found = await db.things.find_one({"_id": 1})
    assert found is not None
    assert found["items"][1] == {"sku": "b", "q": 5}


async def test_replace_one_keeps_the_id(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1, "a": 1, "b": 2})
    await db.things.replace_one({"_id": 1}, {"c": 3})
    assert await db.things.find_one({"_id": 1}) == {"_id": 1, "c": 3}


async def test_pipeline_update_computes_from_fields(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1, "a": 2, "b": 3})
    await db.things.update_one({"_id": 1}, [{"$set": {"total": {"$add": ["$a", "$b"]}}}])
    assert (await db.things.find_one({"_id": 1}) or {})["total"] == 5


async def test_delete_one_and_many(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many([{"_id": i, "odd": i % 2 == 1} for i in range(10)])
    assert (await db.things.delete_one({"odd": True})).deleted_count == 1
    assert (await db.things.delete_many({"odd": True})).deleted_count == 4
    assert await db.things.count_documents({}) == 5
    assert (await db.things.delete_many({})).deleted_count == 5


async def test_find_one_and_update_returns_before_or_after(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many([{"_id": 1, "n": 1, "rank": 2}, {"_id": 2, "n": 1, "rank": 1}])
    before = await db.things.find_one_and_update(
        {"n": 1}, {"$inc": {"n": 1}}, sort=[("rank", ASCENDING)]
    )
    assert before == {"_id": 2, "n": 1, "rank": 1}
    after = await db.things.find_one_and_update(
        {"_id": 1}, {"$inc": {"n": 10}}, projection={"n": 1}, return_document=ReturnDocument.AFTER
    )
    assert after == {"_id": 1, "n": 11}
    assert await db.things.find_one_and_update({"_id": 99}, {"$set": {"n": 1}}) is None
    created = await db.things.find_one_and_update(
        {"_id": 99}, {"$set": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert created == {"_id": 99, "n": 1}


async def test_find_one_and_replace_and_delete(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1, "a": 1})
    replaced = await db.things.find_one_and_replace(
        {"_id": 1}, {"b": 2}, return_document=ReturnDocument.AFTER
    )
    assert replaced == {"_id": 1, "b": 2}
    deleted = await db.things.find_one_and_delete({"_id": 1})
    assert deleted == {"_id": 1, "b": 2}
    assert await db.things.find_one({"_id": 1}) is None


async def test_count_and_estimated_count(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many([{"n": i} for i in range(12)])
    assert await db.things.count_documents({"n": {"$gte": 5}}) == 7
    assert await db.things.count_documents({}, skip=2, limit=5) == 5
    assert await db.things.estimated_document_count() == 12
    assert await db.missing.count_documents({}) == 0


async def test_distinct_unwinds_arrays_and_filters(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many(
        [{"tags": ["a", "b"], "on": True}, {"tags": "c", "on": True}, {"tags": ["z"], "on": False}]
    )
    assert sorted(await db.things.distinct("tags", {"on": True})) == ["a", "b", "c"]


async def test_bulk_write_mixes_operations(db: AsyncDatabase[Doc]) -> None:
    result = await db.things.bulk_write(
        [
            InsertOne({"_id": 1, "n": 0}),
            UpdateOne({"_id": 1}, {"$inc": {"n": 5}}),
            UpdateOne({"_id": 2}, {"$set": {"n": 1}}, upsert=True),
        ]
    )
    assert (result.inserted_count, result.modified_count, result.upserted_count) == (1, 1, 1)
    assert await db.things.find_one({"_id": 1}) == {"_id": 1, "n": 5}


async def test_changing_the_id_is_rejected(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1})
    with pytest.raises(WriteError) as raised:
        await db.things.update_one({"_id": 1}, {"$set": {"_id": 2}})
    assert raised.value.code == 66


async def test_incrementing_a_string_is_a_type_mismatch(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1, "name": "x"})
    with pytest.raises(WriteError) as raised:
        await db.things.update_one({"_id": 1}, {"$inc": {"name": 1}})
    assert raised.value.code == 14


async def test_unknown_query_operator_is_a_bad_value(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1})
    with pytest.raises(OperationFailure) as raised:
        await db.things.find_one({"a": {"$noSuchOperator": 1}})
    assert raised.value.code == 2


async def test_unknown_update_operator_fails_to_parse(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({"_id": 1})
    with pytest.raises(WriteError) as raised:
        await db.things.update_one({"_id": 1}, {"$noSuchModifier": {"a": 1}})
    assert raised.value.code == 9


def test_sync_client_crud_round_trip(sync_db: Database[Doc]) -> None:
    sync_db.things.insert_many([{"_id": i, "n": i} for i in range(30)])
    sync_db.things.update_many({"n": {"$lt": 10}}, {"$set": {"small": True}})
    assert sync_db.things.count_documents({"small": True}) == 10
    assert [d["_id"] for d in sync_db.things.find({}, batch_size=4).sort("n", -1).limit(6)] == [
        29,
        28,
        27,
        26,
        25,
        24,
    ]
    assert sync_db.things.find_one_and_delete({"_id": 0}) == {"_id": 0, "n": 0, "small": True}
    assert sync_db.things.delete_many({"small": True}).deleted_count == 9


def test_sync_client_reads_its_own_write(
    sync_client: MongoClient[Doc], mongo_database_name: str
) -> None:
    sync_client[mongo_database_name].things.insert_one({"_id": "s"})
    assert sync_client[mongo_database_name].things.find_one({"_id": "s"}) == {"_id": "s"}


async def test_unacknowledged_write_is_applied(db: AsyncDatabase[Doc]) -> None:
    unacknowledged = db.things.with_options(write_concern=WriteConcern(w=0))
    result = await unacknowledged.insert_one({"_id": "fire-and-forget"})
    assert not result.acknowledged
    for _ in range(100):
        if await db.things.find_one({"_id": "fire-and-forget"}) is not None:
            break
        await asyncio.sleep(0.02)
    assert await db.things.find_one({"_id": "fire-and-forget"}) == {"_id": "fire-and-forget"}


async def test_renamed_collection_keeps_documents_and_indexes(db: AsyncDatabase[Doc]) -> None:
    await db.scratch.create_index("k", unique=True)
    await db.scratch.insert_one({"_id": 1, "k": "a"})
    await db.scratch.rename("final")
    assert await db.final.find_one({"_id": 1}) == {"_id": 1, "k": "a"}
    assert "k_1" in await db.final.index_information()
    assert "scratch" not in await db.list_collection_names()


async def test_indexes_of_a_missing_collection_are_none(db: AsyncDatabase[Doc]) -> None:
    assert [i async for i in await db.nothing.list_indexes()] == []
