"""Aggregation pipelines: the stages the read models use."""

from __future__ import annotations

import datetime
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


# Every stage behaves the same wherever it stands: after a leading stage that changes nothing,
# it must give what it gives as the first stage.
STAGES_ANYWHERE: list[Doc] = [
    {"$match": {"amount": {"$gte": 100}}},
    {"$project": {"event": 1, "amount": 1}},
    {"$addFields": {"double": {"$multiply": ["$amount", 2]}}},
    {"$set": {"paid": True}},
    {"$unset": "items"},
    {"$unwind": "$items"},
    {"$group": {"_id": "$event", "total": {"$sum": "$amount"}}},
    {"$sort": {"amount": -1}},
    {"$skip": 1},
    {"$limit": 2},
    {"$count": "n"},
    {"$sortByCount": "$event"},
    {"$replaceRoot": {"newRoot": {"who": "$buyer"}}},
    {"$replaceWith": {"who": "$buyer"}},
    {"$lookup": {"from": "buyers", "localField": "buyer", "foreignField": "_id", "as": "who"}},
    {"$unionWith": {"coll": "buyers", "pipeline": [{"$match": {"name": "An"}}]}},
    {"$facet": {"big": [{"$match": {"amount": {"$gt": 100}}}, {"$count": "n"}]}},
    {"$bucket": {"groupBy": "$amount", "boundaries": [0, 100, 1000], "default": "other"}},
]


def _canonical(documents: list[Doc]) -> list[str]:
    return sorted(repr(sorted(d.items())) for d in documents)


@pytest.mark.parametrize("stage", STAGES_ANYWHERE, ids=lambda s: next(iter(s)))
@pytest.mark.parametrize(
    "leading",
    [{"$match": {}}, {"$project": {"never_there": 0}}, {"$limit": 1000}, {"$skip": 0}],
    ids=lambda s: next(iter(s)),
)
async def test_a_stage_gives_the_same_result_after_another_stage(
    orders: AsyncDatabase[Doc], stage: Doc, leading: Doc
) -> None:
    first = await (await orders.orders.aggregate([{"$sort": {"_id": 1}}, stage])).to_list()
    later = await (await orders.orders.aggregate([leading, {"$sort": {"_id": 1}}, stage])).to_list()
    assert first
    assert _canonical(later) == _canonical(first)


async def test_match_after_unwind_filters_the_unwound_documents(
    orders: AsyncDatabase[Doc],
) -> None:
    result = await (
        await orders.orders.aggregate(
            [
                {"$unwind": "$items"},
                {"$match": {"items": {"$in": ["a", "d"]}}},
                {"$project": {"_id": 0, "order": "$_id", "items": 1}},
                {"$sort": {"order": 1}},
            ]
        )
    ).to_list()
    assert result == [{"items": "a", "order": 1}, {"items": "d", "order": 4}]


async def test_match_after_group_filters_on_the_group_output(orders: AsyncDatabase[Doc]) -> None:
    result = await (
        await orders.orders.aggregate(
            [
                {"$group": {"_id": "$buyer", "spent": {"$sum": "$amount"}, "n": {"$sum": 1}}},
                {"$match": {"n": {"$gte": 2}}},
            ]
        )
    ).to_list()
    assert result == [{"_id": "u1", "spent": 150, "n": 2}]


