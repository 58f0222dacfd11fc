"""Flash sale, hold expiry and random races of place/cancel/expire/pay on a running system."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventhunting.bootstrap import Services, build_services
from eventhunting.domain.orders import (
    OrderCancelled,
    OrderExpired,
    OrderNotPending,
    OrderPaid,
    OrderPlaced,
    buyer_ticket_change,
    stock_changes,
)
from eventhunting.services.orders import buyer_counter
from eventhunting.settings import load_settings
from eventhunting.store import keys
from eventhunting.store.counters import inventory_counter
from tests.support.accounts import SignedIn, mint_buyers, sign_up
from tests.support.catalog import published_event, ticket_type
from tests.support.redis_cluster import LocalCluster
from tests.support.servers import running_redis
from tests.support.system import CLIENT_KEEPALIVE_SECONDS, RunningSystem, running_system

pytestmark = pytest.mark.system

# Long enough that the 1,000 concurrent orders all land before the first hold runs out,
# short enough to wait for in CI.
HOLD_SECONDS = 15
# Deadline of a hold to the moment its tickets are available again, at most.
RELEASE_WITHIN = timedelta(seconds=2)
FLASH_BUYERS = 1_000
FLASH_TICKETS = 100

Body = dict[str, Any]


@pytest.fixture(scope="module")
def short_hold_system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mongodb_url: str
) -> Iterator[RunningSystem]:
    """API and expirer with short holds, on a Redis of their own, or on the test session's
    Redis Cluster (emptied first) when a test asks for `"cluster"` (indirect parameter)."""
    with contextlib.ExitStack() as stack:
        if getattr(request, "param", "redis") == "cluster":
            cluster: LocalCluster = request.getfixturevalue("redis_cluster")
            cluster.flush()
            redis_url = cluster.url
        else:
            redis_url = stack.enter_context(
                running_redis(Path(tmp_path_factory.mktemp("short-hold-redis")))
            )
        yield stack.enter_context(
            running_system(
                redis_url,
                mongodb_url,
                f"holds_{uuid.uuid4().hex[:8]}",
                workers=("expirer", "projector"),
                overrides={"EVENTHUNTING_HOLD_SECONDS": str(HOLD_SECONDS)},
            )
        )


@pytest.fixture
async def client(short_hold_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(
        max_connections=200,
        max_keepalive_connections=200,
        keepalive_expiry=CLIENT_KEEPALIVE_SECONDS,
    )
    async with httpx.AsyncClient(
        base_url=short_hold_system.base_url, timeout=60, limits=limits
    ) as http:
        yield http


@pytest.fixture
async def services(short_hold_system: RunningSystem) -> AsyncIterator[Services]:
    """The same services the API uses, for what has no route yet (payment) and for checks."""
    built = await build_services(load_settings(short_hold_system.environment, dotenv=None))
    try:
        yield built
    finally:
        await built.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def available(http: httpx.AsyncClient, event_id: str) -> list[int]:
    response = await http.get(f"/api/v1/events/{event_id}")
    assert response.status_code == 200, response.text
    return [t["available"] for t in response.json()["ticket_types"]]


async def read_model_statuses(
    http: httpx.AsyncClient, winners: list[tuple[Body, str]], want: str = "pending"
) -> Counter[str]:
    """Each winner's order as their list shows it, once the projector has caught up."""
    async with asyncio.timeout(20):
        while True:
            listed = await asyncio.gather(
                *(http.get("/api/v1/orders", headers=bearer(token)) for _, token in winners)
            )
            statuses: Counter[str] = Counter()
            for (order, _), response in zip(winners, listed, strict=True):
                items = response.json()["items"]
                assert len(items) <= 1
                if items:
                    assert items[0]["id"] == order["id"]
                    statuses[items[0]["status"]] += 1
            if statuses[want] == len(winners):
                return statuses
            await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    "short_hold_system",
    ["redis", pytest.param("cluster", marks=pytest.mark.cluster)],
    indirect=True,
)
async def test_flash_sale_sells_each_ticket_once_and_expired_holds_come_back(
    client: httpx.AsyncClient, short_hold_system: RunningSystem, services: Services
) -> None:
    organizer = await sign_up(client, short_hold_system, roles=["organizer"])
    tokens = await mint_buyers(services, FLASH_BUYERS)
    event = await published_event(
        client, organizer, ticket_types=[ticket_type(quantity=FLASH_TICKETS)]
    )
    body = {
        "event_id": event["id"],
        "items": [{"ticket_type_id": event["ticket_types"][0]["id"], "quantity": 1}],
    }

    started = time.monotonic()
    responses = await asyncio.gather(
        *(client.post("/api/v1/orders", json=body, headers=bearer(t)) for t in tokens)
    )
    assert time.monotonic() - started < HOLD_SECONDS, "the burst outlasted the holds"

    outcomes = Counter(
        r.status_code if r.status_code == 201 else (r.status_code, r.json().get("code"))
        for r in responses
    )
    assert outcomes == {201: FLASH_TICKETS, (409, "sold_out"): FLASH_BUYERS - FLASH_TICKETS}
    winners = [
        (r.json(), token)
        for r, token in zip(responses, tokens, strict=True)
        if r.status_code == 201
    ]
    assert len({order["buyer_id"] for order, _ in winners}) == FLASH_TICKETS
    assert await available(client, event["id"]) == [0]
    partition = keys.partition_of(event["id"], services.settings.sales.partitions)
    name = inventory_counter(event["ticket_types"][0]["id"])
    counters = (await services.store.read_counters(partition, [name]))[name]
    assert counters == {"capacity": FLASH_TICKETS, "held": FLASH_TICKETS, "sold": 0}
    pending = await asyncio.gather(
        *(client.get(f"/api/v1/orders/{o['id']}", headers=bearer(t)) for o, t in winners)
    )
    assert {r.json()["status"] for r in pending} == {"pending"}
    assert await read_model_statuses(client, winners) == {"pending": FLASH_TICKETS}

    deadline = max(datetime.fromisoformat(order["expires_at"]) for order, _ in winners)
    async with asyncio.timeout(HOLD_SECONDS + 15):
        while await available(client, event["id"]) != [FLASH_TICKETS]:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    expired = await asyncio.gather(
        *(client.get(f"/api/v1/orders/{o['id']}", headers=bearer(t)) for o, t in winners)
    )
    assert {r.json()["status"] for r in expired} == {"expired"}
    assert await read_model_statuses(client, winners, want="expired") == {"expired": FLASH_TICKETS}
    latest = max(datetime.fromisoformat(r.json()["expired_at"]) for r in expired)
    assert latest - deadline <= RELEASE_WITHIN
    counters = (await services.store.read_counters(partition, [name]))[name]
    assert counters == {"capacity": FLASH_TICKETS, "held": 0, "sold": 0}
    order, token = winners[0]
    cancel = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=bearer(token))
    assert (cancel.status_code, cancel.json()["code"]) == (409, "order_not_pending")


