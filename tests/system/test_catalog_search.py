"""Browsing the catalog over HTTP: listed events, search, filters, order and pages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import create_event, published_event, rfc3339
from tests.support.system import RunningSystem

pytestmark = pytest.mark.system

Body = dict[str, Any]
# Lists come from the read model, which the projector worker updates a moment later.
LISTING_TIMEOUT_SECONDS = 15


@pytest.fixture
async def organizer(http: httpx.AsyncClient, api_system: RunningSystem) -> SignedIn:
    return await sign_up(http, api_system, roles=["organizer"])


@pytest.fixture
def token() -> str:
    """A word only this test's events contain, so other tests' events never show up."""
    return f"tok{uuid.uuid4().hex[:10]}"


def starting_in(days: float) -> Body:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
    return {"starts_at": rfc3339(starts), "ends_at": rfc3339(starts + timedelta(hours=2))}


async def listing(http: httpx.AsyncClient, **params: Any) -> Body:
    response = await http.get("/api/v1/events", params=params)
    assert response.status_code == 200, response.text
    body: Body = response.json()
    return body


async def listing_when(
    http: httpx.AsyncClient, ready: Callable[[Body], bool], **params: Any
) -> Body:
    """The list once `ready` holds for it (the projector has caught up)."""
    async with asyncio.timeout(LISTING_TIMEOUT_SECONDS):
        while True:
            body = await listing(http, **params)
            if ready(body):
                return body
            await asyncio.sleep(0.05)


async def listing_once_projected(
    http: httpx.AsyncClient, expected_total: int, **params: Any
) -> Body:
    """The list, once the projector has caught up to `expected_total` matching events."""
    return await listing_when(http, lambda body: body["total"] >= expected_total, **params)


def titles(body: Body) -> list[str]:
    return [item["title"] for item in body["items"]]


async def test_published_events_are_listed_and_drafts_are_not(
    http: httpx.AsyncClient, organizer: SignedIn, token: str
) -> None:
    await create_event(http, organizer, title=f"Draft {token}")
    live = await published_event(http, organizer, title=f"Live {token}")
    body = await listing_once_projected(http, 1, q=token)
    assert titles(body) == [f"Live {token}"]
    [item] = body["items"]
    assert (item["id"], item["status"], item["province"]) == (live["id"], "published", "Hà Nội")
    assert "available" not in item["ticket_types"][0]


async def test_a_cancelled_event_stays_listed_marked_cancelled(
    http: httpx.AsyncClient, organizer: SignedIn, token: str
) -> None:
    event = await published_event(http, organizer, title=f"Rained out {token}")
    await listing_once_projected(http, 1, q=token)
    cancel = await http.post(f"/api/v1/events/{event['id']}/cancel", headers=organizer.headers)
    assert cancel.status_code == 200, cancel.text
    body = await listing_when(http, lambda b: b["items"][0]["status"] == "cancelled", q=token)
    assert body["items"][0]["cancelled_at"] is not None


async def test_search_matches_title_and_description_ignoring_case_and_diacritics(
    http: httpx.AsyncClient, organizer: SignedIn, token: str
) -> None:
    await published_event(http, organizer, title=f"Đêm nhạc Jazz {token}", description="Saxophone")
    await published_event(
        http, organizer, title=f"Giao hưởng {token}", description="Hòa nhạc mùa thu"
    )
    await listing_once_projected(http, 2, q=token)
    assert titles(await listing(http, q=f"{token} dem JAZZ")) == [f"Đêm nhạc Jazz {token}"]
    assert titles(await listing(http, q=f"{token} hoa nhac")) == [f"Giao hưởng {token}"]
    assert (await listing(http, q=f"{token} nothing-like-this"))["total"] == 0


async def test_events_are_filtered_by_province_given_by_any_accepted_name(
    http: httpx.AsyncClient, organizer: SignedIn, token: str
) -> None:
    await published_event(http, organizer, title=f"North {token}", province="Hà Nội")
    await published_event(http, organizer, title=f"Centre {token}", province="da-nang")
    await listing_once_projected(http, 2, q=token)
    for typed in ("Đà Nẵng", "da nang", "Quảng Nam"):
        body = await listing(http, q=token, province=typed)
        assert titles(body) == [f"Centre {token}"]
        assert body["items"][0]["province"] == "Đà Nẵng"


async def test_an_unknown_province_filter_is_422_invalid_province(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/events", params={"province": "Narnia"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_province"


async def test_events_are_filtered_by_topic_slug(
    http: httpx.AsyncClient, organizer: SignedIn, token: str
) -> None:
    await published_event(http, organizer, title=f"Rock {token}", topics=["Rock & Roll"])
    await published_event(http, organizer, title=f"Jazz {token}", topics=["jazz"])
    await listing_once_projected(http, 2, q=token)
    assert titles(await listing(http, q=token, topic="rock-roll")) == [f"Rock {token}"]
    assert titles(await listing(http, q=token, topic="ROCK & ROLL")) == [f"Rock {token}"]


async def test_events_are_sorted_by_start_and_filtered_by_a_date_range(
    http: httpx.AsyncClient, organizer: SignedIn, token: str
) -> None:
    for name, days in (("third", 12), ("first", 10), ("second", 11)):
        await published_event(http, organizer, title=f"{name} {token}", **starting_in(days))
    body = await listing_once_projected(http, 3, q=token)
    assert titles(body) == [f"{n} {token}" for n in ("first", "second", "third")]
    second_starts = body["items"][1]["starts_at"]
    third_starts = body["items"][2]["starts_at"]
    ranged = await listing(http, q=token, starts_after=second_starts, starts_before=third_starts)
    assert titles(ranged) == [f"second {token}"]


async def test_pages_split_the_list_and_report_the_total(
    http: httpx.AsyncClient, organizer: SignedIn, token: str
) -> None:
    for index in range(5):
        await published_event(http, organizer, title=f"e{index} {token}", **starting_in(20 + index))
    await listing_once_projected(http, 5, q=token)
    body = await listing(http, q=token, page=2, page_size=2)
    assert titles(body) == [f"e2 {token}", f"e3 {token}"]
    assert (body["total"], body["page"], body["page_size"]) == (5, 2, 2)
    assert titles(await listing(http, q=token, page=3, page_size=2)) == [f"e4 {token}"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"starts_after": "yesterday"}, "starts_after"),
        ({"starts_after": "2030-01-01T00:00:00"}, "starts_after"),
        (
            {"starts_after": "2030-01-02T00:00:00Z", "starts_before": "2030-01-01T00:00:00Z"},
            "starts_before",
        ),
    ],
)
async def test_bad_list_parameters_are_422_invalid_input(
    http: httpx.AsyncClient, params: Body, field: str
) -> None:
    response = await http.get("/api/v1/events", params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_input"
    assert field in [error["field"] for error in body["errors"]]


async def test_the_default_page_is_the_first_twenty(http: httpx.AsyncClient) -> None:
    body = await listing(http)
    assert (body["page"], body["page_size"]) == (1, 20)
    assert len(body["items"]) <= 20


async def own_events(http: httpx.AsyncClient, caller: SignedIn, **params: Any) -> httpx.Response:
    return await http.get("/api/v1/me/events", params=params, headers=caller.headers)


async def own_events_when(
    http: httpx.AsyncClient, caller: SignedIn, ready: Callable[[Body], bool], **params: Any
) -> Body:
    """The caller's own events once `ready` holds for them (the projector has caught up)."""
    async with asyncio.timeout(LISTING_TIMEOUT_SECONDS):
        while True:
            response = await own_events(http, caller, **params)
            assert response.status_code == 200, response.text
            body: Body = response.json()
            if ready(body):
                return body
            await asyncio.sleep(0.05)