async def test_match_after_add_fields_and_project_sees_the_computed_fields(
    orders: AsyncDatabase[Doc],
) -> None:
    added = await (
        await orders.orders.aggregate(
            [
                {"$addFields": {"count": {"$size": "$items"}}},
                {"$match": {"count": {"$gte": 2}}},
                {"$sort": {"_id": 1}},
                {"$project": {"count": 1}},
                {"$match": {"_id": {"$ne": 1}}},
            ]
        )
    ).to_list()
    assert added == [{"_id": 4, "count": 3}]
    projected = await (
        await orders.orders.aggregate(
            [
                {"$project": {"vat": {"$multiply": ["$amount", 0.1]}}},
                {"$match": {"vat": {"$gt": 10}}},
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    assert [d["_id"] for d in projected] == [2, 4]


async def test_sort_skip_limit_and_count_after_group(orders: AsyncDatabase[Doc]) -> None:
    grouped: list[Doc] = [{"$group": {"_id": "$buyer", "spent": {"$sum": "$amount"}}}]
    ranked = await (
        await orders.orders.aggregate(
            [*grouped, {"$sort": {"spent": -1, "_id": 1}}, {"$skip": 1}, {"$limit": 2}]
        )
    ).to_list()
    assert ranked == [{"_id": "u1", "spent": 150}, {"_id": "u3", "spent": 150}]
    counted = await (
        await orders.orders.aggregate(
            [*grouped, {"$match": {"spent": {"$gte": 150}}}, {"$count": "n"}]
        )
    ).to_list()
    assert counted == [{"n": 3}]


async def test_group_by_a_document_of_several_fields(orders: AsyncDatabase[Doc]) -> None:
    result = await (
        await orders.orders.aggregate(
            [
                {
                    "$group": {
                        "_id": {"event": "$event", "big": {"$gte": ["$amount", 150]}},
                        "orders": {"$sum": 1},
                    }
                },
                {"$sort": {"_id.event": 1, "_id.big": 1}},
            ]
        )
    ).to_list()
    assert result == [
        {"_id": {"event": "e1", "big": False}, "orders": 1},
        {"_id": {"event": "e1", "big": True}, "orders": 1},
        {"_id": {"event": "e2", "big": False}, "orders": 1},
        {"_id": {"event": "e2", "big": True}, "orders": 1},
    ]


SALES = [
    {"_id": 1, "at": datetime.datetime(2024, 3, 1, 10, 5, 10), "amount": 10},
    {"_id": 2, "at": datetime.datetime(2024, 3, 1, 10, 5, 50), "amount": 20},
    {"_id": 3, "at": datetime.datetime(2024, 3, 1, 10, 47, 0), "amount": 30},
    {"_id": 4, "at": datetime.datetime(2024, 3, 1, 23, 59, 59), "amount": 40},
    {"_id": 5, "at": datetime.datetime(2024, 3, 2, 0, 0, 1), "amount": 50},
]


@pytest.fixture
async def sales(db: AsyncDatabase[Doc]) -> AsyncDatabase[Doc]:
    await db.sales.insert_many([dict(s) for s in SALES])
    return db


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        (
            "minute",
            [
                (datetime.datetime(2024, 3, 1, 10, 5), 30),
                (datetime.datetime(2024, 3, 1, 10, 47), 30),
                (datetime.datetime(2024, 3, 1, 23, 59), 40),
                (datetime.datetime(2024, 3, 2, 0, 0), 50),
            ],
        ),
        (
            "hour",
            [
                (datetime.datetime(2024, 3, 1, 10), 60),
                (datetime.datetime(2024, 3, 1, 23), 40),
                (datetime.datetime(2024, 3, 2, 0), 50),
            ],
        ),
        ("day", [(datetime.datetime(2024, 3, 1), 100), (datetime.datetime(2024, 3, 2), 50)]),
    ],
)
async def test_group_by_date_trunc_buckets_sales(
    sales: AsyncDatabase[Doc], unit: str, expected: list[tuple[datetime.datetime, int]]
) -> None:
    result = await (
        await sales.sales.aggregate(
            [
                {"$match": {"amount": {"$gt": 0}}},
                {
                    "$group": {
                        "_id": {"$dateTrunc": {"date": "$at", "unit": unit}},
                        "total": {"$sum": "$amount"},
                    }
                },
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    assert [(d["_id"], d["total"]) for d in result] == expected


async def test_group_by_date_to_string_buckets_sales_by_formatted_hour(
    sales: AsyncDatabase[Doc],
) -> None:
    result = await (
        await sales.sales.aggregate(
            [
                {"$sort": {"at": 1}},
                {
                    "$group": {
                        "_id": {"$dateToString": {"date": "$at", "format": "%Y-%m-%dT%H:00"}},
                        "total": {"$sum": "$amount"},
                    }
                },
                {"$match": {"total": {"$gte": 40}}},
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    assert result == [
        {"_id": "2024-03-01T10:00", "total": 60},
        {"_id": "2024-03-01T23:00", "total": 40},
        {"_id": "2024-03-02T00:00", "total": 50},
    ]


async def test_group_by_event_and_minute_bucket(sales: AsyncDatabase[Doc]) -> None:
    result = await (
        await sales.sales.aggregate(
            [
                {"$addFields": {"big": {"$gte": ["$amount", 30]}}},
                {
                    "$group": {
                        "_id": {
                            "big": "$big",
                            "minute": {"$dateTrunc": {"date": "$at", "unit": "minute"}},
                        },
                        "n": {"$sum": 1},
                    }
                },
                {"$match": {"_id.big": False}},
            ]
        )
    ).to_list()
    assert result == [
        {"_id": {"big": False, "minute": datetime.datetime(2024, 3, 1, 10, 5)}, "n": 2}
    ]
