"""Per-event staff: the event's organizer or an admin grants and revokes check-in rights."""

from __future__ import annotations

import httpx

from tests.support.accounts import grant_staff, sign_in_admin, sign_up
from tests.support.catalog import create_event, published_event
from tests.support.system import RunningSystem


async def test_organizer_grants_staff_for_their_event_and_it_shows_at_once(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    event = await create_event(http, organizer)
    helper = await sign_up(http, api_system)
    response = await http.put(
        f"/api/v1/events/{event['id']}/staff/{helper.account_id}", headers=organizer.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "event_id": event["id"],
        "account_id": helper.account_id,
        "staff": True,
    }
    me = await http.get("/api/v1/me", headers=helper.headers)
    assert me.json()["staff_events"] == [event["id"]]


async def test_revoking_staff_answers_204_and_removes_the_grant(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    event = await create_event(http, organizer)
    helper = await sign_up(http, api_system)
    await grant_staff(http, organizer, event["id"], helper.account_id)
    response = await http.delete(
        f"/api/v1/events/{event['id']}/staff/{helper.account_id}", headers=organizer.headers
    )
    assert response.status_code == 204
    assert (await http.get("/api/v1/me", headers=helper.headers)).json()["staff_events"] == []


async def test_admin_grants_staff_for_any_event(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    admin = await sign_in_admin(http, api_system)
    event = await create_event(http, organizer)
    helper = await sign_up(http, api_system)
    await grant_staff(http, admin, event["id"], helper.account_id)


async def test_another_organizer_cannot_grant_staff_for_a_published_event(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    owner = await sign_up(http, api_system, roles=["organizer"])
    intruder = await sign_up(http, api_system, roles=["organizer"])
    event = await published_event(http, owner)
    response = await http.put(
        f"/api/v1/events/{event['id']}/staff/{intruder.account_id}", headers=intruder.headers
    )
    assert response.status_code == 403
    assert response.json()["code"] == "not_event_organizer"
    assert (await http.get("/api/v1/me", headers=intruder.headers)).json()["staff_events"] == []


async def test_another_organizer_does_not_see_a_draft_event(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    owner = await sign_up(http, api_system, roles=["organizer"])
    intruder = await sign_up(http, api_system, roles=["organizer"])
    event = await create_event(http, owner)
    response = await http.put(
        f"/api/v1/events/{event['id']}/staff/{intruder.account_id}", headers=intruder.headers
    )
    assert response.status_code == 404


async def test_staff_for_an_unknown_event_or_account_answers_404(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    event = await create_event(http, organizer)
    unknown_event = await http.put(
        f"/api/v1/events/01JNOSUCHEVENT000000000000/staff/{organizer.account_id}",
        headers=organizer.headers,
    )
    assert unknown_event.status_code == 404
    unknown_account = await http.put(
        f"/api/v1/events/{event['id']}/staff/01JNOSUCHACCOUNT0000000000", headers=organizer.headers
    )
    assert unknown_account.status_code == 404
    assert unknown_account.json()["code"] == "not_found"


async def test_customer_cannot_grant_staff(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    customer = await sign_up(http, api_system)
    event = await create_event(http, organizer)
    response = await http.put(
        f"/api/v1/events/{event['id']}/staff/{customer.account_id}", headers=customer.headers
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
