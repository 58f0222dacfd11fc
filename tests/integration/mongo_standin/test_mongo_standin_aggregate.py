"""Aggregation pipelines: the stages the read models use."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

Doc = dict[str, Any]

ORDERS = [
    {"_id": 1, "event": "e1", "amount": 100, "items": ["a", "b"], "buyer": "u1"},
    {"_id": 2, "event": "e1", "amount": 300, "items": ["c"], "buyer": "u2"},
    {"_id": 3, "event": "e2", "amount": 50, "items": [], "buyer": "u1"},
    {"_id": 4, "event": "e2", "amount": 150, "items": ["d", "e", "f"], "buyer": "u3"},
]


@pytest.fixture
async def orders(db: AsyncDatabase[Doc]) -> AsyncDatabase[Doc]:
    await db.orders.insert_many([dict(o) for o in ORDERS])
    await db.buyers.insert_many([{"_id": "u1", "name": "An"}, {"_id": "u2", "name": "Binh"}])
    return db


async def test_group_accumulates_sum_avg_min_max_first_push(orders: AsyncDatabase[Doc]) -> None:
    result = await (
        await orders.orders.aggregate(
            [
                {"$sort": {"_id": 1}},
                {
                    "$group": {
                        "_id": "$event",
                        "total": {"$sum": "$amount"},
                        "count": {"$sum": 1},
                        "average": {"$avg": "$amount"},
                        "smallest": {"$min": "$amount"},
                        "largest": {"$max": "$amount"},
                        "first": {"$first": "$_id"},
                        "ids": {"$push": "$_id"},
                    }
                },
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    assert result == [
        {
            "_id": "e1",
            "total": 400,
            "count": 2,
            "average": 200.0,
            "smallest": 100,
            "largest": 300,
            "first": 1,
            "ids": [1, 2],
        },
        {
            "_id": "e2",
            "total": 200,
            "count": 2,
            "average": 100.0,
            "smallest": 50,
            "largest": 150,
            "first": 3,
            "ids": [3, 4],
        },
    ]


async def test_match_sort_skip_limit_project(orders: AsyncDatabase[Doc]) -> None:
    result = await (
        await orders.orders.aggregate(
            [
                {"$match": {"amount": {"$gte": 100}}},
                {"$sort": {"amount": -1}},
                {"$skip": 1},
                {"$limit": 1},
                {"$project": {"_id": 0, "amount": 1, "double": {"$multiply": ["$amount", 2]}}},
            ]
        )
    ).to_list()
    assert result == [{"amount": 150, "double": 300}]


async def test_unwind_count_and_add_fields(orders: AsyncDatabase[Doc]) -> None:
    unwound = await (
        await orders.orders.aggregate([{"$unwind": "$items"}, {"$count": "n"}])
    ).to_list()
    assert unwound == [{"n": 6}]
    added = await (
        await orders.orders.aggregate(
            [
                {"$match": {"_id": 2}},
                {"$addFields": {"paid": True, "vat": {"$multiply": ["$amount", 0.1]}}},
            ]
        )
    ).to_list()
    assert added[0]["paid"] is True
    assert added[0]["vat"] == pytest.approx(30.0)


async def test_lookup_joins_another_collection(orders: AsyncDatabase[Doc]) -> None:
    result = await (
        await orders.orders.aggregate(
            [
                {"$match": {"buyer": {"$in": ["u1", "u3"]}}},
                {
                    "$lookup": {
                        "from": "buyers",
                        "localField": "buyer",
                        "foreignField": "_id",
                        "as": "who",
                    }
                },
                {"$project": {"who.name": 1}},
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    assert result == [
        {"_id": 1, "who": [{"name": "An"}]},
        {"_id": 3, "who": [{"name": "An"}]},
        {"_id": 4, "who": []},
    ]


async def test_aggregate_cursor_returns_many_batches(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_many([{"n": i} for i in range(500)])
    cursor = await db.things.aggregate([{"$sort": {"n": 1}}], batchSize=50)
    assert [d["n"] async for d in cursor] == list(range(500))


async def test_aggregate_over_a_missing_collection_is_empty(db: AsyncDatabase[Doc]) -> None:
    assert await (await db.nothing.aggregate([{"$match": {}}])).to_list() == []


async def test_unknown_stage_is_an_error(db: AsyncDatabase[Doc]) -> None:
    await db.things.insert_one({})
    with pytest.raises(OperationFailure):
        await db.things.aggregate([{"$noSuchStage": {}}])
