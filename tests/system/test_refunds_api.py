"""Refund routes over HTTP: who may refund, the refund's shape, Idempotency-Key, progress."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.accounts import SignedIn, sign_in_admin, sign_up
from tests.support.catalog import create_event, publish, ticket_type
from tests.support.system import RunningSystem
from tests.system.test_payments_api import signed_ipn

pytestmark = pytest.mark.system


async def paid_order(
    http: httpx.AsyncClient, system: RunningSystem
) -> tuple[SignedIn, SignedIn, dict[str, Any]]:
    organizer = await sign_up(http, system, roles=["organizer"])
    event = await create_event(
        http, organizer, ticket_types=[ticket_type(price=150_000, quantity=5)]
    )
    await publish(http, organizer, event["id"])
    buyer = await sign_up(http, system)
    placed = await http.post(
        "/api/v1/orders",
        json={
            "event_id": event["id"],
            "items": [{"ticket_type_id": event["ticket_types"][0]["id"], "quantity": 2}],
        },
        headers=buyer.headers,
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    started = await http.post(
        f"/api/v1/orders/{order['id']}/payments/vnpay", json={}, headers=buyer.headers
    )
    assert started.status_code == 201, started.text
    ipn = await http.get(
        f"/api/v1/payments/vnpay/ipn?{signed_ipn(system, started.json()['txn_ref'], 300_000)}"
    )
    assert ipn.json()["RspCode"] == "00"
    return organizer, buyer, order


async def test_the_organizer_refunds_a_paid_order_once_and_everyone_concerned_sees_it(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer, buyer, order = await paid_order(http, api_system)
    url = f"/api/v1/orders/{order['id']}/refunds"
    refused = await http.post(url, json={"reason": "mine"}, headers=buyer.headers)
    assert refused.status_code == 404

    headers = {**organizer.headers, "Idempotency-Key": "refund-1"}
    requested = await http.post(url, json={"reason": "buyer asked"}, headers=headers)
    assert requested.status_code == 202, requested.text
    refund = requested.json()
    assert refund["order_id"] == order["id"]
    assert (refund["amount"], refund["status"], refund["reason"]) == (
        300_000,
        "requested",
        "buyer asked",
    )
    again = await http.post(url, json={"reason": "buyer asked"}, headers=headers)
    assert again.status_code == 202
    assert again.json()["id"] == refund["id"]

    second = await http.post(url, json={"reason": "more"}, headers=organizer.headers)
    assert second.status_code == 409
    assert second.json()["code"] == "not_refundable"

    listed = await http.get(url, headers=buyer.headers)
    assert [item["id"] for item in listed.json()["items"]] == [refund["id"]]
    shown = await http.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)
    assert shown.json()["status"] == "refunded"

    progress_url = f"/api/v1/events/{order['event_id']}/refunds"
    assert (await http.get(progress_url, headers=buyer.headers)).status_code == 404
    async with asyncio.timeout(20):
        while True:
            progress = (await http.get(progress_url, headers=organizer.headers)).json()
            if progress["counts"]["requested"] == 1:
                break
            await asyncio.sleep(0.1)
    assert progress == {"counts": {"requested": 1, "completed": 0, "failed": 0}, "failed": []}


async def test_credit_notes_are_listed_for_the_buyer_and_organizer_only_once_a_refund_completes(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer, buyer, order = await paid_order(http, api_system)
    url = f"/api/v1/orders/{order['id']}/credit-notes"
    stranger = await sign_up(http, api_system)
    hidden = await http.get(url, headers=stranger.headers)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"].startswith("application/problem+json")
    assert hidden.json()["code"] == "order_not_found"
    assert (await http.get(url)).status_code == 401
    requested = await http.post(
        f"/api/v1/orders/{order['id']}/refunds",
        json={"reason": "buyer asked"},
        headers=organizer.headers,
    )
    assert requested.status_code == 202, requested.text
    # Asked for, not given back yet (no gateway here): no credit note.
    for viewer in (buyer, organizer):
        listed = await http.get(url, headers=viewer.headers)
        assert listed.status_code == 200, listed.text
        assert listed.json() == {"items": []}


async def test_admins_resolve_only_failed_refunds_and_others_may_not_touch_them(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer, buyer, order = await paid_order(http, api_system)
    admin = await sign_in_admin(http, api_system)
    requested = await http.post(
        f"/api/v1/orders/{order['id']}/refunds", json={"reason": "x"}, headers=organizer.headers
    )
    refund_id = requested.json()["id"]
    resolve_url = f"/api/v1/admin/refunds/{refund_id}/resolve"
    for who in (organizer, buyer):
        listed = await http.get("/api/v1/admin/refunds", headers=who.headers)
        assert listed.status_code == 403
        denied = await http.post(
            resolve_url, json={"resolution": "settled", "note": "cash"}, headers=who.headers
        )
        assert denied.status_code == 403
    bad = await http.post(
        resolve_url, json={"resolution": "refund_twice", "note": "x"}, headers=admin.headers
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    unknown = await http.post(
        "/api/v1/admin/refunds/01JNOSUCHREFUND00000000000/retry", headers=admin.headers
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "refund_not_found")
    # The refund reaches the read model, then is refused: it did not fail.
    async with asyncio.timeout(20):
        while True:
            answer = await http.post(
                resolve_url, json={"resolution": "settled", "note": "cash"}, headers=admin.headers
            )
            if answer.status_code != 404:
                break
            await asyncio.sleep(0.1)
    assert (answer.status_code, answer.json()["code"]) == (409, "refund_not_failed")
    assert answer.json()["refund_status"] == "requested"
    listed = await http.get("/api/v1/admin/refunds?page_size=5", headers=admin.headers)
    assert listed.status_code == 200
    assert refund_id not in [item["id"] for item in listed.json()["items"]]
    assert listed.json()["page_size"] == 5
    refunds = await http.get(f"/api/v1/orders/{order['id']}/refunds", headers=buyer.headers)
    assert [item["status"] for item in refunds.json()["items"]] == ["requested"]
