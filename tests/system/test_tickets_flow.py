"""Tickets end to end: a paid order is mailed once by the mailer process, its QR codes check in
once through the API, whatever the SMTP server or the mailer process do."""

from __future__ import annotations

import asyncio
import email
import io
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from eventhunting.consumers.mailer import CONCURRENCY
from eventhunting.tickets.qr_codes import TicketCode, sign_ticket_code, verify_ticket_code
from eventhunting.tickets.qr_keys import QrKeyRing, private_key_text
from tests.support.accounts import SignedIn, grant_staff, sign_in_admin, sign_up
from tests.support.catalog import published_event, ticket_type
from tests.support.servers import SmtpSink, running_redis, running_smtp_sink
from tests.support.system import RunningSystem, running_system, stop_process

pytestmark = pytest.mark.system

Body = dict[str, Any]
MAIL_TIMEOUT_SECONDS = 60.0


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with running_smtp_sink() as running:
        yield running


@pytest.fixture(scope="module")
def tickets_system(
    tmp_path_factory: pytest.TempPathFactory,
    mongodb_url: str,
    sink: SmtpSink,
    signing_key: Ed25519PrivateKey,
) -> Iterator[RunningSystem]:
    """API and projector on a Redis of their own; the mailer runs as its own process."""
    with running_redis(tmp_path_factory.mktemp("tickets-redis")) as redis_url:
        overrides = {
            "EVENTHUNTING_SMTP_URL": sink.smtp_url,
            "EVENTHUNTING_QR_SIGNING_KEY": private_key_text(signing_key),
            "EVENTHUNTING_SMTP_ATTEMPTS": "3",
            "EVENTHUNTING_SMTP_RETRY_MAX_SECONDS": "0.2",
            "EVENTHUNTING_SMTP_TIMEOUT_SECONDS": "5",
        }
        with running_system(
            redis_url,
            mongodb_url,
            f"tickets_{uuid.uuid4().hex[:8]}",
            workers=("projector",),
            overrides=overrides,
        ) as system:
            yield system


class MailerProcess:
    """`eventhunting worker mailer` as a child process that a test may kill and start again."""

    def __init__(self, environment: dict[str, str], log: Path) -> None:
        self.environment = environment
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "eventhunting.cli", "worker", "mailer"],
                env=self.environment,
                stderr=log,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@pytest.fixture(scope="module")
