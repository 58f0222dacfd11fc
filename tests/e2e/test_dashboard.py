"""An organizer follows a sale on /dashboard, in a real Chromium: events, charts, live figures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from playwright.async_api import Page

from eventhunting.payments.vnpay import format_vnpay_time
from eventhunting.payments.vnpay_signing import sign_query
from tests.e2e.conftest import PageProblems
from tests.e2e.staff_system import StaffSystem
from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import create_event, published_event, ticket_type

pytestmark = [pytest.mark.e2e, pytest.mark.system, pytest.mark.timeout(240)]

Body = dict[str, Any]
T = TypeVar("T")

PRICE = 250_000
# How long the sales read model and the page (which asks every 5 s) may take on a busy machine.
SETTLE_SECONDS = 30.0
CHARTS = ("timeline", "sell-through", "revenue", "funnel", "checkins")


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Read until `done` holds, for at most SETTLE_SECONDS; the last value otherwise fails."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {SETTLE_SECONDS:g} s")
        await asyncio.sleep(0.5)


async def own_event_ids(http: httpx.AsyncClient, organizer: SignedIn) -> set[str]:
    response = await http.get("/api/v1/me/events", headers=organizer.headers)
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


async def place_order(
    http: httpx.AsyncClient, buyer: SignedIn, event: Body, ticket_type_index: int, quantity: int
) -> Body:
    response = await http.post(
        "/api/v1/orders",
        json={
            "event_id": event["id"],
            "items": [
                {
                    "ticket_type_id": event["ticket_types"][ticket_type_index]["id"],
                    "quantity": quantity,
                }
            ],
        },
        headers=buyer.headers,
    )
    assert response.status_code == 201, response.text
    order: Body = response.json()
    return order


async def pay_with_a_signed_ipn(
    http: httpx.AsyncClient, staff_system: StaffSystem, buyer: SignedIn, order: Body
) -> None:
    """Start a VNPAY payment, then call the IPN as VNPAY would after the buyer paid."""
    started = await http.post(
        f"/api/v1/orders/{order['id']}/payments/vnpay", json={}, headers=buyer.headers
    )
    assert started.status_code == 201, started.text
    txn_ref = started.json()["txn_ref"]
    environment = staff_system.api.environment
    parameters = {
        "vnp_TmnCode": environment["EVENTHUNTING_VNPAY_TMN_CODE"],
        "vnp_Amount": str(order["total_amount"] * 100),
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": f"VNP{txn_ref[-8:]}",
        "vnp_CardType": "ATM",
        "vnp_PayDate": format_vnpay_time(datetime.now(UTC)),
        "vnp_OrderInfo": f"Thanh toan don hang {txn_ref[:-2]}",
        "vnp_TransactionNo": str(abs(hash(txn_ref)) % 100_000_000),
        "vnp_ResponseCode": "00",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": txn_ref,
    }
    parameters["vnp_SecureHash"] = sign_query(
        parameters, environment["EVENTHUNTING_VNPAY_HASH_SECRET"]
    )
    ipn = await http.get("/api/v1/payments/vnpay/ipn", params=parameters)
    assert ipn.json()["RspCode"] == "00", ipn.text


async def first_ticket(http: httpx.AsyncClient, buyer: SignedIn, order_id: str) -> Body | None:
    """The order's first ticket once the mailer issued them, else None."""
    listed = await http.get(f"/api/v1/orders/{order_id}/tickets", headers=buyer.headers)
    if listed.status_code != 200 or not listed.json()["items"]:
        return None
    ticket: Body = listed.json()["items"][0]
    return ticket


async def sales_of(http: httpx.AsyncClient, organizer: SignedIn, event_id: str) -> Body:
    response = await http.get(
        f"/api/v1/events/{event_id}/sales", params={"bucket": "hour"}, headers=organizer.headers
    )
    assert response.status_code == 200, response.text
    sales: Body = response.json()
    return sales


async def figures_on(page: Page, chart: str) -> Any:
    """What the page says the chart draws (its `data-figures`)."""
    text = await page.get_attribute(f"#{chart}-chart", "data-figures")
    return json.loads(text) if text else None


async def sign_in_on_the_dashboard(page: Page, base_url: str, account: SignedIn) -> None:
    await page.goto(f"{base_url}/dashboard")
    await page.fill("#email", account.email)
    await page.fill("#password", account.password)
    await page.click("#sign-in-button")
    await page.wait_for_selector("#board:not([hidden])")


def expected_figures(sales: Body) -> dict[str, Any]:
    """What each chart must draw, from GET /api/v1/events/{id}/sales."""
    timeline = sales["timeline"]
    return {
        "timeline": {
            "bucket": timeline["bucket"],
            "items": [
                {
                    "start": item["start"],
                    "tickets_sold": item["tickets_sold"],
                    "orders_placed": item["orders_placed"],
                    "orders_paid": item["orders_paid"],
                }
                for item in timeline["items"]
            ],
        },
        "sell-through": [
            {
                "id": kind["id"],
                "name": kind["name"],
                "quantity": kind["quantity"],
                "sold": kind["tickets"]["sold"],
                "held": kind["tickets"]["held"],
                "sell_through": round(kind["tickets"]["sold"] / kind["quantity"], 4),
            }
            for kind in sales["ticket_types"]
        ],
        "revenue": {
            "currency": "VND",
            "vat_rate_percent": sales["vat_rate_percent"],
            **sales["revenue"],
            "bucket": timeline["bucket"],
            "items": [
                {"start": item["start"], "gross": item["gross"], "net": item["net"]}
                for item in timeline["items"]
            ],
        },
        "funnel": {
            name: sales["conversion"][name]
            for name in (
                "orders_placed",
                "orders_paid",
                "order_rate",
                "tickets_ordered",
                "tickets_sold",
                "ticket_rate",
            )
        },
        "checkins": {
            "checked_in": sales["tickets"]["checked_in"],
            "bucket": timeline["bucket"],
            "items": [
                {"start": item["start"], "tickets_checked_in": item["tickets_checked_in"]}
                for item in timeline["items"]
                if item["tickets_checked_in"] > 0
            ],
        },
    }


