"""Sales figures over HTTP: live, as of a time, per organizer and day, and who may see them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventhunting.bootstrap import Services, build_services
from eventhunting.settings import load_settings
from tests.support.accounts import SignedIn, sign_in_admin, sign_up
from tests.support.catalog import create_event, published_event, ticket_type
from tests.support.servers import running_redis
from tests.support.system import RunningSystem, running_system

pytestmark = pytest.mark.system

# Long enough to pay an order right after placing it, short enough to wait for an expiry.
HOLD_SECONDS = 4
CATCH_UP_SECONDS = 30
PAID_PRICE = 550_000

Body = dict[str, Any]


@pytest.fixture(scope="module")
def sales_system(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str
) -> Iterator[RunningSystem]:
    """API, projector and expirer with short holds, on a Redis of their own."""
    with (
        running_redis(Path(tmp_path_factory.mktemp("sales-redis"))) as redis_url,
        running_system(
            redis_url,
            mongodb_url,
            f"sales_{uuid.uuid4().hex[:8]}",
            workers=("expirer", "projector"),
            overrides={"EVENTHUNTING_HOLD_SECONDS": str(HOLD_SECONDS)},
        ) as system,
    ):
        yield system


@pytest.fixture
async def client(sales_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sales_system.base_url, timeout=30) as http:
        yield http


@pytest.fixture
async def services(sales_system: RunningSystem) -> AsyncIterator[Services]:
    """The services the API uses, for paying orders (the payment routes do that later)."""
    built = await build_services(load_settings(sales_system.environment, dotenv=None))
    try:
        yield built
    finally:
        await built.close()


def at(moment: datetime) -> str:
    return moment.isoformat()


async def place(http: httpx.AsyncClient, buyer: SignedIn, event: Body, **quantities: int) -> Body:
    items = [
        {"ticket_type_id": t["id"], "quantity": quantities[t["name"]]}
        for t in event["ticket_types"]
        if t["name"] in quantities
    ]
    response = await http.post(
        "/api/v1/orders", json={"event_id": event["id"], "items": items}, headers=buyer.headers
    )
    assert response.status_code == 201, response.text
    order: Body = response.json()
    return order


async def sales(
    http: httpx.AsyncClient, viewer: SignedIn, event_id: str, **query: str
) -> httpx.Response:
    return await http.get(f"/api/v1/events/{event_id}/sales", params=query, headers=viewer.headers)


async def figures_once(
    http: httpx.AsyncClient,
    viewer: SignedIn,
    event_id: str,
    settled: Callable[[Body], bool],
    **query: str,
) -> Body:
    """The live figures, once the projector has applied what `settled` waits for."""
    async with asyncio.timeout(CATCH_UP_SECONDS):
        while True:
            response = await sales(http, viewer, event_id, **query)
            assert response.status_code == 200, response.text
            body: Body = response.json()
            if settled(body):
                return body
            await asyncio.sleep(0.1)


async def wait_for_status(
    http: httpx.AsyncClient, buyer: SignedIn, order_id: str, status: str
) -> None:
    async with asyncio.timeout(HOLD_SECONDS + CATCH_UP_SECONDS):
        while True:
            response = await http.get(f"/api/v1/orders/{order_id}", headers=buyer.headers)
            assert response.status_code == 200, response.text
            if response.json()["status"] == status:
                return
            await asyncio.sleep(0.2)


def without_as_of(body: Body) -> Body:
    return {key: value for key, value in body.items() if key != "as_of"}


async def a_running_sale(
    http: httpx.AsyncClient, system: RunningSystem, services: Services
) -> tuple[SignedIn, Body, SignedIn, Callable[[Body], Awaitable[None]]]:
    """An organizer's event with a paid and a free ticket type, and a buyer."""
    organizer = await sign_up(http, system, roles=["organizer"])
    buyer = await sign_up(http, system)
    event = await published_event(
        http,
        organizer,
        ticket_types=[
            ticket_type(name="Seat", price=PAID_PRICE, quantity=50),
            ticket_type(name="Standing", price=0, quantity=50),
        ],
    )

    async def pay(order: Body) -> None:
        await services.orders.mark_paid(order["id"], amount=order["total_amount"], method="test")

    return organizer, event, buyer, pay


