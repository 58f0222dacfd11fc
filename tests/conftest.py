"""Shared fixtures: a private Redis server and a MongoDB (stand-in or real) per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from tests.support.redis_cluster import LocalCluster, start_local_cluster
from tests.support.servers import running_mongo_standin, running_redis
from tests.support.system import CLIENT_KEEPALIVE_SECONDS, RunningSystem, running_system

REAL_MONGODB_URL_VARIABLE = "EVENTHUNTING_TEST_MONGODB_URL"
# Runs the API and workers of the session-wide system tests on a Redis Cluster.
SYSTEM_ON_CLUSTER_VARIABLE = "EVENTHUNTING_TEST_SYSTEM_ON_CLUSTER"

# Workers every system test runs beside the API; each feature adds the ones it needs.
SYSTEM_WORKERS: tuple[str, ...] = ("expirer", "projector")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free port (never the machine's own Redis on 6379)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A private Redis Cluster (three masters, one replica each) for the `cluster` tests.

    Tests share it one after another: each starts by emptying it (`redis_cluster.flush()`),
    and a test that reshards or fails over leaves a cluster as good as new, just laid out
    differently."""
    cluster = start_local_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """A real MongoDB replica set when EVENTHUNTING_TEST_MONGODB_URL is set, else the stand-in."""
    real = os.environ.get(REAL_MONGODB_URL_VARIABLE)
    if real:
        yield real
        return
    with running_mongo_standin() as url:
        yield url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the private Redis; the database is emptied after each test."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
async def mongo_client(mongodb_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def mongo_database_name(
    mongo_client: AsyncMongoClient[dict[str, object]],
) -> AsyncIterator[str]:
    """A fresh database name per test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await mongo_client.drop_database(name)


@pytest.fixture(scope="session")
def repository_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def system_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The running system's own Redis: tests that flush `redis_url` (every `redis_client`
    test) must not wipe its accounts and consumer groups, and its projector must not read
    the events other tests write there. With EVENTHUNTING_TEST_SYSTEM_ON_CLUSTER=1 it is a
    Redis Cluster of its own (three masters, one replica each) instead."""
    if os.environ.get(SYSTEM_ON_CLUSTER_VARIABLE) == "1":
        cluster = start_local_cluster(tmp_path_factory.mktemp("system-redis-cluster"))
        try:
            yield cluster.url
        finally:
            cluster.stop()
        return
    with running_redis(tmp_path_factory.mktemp("system-redis")) as url:
        yield url


@pytest.fixture(scope="session")
def api_system(system_redis_url: str, mongodb_url: str) -> Iterator[RunningSystem]:
    """The API and every worker as separate processes on a private Redis and MongoDB."""
    with running_system(
        system_redis_url, mongodb_url, f"system_{uuid.uuid4().hex[:8]}", workers=SYSTEM_WORKERS
    ) as system:
        yield system


@pytest.fixture
async def http(api_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the running API (real TCP, no mocks)."""
    limits = httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE_SECONDS)
    async with httpx.AsyncClient(base_url=api_system.base_url, timeout=30, limits=limits) as client:
        yield client


# Event-store tests use the consumer-group names of the real workers, which the system
# tests run on database 0 for the whole session; so store tests get a database of their own.
STORE_TEST_DATABASE = 9


@pytest.fixture
def store_redis_url(redis_url: str) -> str:
    return f"{redis_url.rsplit('/', 1)[0]}/{STORE_TEST_DATABASE}"


@pytest.fixture
async def store_redis(store_redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the store-test database of the private Redis, emptied after each test."""
    client = aioredis.Redis.from_url(store_redis_url)
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()
