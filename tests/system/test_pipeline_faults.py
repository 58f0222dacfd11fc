"""The projector and archiver stay exact under a seeded storm of faults across 1-3 processes.

Appends run across many aggregates and partitions while the test kills and restarts
worker processes (SIGKILL), adds and stops workers, makes MongoDB refuse writes with
write conflicts and drop connections (the stand-in's failpoints, also MongoDB's), restarts
Redis (AOF on) and lets the handlers fail whole batches and single entries. It runs on one
redis-server and on a Redis Cluster, where Redis faults are a master killed and restarted
and a master failed over to its replica. At the end
nothing is pending or dead-lettered, the read model equals a fresh replay, the archive
equals the partition logs, and no entry was handled by two workers at once.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from eventhunting.projections.base import PROJECTOR_GROUP
from eventhunting.projections.replay import replay
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore, stream_range
from eventhunting.store.archive import ARCHIVER_GROUP, EVENTS_COLLECTION
from eventhunting.store.redis_client import RedisClient, connect_redis
from tests.support.basket_projection import BasketProjection
from tests.support.consumer_progress import handled_to_the_end
from tests.support.pipeline_worker import WORKER_APP_NAME, WorkerProcesses
from tests.support.redis_cluster import LocalCluster
from tests.support.redis_process import RedisProcess
from tests.support.store_events import BasketClosed, ItemAdded, store_test_registry

pytestmark = pytest.mark.system

PARTITIONS = 4
AGGREGATES = 60
# The fixed budget: this many appends (1-3 events each) per run.
APPENDS = int(os.environ.get("EVENTHUNTING_FAULT_TEST_APPENDS", "1500"))
SEED = int(os.environ.get("EVENTHUNTING_FAULT_TEST_SEED", "20261130"))
LEASE_MS = 1_000
MINIMUM_FAULTS = 16
GROUPS = (PROJECTOR_GROUP, ARCHIVER_GROUP)


async def append_forever(store: EventStore, request: AppendRequest) -> None:
    """Append, retrying through a Redis restart; the idempotency id makes a retry harmless."""
    while True:
        try:
            await store.append(request)
            return
        except (RedisConnectionError, ConnectionError, OSError, RedisError, RedisClusterException):
            await asyncio.sleep(0.05)


async def write_history(store: EventStore, rng: random.Random) -> None:
    streams = [
        f"basket-{keys.new_id_in_partition(index % PARTITIONS, PARTITIONS)}"
        for index in range(AGGREGATES)
    ]
    gate = asyncio.Semaphore(8)

    async def one(index: int) -> None:
        stream = streams[rng.randrange(AGGREGATES)]
        events: list[Any] = [
            ItemAdded(sku=f"{index}-{n}", quantity=1) for n in range(rng.randint(1, 2))
        ]
        if rng.random() < 0.1:
            events.append(BasketClosed(reason=f"r{index}"))
        request = AppendRequest(
            partition=keys.partition_of_stream(stream, PARTITIONS),
            stream=stream,
            events=events,
            idempotency_id=f"fault-{SEED}-{index}",
        )
        async with gate:
            await append_forever(store, request)
            await asyncio.sleep(rng.random() * 0.03)

    await asyncio.gather(*(one(index) for index in range(APPENDS)))


async def set_failpoint(admin: Any, mode: Any, data: dict[str, Any]) -> None:
    await admin.command(
        "configureFailPoint", "failCommand", mode=mode, data={**data, "appName": WORKER_APP_NAME}
    )


class SingleRedis:
    """One redis-server; its fault is a kill (SIGKILL) and a restart on the same data."""

    faults = ("redis", "redis")

    def __init__(self, data_dir: Path) -> None:
        self.server = RedisProcess(data_dir)
        self.server.start()
        self.url = self.server.url

    async def disrupt(self, rng: random.Random, fault: str) -> None:
        self.server.kill()
        await asyncio.sleep(0.3)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


class ClusterRedis:
    """The shared local cluster; its faults are a master killed (SIGKILL) and restarted
    before the cluster would fail it over, and a failover of a master to its replica."""

    faults = ("redis", "failover")

    def __init__(self, cluster: LocalCluster) -> None:
        cluster.flush()
        self.cluster = cluster
        self.url = cluster.url

    async def disrupt(self, rng: random.Random, fault: str) -> None:
        master = self.cluster.master_of_partition(rng.randrange(PARTITIONS))
        if fault == "failover":
            await asyncio.to_thread(self.cluster.failover, master)
            return
        master.kill()
        await asyncio.sleep(0.3)
        master.start()
        await asyncio.to_thread(self.cluster.wait_until_ready)

    def stop(self) -> None:
        pass


RedisUnderTest = SingleRedis | ClusterRedis


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
def redis_under_test(request: pytest.FixtureRequest, tmp_path: Path) -> RedisUnderTest:
    if request.param == "cluster":
        return ClusterRedis(request.getfixturevalue("redis_cluster"))
    return SingleRedis(tmp_path / "redis")


async def inject_faults(
    rng: random.Random,
    workers: WorkerProcesses,
    redis_server: RedisUnderTest,
    admin: Any,
    writing: asyncio.Task[None],
    journal: list[str],
) -> None:
    """Every ~0.3 s a fault chosen by the seeded generator, until the appends are done, at
    least `MINIMUM_FAULTS` were injected, and among them a worker kill and each Redis fault."""
    redis_restarts = 0
    required = {"kill", *redis_server.faults}
    while not writing.done() or len(journal) < MINIMUM_FAULTS or not required <= set(journal):
        await asyncio.sleep(0.2 + rng.random() * 0.2)
        fault = rng.choice(
            ["kill", "kill", "add", "stop", "conflicts", "disconnects", "outage", "redis"]
        )
        if fault == "kill" and workers.processes:
            workers.kill(rng.randrange(len(workers.processes)))
            workers.start()
        elif fault == "add" and len(workers.processes) < 3:
            workers.start()
        elif fault == "stop" and len(workers.processes) > 1:
            assert workers.stop(rng.randrange(len(workers.processes))) == 0
        elif fault == "conflicts":
            await set_failpoint(
                admin, {"times": rng.randint(1, 6)}, {"failCommands": ["update"], "errorCode": 112}
            )
        elif fault == "disconnects":
            await set_failpoint(
                admin,
                {"times": rng.randint(1, 4)},
                {"failCommands": ["find", "update", "insert"], "closeConnection": True},
            )
        elif fault == "outage":
            await set_failpoint(
                admin, "alwaysOn", {"failCommands": ["find", "update"], "errorCode": 91}
            )
            await asyncio.sleep(rng.random())
            await admin.command("configureFailPoint", "failCommand", mode="off")
        elif fault == "redis" and redis_restarts < len(redis_server.faults):
            fault = redis_server.faults[redis_restarts]
            redis_restarts += 1
            await redis_server.disrupt(rng, fault)
        else:
            continue
        journal.append(fault)
    await admin.command("configureFailPoint", "failCommand", mode="off")


async def settled(redis: RedisClient) -> bool:
    """Every entry of every partition delivered to both groups and acknowledged."""
    for partition in range(PARTITIONS):
        for group in GROUPS:
            try:
                if not await handled_to_the_end(redis, group, partition):
                    return False
            except (RedisError, RedisClusterException):
                return False  # a pooled connection from before a Redis restart
    return True


async def test_the_pipeline_stays_exact_through_a_storm_of_faults(
    tmp_path: Path,
    mongodb_url: str,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
    repository_root: Path,
    redis_under_test: RedisUnderTest,
) -> None:
    rng = random.Random(SEED)
    redis_server = redis_under_test
    redis = connect_redis(redis_server.url, max_connections=64, timeout=10)
    database = mongo_client[mongo_database_name]
    admin: Any = mongo_client.admin
    journal_path = tmp_path / "batches.jsonl"
    workers = WorkerProcesses(
        repository_root,
        redis_url=redis_server.url,
        mongodb_url=mongodb_url,
        database=mongo_database_name,
        partitions=PARTITIONS,
        journal=journal_path,
        options=[
            "--lease-ms",
            str(LEASE_MS),
            "--batch-fault-rate",
            "0.05",
            "--after-commit-fault-rate",
            "0.1",
            "--single-fault-modulus",
            "37",
            "--seed",
            str(SEED),
        ],
    )
    # A killed worker leaves its transaction open until MongoDB's lifetime limit aborts it.
    previous = await admin.command("getParameter", 1, transactionLifetimeLimitSeconds=1)
    await admin.command("setParameter", 1, transactionLifetimeLimitSeconds=2)
    faults: list[str] = []
    try:
        store = EventStore(redis, PARTITIONS, event_registry=store_test_registry)
        workers.start()
        workers.start()
        writing = asyncio.create_task(write_history(store, rng))
        await inject_faults(rng, workers, redis_server, admin, writing, faults)
        await writing
        if not workers.processes:
            workers.start()
        async with asyncio.timeout(90):
            while not await settled(redis):  # noqa: ASYNC110 - polls Redis, not local state
                await asyncio.sleep(0.2)
        running = len(workers.processes)
        assert workers.stop_all() == [0] * running
    finally:
        workers.kill_all()
        await admin.command("configureFailPoint", "failCommand", mode="off")
        await admin.command(
            "setParameter",
            1,
            transactionLifetimeLimitSeconds=previous["transactionLifetimeLimitSeconds"],
        )

    try:
        print("faults injected:", faults)
        assert {"kill", *redis_server.faults} <= set(faults), faults
        for partition in range(PARTITIONS):
            for group in GROUPS:
                assert await redis.xlen(keys.dead_letter_key(partition, group)) == 0

        # The archive holds exactly the partition logs.
        logged: dict[int, list[str]] = {}
        total = 0
        for partition in range(PARTITIONS):
            entries = await stream_range(redis, keys.log_key(partition), "-", "+")
            logged[partition] = [entry_id.decode() for entry_id, _ in entries]
            total += len(entries)
        archived: dict[int, list[str]] = defaultdict(list)
        async for document in (
            database[EVENTS_COLLECTION]
            .find({})
            .sort([("partition", 1), ("position_ms", 1), ("position_seq", 1)])
        ):
            archived[int(document["partition"])].append(document["position"])
        assert dict(archived) == {p: ids for p, ids in logged.items() if ids}
        assert total >= APPENDS

        # The live read model equals a fresh replay (items are pushed: a double apply shows).
        live = await database["baskets"].find({}).sort("_id").to_list()
        report = await replay(
            database,
            [BasketProjection()],
            redis=redis,
            partitions=PARTITIONS,
            event_registry=store_test_registry,
            progress=io.StringIO(),
        )
        assert report.events == total
        assert await database["baskets"].find({}).sort("_id").to_list() == live

        # No entry was handled by two workers at once: per partition and group, the batches
        # of different consumers never overlap in time unless the later one holds a newer lease.
        batches: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for line in journal_path.read_text().splitlines():
            record = json.loads(line)
            batches[(record["group"], record["partition"])].append(record)
        assert (
            len({consumer for b in batches.values() for consumer in (r["consumer"] for r in b)}) > 1
        )
        for records in batches.values():
            records.sort(key=lambda record: record["started"])
            for earlier, later in itertools.pairwise(records):
                if earlier["consumer"] != later["consumer"]:
                    assert earlier["ended"] <= later["started"] or (
                        later["token"] > earlier["token"]
                    )
    finally:
        await redis.aclose()
        redis_server.stop()
