"""A buyer pays in a real browser: our API, the VNPAY sandbox's pages, and back to our page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from playwright.async_api import Page
from pymongo import AsyncMongoClient

from tests.e2e.payment_system import PaymentSystem
from tests.integration.vnpay.standin_harness import (
    HOLDER,
    INSUFFICIENT_BALANCE_CARD,
    ISSUE_DATE,
    OTP,
    SUCCESS_CARD,
)
from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import published_event, ticket_type

pytestmark = [pytest.mark.e2e, pytest.mark.system, pytest.mark.timeout(180)]

Body = dict[str, Any]
T = TypeVar("T")

PRICE = 250_000
RETURN_PATH = "/api/v1/payments/vnpay/return"
# How long the IPN and the read models may take to catch up on a busy machine.
SETTLE_SECONDS = 30.0


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Read until `done` holds, for at most SETTLE_SECONDS; the last value otherwise fails."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {SETTLE_SECONDS:g} s")
        await asyncio.sleep(0.25)


async def pending_order(
    http: httpx.AsyncClient, payment_system: PaymentSystem, quantity: int
) -> tuple[SignedIn, Body]:
    """A buyer (signed up) holding `quantity` tickets of a newly published event."""
    organizer = await sign_up(http, payment_system.api, roles=["organizer"])
    buyer = await sign_up(http, payment_system.api, full_name="Nguyen Van A")
    event = await published_event(
        http, organizer, ticket_types=[ticket_type(price=PRICE, quantity=10)]
    )
    placed = await http.post(
        "/api/v1/orders",
        json={
            "event_id": event["id"],
            "items": [{"ticket_type_id": event["ticket_types"][0]["id"], "quantity": quantity}],
        },
        headers=buyer.headers,
    )
    assert placed.status_code == 201, placed.text
    order: Body = placed.json()
    assert (order["status"], order["total_amount"]) == ("pending", PRICE * quantity)
    return buyer, order


async def start_payment(http: httpx.AsyncClient, buyer: SignedIn, order: Body) -> Body:
    response = await http.post(
        f"/api/v1/orders/{order['id']}/payments/vnpay", json={}, headers=buyer.headers
    )
    assert response.status_code == 201, response.text
    payment: Body = response.json()
    return payment


async def pay_on_the_sandbox(page: Page, payment: Body, card_number: str, amount: int) -> None:
    """Open the pay URL and go through the sandbox's card and OTP pages as a buyer would."""
    await page.goto(payment["payment_url"])
    await page.wait_for_selector("form#card-form")
    assert await page.text_content("#txn-ref") == payment["txn_ref"]
    assert await page.text_content("#amount") == f"{amount:,} VND"
    await page.select_option("#bank_code", "NCB")
    await page.fill("#card_number", card_number)
    await page.fill("#card_holder", HOLDER)
    await page.fill("#issue_date", ISSUE_DATE)
    await page.click("#continue")
    await page.wait_for_selector("form#otp-form")
    await page.fill("#otp", OTP)
    await page.click("#confirm")


async def shown_status(page: Page, api_url: str, wanted: str) -> str:
    """The status our return page shows, reloaded while it says `processing` (the IPN may
    reach the API after the browser does), for at most SETTLE_SECONDS."""
    await page.wait_for_url(f"{api_url}{RETURN_PATH}?*")

    async def read() -> str:
        status = await page.get_attribute("#payment-status", "data-status")
        if status == "processing":
            await asyncio.sleep(0.25)
            await page.reload()
            status = await page.get_attribute("#payment-status", "data-status")
        return status or ""

    return await eventually(read, lambda status: status != "processing", f"return page {wanted}")


async def get_order(http: httpx.AsyncClient, buyer: SignedIn, order_id: str) -> Body:
    response = await http.get(f"/api/v1/orders/{order_id}", headers=buyer.headers)
    assert response.status_code == 200, response.text
    order: Body = response.json()
    return order


async def listed_order(http: httpx.AsyncClient, buyer: SignedIn, order_id: str) -> Body | None:
    """The order as the orders read model lists it (GET /api/v1/orders), if there yet."""
    response = await http.get("/api/v1/orders", headers=buyer.headers)
    assert response.status_code == 200, response.text
    return next((item for item in response.json()["items"] if item["id"] == order_id), None)


async def test_paying_with_the_sandbox_card_shows_paid_and_issues_the_invoice(
    http: httpx.AsyncClient,
    payment_system: PaymentSystem,
    page: Page,
    mongo_client: AsyncMongoClient[dict[str, object]],
) -> None:
    buyer, order = await pending_order(http, payment_system, quantity=2)
    payment = await start_payment(http, buyer, order)

    await pay_on_the_sandbox(page, payment, SUCCESS_CARD, amount=2 * PRICE)

    assert await shown_status(page, payment_system.api.base_url, "paid") == "paid"
    assert await page.text_content("#order-id") == order["id"]
    paid = await get_order(http, buyer, order["id"])
    assert paid["status"] == "paid"
    assert paid["invoice_number"]
    invoice_response = await http.get(
        f"/api/v1/orders/{order['id']}/invoice", headers=buyer.headers
    )
    assert invoice_response.status_code == 200, invoice_response.text
    invoice = invoice_response.json()
    sandbox = await asyncio.to_thread(payment_system.standin.transaction, payment["txn_ref"])
    assert invoice["number"] == paid["invoice_number"]
    assert (invoice["order_id"], invoice["total_amount"]) == (order["id"], 2 * PRICE)
    assert invoice["buyer"] == {"name": "Nguyen Van A", "email": buyer.email}
    assert invoice["payment"]["method"] == "VNPAY"
    assert invoice["payment"]["transaction_no"] == sandbox["transaction_no"]

    listed = await eventually(
        lambda: listed_order(http, buyer, order["id"]),
        lambda found: found is not None and found["status"] == "paid",
        "the orders read model",
    )
    assert listed is not None
    assert listed["invoice_number"] == paid["invoice_number"]
    invoices = mongo_client[payment_system.database]["invoices"]
    stored = await eventually(
        lambda: invoices.find_one({"_id": paid["invoice_number"]}),
        lambda found: found is not None,
        "the invoices read model",
    )
    assert stored is not None
    assert (stored["order_id"], stored["total_amount"]) == (order["id"], 2 * PRICE)


async def test_a_card_without_funds_shows_failed_and_the_order_stays_pending(
    http: httpx.AsyncClient, payment_system: PaymentSystem, page: Page
) -> None:
    buyer, order = await pending_order(http, payment_system, quantity=1)
    payment = await start_payment(http, buyer, order)

    await pay_on_the_sandbox(page, payment, INSUFFICIENT_BALANCE_CARD, amount=PRICE)

    assert await shown_status(page, payment_system.api.base_url, "failed") == "failed"
    # The failure was recorded (VNPAY heard 00), and it changed nothing but the attempt.
    await eventually(
        lambda: asyncio.to_thread(payment_system.standin.transaction, payment["txn_ref"]),
        lambda sandbox: sandbox["ipn"] == "confirmed",
        "the sandbox's IPN",
    )
    after = await get_order(http, buyer, order["id"])
    assert after["status"] == "pending"
    assert after.get("invoice_number") is None
    invoice = await http.get(f"/api/v1/orders/{order['id']}/invoice", headers=buyer.headers)
    assert invoice.status_code == 404, invoice.text
    again = await start_payment(http, buyer, order)
    assert again["txn_ref"] != payment["txn_ref"]