# --- random interleavings -------------------------------------------------------------------

CAPACITIES = (3, 5, 2)
PRICES = (100_000, 50_000, 75_000)
BUYERS = 3
PER_CUSTOMER = 6

items_strategy = st.lists(
    st.tuples(st.integers(0, len(CAPACITIES) - 1), st.integers(1, 3)), min_size=1, max_size=3
)
operation = st.one_of(
    st.tuples(st.just("place"), st.integers(0, BUYERS - 1), items_strategy),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("pay"), st.integers(0, 50)),
    st.tuples(st.just("expire"), st.integers(0, 50)),
)
# Operations run in waves; everything within a wave races.
waves = st.lists(st.lists(operation, min_size=1, max_size=6), min_size=2, max_size=6)


@dataclass
class Scenario:
    http: httpx.AsyncClient
    services: Services
    later: Services
    """Services whose clock runs a hold ahead, so `expire` can fire on demand."""
    event: Body
    buyers: list[SignedIn]
    orders: list[tuple[str, int]]

    async def run(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "place":
            _, buyer, items = op
            body = {
                "event_id": self.event["id"],
                "items": [
                    {"ticket_type_id": self.event["ticket_types"][t]["id"], "quantity": q}
                    for t, q in items
                ],
            }
            response = await self.http.post(
                "/api/v1/orders", json=body, headers=self.buyers[buyer].headers
            )
            assert response.status_code in (201, 409), response.text
            if response.status_code == 201:
                self.orders.append((response.json()["id"], buyer))
            else:
                assert response.json()["code"] in ("sold_out", "limit_exceeded")
            return
        if not self.orders:
            return
        order_id, buyer = self.orders[op[1] % len(self.orders)]
        if kind == "cancel":
            response = await self.http.post(
                f"/api/v1/orders/{order_id}/cancel", headers=self.buyers[buyer].headers
            )
            assert response.status_code in (200, 409), response.text
        elif kind == "pay":
            order = await self.services.orders.get(order_id)
            with contextlib.suppress(OrderNotPending):
                await self.services.orders.mark_paid(
                    order_id, amount=order.total_amount, method="test"
                )
        else:
            await self.later.orders.expire(order_id)

    async def check_counters(self) -> dict[str, dict[str, int]]:
        partition = keys.partition_of(self.event["id"], self.services.settings.sales.partitions)
        names = [inventory_counter(t["id"]) for t in self.event["ticket_types"]]
        names += [buyer_counter(self.event["id"], b.account_id) for b in self.buyers]
        counters = await self.services.store.read_counters(partition, names)
        for ticket_type_body, capacity in zip(self.event["ticket_types"], CAPACITIES, strict=True):
            values = counters[inventory_counter(ticket_type_body["id"])]
            assert values["held"] >= 0
            assert values["sold"] >= 0
            assert values["held"] + values["sold"] <= capacity == values["capacity"]
        for buyer in self.buyers:
            tickets = counters[buyer_counter(self.event["id"], buyer.account_id)].get("tickets", 0)
            assert 0 <= tickets <= PER_CUSTOMER
        return counters


async def replay_counters(services: Services, order_ids: list[str]) -> dict[str, dict[str, int]]:
    """The counters as the order streams say they must be."""
    replayed: dict[str, dict[str, int]] = {}
    for order_id in order_ids:
        history = await services.store.read_stream(f"order-{order_id}")
        kinds = [type(envelope.data) for envelope in history]
        assert not (OrderPaid in kinds and {OrderCancelled, OrderExpired} & set(kinds)), kinds
        for envelope in history:
            event = envelope.data
            for change in stock_changes(event):
                counter = replayed.setdefault(inventory_counter(change.ticket_type_id), {})
                counter["held"] = counter.get("held", 0) + change.held
                counter["sold"] = counter.get("sold", 0) + change.sold
            if isinstance(event, OrderPlaced | OrderPaid | OrderCancelled | OrderExpired):
                counter = replayed.setdefault(buyer_counter(event.event_id, event.buyer_id), {})
                counter["tickets"] = counter.get("tickets", 0) + buyer_ticket_change(event)
    return replayed


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=waves)
def test_random_interleavings_never_oversell_and_counters_equal_the_replay(
    short_hold_system: RunningSystem, plan: list[list[tuple[Any, ...]]]
) -> None:
    asyncio.run(run_plan(short_hold_system, plan))


