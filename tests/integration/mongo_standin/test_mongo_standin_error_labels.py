"""Error labels on injected failures: the server's own labels, so drivers retry as on MongoDB."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import OperationFailure, PyMongoError, WriteConcernError

from tests.integration.mongo_standin.conftest import fail_command

Doc = dict[str, Any]

# Codes of MongoDB's RetriableError category (network, shutdown, not primary, time limit).
RETRIABLE_CODES = [6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436]
# Codes a transaction statement may fail with that always leave nothing behind.
TRANSIENT_CODES = [24, 112, 251]


def server_reply(error: PyMongoError) -> Doc:
    """The server's reply: pymongo raises "not primary" failures as NotPrimaryError."""
    details = getattr(error, "details", None)
    assert isinstance(details, dict)
    return details


def server_labels(error: PyMongoError) -> list[str]:
    """The labels in the server's reply, without those the driver adds (to "not primary" ones)."""
    return list(server_reply(error).get("errorLabels", []))


@pytest.mark.parametrize("code", RETRIABLE_CODES + TRANSIENT_CODES)
async def test_a_transaction_statement_failing_with_a_retriable_or_transient_code_is_transient(
    mongodb_url: str, mongo_database_name: str, code: int
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["insert"], "errorCode": code}
    ) as client:
        orders = client[mongo_database_name].orders
        async with client.start_session() as session:
            await session.start_transaction()
            with pytest.raises(PyMongoError) as raised:
                await orders.insert_one({"_id": 1}, session=session)
            await session.abort_transaction()
        assert server_reply(raised.value)["code"] == code
        assert server_labels(raised.value) == ["TransientTransactionError"]


async def test_a_transaction_statement_failing_otherwise_has_no_label(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["insert"], "errorCode": 2}
    ) as client:
        orders = client[mongo_database_name].orders
        attempts = 0

        async def place(session: AsyncClientSession) -> None:
            nonlocal attempts
            attempts += 1
            await orders.insert_one({"_id": 1}, session=session)

        async with client.start_session() as session:
            with pytest.raises(OperationFailure) as raised:
                await session.with_transaction(place)
        assert server_labels(raised.value) == []
        assert attempts == 1
        assert await orders.count_documents({}) == 0


async def test_with_transaction_reruns_the_callback_after_a_transient_statement_failure(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["insert"], "errorCode": 262}
    ) as client:
        orders = client[mongo_database_name].orders
        attempts = 0

        async def place(session: AsyncClientSession) -> None:
            nonlocal attempts
            attempts += 1
            await orders.insert_one({"_id": 1}, session=session)

        async with client.start_session() as session:
            await session.with_transaction(place)
        assert attempts == 2
        assert await orders.count_documents({}) == 1


@pytest.mark.parametrize("code", TRANSIENT_CODES)
async def test_commit_failing_with_a_transient_code_reruns_the_whole_transaction(
    mongodb_url: str, mongo_database_name: str, code: int
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["commitTransaction"], "errorCode": code}
    ) as client:
        orders = client[mongo_database_name].orders
        async with client.start_session() as session:
            await session.start_transaction()
            await orders.insert_one({"_id": 1}, session=session)
            with pytest.raises(OperationFailure) as raised:
                await session.commit_transaction()
        assert server_labels(raised.value) == ["TransientTransactionError"]
        assert not raised.value.has_error_label("UnknownTransactionCommitResult")

    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["commitTransaction"], "errorCode": code}
    ) as client:
        orders = client[mongo_database_name].orders
        attempts = 0

        async def place(session: AsyncClientSession) -> None:
            nonlocal attempts
            attempts += 1
            await orders.insert_one({"_id": 2}, session=session)

        async with client.start_session() as session:
            await session.with_transaction(place)
        assert attempts == 2
        assert await orders.count_documents({}) == 1


@pytest.mark.parametrize("code", RETRIABLE_CODES)
async def test_commit_failing_with_a_retriable_code_is_a_retryable_write_with_unknown_result(
    mongodb_url: str, mongo_database_name: str, code: int
) -> None:
    # Twice: the driver retries a commit once by itself, so the second failure reaches us.
    async with fail_command(
        mongodb_url, {"times": 2}, {"failCommands": ["commitTransaction"], "errorCode": code}
    ) as client:
        orders = client[mongo_database_name].orders
        async with client.start_session() as session:
            await session.start_transaction()
            await orders.insert_one({"_id": 1}, session=session)
            with pytest.raises(PyMongoError) as raised:
                await session.commit_transaction()
            assert server_reply(raised.value)["code"] == code
            assert server_labels(raised.value) == ["RetryableWriteError"]
            assert raised.value.has_error_label("UnknownTransactionCommitResult")
            assert not raised.value.has_error_label("TransientTransactionError")
            assert await orders.count_documents({}) == 0
            await session.commit_transaction()
        assert await orders.count_documents({}) == 1


