"""`eventhunting replay` rebuilds a catalog read model equal to the one the projector keeps."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.projections.catalog import COLLECTION
from eventhunting.store.consumer_groups import position_key
from eventhunting.store.keys import log_key
from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import create_event, published_event, ticket_type
from tests.support.system import RunningSystem

pytestmark = pytest.mark.system

Database = AsyncDatabase[dict[str, Any]]
CATCH_UP_TIMEOUT_SECONDS = 20


@pytest.fixture
async def system_database(api_system: RunningSystem) -> AsyncIterator[Database]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        api_system.environment["EVENTHUNTING_MONGODB_URL"], tz_aware=True
    )
    try:
        yield client.get_default_database()
    finally:
        await client.close()


@pytest.fixture
async def system_redis(api_system: RunningSystem) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(api_system.environment["EVENTHUNTING_REDIS_URL"])
    try:
        yield client
    finally:
        await client.aclose()


def partitions_of(system: RunningSystem) -> int:
    return int(system.environment.get("EVENTHUNTING_PARTITIONS", "16"))


async def projector_caught_up(redis: aioredis.Redis, database: Database, partitions: int) -> bool:
    """Whether the catalog checkpoint of every partition is at the end of its log."""
    for partition in range(partitions):
        newest = await redis.xrevrange(log_key(partition), count=1)
        if not newest:
            continue
        entry_id = newest[0][0]
        last_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        checkpoint = await database["projection_checkpoints"].find_one(
            {"_id": f"catalog:{partition}"}
        )
        if checkpoint is None or position_key(checkpoint["position"]) < position_key(last_id):
            return False
    return True


async def wait_for_projector(redis: aioredis.Redis, database: Database, partitions: int) -> None:
    async with asyncio.timeout(CATCH_UP_TIMEOUT_SECONDS):
        while True:
            if await projector_caught_up(redis, database, partitions):
                return
            await asyncio.sleep(0.05)


async def catalog_documents(database: Database) -> list[dict[str, Any]]:
    return await database[COLLECTION].find({}).sort("_id").to_list()


async def run_replay(system: RunningSystem) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventhunting.cli",
        "replay",
        "--projection",
        "catalog",
        env=system.environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, errors.decode()


async def build_history(http: httpx.AsyncClient, organizer: SignedIn, token: str) -> None:
    """Events in every state, with every kind of catalog event in their streams."""
    headers = organizer.headers
    live = await published_event(
        http,
        organizer,
        title=f"Live {token}",
        ticket_types=[ticket_type(), ticket_type(name="VIP")],
    )
    await http.patch(
        f"/api/v1/events/{live['id']}",
        json={"description": "Now with strings", "topics": ["Jazz", "Live music"]},
        headers=headers,
    )
    await http.patch(
        f"/api/v1/events/{live['id']}/ticket-types/{live['ticket_types'][1]['id']}",
        json={"quantity": 12, "price": 990_000},
        headers=headers,
    )
    added = await http.post(
        f"/api/v1/events/{live['id']}/ticket-types",
        json=ticket_type(name="Student", price=0, max_per_order=1),
        headers=headers,
    )
    assert added.status_code == 201, added.text
    gone = await published_event(http, organizer, title=f"Gone {token}", province="Huế")
    cancelled = await http.post(
        f"/api/v1/events/{gone['id']}/cancel", json={"reason": "Typhoon"}, headers=headers
    )
    assert cancelled.status_code == 200, cancelled.text
    await create_event(http, organizer, title=f"Draft {token}", ticket_types=[])


async def test_replay_rebuilds_a_catalog_equal_to_the_live_one(
    http: httpx.AsyncClient,
    api_system: RunningSystem,
    system_database: Database,
    system_redis: aioredis.Redis,
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    token = f"tok{uuid.uuid4().hex[:10]}"
    await build_history(http, organizer, token)
    partitions = partitions_of(api_system)
    await wait_for_projector(system_redis, system_database, partitions)
    live = await catalog_documents(system_database)
    assert len([d for d in live if token in d["title"]]) == 3

    await run_replay(api_system)

    assert await catalog_documents(system_database) == live


async def test_the_projector_goes_on_from_where_replay_stopped(
    http: httpx.AsyncClient,
    api_system: RunningSystem,
    system_database: Database,
    system_redis: aioredis.Redis,
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    token = f"tok{uuid.uuid4().hex[:10]}"
    await published_event(http, organizer, title=f"Before {token}")
    await wait_for_projector(system_redis, system_database, partitions_of(api_system))
    await run_replay(api_system)
    await published_event(http, organizer, title=f"After {token}")
    async with asyncio.timeout(CATCH_UP_TIMEOUT_SECONDS):
        while True:
            listed = (await http.get("/api/v1/events", params={"q": token})).json()
            if listed["total"] == 2:
                break
            await asyncio.sleep(0.05)
    assert sorted(item["title"] for item in listed["items"]) == [
        f"After {token}",
        f"Before {token}",
    ]
