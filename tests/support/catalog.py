"""Create catalog events through the HTTP API, for system tests of any feature.

organizer = await sign_up(http, api_system, roles=["organizer"])
event = await create_event(http, organizer, title="Jazz night")          # a draft
event = await published_event(http, organizer, ticket_types=[ticket_type(quantity=5)])
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.accounts import SignedIn


def rfc3339(moment: datetime) -> str:
    return moment.isoformat()


def ticket_type(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Standard", "price": 250_000, "quantity": 100}
    body.update(overrides)
    return body


def event_body(**overrides: Any) -> dict[str, Any]:
    """A valid event draft starting in 30 days (Hà Nội, two hours, one ticket type)."""
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    body: dict[str, Any] = {
        "title": "Đêm nhạc Trịnh Công Sơn",
        "description": "An acoustic evening of Trịnh Công Sơn songs.",
        "venue": {"name": "Nhà hát Lớn", "address": "1 Tràng Tiền, Hoàn Kiếm"},
        "province": "Hà Nội",
        "starts_at": rfc3339(starts_at),
        "ends_at": rfc3339(starts_at + timedelta(hours=2)),
        "topics": ["Nhạc sống"],
        "max_tickets_per_customer": 10,
        "ticket_types": [ticket_type()],
    }
    body.update(overrides)
    return body


async def create_event(
    http: httpx.AsyncClient, organizer: SignedIn, **overrides: Any
) -> dict[str, Any]:
    """POST /api/v1/events; returns the draft (asserts 201)."""
    response = await http.post(
        "/api/v1/events", json=event_body(**overrides), headers=organizer.headers
    )
    assert response.status_code == 201, response.text
    event: dict[str, Any] = response.json()
    return event


async def publish(http: httpx.AsyncClient, organizer: SignedIn, event_id: str) -> dict[str, Any]:
    response = await http.post(f"/api/v1/events/{event_id}/publish", headers=organizer.headers)
    assert response.status_code == 200, response.text
    event: dict[str, Any] = response.json()
    return event


async def published_event(
    http: httpx.AsyncClient, organizer: SignedIn, **overrides: Any
) -> dict[str, Any]:
    """A new event, published; returns it as the publish answered (asserts success)."""
    event = await create_event(http, organizer, **overrides)
    return await publish(http, organizer, event["id"])
