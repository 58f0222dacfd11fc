"""MongoDB's failCommand failpoint, so retry logic can be tested against transient failures."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import AutoReconnect, OperationFailure

from tests.integration.mongo_standin.conftest import fail_command

Doc = dict[str, Any]


async def test_with_transaction_retries_commits_that_fail_transiently(
    mongodb_url: str, mongo_database_name: str
) -> None:
    failures = {
        "failCommands": ["commitTransaction"],
        "errorCode": 112,
        "errorLabels": ["TransientTransactionError"],
    }
    async with fail_command(mongodb_url, {"times": 2}, failures) as client:
        orders = client[mongo_database_name].orders
        attempts = 0

        async def place(session: AsyncClientSession) -> None:
            nonlocal attempts
            attempts += 1
            await orders.insert_one({"_id": "order-1"}, session=session)

        async with client.start_session() as session:
            await session.with_transaction(place)
        assert attempts == 3
        assert await orders.count_documents({}) == 1


async def test_commit_failing_with_a_retryable_code_is_retried_by_the_driver(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["commitTransaction"], "errorCode": 6}
    ) as client:
        orders = client[mongo_database_name].orders
        attempts = 0

        async def place(session: AsyncClientSession) -> None:
            nonlocal attempts
            attempts += 1
            await orders.insert_one({"_id": "order-1"}, session=session)

        async with client.start_session() as session:
            await session.with_transaction(place)
        assert attempts == 1
        assert await orders.count_documents({}) == 1


async def test_dropped_connection_on_insert_is_retried_once(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["insert"], "closeConnection": True}
    ) as client:
        things = client[mongo_database_name].things
        await things.insert_one({"_id": 1})
        assert await things.count_documents({}) == 1


async def test_dropped_connection_on_commit_still_commits_once(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["commitTransaction"], "closeConnection": True}
    ) as client:
        orders = client[mongo_database_name].orders
        async with client.start_session() as session:
            await session.with_transaction(
                lambda s: orders.insert_one({"_id": "order-1"}, session=s)
            )
        assert await orders.count_documents({}) == 1


async def test_dropped_connection_on_find_is_retried_once(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["find"], "closeConnection": True}
    ) as client:
        things = client[mongo_database_name].things
        await things.insert_one({"_id": 1})
        assert await things.find_one({"_id": 1}) == {"_id": 1}


async def test_a_second_failure_reaches_the_application(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 2}, {"failCommands": ["insert"], "errorCode": 6}
    ) as client:
        with pytest.raises(OperationFailure) as raised:
            await client[mongo_database_name].things.insert_one({"_id": 1})
        assert raised.value.code == 6
        assert raised.value.has_error_label("RetryableWriteError")
        assert await client[mongo_database_name].things.count_documents({}) == 0


async def test_always_on_fails_until_switched_off(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, "alwaysOn", {"failCommands": ["find"], "closeConnection": True}
    ) as client:
        for _ in range(2):
            with pytest.raises(AutoReconnect):
                await client[mongo_database_name].things.find_one({})
    async with fail_command(mongodb_url, "off", {}) as client:
        assert await client[mongo_database_name].things.find_one({}) is None
