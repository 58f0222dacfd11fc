"""Handshake and server commands: the driver sees the primary of a one-node replica set."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, OperationFailure

Doc = dict[str, Any]


async def test_ping_answers_ok(mongo_client: AsyncMongoClient[Doc]) -> None:
    assert (await mongo_client.admin.command("ping"))["ok"] == 1.0


async def test_hello_presents_a_writable_replica_set_primary(
    mongo_client: AsyncMongoClient[Doc],
) -> None:
    hello = await mongo_client.admin.command("hello")
    assert hello["isWritablePrimary"] is True
    assert isinstance(hello["setName"], str)
    assert hello["me"] in hello["hosts"]
    assert hello["primary"] == hello["me"]
    assert hello["maxWireVersion"] >= 17
    assert hello["logicalSessionTimeoutMinutes"] > 0
    assert "topologyVersion" in hello


async def test_legacy_is_master_answers_too(mongo_client: AsyncMongoClient[Doc]) -> None:
    reply = await mongo_client.admin.command("isMaster")
    assert reply["ismaster"] is True


async def test_replica_set_url_discovers_the_primary(
    mongo_client: AsyncMongoClient[Doc], mongo_database_name: str
) -> None:
    hello = await mongo_client.admin.command("hello")
    url = f"mongodb://{hello['me']}/?replicaSet={hello['setName']}"
    client: AsyncMongoClient[Doc] = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        await client[mongo_database_name].things.insert_one({"_id": 1})
        assert await client[mongo_database_name].things.find_one({"_id": 1}) == {"_id": 1}
    finally:
        await client.close()


def test_sync_client_with_replica_set_url_works(
    sync_client: MongoClient[Doc], mongo_database_name: str
) -> None:
    hello = sync_client.admin.command("hello")
    url = f"mongodb://{hello['me']}/?replicaSet={hello['setName']}"
    with MongoClient[Doc](url, serverSelectionTimeoutMS=5000) as client:
        client[mongo_database_name].things.insert_one({"_id": "sync"})
        assert client[mongo_database_name].things.count_documents({}) == 1


async def test_build_info_reports_a_version(mongo_client: AsyncMongoClient[Doc]) -> None:
    info = await mongo_client.admin.command("buildInfo")
    assert info["versionArray"][0] >= 6


async def test_unknown_command_fails_with_command_not_found(
    mongo_client: AsyncMongoClient[Doc],
) -> None:
    with pytest.raises(OperationFailure) as raised:
        await mongo_client.admin.command("noSuchCommandAnywhere")
    assert raised.value.code == 59


async def test_created_collection_is_listed_and_dropped(db: AsyncDatabase[Doc]) -> None:
    await db.create_collection("created")
    assert "created" in await db.list_collection_names()
    assert [c["name"] async for c in await db.list_collections(filter={"name": "created"})] == [
        "created"
    ]
    await db.drop_collection("created")
    assert "created" not in await db.list_collection_names()


async def test_creating_an_existing_collection_fails(db: AsyncDatabase[Doc]) -> None:
    await db.create_collection("twice")
    with pytest.raises(CollectionInvalid):
        await db.create_collection("twice")
    with pytest.raises(OperationFailure) as raised:
        await db.command({"create": "twice", "capped": True, "size": 4096})
    assert raised.value.code == 48


async def test_database_appears_in_list_and_goes_when_dropped(
    mongo_client: AsyncMongoClient[Doc], mongo_database_name: str
) -> None:
    await mongo_client[mongo_database_name].things.insert_one({"a": 1})
    assert mongo_database_name in await mongo_client.list_database_names()
    await mongo_client.drop_database(mongo_database_name)
    assert mongo_database_name not in await mongo_client.list_database_names()


async def test_drop_of_a_missing_collection_is_harmless(db: AsyncDatabase[Doc]) -> None:
    await db.drop_collection("never_created")


async def test_sessions_can_be_ended(
    mongo_client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]
) -> None:
    async with mongo_client.start_session() as session:
        await db.things.insert_one({"_id": 1}, session=session)
    await mongo_client.admin.command({"endSessions": []})
