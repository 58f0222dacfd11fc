"""A sale on Redis Cluster while its partition's slot migrates or its master fails over.

Buyers keep placing orders before, during and after the disruption. Afterwards: every
request was answered 201 or 409 `sold_out`, exactly the capacity was sold, every order
acknowledged is in its stream and once in its partition log, and the read models the
projector built equal a fresh replay of the logs (an event applied twice would show).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from eventhunting.bootstrap import Services, build_services
from eventhunting.domain.orders import OrderPlaced
from eventhunting.projections.base import PROJECTOR_GROUP
from eventhunting.projections.registry import load_projections
from eventhunting.projections.replay import replay
from eventhunting.settings import load_settings
from eventhunting.store import keys
from eventhunting.store.append import field_of, stream_range, text
from eventhunting.store.counters import inventory_counter
from tests.support.accounts import auth_headers, mint_buyers, sign_up
from tests.support.catalog import published_event, ticket_type
from tests.support.consumer_progress import handled_to_the_end
from tests.support.redis_cluster import LocalCluster
from tests.support.system import RunningSystem, running_system

pytestmark = [pytest.mark.system, pytest.mark.cluster]

BUYERS = 240
TICKETS = 120
# Buyers who try before the disruption starts, and how many try at once throughout.
BEFORE = 40
CONCURRENCY = 8
# Each buyer's pause between two orders while the cluster changes (200 buyers: about 1 s).
PACE_SECONDS = 0.04


@dataclass
class ClusterSystem:
    system: RunningSystem
    cluster: LocalCluster
    database: str


@pytest.fixture(scope="module")
def cluster_system(redis_cluster: LocalCluster, mongodb_url: str) -> Iterator[ClusterSystem]:
    """The API, projector and expirer on the session's Redis Cluster (emptied first)."""
    redis_cluster.flush()
    database = f"cluster_sales_{uuid.uuid4().hex[:8]}"
    with running_system(
        redis_cluster.url, mongodb_url, database, workers=("expirer", "projector")
    ) as system:
        yield ClusterSystem(system, redis_cluster, database)


@pytest.fixture
async def services(cluster_system: ClusterSystem) -> AsyncIterator[Services]:
    built = await build_services(load_settings(cluster_system.system.environment, dotenv=None))
    try:
        yield built
    finally:
        await built.close()


@dataclass
class Sale:
    """What the buyers got, with the moment each answer came."""

    log_start: str
    """The partition log's last position before the sale (another test's sale may share it)."""
    answers: list[tuple[float, float, httpx.Response]] = field(default_factory=list)

    def outcomes(self) -> Counter[Any]:
        return Counter(
            r.status_code if r.status_code == 201 else (r.status_code, r.json().get("code"))
            for _, _, r in self.answers
        )

    def orders(self) -> list[dict[str, Any]]:
        return [r.json() for _, _, r in self.answers if r.status_code == 201]


async def sell_through(
    http: httpx.AsyncClient,
    services: Services,
    cluster_system: ClusterSystem,
    disrupt: Callable[[LocalCluster, int], None],
) -> tuple[Sale, dict[str, Any], tuple[float, float]]:
    """Run a sale and `disrupt(cluster, the event's partition)` in its middle (in a thread)."""
    system, cluster = cluster_system.system, cluster_system.cluster
    organizer = await sign_up(http, system, roles=["organizer"])
    tokens = await mint_buyers(services, BUYERS)
    event = await published_event(http, organizer, ticket_types=[ticket_type(quantity=TICKETS)])
    body = {
        "event_id": event["id"],
        "items": [{"ticket_type_id": event["ticket_types"][0]["id"], "quantity": 1}],
    }
    partition = keys.partition_of(event["id"], services.settings.sales.partitions)
    last: Any = await services.redis.xrevrange(keys.log_key(partition), "+", "-", count=1)
    sale = Sale(log_start=text(last[0][0]) if last else "0-0")
    waiting = list(reversed(tokens))
    before = asyncio.Event()

    disrupting = asyncio.Event()

    async def buyer() -> None:
        while waiting:
            if disrupting.is_set():
                # Slower while the cluster changes, so buyers are still buying when it ends.
                await asyncio.sleep(PACE_SECONDS)
            token = waiting.pop()
            sent = time.monotonic()
            response = await http.post("/api/v1/orders", json=body, headers=auth_headers(token))
            sale.answers.append((sent, time.monotonic(), response))
            if len(sale.answers) >= BEFORE:
                before.set()

    async def disruption() -> tuple[float, float]:
        await before.wait()
        disrupting.set()
        started = time.monotonic()
        await asyncio.to_thread(disrupt, cluster, partition)
        ended = time.monotonic()
        disrupting.clear()
        return started, ended

    window, *_ = await asyncio.gather(disruption(), *(buyer() for _ in range(CONCURRENCY)))
    return sale, event, window