async def test_an_organizer_lists_their_own_drafts_published_and_cancelled_events(
    http: httpx.AsyncClient, api_system: RunningSystem, organizer: SignedIn, token: str
) -> None:
    other = await sign_up(http, api_system, roles=["organizer"])
    draft = await create_event(http, organizer, title=f"Draft {token}", **starting_in(3))
    live = await published_event(http, organizer, title=f"Live {token}", **starting_in(4))
    gone = await published_event(http, organizer, title=f"Gone {token}", **starting_in(5))
    cancelled = await http.post(f"/api/v1/events/{gone['id']}/cancel", headers=organizer.headers)
    assert cancelled.status_code == 200, cancelled.text
    await create_event(http, other, title=f"Theirs {token}")

    body = await own_events_when(
        http,
        organizer,
        lambda body: (
            [item["status"] for item in body["items"]] == ["draft", "published", "cancelled"]
        ),
    )
    assert [item["id"] for item in body["items"]] == [draft["id"], live["id"], gone["id"]]
    assert (body["total"], body["page"], body["page_size"]) == (3, 1, 20)
    drafts = (await own_events(http, organizer, status="draft")).json()
    assert titles(drafts) == [f"Draft {token}"]
    paged = (await own_events(http, organizer, page=2, page_size=2)).json()
    assert (titles(paged), paged["total"]) == ([f"Gone {token}"], 3)
    theirs = await own_events_when(http, other, lambda body: body["total"] >= 1)
    assert titles(theirs) == [f"Theirs {token}"]
    # The public list is unchanged: no drafts, whoever asks.
    public = await listing_once_projected(http, 2, q=token)
    assert sorted(titles(public)) == [f"Gone {token}", f"Live {token}"]


async def test_own_events_need_an_organizer(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    anonymous = await http.get("/api/v1/me/events")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    assert anonymous.json()["code"] == "unauthenticated"
    customer = await sign_up(http, api_system)
    refused = await own_events(http, customer)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "archived"}, "status"), ({"page": 0}, "page"), ({"page_size": 101}, "page_size")],
)
async def test_bad_own_events_parameters_are_422_invalid_input(
    http: httpx.AsyncClient, organizer: SignedIn, params: Body, field: str
) -> None:
    response = await own_events(http, organizer, **params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_input"
    assert field in [error["field"] for error in body["errors"]]
