"""Events over HTTP: drafting, changing, publishing, cancelling, ownership and visibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.support.accounts import SignedIn, sign_in_admin, sign_up
from tests.support.catalog import create_event, event_body, publish, rfc3339, ticket_type
from tests.support.system import RunningSystem

pytestmark = pytest.mark.system

Body = dict[str, Any]
VIETNAM = timezone(timedelta(hours=7))


def days_ahead(days: float, tz: timezone = UTC) -> str:
    return rfc3339((datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).astimezone(tz))


@pytest.fixture
async def organizer(http: httpx.AsyncClient, api_system: RunningSystem) -> SignedIn:
    return await sign_up(http, api_system, roles=["organizer"])


@pytest.fixture
async def customer(http: httpx.AsyncClient, api_system: RunningSystem) -> SignedIn:
    return await sign_up(http, api_system)


def assert_problem(response: httpx.Response, status: int, code: str) -> Body:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: Body = response.json()
    assert body["code"] == code, body
    return body


def error_fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


# --- creating ------------------------------------------------------------------------------


async def test_an_organizer_drafts_an_event_with_its_ticket_types(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    response = await http.post(
        "/api/v1/events",
        json=event_body(ticket_types=[ticket_type(), ticket_type(name="Free", price=0)]),
        headers=organizer.headers,
    )
    assert response.status_code == 201, response.text
    event = response.json()
    assert event["status"] == "draft"
    assert event["organizer_id"] == organizer.account_id
    assert event["province"] == "Hà Nội"
    assert event["topics"] == ["nhac-song"]
    assert [(t["name"], t["price"], t["available"]) for t in event["ticket_types"]] == [
        ("Standard", 250_000, 100),
        ("Free", 0, 100),
    ]
    assert all(t["id"] for t in event["ticket_types"])


async def test_times_are_answered_in_rfc3339_with_an_offset(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    starts_at = days_ahead(40, VIETNAM)
    assert starts_at.endswith("+07:00")
    event = await create_event(http, organizer, starts_at=starts_at, ends_at=days_ahead(41))
    assert event["starts_at"].endswith("Z")
    assert datetime.fromisoformat(event["starts_at"]) == datetime.fromisoformat(starts_at)
    assert datetime.fromisoformat(event["created_at"]).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [("ho chi minh", "Hồ Chí Minh"), ("DA-NANG", "Đà Nẵng"), ("Bình Dương", "Hồ Chí Minh")],
)
async def test_a_province_given_by_slug_name_or_former_name_is_answered_canonically(
    http: httpx.AsyncClient, organizer: SignedIn, typed: str, canonical: str
) -> None:
    assert (await create_event(http, organizer, province=typed))["province"] == canonical


async def test_an_unknown_province_is_422_invalid_province(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    response = await http.post(
        "/api/v1/events", json=event_body(province="Gotham"), headers=organizer.headers
    )
    assert_problem(response, 422, "invalid_province")
    assert error_fields(response) == ["province"]


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        (
            {"starts_at": days_ahead(5), "ends_at": days_ahead(4)},
            "invalid_dates",
            "ends_at",
        ),
        (
            {"starts_at": days_ahead(-2), "ends_at": days_ahead(-1)},
            "invalid_dates",
            "starts_at",
        ),
        ({"starts_at": days_ahead(5)[:19]}, "invalid_input", "starts_at"),
        ({"title": ""}, "invalid_input", "title"),
        ({"topics": ["!!!"]}, "invalid_topic", "topics[0]"),
        ({"max_tickets_per_customer": 0}, "invalid_input", "max_tickets_per_customer"),
        ({"ticket_types": [ticket_type(price=-1)]}, "invalid_input", "ticket_types[0].price"),
        ({"ticket_types": [ticket_type(quantity=0)]}, "invalid_input", "ticket_types[0].quantity"),
        (
            {"ticket_types": [ticket_type(max_per_order=0)]},
            "invalid_input",
            "ticket_types[0].max_per_order",
        ),
        (
            {"ticket_types": [ticket_type(), ticket_type()]},
            "duplicate_ticket_type_name",
            "ticket_types[1].name",
        ),
        (
            {"ticket_types": [ticket_type(sale_ends_at=days_ahead(400))]},
            "invalid_sale_window",
            "ticket_types[0].sale_ends_at",
        ),
        ({"surprise": 1}, "invalid_input", ""),
    ],
)
async def test_an_invalid_draft_is_422_naming_the_field(
    http: httpx.AsyncClient, organizer: SignedIn, overrides: Body, code: str, field: str
) -> None:
    response = await http.post(
        "/api/v1/events", json=event_body(**overrides), headers=organizer.headers
    )
    assert_problem(response, 422, code)
    if field:
        assert field in error_fields(response)


async def test_a_customer_may_not_create_events(
    http: httpx.AsyncClient, customer: SignedIn
) -> None:
    response = await http.post("/api/v1/events", json=event_body(), headers=customer.headers)
    assert_problem(response, 403, "forbidden")


async def test_creating_an_event_needs_sign_in(http: httpx.AsyncClient) -> None:
    assert_problem(await http.post("/api/v1/events", json=event_body()), 401, "unauthenticated")


async def test_a_repeated_create_with_the_same_idempotency_key_returns_the_first_event(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    headers = {**organizer.headers, "Idempotency-Key": "create-once"}
    body = event_body()
    first = await http.post("/api/v1/events", json=body, headers=headers)
    again = await http.post("/api/v1/events", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    other = await http.post("/api/v1/events", json=event_body(title="Other"), headers=headers)
    assert_problem(other, 409, "idempotency_key_reused")


# --- reading --------------------------------------------------------------------------------


async def test_a_draft_is_404_to_others_and_visible_to_its_organizer_and_admins(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn, customer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    path = f"/api/v1/events/{event['id']}"
    assert_problem(await http.get(path), 404, "event_not_found")
    assert_problem(await http.get(path, headers=customer.headers), 404, "event_not_found")
    assert (await http.get(path, headers=organizer.headers)).json()["status"] == "draft"
    admin = await sign_in_admin(http, api_system)
    assert (await http.get(path, headers=admin.headers)).status_code == 200


async def test_a_published_event_is_visible_to_anyone(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    await publish(http, organizer, event["id"])
    response = await http.get(f"/api/v1/events/{event['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "published"
    assert response.json()["ticket_types"][0]["available"] == 100


async def test_an_unknown_event_is_404_event_not_found(http: httpx.AsyncClient) -> None:
    assert_problem(
        await http.get("/api/v1/events/01JNOSUCHEVENT0000000000000"), 404, "event_not_found"
    )


# --- changing -------------------------------------------------------------------------------


async def test_the_organizer_changes_details_and_reads_them_back_at_once(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    response = await http.patch(
        f"/api/v1/events/{event['id']}",
        json={
            "title": "Renamed",
            "province": "hue",
            "topics": ["Jazz"],
            "max_tickets_per_customer": None,
        },
        headers=organizer.headers,
    )
    assert response.status_code == 200, response.text
    shown = (await http.get(f"/api/v1/events/{event['id']}", headers=organizer.headers)).json()
    assert (shown["title"], shown["province"], shown["topics"]) == ("Renamed", "Huế", ["jazz"])
    assert shown["max_tickets_per_customer"] is None
    assert shown["description"] == event["description"]


async def test_refunded_tickets_go_back_on_sale_unless_the_event_says_otherwise(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    assert event["restock_refunds"] is True
    kept = await create_event(http, organizer, restock_refunds=False)
    assert kept["restock_refunds"] is False
    response = await http.patch(
        f"/api/v1/events/{event['id']}", json={"restock_refunds": False}, headers=organizer.headers
    )
    assert response.status_code == 200, response.text
    shown = (await http.get(f"/api/v1/events/{event['id']}", headers=organizer.headers)).json()
    assert shown["restock_refunds"] is False
    refused = await http.patch(
        f"/api/v1/events/{event['id']}", json={"restock_refunds": None}, headers=organizer.headers
    )
    assert_problem(refused, 422, "invalid_input")


async def test_a_change_that_breaks_the_date_order_is_422_and_changes_nothing(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    response = await http.patch(
        f"/api/v1/events/{event['id']}",
        json={"title": "Never", "ends_at": event["starts_at"]},
        headers=organizer.headers,
    )
    assert_problem(response, 422, "invalid_dates")
    shown = (await http.get(f"/api/v1/events/{event['id']}", headers=organizer.headers)).json()
    assert shown["title"] == event["title"]
    assert shown["updated_at"] == event["updated_at"]


async def test_null_for_a_required_detail_is_422(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    response = await http.patch(
        f"/api/v1/events/{event['id']}", json={"title": None}, headers=organizer.headers
    )
    assert_problem(response, 422, "invalid_input")
    assert error_fields(response) == ["title"]


async def test_another_organizer_gets_403_on_a_published_event_and_404_on_a_draft(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn
) -> None:
    other = await sign_up(http, api_system, roles=["organizer"])
    draft = await create_event(http, organizer)
    live = await create_event(http, organizer)
    await publish(http, organizer, live["id"])
    change = {"title": "Hijacked"}
    assert_problem(
        await http.patch(f"/api/v1/events/{draft['id']}", json=change, headers=other.headers),
        404,
        "event_not_found",
    )
    assert_problem(
        await http.patch(f"/api/v1/events/{live['id']}", json=change, headers=other.headers),
        403,
        "not_event_organizer",
    )
    for action in ("publish", "cancel"):
        assert_problem(
            await http.post(f"/api/v1/events/{live['id']}/{action}", headers=other.headers),
            403,
            "not_event_organizer",
        )
    shown = (await http.get(f"/api/v1/events/{live['id']}")).json()
    assert (shown["title"], shown["status"]) == (live["title"], "published")


async def test_an_admin_changes_any_event(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn
) -> None:
    admin = await sign_in_admin(http, api_system)
    event = await create_event(http, organizer)
    response = await http.patch(
        f"/api/v1/events/{event['id']}", json={"title": "By admin"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["organizer_id"] == organizer.account_id
    published = await http.post(f"/api/v1/events/{event['id']}/publish", headers=admin.headers)
    assert published.json()["status"] == "published"


# --- publishing and cancelling --------------------------------------------------------------


async def test_publishing_needs_a_ticket_type(http: httpx.AsyncClient, organizer: SignedIn) -> None:
    event = await create_event(http, organizer, ticket_types=[])
    response = await http.post(f"/api/v1/events/{event['id']}/publish", headers=organizer.headers)
    assert_problem(response, 409, "no_ticket_types")
    shown = (await http.get(f"/api/v1/events/{event['id']}", headers=organizer.headers)).json()
    assert shown["status"] == "draft"


async def test_publishing_twice_is_409(http: httpx.AsyncClient, organizer: SignedIn) -> None:
    event = await create_event(http, organizer)
    published = await publish(http, organizer, event["id"])
    assert published["published_at"] is not None
    again = await http.post(f"/api/v1/events/{event['id']}/publish", headers=organizer.headers)
    assert_problem(again, 409, "event_already_published")


async def test_a_cancelled_event_is_marked_and_can_change_no_more(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    await publish(http, organizer, event["id"])
    response = await http.post(
        f"/api/v1/events/{event['id']}/cancel",
        json={"reason": "Storm warning"},
        headers=organizer.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"] is not None
    path = f"/api/v1/events/{event['id']}"
    ticket_type_id = event["ticket_types"][0]["id"]
    attempts = [
        http.post(f"{path}/cancel", headers=organizer.headers),
        http.post(f"{path}/publish", headers=organizer.headers),
        http.patch(path, json={"title": "Again"}, headers=organizer.headers),
        http.post(f"{path}/ticket-types", json=ticket_type(name="Late"), headers=organizer.headers),
        http.patch(
            f"{path}/ticket-types/{ticket_type_id}", json={"price": 1}, headers=organizer.headers
        ),
    ]
    for attempt in attempts:
        assert_problem(await attempt, 409, "event_cancelled")
    assert (await http.get(path)).json()["status"] == "cancelled"


async def test_cancelling_without_a_body_works(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    event = await create_event(http, organizer)
    response = await http.post(f"/api/v1/events/{event['id']}/cancel", headers=organizer.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


async def test_a_ticket_type_sale_window_is_kept_and_answered(
    http: httpx.AsyncClient, organizer: SignedIn
) -> None:
    opens = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    event = await create_event(
        http,
        organizer,
        ticket_types=[ticket_type(sale_starts_at=rfc3339(opens), max_per_order=4)],
    )
    [shown] = event["ticket_types"]
    assert datetime.fromisoformat(shown["sale_starts_at"]) == opens
    assert shown["sale_ends_at"] is None
    assert shown["max_per_order"] == 4
