"""POST/GET /api/v1/orders and cancel through the HTTP API of a running system."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.accounts import SignedIn, sign_in_admin, sign_up
from tests.support.catalog import create_event, published_event, rfc3339, ticket_type
from tests.support.system import RunningSystem

pytestmark = pytest.mark.system

Body = dict[str, Any]


@pytest.fixture
async def organizer(http: httpx.AsyncClient, api_system: RunningSystem) -> SignedIn:
    return await sign_up(http, api_system, roles=["organizer"])


@pytest.fixture
async def buyer(http: httpx.AsyncClient, api_system: RunningSystem) -> SignedIn:
    return await sign_up(http, api_system)


async def new_event(
    http: httpx.AsyncClient, organizer: SignedIn, *types: Body, limit: int | None = None
) -> Body:
    return await published_event(
        http,
        organizer,
        ticket_types=list(types) or [ticket_type(quantity=10)],
        max_tickets_per_customer=limit,
    )


def order_body(event: Body, *quantities: int, index: int = 0) -> Body:
    ticket_type_id = event["ticket_types"][index]["id"]
    return {
        "event_id": event["id"],
        "items": [{"ticket_type_id": ticket_type_id, "quantity": q} for q in quantities],
    }


async def place(
    http: httpx.AsyncClient, who: SignedIn, body: Body, key: str | None = None
) -> httpx.Response:
    headers = dict(who.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await http.post("/api/v1/orders", json=body, headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> Body:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: Body = response.json()
    assert problem["code"] == code, problem
    return problem


async def available(http: httpx.AsyncClient, event: Body, index: int = 0) -> int:
    response = await http.get(f"/api/v1/events/{event['id']}")
    assert response.status_code == 200, response.text
    count: int = response.json()["ticket_types"][index]["available"]
    return count


async def test_placing_returns_the_pending_order_with_frozen_prices(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer, ticket_type(price=120_000, quantity=10))
    before = datetime.now(UTC)
    response = await place(http, buyer, order_body(event, 3))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "pending"
    assert order["buyer_id"] == buyer.account_id
    assert order["items"] == [
        {
            "ticket_type_id": event["ticket_types"][0]["id"],
            "name": "Standard",
            "quantity": 3,
            "unit_price": 120_000,
            "amount": 360_000,
        }
    ]
    assert (order["total_amount"], order["currency"]) == (360_000, "VND")
    expires_at = datetime.fromisoformat(order["expires_at"])
    assert expires_at.utcoffset() is not None
    assert timedelta(seconds=899) <= expires_at - before <= timedelta(seconds=905)
    assert await available(http, event) == 7


async def test_an_order_reads_back_at_once_with_its_status(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    placed = (await place(http, buyer, order_body(event, 1))).json()
    response = await http.get(f"/api/v1/orders/{placed['id']}", headers=buyer.headers)
    assert response.status_code == 200, response.text
    assert response.json() == placed


async def test_a_later_price_change_does_not_touch_placed_orders(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer, ticket_type(price=100_000, quantity=10))
    first = (await place(http, buyer, order_body(event, 1))).json()
    ticket_type_id = event["ticket_types"][0]["id"]
    changed = await http.patch(
        f"/api/v1/events/{event['id']}/ticket-types/{ticket_type_id}",
        json={"price": 130_000},
        headers=organizer.headers,
    )
    assert changed.status_code == 200, changed.text
    second = (await place(http, buyer, order_body(event, 1))).json()
    again = (await http.get(f"/api/v1/orders/{first['id']}", headers=buyer.headers)).json()
    assert (again["total_amount"], second["total_amount"]) == (100_000, 130_000)


async def test_duplicate_ticket_types_in_one_request_are_merged(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer, ticket_type(quantity=3))
    response = await place(http, buyer, order_body(event, 1, 2))
    assert response.status_code == 201, response.text
    assert [item["quantity"] for item in response.json()["items"]] == [3]
    assert await available(http, event) == 0
    assert_problem(await place(http, buyer, order_body(event, 1)), 409, "sold_out")


async def test_all_items_or_none(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(
        http, organizer, ticket_type(name="A", quantity=5), ticket_type(name="B", quantity=1)
    )
    body = order_body(event, 2)
    body["items"].append({"ticket_type_id": event["ticket_types"][1]["id"], "quantity": 2})
    assert_problem(await place(http, buyer, body), 409, "sold_out")
    assert (await available(http, event, 0), await available(http, event, 1)) == (5, 1)


async def test_a_free_order_is_paid_at_once(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer, ticket_type(price=0, quantity=5))
    order = (await place(http, buyer, order_body(event, 2))).json()
    assert (order["status"], order["total_amount"]) == ("paid", 0)
    assert order["paid_at"]
    assert await available(http, event) == 3


async def test_the_buyer_cancels_and_the_tickets_are_free_at_once(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer, ticket_type(quantity=2))
    order = (await place(http, buyer, order_body(event, 2))).json()
    assert await available(http, event) == 0
    response = await http.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert await available(http, event) == 2
    again = await http.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert_problem(again, 409, "order_not_pending")


async def test_only_the_buyer_may_cancel(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    order = (await place(http, buyer, order_body(event, 1))).json()
    stranger = await sign_up(http, api_system)
    path = f"/api/v1/orders/{order['id']}/cancel"
    assert_problem(await http.post(path, headers=stranger.headers), 404, "order_not_found")
    assert_problem(await http.post(path, headers=organizer.headers), 403, "not_order_buyer")
    assert_problem(await http.post(path), 401, "unauthenticated")


async def test_buyer_organizer_and_admin_see_an_order_and_nobody_else(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    order = (await place(http, buyer, order_body(event, 1))).json()
    path = f"/api/v1/orders/{order['id']}"
    admin = await sign_in_admin(http, api_system)
    other_organizer = await sign_up(http, api_system, roles=["organizer"])
    stranger = await sign_up(http, api_system)
    for viewer in (buyer, organizer, admin):
        assert (await http.get(path, headers=viewer.headers)).status_code == 200
    for outsider in (stranger, other_organizer):
        assert_problem(await http.get(path, headers=outsider.headers), 404, "order_not_found")
    missing = await http.get(f"/api/v1/orders/{uuid.uuid4().hex}", headers=buyer.headers)
    assert_problem(missing, 404, "order_not_found")


async def test_placing_needs_a_signed_in_caller(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    response = await http.post("/api/v1/orders", json=order_body(event, 1))
    assert_problem(response, 401, "unauthenticated")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda body: body.update(items=[]), "items"),
        (lambda body: body["items"][0].update(quantity=0), "items[0].quantity"),
        (lambda body: body["items"][0].update(quantity=-2), "items[0].quantity"),
        (lambda body: body.pop("event_id"), "event_id"),
        (lambda body: body["items"][0].update(quantity="two"), "items[0].quantity"),
    ],
)
async def test_bad_bodies_are_invalid_input(
    http: httpx.AsyncClient,
    organizer: SignedIn,
    buyer: SignedIn,
    change: Any,
    field: str,
) -> None:
    event = await new_event(http, organizer, ticket_type(quantity=5))
    body = order_body(event, 1)
    change(body)
    problem = assert_problem(await place(http, buyer, body), 422, "invalid_input")
    assert field in [error["field"] for error in problem["errors"]], problem
    assert await available(http, event) == 5


async def test_a_ticket_type_of_another_event_is_invalid_input(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    other = await new_event(http, organizer)
    body = order_body(event, 1)
    body["items"].append({"ticket_type_id": other["ticket_types"][0]["id"], "quantity": 1})
    problem = assert_problem(await place(http, buyer, body), 422, "invalid_input")
    assert problem["errors"][0]["field"] == "items[1].ticket_type_id"
    assert (await available(http, event), await available(http, other)) == (10, 10)


async def test_more_than_max_per_order_is_invalid_input(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer, ticket_type(quantity=50, max_per_order=4))
    problem = assert_problem(
        await place(http, buyer, order_body(event, 3, 2)), 422, "max_per_order_exceeded"
    )
    assert problem["errors"][0]["field"] == "items[0].quantity"


async def test_an_unknown_or_draft_event_is_not_found(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    draft = await create_event(http, organizer)
    assert_problem(await place(http, buyer, order_body(draft, 1)), 404, "event_not_found")
    body = order_body(draft, 1)
    body["event_id"] = "01JUNKNOWNEVENT0000000000"
    assert_problem(await place(http, buyer, body), 404, "event_not_found")


async def test_a_cancelled_event_is_not_on_sale(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    cancelled = await http.post(
        f"/api/v1/events/{event['id']}/cancel", json={}, headers=organizer.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    assert_problem(await place(http, buyer, order_body(event, 1)), 409, "event_not_on_sale")


async def test_outside_its_sale_window_a_ticket_type_is_closed(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    event = await new_event(http, organizer, ticket_type(sale_starts_at=rfc3339(later)))
    problem = assert_problem(await place(http, buyer, order_body(event, 1)), 409, "sale_closed")
    assert problem["ticket_type_id"] == event["ticket_types"][0]["id"]


async def test_sold_out_when_too_few_are_left(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer, ticket_type(quantity=3))
    assert (await place(http, buyer, order_body(event, 2))).status_code == 201
    problem = assert_problem(await place(http, buyer, order_body(event, 2)), 409, "sold_out")
    assert problem["ticket_type_id"] == event["ticket_types"][0]["id"]
    assert (await place(http, buyer, order_body(event, 1))).status_code == 201


async def test_the_per_customer_limit_counts_pending_and_paid_orders(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(
        http,
        organizer,
        ticket_type(name="Paid", quantity=50),
        ticket_type(name="Free", price=0, quantity=50),
        limit=4,
    )
    assert (await place(http, buyer, order_body(event, 2, index=1))).json()["status"] == "paid"
    assert (await place(http, buyer, order_body(event, 2))).status_code == 201
    assert_problem(await place(http, buyer, order_body(event, 1)), 409, "limit_exceeded")
    assert_problem(await place(http, buyer, order_body(event, 5)), 409, "limit_exceeded")


async def test_concurrent_orders_of_one_buyer_stay_within_the_limit(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer, ticket_type(quantity=100), limit=3)
    responses = await asyncio.gather(*(place(http, buyer, order_body(event, 1)) for _ in range(20)))
    codes = Counter(r.status_code if r.status_code == 201 else r.json()["code"] for r in responses)
    assert codes == {201: 3, "limit_exceeded": 17}
    assert await available(http, event) == 97


async def test_a_repeated_idempotency_key_returns_the_first_order(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    key = uuid.uuid4().hex
    responses = await asyncio.gather(
        *(place(http, buyer, order_body(event, 2), key=key) for _ in range(5))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await available(http, event) == 8


async def test_an_idempotency_key_reused_with_another_body_is_a_conflict(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    other = await new_event(http, organizer)
    key = uuid.uuid4().hex
    assert (await place(http, buyer, order_body(event, 1), key=key)).status_code == 201
    assert_problem(
        await place(http, buyer, order_body(event, 2), key=key), 409, "idempotency_key_reused"
    )
    assert_problem(
        await place(http, buyer, order_body(other, 1), key=key), 409, "idempotency_key_reused"
    )
    assert (await available(http, event), await available(http, other)) == (9, 10)


async def test_the_buyer_lists_own_orders_by_status(
    http: httpx.AsyncClient, organizer: SignedIn, buyer: SignedIn
) -> None:
    event = await new_event(http, organizer)
    kept = (await place(http, buyer, order_body(event, 1))).json()
    dropped = (await place(http, buyer, order_body(event, 2))).json()
    cancelled = await http.post(f"/api/v1/orders/{dropped['id']}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 200
    async with asyncio.timeout(15):
        while True:
            listed = (await http.get("/api/v1/orders", headers=buyer.headers)).json()
            statuses = {item["id"]: item["status"] for item in listed["items"]}
            if statuses == {kept["id"]: "pending", dropped["id"]: "cancelled"}:
                break
            await asyncio.sleep(0.1)
    assert (listed["total"], listed["page"], listed["page_size"]) == (2, 1, 20)
    detail = await http.get(f"/api/v1/orders/{dropped['id']}", headers=buyer.headers)
    assert listed["items"][0] == detail.json()
    only_pending = await http.get("/api/v1/orders?status=pending", headers=buyer.headers)
    assert [item["id"] for item in only_pending.json()["items"]] == [kept["id"]]
    bad = await http.get("/api/v1/orders?status=lost", headers=buyer.headers)
    assert_problem(bad, 422, "invalid_input")
