"""Cancelling an event with 500 paid orders while the refund worker is SIGKILLed twice and the
VNPAY sandbox fails a tenth of the refund calls: every order is refunded exactly once and
every buyer is mailed once.

The API, projector, archiver, expirer and mailer run as processes on a Redis of their own;
the reconciler runs as a process of its own that the test kills and starts again; buyers pay
through the sandbox's pages, which calls the API's IPN. At the end the sandbox's ledger has
one refund of each payment, named by the request id of the refund our events completed;
every ticket is refused at the door; the stock and buyer counters equal a replay of the
orders' streams; every buyer has one refund mail in the SMTP sink.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eventhunting.domain.orders import (
    OrderPlaced,
    RefundCompleted,
    RefundFailed,
    RefundRequested,
    buyer_ticket_change,
    stock_changes,
)
from eventhunting.event_catalog import register_all_events
from eventhunting.languages.catalogs import LANGUAGES, catalog
from eventhunting.services.orders import buyer_counter
from eventhunting.store import keys
from eventhunting.store.append import EventStore
from eventhunting.store.counters import inventory_counter
from eventhunting.store.envelope import EventEnvelope
from eventhunting.tickets.qr_keys import private_key_text
from tests.integration.vnpay.standin_harness import (
    CREDENTIALS,
    HOLDER,
    ISSUE_DATE,
    OTP,
    SUCCESS_CARD,
    Standin,
    running_standin,
)
from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import published_event, ticket_type
from tests.support.servers import SmtpSink, free_port, running_redis, running_smtp_sink
from tests.support.system import (
    CLIENT_KEEPALIVE_SECONDS,
    RunningSystem,
    WorkerProcess,
    running_system,
)

# About 90 s on an idle 2-core machine; the limit leaves room for a busy one.
pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

ORDERS = int(os.environ.get("EVENTHUNTING_CANCEL_TEST_ORDERS", "500"))
PRICE = 50_000
PARTITIONS = 16
REFUND_FAILURE_RATE = 0.1
SANDBOX_SEED = 20261201
# Requests in flight at once while buyers sign up, order and pay.
CONCURRENCY = 12
# Raised for the test: the gateway's pace and a failed refund's backoff.
REFUNDS_PER_SECOND = 400
DEADLINE_SECONDS = 180.0
IPN_PATH = "/api/v1/payments/vnpay/ipn"

Body = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class CancellationSystem:
    api: RunningSystem
    standin: Standin
    sink: SmtpSink
    redis_url: str


@pytest.fixture(scope="module")
def cancellation_system(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str
) -> Iterator[CancellationSystem]:
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    with (
        running_redis(tmp_path_factory.mktemp("cancellation-redis")) as redis_url,
        running_smtp_sink() as sink,
        running_standin(
            api_url + IPN_PATH, "--seed", str(SANDBOX_SEED), "--ipn-timeout-seconds", "10"
        ) as standin,
        running_system(
            redis_url,
            mongodb_url,
            f"cancellation_{uuid.uuid4().hex[:8]}",
            workers=("projector", "archiver", "expirer", "mailer"),
            port=api_port,
            overrides={
                "EVENTHUNTING_PARTITIONS": str(PARTITIONS),
                "EVENTHUNTING_VNPAY_TMN_CODE": CREDENTIALS.tmn_code,
                "EVENTHUNTING_VNPAY_HASH_SECRET": CREDENTIALS.hash_secret,
                "EVENTHUNTING_VNPAY_PAY_URL": standin.pay_url,
                "EVENTHUNTING_VNPAY_API_URL": standin.api_url,
                "EVENTHUNTING_PUBLIC_BASE_URL": api_url,
                "EVENTHUNTING_VNPAY_REFUNDS_PER_SECOND": str(REFUNDS_PER_SECOND),
                "EVENTHUNTING_VNPAY_REFUND_RETRY_INITIAL_SECONDS": "0.5",
                "EVENTHUNTING_VNPAY_REFUND_RETRY_MAX_SECONDS": "2",
                "EVENTHUNTING_SMTP_URL": sink.smtp_url,
                "EVENTHUNTING_QR_SIGNING_KEY": private_key_text(Ed25519PrivateKey.generate()),
            },
        ) as api,
    ):
        yield CancellationSystem(api=api, standin=standin, sink=sink, redis_url=redis_url)


@pytest.fixture
async def http(cancellation_system: CancellationSystem) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(
        max_connections=CONCURRENCY * 2, keepalive_expiry=CLIENT_KEEPALIVE_SECONDS
    )
    async with httpx.AsyncClient(
        base_url=cancellation_system.api.base_url, timeout=30, limits=limits
    ) as client:
        yield client


async def in_parallel(count: int, job: Callable[[int], Awaitable[T]]) -> list[T]:
    """`job(0..count-1)`, at most CONCURRENCY at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> T:
        async with gate:
            return await job(index)

    return list(await asyncio.gather(*(one(index) for index in range(count))))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, deadline: float) -> None:
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def pay_at_the_sandbox(sandbox: httpx.AsyncClient, payment_url: str) -> None:
    """A buyer's trip through the sandbox's card and OTP pages (it then calls our IPN)."""
    opened = await sandbox.get(payment_url)
    assert opened.status_code == 303, opened.text
    page = opened.headers["location"]
    card = await sandbox.post(
        f"{page}/card",
        data={
            "bank_code": "NCB",
            "card_number": SUCCESS_CARD,
            "card_holder": HOLDER,
            "issue_date": ISSUE_DATE,
        },
    )
    assert card.status_code == 303, card.text
    confirmed = await sandbox.post(f"{page}/otp", data={"otp": OTP})
    assert confirmed.status_code == 303, confirmed.text