async def projector_caught_up(services: Services) -> None:
    """Every partition log fully delivered to and acknowledged by the projector."""
    async with asyncio.timeout(60):
        while True:
            partitions = range(services.settings.sales.partitions)
            if all(
                [await handled_to_the_end(services.redis, PROJECTOR_GROUP, p) for p in partitions]
            ):
                return
            await asyncio.sleep(0.2)


async def check_the_sale(
    services: Services, cluster_system: ClusterSystem, sale: Sale, event: dict[str, Any]
) -> None:
    assert sale.outcomes() == {201: TICKETS, (409, "sold_out"): BUYERS - TICKETS}
    orders = sale.orders()
    partition = keys.partition_of(event["id"], services.settings.sales.partitions)
    name = inventory_counter(event["ticket_types"][0]["id"])
    counters = (await services.store.read_counters(partition, [name]))[name]
    assert counters == {"capacity": TICKETS, "held": TICKETS, "sold": 0}

    # Every acknowledged order is in its stream, once, and once in the partition log.
    for order in orders:
        history = await services.store.read_stream(f"order-{order['id']}")
        assert [(e.version, type(e.data)) for e in history] == [(1, OrderPlaced)]
    during = await stream_range(services.redis, keys.log_key(partition), f"({sale.log_start}", "+")
    logged = Counter(text(field_of(fields, "s")) for _, fields in during)
    assert all(logged[f"order-{order['id']}"] == 1 for order in orders)
    assert sum(n for stream, n in logged.items() if stream.startswith("order-")) == TICKETS

    # The read models equal a replay of the logs into another database.
    await projector_caught_up(services)
    mongo: AsyncMongoClient[dict[str, Any]] = services.mongo
    live = mongo[cluster_system.database]
    replayed = mongo[f"{cluster_system.database}_replayed"]
    projections = load_projections()
    await replay(
        replayed,
        projections,
        redis=services.redis,
        partitions=services.settings.sales.partitions,
    )
    try:
        for projection in projections:
            for collection in projection.collections:
                assert await live[collection].find({}).sort("_id").to_list() == (
                    await replayed[collection].find({}).sort("_id").to_list()
                ), collection
        placed = await live["orders"].count_documents({"event_id": event["id"]})
        assert placed == TICKETS
    finally:
        await mongo.drop_database(replayed.name)


def in_flight_during(sale: Sale, window: tuple[float, float]) -> int:
    """Requests sent before the disruption ended and answered after it began."""
    started, ended = window
    return sum(1 for sent, answered, _ in sale.answers if sent <= ended and answered >= started)


@pytest.fixture
async def http(cluster_system: ClusterSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster_system.system.base_url, timeout=60) as client:
        yield client


def move_partition(cluster: LocalCluster, partition: int) -> None:
    """Migrate the partition's slot to another master, a few keys at a time."""
    owner = cluster.master_of_partition(partition)
    target = next(node for node in cluster.masters() if node.node_id != owner.node_id)
    cluster.reshard(partition, target, keys_per_step=5, pause_seconds=0.02)
    assert cluster.master_of_partition(partition).node_id == target.node_id


def fail_over_partition(cluster: LocalCluster, partition: int) -> None:
    """Promote the replica of the partition's master (CLUSTER FAILOVER)."""
    owner = cluster.master_of_partition(partition)
    promoted = cluster.failover(owner)
    assert cluster.master_of_partition(partition).node_id == promoted.node_id


async def test_a_sale_goes_on_exactly_while_its_partition_moves_to_another_master(
    http: httpx.AsyncClient, services: Services, cluster_system: ClusterSystem
) -> None:
    sale, event, window = await sell_through(http, services, cluster_system, move_partition)
    assert in_flight_during(sale, window) > 0, "the slot moved while no one was buying"
    await check_the_sale(services, cluster_system, sale, event)


async def test_a_sale_goes_on_exactly_while_its_master_fails_over(
    http: httpx.AsyncClient, services: Services, cluster_system: ClusterSystem
) -> None:
    sale, event, window = await sell_through(http, services, cluster_system, fail_over_partition)
    assert in_flight_during(sale, window) > 0, "the master failed over while no one was buying"
    await check_the_sale(services, cluster_system, sale, event)
