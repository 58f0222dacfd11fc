"""Payment routes over HTTP: pay URL, IPN replies exactly as VNPAY specifies, invoices, pages."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from eventhunting.payments.vnpay_signing import sign_query
from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import create_event, publish, ticket_type
from tests.support.servers import free_port, running_redis, wait_for_port
from tests.support.system import RunningSystem, running_system, stop_process

pytestmark = pytest.mark.system


def signed_ipn(system: RunningSystem, txn_ref: str, amount: int, code: str = "00") -> str:
    parameters = {
        "vnp_TmnCode": system.environment["EVENTHUNTING_VNPAY_TMN_CODE"],
        "vnp_Amount": str(amount * 100),
        "vnp_BankCode": "NCB",
        "vnp_CardType": "ATM",
        "vnp_PayDate": "20261130150000",
        "vnp_OrderInfo": "Thanh toan don hang",
        "vnp_TransactionNo": "14220001",
        "vnp_ResponseCode": code,
        "vnp_TransactionStatus": code,
        "vnp_TxnRef": txn_ref,
    }
    parameters["vnp_SecureHash"] = sign_query(
        parameters, system.environment["EVENTHUNTING_VNPAY_HASH_SECRET"]
    )
    return str(httpx.QueryParams(parameters))


async def held_order(
    http: httpx.AsyncClient, system: RunningSystem, organizer: SignedIn | None = None
) -> tuple[SignedIn, Any]:
    organizer = organizer or await sign_up(http, system, roles=["organizer"])
    event = await create_event(
        http, organizer, ticket_types=[ticket_type(price=180_000, quantity=5)]
    )
    await publish(http, organizer, event["id"])
    buyer = await sign_up(http, system, full_name="Nguyễn Văn A")
    placed = await http.post(
        "/api/v1/orders",
        json={
            "event_id": event["id"],
            "items": [{"ticket_type_id": event["ticket_types"][0]["id"], "quantity": 2}],
        },
        headers=buyer.headers,
    )
    assert placed.status_code == 201, placed.text
    return buyer, placed.json()


async def test_a_buyer_pays_through_the_ipn_and_reads_the_invoice(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    buyer, order = await held_order(http, api_system)
    started = await http.post(
        f"/api/v1/orders/{order['id']}/payments/vnpay",
        json={"bank_code": "NCB", "locale": "en"},
        headers={**buyer.headers, "X-Forwarded-For": "198.51.100.20"},
    )
    assert started.status_code == 201, started.text
    link = started.json()
    assert set(link) == {"payment_url", "txn_ref", "expires_at"}
    query = dict(parse_qsl(urlsplit(link["payment_url"]).query))
    # The test client is a trusted proxy here: the client it names is the buyer.
    assert query["vnp_IpAddr"] == "198.51.100.20"
    assert query["vnp_BankCode"] == "NCB"
    assert query["vnp_ReturnUrl"].endswith("/api/v1/payments/vnpay/return")

    invoice_url = f"/api/v1/orders/{order['id']}/invoice"
    assert (await http.get(invoice_url, headers=buyer.headers)).status_code == 404
    ipn_url = f"/api/v1/payments/vnpay/ipn?{signed_ipn(api_system, link['txn_ref'], 360_000)}"
    ipn = await http.get(ipn_url)
    assert ipn.status_code == 200
    assert ipn.json() == {"RspCode": "00", "Message": "Confirm Success"}
    again = await http.get(ipn_url)
    assert again.json() == {"RspCode": "02", "Message": "Order already confirmed"}

    paid = (await http.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)).json()
    assert paid["status"] == "paid"
    invoice = (
        await http.get(f"/api/v1/orders/{order['id']}/invoice", headers=buyer.headers)
    ).json()
    assert invoice["number"] == paid["invoice_number"]
    assert invoice["buyer"] == {"name": "Nguyễn Văn A", "email": buyer.email}
    assert invoice["payment"]["method"] == "VNPAY"
    assert invoice["total_amount"] == order["total_amount"] == 360_000
    assert invoice["amount_before_vat"] + invoice["vat_amount"] == invoice["total_amount"]
    [line] = invoice["lines"]
    assert (line["quantity"], line["unit_price"], line["vat_rate"]) == (2, 180_000, 10)

    async with asyncio.timeout(20):
        while True:
            listed = await http.get("/api/v1/orders", headers=buyer.headers)
            [item] = listed.json()["items"]
            if item["status"] == "paid":
                assert item["invoice_number"] == invoice["number"]
                break
            await asyncio.sleep(0.1)


async def test_an_organizers_invoice_letters_name_the_series_of_orders_paid_afterwards(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    customer = await sign_up(http, api_system)
    series_url = "/api/v1/me/invoice-series"
    default = await http.get(series_url, headers=organizer.headers)
    assert default.status_code == 200, default.text
    assert (default.json()["letters"], default.json()["chosen"]) == ("EH", False)
    for letters in ("ab", "A", "ABC", "Đ1"):
        refused = await http.put(series_url, json={"letters": letters}, headers=organizer.headers)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "invalid_input"
    assert (await http.get(series_url, headers=organizer.headers)).json() == default.json()
    forbidden = await http.put(series_url, json={"letters": "AB"}, headers=customer.headers)
    assert forbidden.status_code == 403, forbidden.text
    chosen = await http.put(series_url, json={"letters": "AB"}, headers=organizer.headers)
    assert chosen.status_code == 200, chosen.text
    symbol = default.json()["symbol"][:-2] + "AB"
    assert chosen.json() == {"letters": "AB", "symbol": symbol, "chosen": True}
    assert (await http.get(series_url, headers=organizer.headers)).json() == chosen.json()

    buyer, order = await held_order(http, api_system, organizer)
    started = await http.post(f"/api/v1/orders/{order['id']}/payments/vnpay", headers=buyer.headers)
    query = signed_ipn(api_system, started.json()["txn_ref"], order["total_amount"])
    ipn = await http.get(f"/api/v1/payments/vnpay/ipn?{query}")
    assert ipn.json()["RspCode"] == "00"
    invoice_url = f"/api/v1/orders/{order['id']}/invoice"
    invoice = (await http.get(invoice_url, headers=buyer.headers)).json()
    assert invoice["symbol"] == symbol
    assert invoice["number"] == f"{symbol}-{order['event_id']}-00000001"


@pytest.fixture(scope="module")
def payments_only_api(api_system: RunningSystem) -> Iterator[str]:
    """`eventhunting api --only payments` beside the system's API, on its stores."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventhunting.cli",
            "api",
            "--only",
            "payments",
            "--port",
            str(port),
        ],
        env=api_system.environment,
    )
    try:
        wait_for_port(port, timeout=30, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


async def test_a_payments_only_api_records_the_ipn_and_serves_nothing_else(
    http: httpx.AsyncClient, api_system: RunningSystem, payments_only_api: str
) -> None:
    buyer, order = await held_order(http, api_system)
    started = await http.post(f"/api/v1/orders/{order['id']}/payments/vnpay", headers=buyer.headers)
    query = signed_ipn(api_system, started.json()["txn_ref"], order["total_amount"])
    async with httpx.AsyncClient(base_url=payments_only_api, timeout=20) as gateway:
        ipn = await gateway.get(f"/api/v1/payments/vnpay/ipn?{query}")
        assert ipn.json() == {"RspCode": "00", "Message": "Confirm Success"}
        back = await gateway.get(
            f"/api/v1/payments/vnpay/return?{query}", headers={"Accept": "application/json"}
        )
        assert back.json()["status"] == "paid"
        assert (await gateway.get("/health/ready")).status_code == 200
        order_url = f"/api/v1/orders/{order['id']}"
        assert (await gateway.get(order_url, headers=buyer.headers)).status_code == 404
        assert (await gateway.post("/api/v1/auth/login", json={})).status_code == 404
    paid = (await http.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)).json()
    assert paid["status"] == "paid"
    assert (await http.get(f"/api/v1/payments/vnpay/ipn?{query}")).json()["RspCode"] == "02"


