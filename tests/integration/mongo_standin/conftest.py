"""Fixtures for the MongoDB contract tests; they run against the stand-in or a real replica set."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.synchronous.database import Database

Doc = dict[str, Any]


@pytest.fixture
def db(mongo_client: AsyncMongoClient[Doc], mongo_database_name: str) -> AsyncDatabase[Doc]:
    return mongo_client[mongo_database_name]


@pytest.fixture
def sync_client(mongodb_url: str) -> Iterator[MongoClient[Doc]]:
    client: MongoClient[Doc] = MongoClient(mongodb_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def sync_db(sync_client: MongoClient[Doc], mongo_database_name: str) -> Database[Doc]:
    return sync_client[mongo_database_name]


@asynccontextmanager
async def fail_command(
    mongodb_url: str, mode: Any, data: Doc
) -> AsyncIterator[AsyncMongoClient[Doc]]:
    """A client whose commands (only its own, by appName) the failCommand failpoint fails.

    It checks the server twice a second, so a "not primary" failure that marks the server
    unknown (as one in a write concern error does) costs it half a second, not ten.
    """
    app_name = f"failpoint-{uuid.uuid4().hex[:8]}"
    admin: AsyncMongoClient[Doc] = AsyncMongoClient(mongodb_url)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        mongodb_url, appname=app_name, heartbeatFrequencyMS=500
    )
    await admin.admin.command(
        {"configureFailPoint": "failCommand", "mode": mode, "data": {**data, "appName": app_name}}
    )
    try:
        yield client
    finally:
        await admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        await client.close()
        await admin.close()
