"""A refund end to end, every part its own process: paid at the VNPAY sandbox, refunded by the
organizer over HTTP, given back by the reconciler, credited by a credit note in the invoice's
series, and mailed to the buyer by the mailer through the SMTP sink."""

from __future__ import annotations

import asyncio
import email
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eventhunting.tickets.qr_keys import private_key_text
from tests.integration.vnpay.standin_harness import CREDENTIALS, Buyer, Standin, running_standin
from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import published_event, ticket_type
from tests.support.servers import SmtpSink, free_port, running_redis, running_smtp_sink
from tests.support.system import RunningSystem, running_system

pytestmark = pytest.mark.system

PRICE = 99_999
WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with running_smtp_sink() as running:
        yield running


@pytest.fixture(scope="module")
def refund_system(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str, sink: SmtpSink
) -> Iterator[tuple[RunningSystem, Standin]]:
    """API, projector, reconciler and mailer processes; the sandbox calls the API's IPN."""
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    with (
        running_redis(tmp_path_factory.mktemp("refund-redis")) as redis_url,
        running_standin(api_url + "/api/v1/payments/vnpay/ipn") as standin,
        running_system(
            redis_url,
            mongodb_url,
            f"refunds_{uuid.uuid4().hex[:8]}",
            workers=("projector", "reconciler", "mailer"),
            port=api_port,
            overrides={
                "EVENTHUNTING_VNPAY_TMN_CODE": CREDENTIALS.tmn_code,
                "EVENTHUNTING_VNPAY_HASH_SECRET": CREDENTIALS.hash_secret,
                "EVENTHUNTING_VNPAY_PAY_URL": standin.pay_url,
                "EVENTHUNTING_VNPAY_API_URL": standin.api_url,
                "EVENTHUNTING_PUBLIC_BASE_URL": api_url,
                "EVENTHUNTING_SMTP_URL": sink.smtp_url,
                "EVENTHUNTING_QR_SIGNING_KEY": private_key_text(Ed25519PrivateKey.generate()),
                "EVENTHUNTING_SMTP_RETRY_MAX_SECONDS": "0.2",
            },
        ) as system,
    ):
        yield system, standin


@pytest.fixture
async def http(refund_system: tuple[RunningSystem, Standin]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=refund_system[0].base_url, timeout=30) as client:
        yield client


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """The first truthy answer of `check`, polled until WAIT_SECONDS."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                answer = await check()
                if answer:
                    return answer
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def refund_mails(sink: SmtpSink, recipient: str) -> list[EmailMessage]:
    async with httpx.AsyncClient(base_url=sink.http_url, timeout=10) as client:
        listing = (await client.get("/api/messages")).json()
        found = []
        for message in listing:
            if recipient not in message["to"]:
                continue
            raw = (await client.get(f"/api/messages/{message['id']}/raw")).content
            parsed = email.message_from_bytes(raw, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            if str(parsed["Message-ID"]).startswith("<refund_completed-"):
                found.append(parsed)
        return found


async def test_a_partial_refund_and_the_rest_are_credited_and_mailed_once_each(
    http: httpx.AsyncClient, refund_system: tuple[RunningSystem, Standin], sink: SmtpSink
) -> None:
    system, standin = refund_system
    organizer = await sign_up(http, system, roles=["organizer"])
    event = await published_event(
        http, organizer, ticket_types=[ticket_type(price=PRICE, quantity=10)]
    )
    buyer = await sign_up(http, system, full_name="Vũ Hà")
    placed = await http.post(
        "/api/v1/orders",
        json={
            "event_id": event["id"],
            "items": [{"ticket_type_id": event["ticket_types"][0]["id"], "quantity": 3}],
        },
        headers=buyer.headers,
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    started = await http.post(
        f"/api/v1/orders/{order_id}/payments/vnpay", json={"locale": "en"}, headers=buyer.headers
    )
    assert started.status_code == 201, started.text
    paying = Buyer(standin)
    try:
        await asyncio.to_thread(paying.pay, started.json()["payment_url"])
    finally:
        paying.client.close()

    async def issued() -> list[dict[str, Any]]:
        listed = await http.get(f"/api/v1/orders/{order_id}/tickets", headers=buyer.headers)
        items: list[dict[str, Any]] = listed.json().get("items", [])
        return items

    tickets = await eventually(issued, "the tickets to be issued")
    invoice = (await http.get(f"/api/v1/orders/{order_id}/invoice", headers=buyer.headers)).json()

    refunds_url = f"/api/v1/orders/{order_id}/refunds"
    first = await http.post(
        refunds_url,
        json={"reason": "one seat", "ticket_ids": [tickets[0]["id"]]},
        headers=organizer.headers,
    )
    assert first.status_code == 202, first.text
    await eventually(lambda: completed(http, refunds_url, organizer, 1), "the first refund")
    rest = await http.post(refunds_url, json={"reason": "the rest"}, headers=organizer.headers)
    assert rest.status_code == 202, rest.text
    await eventually(lambda: completed(http, refunds_url, organizer, 2), "the second refund")

    notes_url = f"/api/v1/orders/{order_id}/credit-notes"
    notes = (await http.get(notes_url, headers=buyer.headers)).json()["items"]
    assert notes == (await http.get(notes_url, headers=organizer.headers)).json()["items"]
    assert [n["refund_id"] for n in notes] == [first.json()["id"], rest.json()["id"]]
    assert [n["total_amount"] for n in notes] == [-PRICE, -2 * PRICE]
    series = invoice["number"].rsplit("-", 1)[0]
    assert [n["number"] for n in notes] == [f"{series}-00000002", f"{series}-00000003"]
    for note in notes:
        assert note["adjusts"] == {
            "symbol": invoice["symbol"],
            "number": invoice["number"],
            "issued_at": invoice["issued_at"],
        }
        assert note["buyer"] == {"name": "Vũ Hà", "email": buyer.email}
    for field in ("total_amount", "vat_amount", "amount_before_vat"):
        assert invoice[field] + sum(n[field] for n in notes) == 0

    await eventually(lambda: mails_when(sink, buyer, 2), "one refund mail for each refund")
    await asyncio.sleep(2)  # anything sent twice would have arrived by now
    mails = await refund_mails(sink, buyer.email)
    assert len(mails) == 2
    texts = sorted(body_text(m) for m in mails)
    amounts = {"VND 99,999": notes[0]["number"], "VND 199,998": notes[1]["number"]}
    for amount, number in amounts.items():
        (text,) = [t for t in texts if amount in t]
        assert number in text
        assert event["title"] in text
    assert {m["Content-Language"] for m in mails} == {"en"}


async def completed(http: httpx.AsyncClient, url: str, organizer: SignedIn, count: int) -> bool:
    items = (await http.get(url, headers=organizer.headers)).json()["items"]
    return len(items) == count and all(item["status"] == "completed" for item in items)


async def mails_when(sink: SmtpSink, buyer: SignedIn, count: int) -> list[EmailMessage]:
    mails = await refund_mails(sink, buyer.email)
    return mails if len(mails) >= count else []


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    return part.get_content()