async def paid_orders(
    http: httpx.AsyncClient, system: CancellationSystem, event: Body
) -> list[tuple[SignedIn, Body]]:
    """ORDERS buyers, each with an order of one ticket paid through the sandbox."""
    ticket_type_id = event["ticket_types"][0]["id"]
    async with httpx.AsyncClient(base_url=system.standin.base_url, timeout=30) as sandbox:

        async def buy(_: int) -> tuple[SignedIn, Body]:
            buyer = await sign_up(http, system.api)
            placed = await http.post(
                "/api/v1/orders",
                json={
                    "event_id": event["id"],
                    "items": [{"ticket_type_id": ticket_type_id, "quantity": 1}],
                },
                headers=buyer.headers,
            )
            assert placed.status_code == 201, placed.text
            started = await http.post(
                f"/api/v1/orders/{placed.json()['id']}/payments/vnpay",
                json={},
                headers=buyer.headers,
            )
            assert started.status_code == 201, started.text
            await pay_at_the_sandbox(sandbox, started.json()["payment_url"])
            return buyer, placed.json()

        return await in_parallel(ORDERS, buy)


async def read_partition(redis: aioredis.Redis, partition: int) -> list[EventEnvelope]:
    # Every kind of event shares the partition logs.
    store = EventStore(redis, PARTITIONS, event_registry=register_all_events())
    events: list[EventEnvelope] = []
    after = "0"
    while batch := await store.read_log(partition, after, count=1_000):
        events.extend(batch)
        after = batch[-1].position or after
    return events