async def test_an_events_sales_count_every_outcome_and_as_of_answers_the_past(
    client: httpx.AsyncClient, sales_system: RunningSystem, services: Services
) -> None:
    organizer, event, buyer, pay = await a_running_sale(client, sales_system, services)
    paid = await place(client, buyer, event, Seat=2)
    await pay(paid)
    cancelled = await place(client, buyer, event, Seat=1)
    response = await client.post(f"/api/v1/orders/{cancelled['id']}/cancel", headers=buyer.headers)
    assert response.status_code == 200, response.text
    free = await place(client, buyer, event, Standing=3)
    assert free["status"] == "paid"
    expiring = await place(client, buyer, event, Seat=1, Standing=1)
    await wait_for_status(client, buyer, expiring["id"], "expired")

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    span = {
        "bucket": "minute",
        "from": at(today - timedelta(days=1)),
        "to": at(today + timedelta(days=2)),
    }
    before = await figures_once(
        client, organizer, event["id"], lambda b: b["orders"]["expired"] == 1, **span
    )
    await asyncio.sleep(0.01)
    moment_before = datetime.now(UTC)
    await asyncio.sleep(0.01)

    seats, standing = before["ticket_types"]
    assert (seats["name"], standing["name"]) == ("Seat", "Standing")
    assert seats["tickets"] == {
        "ordered": 4, "held": 0, "sold": 2, "released": 2, "refunded": 0, "checked_in": 0
    }  # fmt: skip
    assert (standing["tickets"]["ordered"], standing["tickets"]["sold"]) == (4, 3)
    vat = round(2 * PAID_PRICE * 10 / 110)
    assert seats["revenue"] == {
        "gross": 2 * PAID_PRICE, "vat": vat, "net": 2 * PAID_PRICE - vat, "refunded": 0,
        "refunded_vat": 0,
    }  # fmt: skip
    assert before["revenue"]["gross"] == 2 * PAID_PRICE
    assert before["vat_rate_percent"] == 10
    assert before["orders"] == {
        "placed": 4, "pending": 0, "paid": 2, "cancelled": 1, "expired": 1, "refunded": 0
    }  # fmt: skip
    assert before["conversion"]["order_rate"] == 0.5
    assert before["time_to_pay"]["orders"] == 1  # the free order is not waited for
    assert before["time_to_pay"]["median_seconds"] is not None
    assert before["time_to_pay"]["median_seconds"] < HOLD_SECONDS
    timeline = before["timeline"]
    assert timeline["bucket"] == "minute"
    assert sum(bucket["orders_placed"] for bucket in timeline["items"]) == 4
    assert sum(bucket["gross"] for bucket in timeline["items"]) == 2 * PAID_PRICE

    # Another sale: the live figures move on, the figures as of before stay as they were.
    late = await place(client, buyer, event, Seat=1)
    await pay(late)
    after = await figures_once(
        client, organizer, event["id"], lambda b: b["orders"]["paid"] == 3, **span
    )
    await asyncio.sleep(0.01)
    moment_after = datetime.now(UTC)
    assert after["revenue"]["gross"] == 3 * PAID_PRICE

    then = await sales(client, organizer, event["id"], as_of=at(moment_before), **span)
    assert then.status_code == 200, then.text
    assert then.json()["as_of"] is not None
    assert without_as_of(then.json()) == without_as_of(before)
    now = await sales(client, organizer, event["id"], as_of=at(moment_after), **span)
    assert without_as_of(now.json()) == without_as_of(after)
    assert without_as_of(now.json()) != without_as_of(then.json())

    hours = await sales(client, organizer, event["id"], bucket="hour")
    assert hours.status_code == 200, hours.text
    assert sum(b["tickets_sold"] for b in hours.json()["timeline"]["items"]) == 2 + 3 + 1


async def test_only_the_organizer_and_admins_see_an_events_sales(
    client: httpx.AsyncClient, sales_system: RunningSystem, services: Services
) -> None:
    organizer, event, buyer, _ = await a_running_sale(client, sales_system, services)
    other = await sign_up(client, sales_system, roles=["organizer"])
    draft = await create_event(client, organizer)

    assert (await sales(client, other, event["id"])).status_code == 403
    hidden = await sales(client, other, draft["id"])
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "event_not_found"
    assert (await sales(client, buyer, event["id"])).status_code == 403
    anonymous = await client.get(f"/api/v1/events/{event['id']}/sales")
    assert anonymous.status_code == 401
    assert (await sales(client, organizer, "01JNOSUCHEVENT000000000000")).status_code == 404

    admin = await sign_in_admin(client, sales_system)
    assert (await sales(client, admin, event["id"])).status_code == 200
    assert (await sales(client, organizer, draft["id"])).status_code == 200


async def test_admins_see_sales_per_organizer_and_day(
    client: httpx.AsyncClient, sales_system: RunningSystem, services: Services
) -> None:
    organizer, event, buyer, pay = await a_running_sale(client, sales_system, services)
    order = await place(client, buyer, event, Seat=1, Standing=2)
    await pay(order)
    admin = await sign_in_admin(client, sales_system)
    await figures_once(client, admin, event["id"], lambda b: b["orders"]["paid"] == 1)

    response = await client.get("/api/v1/admin/sales", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    rows = [row for row in body["items"] if row["organizer_id"] == organizer.account_id]
    assert len(rows) == 1
    (row,) = rows
    assert datetime.fromisoformat(row["day"]) == datetime.now(UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    assert (row["events"], row["tickets_sold"], row["gross"]) == (1, 3, PAID_PRICE)
    assert row["net"] == PAID_PRICE - round(PAID_PRICE * 10 / 110)

    yesterday = datetime.now(UTC) - timedelta(days=1)
    earlier = await client.get(
        "/api/v1/admin/sales",
        params={"from": at(yesterday - timedelta(days=3)), "to": at(yesterday - timedelta(days=1))},
        headers=admin.headers,
    )
    assert earlier.status_code == 200, earlier.text
    assert all(row["organizer_id"] != organizer.account_id for row in earlier.json()["items"])

    assert (await client.get("/api/v1/admin/sales", headers=organizer.headers)).status_code == 403


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"bucket": "week"}, "bucket"),
        ({"from": "2026-05-01T10:00:00"}, "from"),
        ({"to": "1777777777"}, "to"),
        ({"as_of": "yesterday"}, "as_of"),
        ({"as_of": "0001-01-01T00:00:00+14:00"}, "as_of"),
        ({"to": "9999-12-31T23:59:59Z"}, "to"),
        ({"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "to"),
        (
            {"bucket": "minute", "from": "2026-01-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"},
            "from",
        ),
    ],
)
async def test_bad_sales_queries_are_invalid_input(
    client: httpx.AsyncClient,
    sales_system: RunningSystem,
    services: Services,
    query: dict[str, str],
    field: str,
) -> None:
    organizer, event, _, _ = await a_running_sale(client, sales_system, services)
    response = await sales(client, organizer, event["id"], **query)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [error["field"] for error in response.json()["errors"]] == [field]