async def run_plan(system: RunningSystem, plan: list[list[tuple[Any, ...]]]) -> None:
    settings_now = load_settings(system.environment, dotenv=None)
    services = await build_services(settings_now)
    later = await build_services(
        settings_now, clock=lambda: services.clock() + timedelta(seconds=HOLD_SECONDS)
    )
    try:
        async with httpx.AsyncClient(base_url=system.base_url, timeout=30) as http:
            organizer, *buyers = await asyncio.gather(
                sign_up(http, system, roles=["organizer"]),
                *(sign_up(http, system) for _ in range(BUYERS)),
            )
            event = await published_event(
                http,
                organizer,
                max_tickets_per_customer=PER_CUSTOMER,
                ticket_types=[
                    ticket_type(name=f"T{i}", price=price, quantity=capacity)
                    for i, (price, capacity) in enumerate(zip(PRICES, CAPACITIES, strict=True))
                ],
            )
            scenario = Scenario(http, services, later, event, buyers, [])
            for wave in plan:
                await asyncio.gather(*(scenario.run(op) for op in wave))
                await scenario.check_counters()
            counters = await scenario.check_counters()
            replayed = await replay_counters(
                services, [order_id for order_id, _ in scenario.orders]
            )
            for name, values in replayed.items():
                stored = counters[name]
                assert {field: stored.get(field, 0) for field in values} == values, name
            untouched = set(counters) - set(replayed)
            for name in untouched:
                assert all(v == 0 for f, v in counters[name].items() if f != "capacity"), name
            live = await available(http, event["id"])
            for ticket_type_body, capacity, count in zip(
                event["ticket_types"], CAPACITIES, live, strict=True
            ):
                values = counters[inventory_counter(ticket_type_body["id"])]
                assert count == capacity - values["held"] - values["sold"]
    finally:
        await services.close()
        await later.close()