async def test_a_cancelled_event_refunds_every_paid_order_once_through_crashes_and_refusals(
    http: httpx.AsyncClient, cancellation_system: CancellationSystem
) -> None:
    system = cancellation_system
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    organizer = await sign_up(http, system.api, roles=["organizer"])
    event = await published_event(
        http,
        organizer,
        ticket_types=[ticket_type(name="Standard", price=PRICE, quantity=ORDERS)],
        max_tickets_per_customer=None,
    )
    bought = await paid_orders(http, system, event)

    async def paid_and_mailed() -> bool:
        # The sandbox's IPN calls were confirmed (`00`: recorded) and the mailer sent each
        # buyer their tickets.
        transactions = system.standin.ledger()["transactions"]
        confirmed = sum(1 for t in transactions if t["ipn"] == "confirmed")
        async with httpx.AsyncClient(base_url=system.sink.http_url, timeout=30) as sink:
            mailed = len((await sink.get("/api/messages")).json())
        return confirmed == ORDERS and mailed >= ORDERS

    await eventually(paid_and_mailed, "paid and mailed orders", deadline)

    async def issued(index: int) -> list[Body]:
        order_id = bought[index][1]["id"]
        answer = await http.get(f"/api/v1/orders/{order_id}/tickets", headers=organizer.headers)
        assert answer.status_code == 200, answer.text
        items: list[Body] = answer.json()["items"]
        return items

    tickets = dict(
        zip(
            (order["id"] for _, order in bought),
            await in_parallel(ORDERS, issued),
            strict=True,
        )
    )
    assert all(len(items) == 1 for items in tickets.values())
    prepared = time.monotonic()

    system.standin.switches(
        refund_failure_rate=REFUND_FAILURE_RATE, refund_failure_mode="error", seed=SANDBOX_SEED
    )
    reconciler = WorkerProcess(system.api.environment, "reconciler")
    reconciler.start()
    try:
        cancelled = await http.post(
            f"/api/v1/events/{event['id']}/cancel",
            json={"reason": "venue flooded"},
            headers=organizer.headers,
        )
        assert cancelled.status_code == 200, cancelled.text
        progress_url = f"/api/v1/events/{event['id']}/refunds"

        async def requested_at_least(count: int) -> bool:
            counts = (await http.get(progress_url, headers=organizer.headers)).json()["counts"]
            return sum(counts.values()) >= count

        def refunded_by_the_sandbox() -> int:
            return len(system.standin.ledger()["refunds"])

        async def sandbox_refunded_at_least(count: int) -> bool:
            return refunded_by_the_sandbox() >= count

        # First while the cancellation's delivery is putting the orders up, then while the
        # refunds are being called.
        await eventually(lambda: requested_at_least(ORDERS // 5), "refunds requested", deadline)
        reconciler.kill()
        killed_at = [refunded_by_the_sandbox()]
        reconciler.start()
        await eventually(lambda: sandbox_refunded_at_least(ORDERS // 2), "refunds called", deadline)
        reconciler.kill()
        killed_at.append(refunded_by_the_sandbox())
        reconciler.start()
        assert all(count < ORDERS for count in killed_at), killed_at

        async def all_completed() -> bool:
            counts = (await http.get(progress_url, headers=organizer.headers)).json()["counts"]
            return counts["completed"] == ORDERS

        await eventually(all_completed, "every refund completed", deadline)
    finally:
        reconciler.stop()
    refunded = time.monotonic()

    # The sandbox's ledger = our events: one refund per payment, by the completed refund.
    ledger = system.standin.ledger()["refunds"]
    by_txn_ref: dict[str, list[Body]] = defaultdict(list)
    for entry in ledger:
        by_txn_ref[entry["txn_ref"]].append(entry)
    assert len(ledger) == ORDERS
    redis = aioredis.Redis.from_url(system.redis_url)
    try:
        partition = keys.partition_of(event["id"], PARTITIONS)
        log = await read_partition(redis, partition)
        ticket_type_id = event["ticket_types"][0]["id"]
        inventory = inventory_counter(ticket_type_id)
        buyers = [buyer_counter(event["id"], buyer.account_id) for buyer, _ in bought]
        counters = await EventStore(redis, PARTITIONS).read_counters(
            partition, [inventory, *buyers]
        )
    finally:
        await redis.aclose()
    order_ids = {e.data.order_id for e in log if isinstance(e.data, OrderPlaced)}
    assert order_ids == {order["id"] for _, order in bought}
    requested = Counter(e.data.order_id for e in log if isinstance(e.data, RefundRequested))
    completed = [e.data for e in log if isinstance(e.data, RefundCompleted)]
    failures = [e.data for e in log if isinstance(e.data, RefundFailed)]
    assert set(requested.values()) == {1}
    assert len(requested) == ORDERS
    assert Counter(c.order_id for c in completed) == requested
    assert failures, "the sandbox refused no refund call"
    assert all(not f.outcome_unknown for f in failures)
    for buyer, order in bought:
        refunds = (
            await http.get(f"/api/v1/orders/{order['id']}/refunds", headers=buyer.headers)
        ).json()["items"]
        [refund] = refunds
        assert (refund["status"], refund["amount"]) == ("completed", PRICE)
        payments = [
            entry
            for entries in by_txn_ref.values()
            for entry in entries
            if entry["request_id"].startswith(refund["id"])
        ]
        assert len(payments) == 1
        assert payments[0]["amount"] == PRICE
    assert all(len(entries) == 1 for entries in by_txn_ref.values())

    # Every ticket is refused at the door.
    async def refused(order_id: str) -> None:
        for ticket in tickets[order_id]:
            answer = await http.post(
                "/api/v1/checkins", json={"qr": ticket["qr"]}, headers=organizer.headers
            )
            assert answer.status_code == 422, answer.text
            assert (answer.json()["code"], answer.json()["reason"]) == (
                "invalid_ticket",
                "refunded",
            )

    ids = sorted(tickets)
    await in_parallel(len(ids), lambda index: refused(ids[index]))

    # Stock and buyers' counts equal a replay of the orders' streams.
    held_sold = [0, 0]
    per_buyer: Counter[str] = Counter()
    buyer_of = {e.data.order_id: e.data.buyer_id for e in log if isinstance(e.data, OrderPlaced)}
    for envelope in log:
        order_id = getattr(envelope.data, "order_id", None)
        if order_id not in order_ids or not envelope.stream.startswith("order-"):
            continue
        for change in stock_changes(envelope.data):
            held_sold[0] += change.held
            held_sold[1] += change.sold
        per_buyer[buyer_of[order_id]] += buyer_ticket_change(envelope.data)
    assert (counters[inventory].get("held", 0), counters[inventory].get("sold", 0)) == tuple(
        held_sold
    )
    assert held_sold == [0, 0]
    for buyer, _ in bought:
        name = buyer_counter(event["id"], buyer.account_id)
        assert counters[name].get("tickets", 0) == per_buyer[buyer.account_id]
    # Every buyer has one refund mail (the SMTP sink's JSON API).
    refund_subjects = {
        catalog(language).text("mail.refund_completed.subject", title=event["title"])
        for language in LANGUAGES
    }

    async def refund_mails() -> Counter[str]:
        async with httpx.AsyncClient(base_url=system.sink.http_url, timeout=30) as sink:
            listing = (await sink.get("/api/messages")).json()
        return Counter(
            recipient
            for message in listing
            if message["subject"] in refund_subjects
            for recipient in message["to"]
        )

    async def every_buyer_mailed() -> bool:
        return sum((await refund_mails()).values()) >= ORDERS

    await eventually(every_buyer_mailed, "refund mails", deadline)
    assert await refund_mails() == Counter({buyer.email: 1 for buyer, _ in bought})
    print(
        f"\n{ORDERS} orders: prepared in {prepared - started:.1f} s, refunded in"
        f" {refunded - prepared:.1f} s ({len(failures)} refused calls, kills at {killed_at})"
    )