async def test_an_organizer_sees_the_sale_charted_with_the_api_figures_and_kept_up_to_date(
    staff_http: httpx.AsyncClient, staff_system: StaffSystem, page: Page
) -> None:
    http = staff_http
    problems = PageProblems.watch(page)
    organizer = await sign_up(http, staff_system.api, roles=["organizer"])
    other_organizer = await sign_up(http, staff_system.api, roles=["organizer"])
    buyer = await sign_up(http, staff_system.api, full_name="Nguyen Van A")
    event = await published_event(
        http,
        organizer,
        title="Flash sale night",
        ticket_types=[
            ticket_type(name="Standard", price=PRICE, quantity=10),
            ticket_type(name="Free entry", price=0, quantity=20),
        ],
    )
    someone_elses = await published_event(http, other_organizer, title="Not yours")
    draft = await create_event(http, organizer, title="Next season (draft)")
    # Two Standard tickets paid through VNPAY's IPN, three free ones paid at once, and one
    # Standard ticket held but not paid: 2 of 3 orders paid, 5 of 6 tickets sold.
    paid = await place_order(http, buyer, event, 0, 2)
    await pay_with_a_signed_ipn(http, staff_system, buyer, paid)
    free = await place_order(http, buyer, event, 1, 3)
    await place_order(http, buyer, event, 0, 1)
    await eventually(
        lambda: sales_of(http, organizer, event["id"]),
        lambda sales: (sales["orders"]["placed"], sales["orders"]["paid"]) == (3, 2),
        "the sales read model",
    )

    await eventually(
        lambda: own_event_ids(http, organizer),
        lambda ids: {event["id"], draft["id"]} <= ids,
        "the organizer's events in the catalog read model",
    )

    await sign_in_on_the_dashboard(page, staff_system.api.base_url, organizer)

    # The organizer's events are listed, the draft too; another organizer's are not.
    listed = f'#events button[data-event-id="{event["id"]}"]'
    await page.wait_for_selector(listed)
    listed_draft = page.locator(f'#events button[data-event-id="{draft["id"]}"]')
    assert await listed_draft.count() == 1
    assert "Next season (draft)" in await listed_draft.inner_text()
    assert (await listed_draft.locator(".status").inner_text()).endswith("· draft")
    assert await page.locator(f'#events [data-event-id="{someone_elses["id"]}"]').count() == 0

    await page.click(listed)
    await page.wait_for_selector("#event-sales:not([hidden])")
    assert await page.inner_text("#sales-title") == "Flash sale night"
    for chart in CHARTS:
        assert await page.locator(f"#{chart}-chart canvas").count() >= 1, f"{chart} has no canvas"

    sales = await sales_of(http, organizer, event["id"])
    expected = expected_figures(sales)
    for chart in CHARTS:
        assert await figures_on(page, chart) == expected[chart], chart
    assert sales["revenue"] == {
        "gross": 2 * PRICE,
        "vat": 45_455,
        "net": 2 * PRICE - 45_455,
        "refunded": 0,
        "refunded_vat": 0,
    }
    assert [row["sold"] for row in await figures_on(page, "sell-through")] == [2, 3]
    assert await page.inner_text("#figure-conversion") == "2 / 3"

    # While the page is open, a new order shows up without reloading it.
    await place_order(http, buyer, event, 1, 4)
    funnel = await eventually(
        lambda: figures_on(page, "funnel"),
        lambda figures: figures["orders_placed"] == 4,
        "the dashboard's funnel",
    )
    assert (funnel["orders_paid"], funnel["tickets_sold"]) == (3, 9)
    assert [row["sold"] for row in await figures_on(page, "sell-through")] == [2, 7]

    # A ticket let in at the door shows up among the check-ins.
    ticket = await eventually(
        lambda: first_ticket(http, buyer, free["id"]), lambda found: found is not None, "tickets"
    )
    assert ticket is not None
    checked = await http.post(
        "/api/v1/checkins",
        json={"qr": ticket["qr"], "event_id": event["id"]},
        headers=organizer.headers,
    )
    assert checked.status_code == 200, checked.text
    checkins = await eventually(
        lambda: figures_on(page, "checkins"),
        lambda figures: figures["checked_in"] == 1,
        "the dashboard's check-ins",
    )
    assert [item["tickets_checked_in"] for item in checkins["items"]] == [1]
    assert await page.inner_text("#figure-checked-in") == "1"
    assert problems.messages == []


async def test_a_customer_is_refused_on_the_dashboard(
    staff_http: httpx.AsyncClient, staff_system: StaffSystem, page: Page
) -> None:
    customer = await sign_up(staff_http, staff_system.api)
    await page.goto(f"{staff_system.api.base_url}/dashboard")
    await page.fill("#email", customer.email)
    await page.fill("#password", customer.password)
    await page.click("#sign-in-button")

    await page.wait_for_selector("#sign-in-error:has-text('The dashboard is for organizers.')")
    assert await page.is_hidden("#board")