def mailer(
    tickets_system: RunningSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MailerProcess]:
    process = MailerProcess(
        tickets_system.environment, tmp_path_factory.mktemp("mailer") / "mailer.log"
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http(
    tickets_system: RunningSystem, mailer: MailerProcess
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tickets_system.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def sink_api(sink: SmtpSink) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sink.http_url, timeout=10) as client:
        (await client.delete("/api/faults")).raise_for_status()
        yield client


@pytest.fixture
async def organizer(http: httpx.AsyncClient, tickets_system: RunningSystem) -> SignedIn:
    return await sign_up(http, tickets_system, roles=["organizer"])


async def free_event(http: httpx.AsyncClient, organizer: SignedIn, quantity: int = 500) -> Body:
    return await published_event(
        http,
        organizer,
        ticket_types=[ticket_type(name="Vé miễn phí", price=0, quantity=quantity)],
        max_tickets_per_customer=None,
    )


async def buy(http: httpx.AsyncClient, buyer: SignedIn, event: Body, quantity: int) -> Body:
    response = await http.post(
        "/api/v1/orders",
        json={
            "event_id": event["id"],
            "items": [{"ticket_type_id": event["ticket_types"][0]["id"], "quantity": quantity}],
        },
        headers=buyer.headers,
    )
    assert response.status_code == 201, response.text
    order: Body = response.json()
    assert order["status"] == "paid"
    return order


async def messages_to(sink_api: httpx.AsyncClient, recipient: str) -> list[Body]:
    listing = (await sink_api.get("/api/messages")).json()
    return [message for message in listing if recipient in message["to"]]


async def wait_for(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(MAIL_TIMEOUT_SECONDS):
        while True:
            if await check():
                return
            await asyncio.sleep(0.2)


async def mail_of(sink_api: httpx.AsyncClient, recipient: str) -> EmailMessage:
    """The one mail to `recipient`, once it is there (raw, from the sink's JSON API)."""

    async def arrived() -> bool:
        return bool(await messages_to(sink_api, recipient))

    await wait_for(arrived)
    (listed,) = await messages_to(sink_api, recipient)
    raw = (await sink_api.get(f"/api/messages/{listed['id']}/raw")).content
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def scanned_codes(message: EmailMessage) -> list[str]:
    """What a phone camera reads off the mail's inline QR images."""
    codes = []
    for part in message.walk():
        if part.get_content_type() == "image/png":
            image = Image.open(io.BytesIO(part.get_payload(decode=True)))
            codes.extend(result.text for result in zxingcpp.read_barcodes(image))
    return codes


async def check_in(http: httpx.AsyncClient, who: SignedIn, qr: str, **extra: str) -> httpx.Response:
    return await http.post("/api/v1/checkins", json={"qr": qr, **extra}, headers=who.headers)


async def test_the_mailed_qr_codes_check_in_once_and_the_second_scan_is_409(
    http: httpx.AsyncClient,
    tickets_system: RunningSystem,
    organizer: SignedIn,
    sink_api: httpx.AsyncClient,
) -> None:
    event = await free_event(http, organizer)
    buyer = await sign_up(http, tickets_system, full_name="Đỗ Hoài Nam")
    staff = await sign_up(http, tickets_system)
    await grant_staff(http, organizer, event["id"], staff.account_id)
    order = await buy(http, buyer, event, 2)

    message = await mail_of(sink_api, buyer.email)
    codes = scanned_codes(message)

    assert len(codes) == 2
    listed = await http.get(f"/api/v1/orders/{order['id']}/tickets", headers=buyer.headers)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert sorted(item["qr"] for item in items) == sorted(codes)
    assert {item["holder_name"] for item in items} == {"Đỗ Hoài Nam"}
    assert {item["status"] for item in items} == {"issued"}
    first = await check_in(http, staff, codes[0], gate="Cổng A")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "checked_in"
    second = await check_in(http, staff, codes[0], gate="Cổng B")
    assert second.status_code == 409
    assert second.json()["code"] == "already_checked_in"
    assert second.json()["checked_in_at"] == first.json()["checked_in_at"]
    assert second.json()["gate"] == "Cổng A"
    by_organizer = await check_in(http, organizer, codes[1])
    assert by_organizer.status_code == 200, by_organizer.text
    after = await http.get(f"/api/v1/orders/{order['id']}/tickets", headers=buyer.headers)
    assert {item["status"] for item in after.json()["items"]} == {"checked_in"}
    png = await http.get(items[0]["qr_png_url"], headers=buyer.headers)
    assert png.headers["content-type"] == "image/png"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert [result.text for result in decoded] == [items[0]["qr"]]
    svg = await http.get(items[0]["qr_svg_url"], headers=organizer.headers)
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    stranger = await sign_up(http, tickets_system)
    assert (await http.get(items[0]["qr_png_url"], headers=stranger.headers)).status_code == 404
    hidden = await http.get(f"/api/v1/orders/{order['id']}/tickets", headers=stranger.headers)
    assert hidden.status_code == 404


async def test_forged_altered_and_other_event_codes_are_refused_with_a_reason(
    http: httpx.AsyncClient,
    tickets_system: RunningSystem,
    organizer: SignedIn,
    sink_api: httpx.AsyncClient,
    signing_key: Ed25519PrivateKey,
) -> None:
    event = await free_event(http, organizer)
    elsewhere = await free_event(http, organizer)
    staff = await sign_up(http, tickets_system)
    await grant_staff(http, organizer, event["id"], staff.account_id)
    buyer = await sign_up(http, tickets_system)
    await buy(http, buyer, elsewhere, 1)
    (other_event_code,) = scanned_codes(await mail_of(sink_api, buyer.email))
    real = verify_ticket_code(other_event_code, QrKeyRing(signing_key=signing_key))
    forged = sign_ticket_code(
        TicketCode(
            ticket_id=real.ticket_id, event_id=event["id"], ticket_type_id=real.ticket_type_id
        ),
        QrKeyRing(signing_key=Ed25519PrivateKey.generate()),
    )
    position = len(other_event_code) // 2
    replacement = "A" if other_event_code[position] != "A" else "B"
    altered = other_event_code[:position] + replacement + other_event_code[position + 1 :]
    customer = await sign_up(http, tickets_system)

    answers = {
        "other_event": await check_in(http, staff, other_event_code),
        "unknown_key": await check_in(http, staff, forged),
        "bad_signature": await check_in(http, staff, altered),
        "malformed": await check_in(http, staff, "not a ticket"),
    }

    for reason, answer in answers.items():
        assert answer.status_code == 422, (reason, answer.text)
        assert answer.json()["code"] == "invalid_ticket"
        assert answer.json()["reason"] == reason
    refused = await check_in(http, customer, other_event_code)
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_door_staff"
    wrong_door = await check_in(http, organizer, other_event_code, event_id=event["id"])
    assert wrong_door.json()["reason"] == "other_event"
    assert (await check_in(http, organizer, other_event_code)).status_code == 200


async def test_of_fifty_concurrent_scans_of_one_ticket_exactly_one_is_let_in(
    http: httpx.AsyncClient,
    tickets_system: RunningSystem,
    organizer: SignedIn,
    sink_api: httpx.AsyncClient,
) -> None:
    event = await free_event(http, organizer)
    buyer = await sign_up(http, tickets_system)
    order = await buy(http, buyer, event, 1)

    async def issued() -> bool:
        found = await http.get(f"/api/v1/orders/{order['id']}/tickets", headers=buyer.headers)
        return bool(found.json()["items"])

    await wait_for(issued)
    listed = await http.get(f"/api/v1/orders/{order['id']}/tickets", headers=buyer.headers)
    qr = listed.json()["items"][0]["qr"]

    answers = await asyncio.gather(*(check_in(http, organizer, qr) for _ in range(50)))

    assert Counter(answer.status_code for answer in answers) == {200: 1, 409: 49}
    winner = next(answer for answer in answers if answer.status_code == 200)
    assert {a.json()["checked_in_at"] for a in answers if a.status_code == 409} == {
        winner.json()["checked_in_at"]
    }


async def test_the_checkin_summary_counts_concurrent_scans_exactly_for_door_staff_only(
    http: httpx.AsyncClient,
    tickets_system: RunningSystem,
    organizer: SignedIn,
    sink_api: httpx.AsyncClient,
) -> None:
    event = await free_event(http, organizer)
    staff = await sign_up(http, tickets_system)
    await grant_staff(http, organizer, event["id"], staff.account_id)
    orders = [await buy(http, await sign_up(http, tickets_system), event, 3) for _ in range(3)]
    codes: list[str] = []
    for order in orders:

        async def issued(order_id: str = order["id"]) -> bool:
            found = await http.get(f"/api/v1/orders/{order_id}/tickets", headers=organizer.headers)
            return bool(found.json()["items"])

        await wait_for(issued)
        found = await http.get(f"/api/v1/orders/{order['id']}/tickets", headers=organizer.headers)
        codes.extend(item["qr"] for item in found.json()["items"])
    summary_url = f"/api/v1/events/{event['id']}/checkins/summary"

    # Eight of the nine tickets, each scanned four times at once at two gates.
    answers = await asyncio.gather(
        *(
            check_in(http, staff, qr, gate=("Cổng A", "Cổng B")[n % 2])
            for qr in codes[:8]
            for n in range(4)
        )
    )
    summary = await http.get(summary_url, headers=staff.headers)

    assert Counter(answer.status_code for answer in answers) == {200: 8, 409: 24}
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert (body["event_id"], body["checked_in"], body["tickets"]) == (event["id"], 8, 9)
    [line] = body["by_ticket_type"]
    assert (line["ticket_type_id"], line["checked_in"], line["tickets"]) == (
        event["ticket_types"][0]["id"],
        8,
        9,
    )
    assert sum(gate["checked_in"] for gate in body["by_gate"]) == 8
    assert {gate["gate"] for gate in body["by_gate"]} <= {"Cổng A", "Cổng B"}
    admin = await sign_in_admin(http, tickets_system)
    for allowed in (organizer, admin):
        seen = await http.get(summary_url, headers=allowed.headers)
        assert seen.json()["checked_in"] == 8
    stranger = await sign_up(http, tickets_system)
    refused = await http.get(summary_url, headers=stranger.headers)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "not_door_staff"
    assert (await http.get(summary_url)).status_code == 401
    missing = await http.get(
        "/api/v1/events/01JNOSUCHEVENT0000000000000/checkins/summary", headers=admin.headers
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "event_not_found"


async def test_resending_sends_a_new_mail_until_the_hourly_limit_answers_429(
    http: httpx.AsyncClient,
    tickets_system: RunningSystem,
    organizer: SignedIn,
    sink_api: httpx.AsyncClient,
) -> None:
    event = await free_event(http, organizer)
    buyer = await sign_up(http, tickets_system)
    order = await buy(http, buyer, event, 1)
    await mail_of(sink_api, buyer.email)
    url = f"/api/v1/orders/{order['id']}/tickets/resend"

    answers = [await http.post(url, headers=buyer.headers) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [202, 202, 202, 429]
    assert [answer.json().get("purpose") for answer in answers[:3]] == [
        "resend:1",
        "resend:2",
        "resend:3",
    ]
    assert answers[3].json()["code"] == "resend_rate_limited"
    assert 3_500 <= int(answers[3].headers["Retry-After"]) <= 3_600
    assert (await http.post(url, headers=organizer.headers)).status_code == 403

    async def all_sent() -> bool:
        return len(await messages_to(sink_api, buyer.email)) == 4

    await wait_for(all_sent)
    await asyncio.sleep(1)
    assert len(await messages_to(sink_api, buyer.email)) == 4


async def test_smtp_refusals_drops_and_an_outage_past_the_retries_end_in_one_mail_each(
    http: httpx.AsyncClient,
    tickets_system: RunningSystem,
    organizer: SignedIn,
    sink_api: httpx.AsyncClient,
) -> None:
    event = await free_event(http, organizer)
    buyers = [await sign_up(http, tickets_system) for _ in range(4)]
    await sink_api.post("/api/faults", json={"kind": "refuse", "count": 2, "code": 451})
    await sink_api.post("/api/faults", json={"kind": "drop", "count": 2})
    await buy(http, buyers[0], event, 1)
    await buy(http, buyers[1], event, 1)
    await mail_of(sink_api, buyers[0].email)
    await mail_of(sink_api, buyers[1].email)
    # Down for longer than one delivery's retries (3 attempts, < 1 s of waits): the entries
    # stay pending and are delivered once the server is back.
    await sink_api.post("/api/faults", json={"kind": "down", "seconds": 6})
    await buy(http, buyers[2], event, 2)
    await buy(http, buyers[3], event, 1)

    for buyer in buyers[2:]:
        await mail_of(sink_api, buyer.email)
    await asyncio.sleep(2)

    for buyer in buyers:
        assert len(await messages_to(sink_api, buyer.email)) == 1


async def test_a_mailer_killed_in_the_middle_of_a_batch_loses_no_mail(
    http: httpx.AsyncClient,
    tickets_system: RunningSystem,
    organizer: SignedIn,
    sink_api: httpx.AsyncClient,
    mailer: MailerProcess,
) -> None:
    event = await free_event(http, organizer)
    buyers = [await sign_up(http, tickets_system) for _ in range(20)]
    before = len((await sink_api.get("/api/messages")).json())
    await asyncio.gather(*(buy(http, buyer, event, 1) for buyer in buyers))

    async def some_sent() -> bool:
        return len((await sink_api.get("/api/messages")).json()) > before

    await wait_for(some_sent)
    mailer.kill()
    sent_before_kill = len((await sink_api.get("/api/messages")).json()) - before
    mailer.start()

    async def all_mailed() -> bool:
        return all([await messages_to(sink_api, buyer.email) for buyer in buyers])

    await wait_for(all_mailed)
    await asyncio.sleep(2)
    counts = [len(await messages_to(sink_api, buyer.email)) for buyer in buyers]
    # Nobody is left without. A crash between the SMTP server's 250 and the ledger write
    # mails that order twice (docs/tickets.md, "the duplicate window"): at most the mails in
    # flight at the kill, never a third copy.
    assert min(counts) == 1
    assert max(counts) <= 2
    assert sum(counts) - len(counts) <= CONCURRENCY
    assert sent_before_kill < len(buyers), "the kill came after the batch: not a mid-batch kill"


async def test_a_dead_lettered_mail_is_listed_and_an_admin_retry_delivers_it_once(
    http: httpx.AsyncClient,
    tickets_system: RunningSystem,
    organizer: SignedIn,
    sink_api: httpx.AsyncClient,
) -> None:
    admin = await sign_in_admin(http, tickets_system)
    event = await free_event(http, organizer)
    buyer = await sign_up(http, tickets_system)
    # Five permanent refusals: one per delivery, until the group gives the entry up.
    await sink_api.post("/api/faults", json={"kind": "refuse", "count": 5, "code": 550})
    order = await buy(http, buyer, event, 1)

    async def dead() -> bool:
        listed = await http.get("/api/v1/admin/dead-letters", headers=admin.headers)
        return any(item["stream"] == f"order-{order['id']}" for item in listed.json()["items"])

    await wait_for(dead)
    listed = (
        await http.get("/api/v1/admin/dead-letters?group=mailer", headers=admin.headers)
    ).json()
    (letter,) = [i for i in listed["items"] if i["stream"] == f"order-{order['id']}"]
    assert letter["group"] == "mailer"
    assert letter["event_type"] == "TicketsIssued"
    assert letter["deliveries"] == 5
    assert "550" in letter["error"]
    assert "Traceback" not in letter["error"]
    assert await messages_to(sink_api, buyer.email) == []
    forbidden = await http.get("/api/v1/admin/dead-letters", headers=organizer.headers)
    assert forbidden.status_code == 403

    retried = await http.post(
        f"/api/v1/admin/dead-letters/mailer/{letter['id']}/retry", headers=admin.headers
    )
    again = await http.post(
        f"/api/v1/admin/dead-letters/mailer/{letter['id']}/retry", headers=admin.headers
    )

    assert retried.status_code == 202, retried.text
    assert again.status_code == 404
    await mail_of(sink_api, buyer.email)
    await asyncio.sleep(2)
    assert len(await messages_to(sink_api, buyer.email)) == 1
    remaining = await http.get("/api/v1/admin/dead-letters", headers=admin.headers)
    assert letter["id"] not in {item["id"] for item in remaining.json()["items"]}