async def test_with_transaction_retries_only_the_commit_after_retriable_commit_failures(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 3}, {"failCommands": ["commitTransaction"], "errorCode": 89}
    ) as client:
        orders = client[mongo_database_name].orders
        attempts = 0

        async def place(session: AsyncClientSession) -> None:
            nonlocal attempts
            attempts += 1
            await orders.insert_one({"_id": 1}, session=session)

        async with client.start_session() as session:
            await session.with_transaction(place)
        assert attempts == 1
        assert await orders.count_documents({}) == 1


async def test_a_retryable_write_failing_with_another_code_is_not_retried(
    mongodb_url: str, mongo_database_name: str
) -> None:
    async with fail_command(
        mongodb_url, {"times": 1}, {"failCommands": ["insert"], "errorCode": 2}
    ) as client:
        things = client[mongo_database_name].things
        with pytest.raises(OperationFailure) as raised:
            await things.insert_one({"_id": 1})
        assert server_labels(raised.value) == []
        assert await things.count_documents({}) == 0


async def test_explicit_error_labels_replace_the_computed_ones(
    mongodb_url: str, mongo_database_name: str
) -> None:
    unlabelled = {"failCommands": ["insert"], "errorCode": 262, "errorLabels": []}
    async with fail_command(mongodb_url, {"times": 1}, unlabelled) as client:
        things = client[mongo_database_name].things
        with pytest.raises(OperationFailure) as raised:
            await things.insert_one({"_id": 1})
        assert server_labels(raised.value) == []
        assert await things.count_documents({}) == 0

    labelled = {"failCommands": ["insert"], "errorCode": 2, "errorLabels": ["Custom"]}
    async with fail_command(mongodb_url, {"times": 1}, labelled) as client:
        orders = client[mongo_database_name].orders
        async with client.start_session() as session:
            await session.start_transaction()
            with pytest.raises(OperationFailure) as raised:
                await orders.insert_one({"_id": 1}, session=session)
            await session.abort_transaction()
        assert server_labels(raised.value) == ["Custom"]


@pytest.mark.parametrize("code", [91, 189, 11602])
async def test_a_retriable_write_concern_error_on_a_retryable_write_is_retried_once(
    mongodb_url: str, mongo_database_name: str, code: int
) -> None:
    failure = {
        "failCommands": ["insert"],
        "writeConcernError": {"code": code, "errmsg": "replication interrupted"},
    }
    async with fail_command(mongodb_url, {"times": 1}, failure) as client:
        things = client[mongo_database_name].things
        await things.insert_one({"_id": 1})
        assert await things.count_documents({}) == 1

    async with fail_command(mongodb_url, {"times": 2}, failure) as client:
        things = client[mongo_database_name].things
        with pytest.raises(WriteConcernError) as raised:
            await things.insert_one({"_id": 2})
        assert raised.value.code == code
        assert raised.value.has_error_label("RetryableWriteError")
        assert await things.count_documents({"_id": 2}) == 1


async def test_write_concern_error_labels_can_be_replaced_too(
    mongodb_url: str, mongo_database_name: str
) -> None:
    failure = {
        "failCommands": ["insert"],
        "writeConcernError": {"code": 91, "errmsg": "shutting down"},
        "errorLabels": [],
    }
    async with fail_command(mongodb_url, {"times": 1}, failure) as client:
        things = client[mongo_database_name].things
        with pytest.raises(WriteConcernError) as raised:
            await things.insert_one({"_id": 1})
        assert not raised.value.has_error_label("RetryableWriteError")
        assert await things.count_documents({}) == 1


async def test_a_retriable_write_concern_error_on_commit_is_retried(
    mongodb_url: str, mongo_database_name: str
) -> None:
    failure = {
        "failCommands": ["commitTransaction"],
        "writeConcernError": {"code": 11602, "errmsg": "replication interrupted"},
    }
    async with fail_command(mongodb_url, {"times": 1}, failure) as client:
        orders = client[mongo_database_name].orders
        attempts = 0

        async def place(session: AsyncClientSession) -> None:
            nonlocal attempts
            attempts += 1
            await orders.insert_one({"_id": 1}, session=session)

        async with client.start_session() as session:
            await session.with_transaction(place)
        assert attempts == 1
        assert await orders.count_documents({}) == 1