async def test_ipn_answers_exactly_two_fields_even_for_garbage(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    for query in ("", "vnp_TxnRef=1&vnp_SecureHash=00", "a=b&a=c"):
        response = await http.get(f"/api/v1/payments/vnpay/ipn?{query}")
        assert response.status_code == 200
        assert response.json() == {"RspCode": "97", "Message": "Invalid signature"}
        assert "hash" not in response.text.lower()


async def test_the_return_page_is_html_or_json_and_names_the_outcome(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    buyer, order = await held_order(http, api_system)
    started = await http.post(f"/api/v1/orders/{order['id']}/payments/vnpay", headers=buyer.headers)
    txn_ref = started.json()["txn_ref"]
    failed = signed_ipn(api_system, txn_ref, order["total_amount"], code="24")
    page = await http.get(
        f"/api/v1/payments/vnpay/return?{failed}", headers={"Accept-Language": "vi-VN"}
    )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-status="failed"' in page.text
    assert "Thanh toán không thành công" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    as_json = await http.get(
        f"/api/v1/payments/vnpay/return?{failed}", headers={"Accept": "application/json"}
    )
    assert as_json.json()["status"] == "failed"
    assert as_json.json()["order_id"] == order["id"]
    # Display only: the order is still pending after the return page was shown.
    shown = (await http.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)).json()
    assert shown["status"] == "pending"


@pytest.fixture(scope="module")
def guarded_system(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str
) -> Iterator[RunningSystem]:
    """On a Redis of its own: its bootstrap admin must not become the shared system's."""
    with (
        running_redis(tmp_path_factory.mktemp("guarded-redis")) as redis_url,
        running_system(
            redis_url,
            mongodb_url,
            f"guarded_{uuid.uuid4().hex[:8]}",
            overrides={
                "EVENTHUNTING_VNPAY_IPN_ALLOWED_ADDRESSES": "203.0.113.0/24",
                "EVENTHUNTING_TRUSTED_PROXIES": "127.0.0.1",
            },
        ) as system,
    ):
        yield system


async def test_an_ipn_allow_list_refuses_other_callers_and_believes_only_trusted_proxies(
    guarded_system: RunningSystem,
) -> None:
    async with httpx.AsyncClient(base_url=guarded_system.base_url, timeout=30) as client:
        refused = await client.get("/api/v1/payments/vnpay/ipn")
        # The test client is the trusted proxy here: it forwards a caller from VNPAY's range.
        forwarded = await client.get(
            "/api/v1/payments/vnpay/ipn", headers={"X-Forwarded-For": "203.0.113.40"}
        )
        spoofed = await client.get(
            "/api/v1/payments/vnpay/ipn",
            headers={"X-Forwarded-For": "203.0.113.40, 198.51.100.9"},
        )
    assert refused.status_code == 403
    assert refused.json()["code"] == "ipn_forbidden"
    assert forwarded.status_code == 200
    assert forwarded.json() == {"RspCode": "97", "Message": "Invalid signature"}
    assert spoofed.status_code == 403
