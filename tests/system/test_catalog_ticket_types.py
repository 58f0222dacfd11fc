"""Ticket types over HTTP: adding, changing, and quantities that never drop below held + sold."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import create_event, published_event, ticket_type
from tests.support.system import RunningSystem

pytestmark = pytest.mark.system

Body = dict[str, Any]


@pytest.fixture
async def organizer(http: httpx.AsyncClient, api_system: RunningSystem) -> SignedIn:
    return await sign_up(http, api_system, roles=["organizer"])


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text


def ticket_types_path(event: Body) -> str:
    return f"/api/v1/events/{event['id']}/ticket-types"


async def change(
    http: httpx.AsyncClient, organizer: SignedIn, event: Body, body: Body, index: int = 0
) -> httpx.Response:
    ticket_type_id = event["ticket_types"][index]["id"]
    return await http.patch(
        f"{ticket_types_path(event)}/{ticket_type_id}", json=body, headers=organizer.headers
    )


async def shown(http: httpx.AsyncClient, event: Body) -> Body:
    response = await http.get(f"/api/v1/events/{event['id']}")
    assert response.status_code == 200, response.text
    body: Body = response.json()
    return body


async def place_order(
    http: httpx.AsyncClient, buyer: SignedIn, event: Body, quantity: int
) -> httpx.Response:
    return await http.post(
        "/api/v1/orders",
        json={
            "event_id": event["id"],
            "items": [{"ticket_type_id": event["ticket_types"][0]["id"], "quantity": quantity}],
        },
        headers=buyer.headers,
    )


async def test_a_ticket_type_is_added_with_its_own_inventory(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await published_event(http, organizer)
    response = await http.post(
        ticket_types_path(event),
        json=ticket_type(name="VIP", price=1_500_000, quantity=20, max_per_order=2),
        headers=organizer.headers,
    )
    assert response.status_code == 201, response.text
    added = response.json()
    assert (added["name"], added["quantity"], added["available"]) == ("VIP", 20, 20)
    assert added["id"] in [t["id"] for t in (await shown(http, event))["ticket_types"]]


async def test_a_repeated_add_with_the_same_idempotency_key_adds_once(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    headers = {**organizer.headers, "Idempotency-Key": "add-vip"}
    body = ticket_type(name="VIP")
    first = await http.post(ticket_types_path(event), json=body, headers=headers)
    again = await http.post(ticket_types_path(event), json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    mine = await http.get(f"/api/v1/events/{event['id']}", headers=organizer.headers)
    assert len(mine.json()["ticket_types"]) == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (ticket_type(price=-5), "invalid_input"),
        (ticket_type(quantity=0), "invalid_input"),
        (ticket_type(name="standard"), "duplicate_ticket_type_name"),
        ({"name": "No price", "quantity": 1}, "invalid_input"),
    ],
)
async def test_an_invalid_ticket_type_is_422_and_adds_nothing(
    http: httpx.AsyncClient, organizer: SignedIn, body: Body, code: str
) -> None:
    event = await published_event(http, organizer)
    response = await http.post(ticket_types_path(event), json=body, headers=organizer.headers)
    assert_problem(response, 422, code)
    assert len((await shown(http, event))["ticket_types"]) == 1


async def test_adding_to_someone_elses_event_is_refused(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn
) -> None:
    other = await sign_up(http, api_system, roles=["organizer"])
    event = await published_event(http, organizer)
    response = await http.post(
        ticket_types_path(event), json=ticket_type(name="X"), headers=other.headers
    )
    assert_problem(response, 403, "not_event_organizer")


async def test_a_ticket_type_changes_partially(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await published_event(http, organizer)
    response = await change(http, organizer, event, {"price": 0, "name": "Community"})
    assert response.status_code == 200, response.text
    [after] = (await shown(http, event))["ticket_types"]
    assert (after["name"], after["price"], after["quantity"]) == ("Community", 0, 100)


async def test_changing_an_unknown_ticket_type_is_404(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await published_event(http, organizer)
    response = await http.patch(
        f"{ticket_types_path(event)}/01JNOSUCHTICKETTYPE00000000",
        json={"price": 1},
        headers=organizer.headers,
    )
    assert_problem(response, 404, "ticket_type_not_found")


async def test_quantity_changes_move_availability(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await published_event(http, organizer)
    raised = await change(http, organizer, event, {"quantity": 150})
    assert raised.json()["available"] == 150
    lowered = await change(http, organizer, event, {"quantity": 7})
    assert lowered.json()["available"] == 7
    assert (await shown(http, event))["ticket_types"][0]["available"] == 7


async def test_availability_is_live_after_a_hold(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn
) -> None:
    buyer = await sign_up(http, api_system)
    event = await published_event(http, organizer, ticket_types=[ticket_type(quantity=10)])
    placed = await place_order(http, buyer, event, 3)
    assert placed.status_code == 201, placed.text
    assert (await shown(http, event))["ticket_types"][0]["available"] == 7


async def test_the_quantity_cannot_go_below_held_and_sold(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn
) -> None:
    buyer = await sign_up(http, api_system)
    event = await published_event(http, organizer, ticket_types=[ticket_type(quantity=10)])
    assert (await place_order(http, buyer, event, 4)).status_code == 201
    refused = await change(http, organizer, event, {"quantity": 3, "price": 1})
    assert_problem(refused, 409, "quantity_below_sold")
    [after] = (await shown(http, event))["ticket_types"]
    assert (after["quantity"], after["price"], after["available"]) == (10, 250_000, 6)
    exact = await change(http, organizer, event, {"quantity": 4})
    assert exact.status_code == 200, exact.text
    assert exact.json()["available"] == 0


async def test_concurrent_quantity_reductions_racing_holds_never_go_below_held_plus_sold(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn
) -> None:
    buyers = [await sign_up(http, api_system) for _ in range(6)]
    event = await published_event(
        http, organizer, ticket_types=[ticket_type(quantity=30)], max_tickets_per_customer=None
    )
    holds = [place_order(http, buyer, event, 2) for buyer in buyers for _ in range(2)]
    reductions = [change(http, organizer, event, {"quantity": q}) for q in (26, 20, 14, 8, 17, 11)]
    responses = await asyncio.gather(*holds, *reductions)
    hold_responses, change_responses = responses[: len(holds)], responses[len(holds) :]
    assert {r.status_code for r in hold_responses} <= {201, 409}
    for response in change_responses:
        assert response.status_code in (200, 409), response.text
        if response.status_code == 409:
            assert response.json()["code"] == "quantity_below_sold"
    held = 2 * sum(r.status_code == 201 for r in hold_responses)
    [after] = (await shown(http, event))["ticket_types"]
    assert after["quantity"] >= held
    assert after["available"] == after["quantity"] - held
