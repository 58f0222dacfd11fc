"""The mailer's handler against a real SMTP sink: one mail per order and purpose, whatever fails."""

from __future__ import annotations

import asyncio
import email
import io
from email import policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image
from pymongo import AsyncMongoClient

from eventhunting.consumers.mailer import Mailer
from eventhunting.domain.actors import Actor
from eventhunting.mail.ledger import MailLedger
from eventhunting.mail.rendering import MailRenderer
from eventhunting.mail.smtp_mailer import MailServerUnavailable, SmtpMailer, TransientMailError
from eventhunting.mail.smtp_url import parse_smtp_url
from eventhunting.services.tickets import DoorStaff, TicketService
from eventhunting.store import keys
from eventhunting.store.consumer_groups import Lease
from eventhunting.store.envelope import EventEnvelope
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.tickets.conftest import Buyer, PaidOrder, messages_of
from tests.support.servers import SmtpSink

SENDER = "EventHunting <tickets@eventhunting.test>"


@pytest.fixture
async def ledger(
    mongo_client: AsyncMongoClient[dict[str, Any]], mongo_database_name: str
) -> MailLedger:
    ledger = MailLedger(mongo_client[mongo_database_name])
    await ledger.create_indexes()
    return ledger


def build_mailer(
    tickets: TicketService, ledger: MailLedger, ring: QrKeyRing, sink: SmtpSink, attempts: int
) -> Mailer:
    return Mailer(
        tickets=tickets,
        ledger=ledger,
        sender=SmtpMailer(
            parse_smtp_url(f"{sink.smtp_url}?starttls=never"),
            attempts=attempts,
            retry_initial_seconds=0.01,
            retry_max_seconds=0.05,
            timeout_seconds=5,
        ),
        renderer=MailRenderer(sender=SENDER),
        signing_ring=ring,
        clock=tickets.clock,
    )


async def log_of(tickets: TicketService, order_id: str) -> list[EventEnvelope]:
    partition = keys.partition_of(order_id, tickets.partitions)
    return await tickets.store.read_log(partition, count=10_000)


LEASE = Lease(partition=0, token=1, consumer="test")


async def handle_everything(mailer: Mailer, tickets: TicketService, order_id: str) -> None:
    """Hand the mailer every entry of the order's partition log, as the group would, until
    nothing new appears (issuing appends entries the next round mails)."""
    seen = 0
    while True:
        log = await log_of(tickets, order_id)
        if len(log) == seen:
            return
        await mailer(log[seen:], LEASE)
        seen = len(log)


async def raw_messages(sink_api: httpx.AsyncClient, recipient: str) -> list[EmailMessage]:
    listing = (await sink_api.get("/api/messages")).json()
    found = []
    for message in messages_of(listing, recipient):
        raw = (await sink_api.get(f"/api/messages/{message['id']}/raw")).content
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


def qr_texts(message: EmailMessage) -> list[str]:
    texts = []
    for part in message.walk():
        if part.get_content_type() == "image/png":
            image = Image.open(io.BytesIO(part.get_payload(decode=True)))
            texts.extend(result.text for result in zxingcpp.read_barcodes(image))
    return texts


async def test_a_paid_order_is_mailed_once_with_qr_images_that_check_in(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    ledger: MailLedger,
    sink: SmtpSink,
    sink_api: httpx.AsyncClient,
    buyer: Buyer,
    free_order: PaidOrder,
) -> None:
    buyer_id = await buyer(full_name="Lê Thu", email="thu@example.test")
    _, order = await free_order(buyer_id, quantity=2)
    mailer = build_mailer(tickets, ledger, signing_ring, sink, attempts=3)

    await handle_everything(mailer, tickets, order.id)
    await mailer(await log_of(tickets, order.id), LEASE)  # everything again: a redelivery

    (message,) = await raw_messages(sink_api, "thu@example.test")
    assert message["Message-ID"] == f"<tickets.{order.id}@eventhunting.test>"
    assert message["Content-Language"] == "vi"
    texts = qr_texts(message)
    state = await tickets.order_tickets(order.id)
    assert sorted(texts) == sorted(t.qr for t in state.tickets)
    assert state.mails_sent == frozenset({"tickets"})
    assert await ledger.already_sent(order.id, "tickets")
    admin = DoorStaff(account_id="admin", is_admin=True)
    for text in texts:
        await tickets.check_in(admin, qr=text)


async def test_a_resend_is_a_new_mail_and_a_redelivered_one_is_not_sent_twice(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    ledger: MailLedger,
    sink: SmtpSink,
    sink_api: httpx.AsyncClient,
    buyer: Buyer,
    free_order: PaidOrder,
) -> None:
    buyer_id = await buyer(email="again@example.test")
    _, order = await free_order(buyer_id, quantity=1)
    mailer = build_mailer(tickets, ledger, signing_ring, sink, attempts=3)
    await handle_everything(mailer, tickets, order.id)

    await tickets.resend(order.id, Actor(buyer_id))
    await handle_everything(mailer, tickets, order.id)
    await mailer(await log_of(tickets, order.id), LEASE)

    messages = await raw_messages(sink_api, "again@example.test")
    assert sorted(m["Message-ID"] for m in messages) == sorted(
        [f"<tickets.{order.id}@eventhunting.test>", f"<resend-1.{order.id}@eventhunting.test>"]
    )
    assert (await tickets.order_tickets(order.id)).mails_sent == {"tickets", "resend:1"}


async def test_smtp_refusals_and_drops_within_the_retries_end_in_one_mail(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    ledger: MailLedger,
    sink: SmtpSink,
    sink_api: httpx.AsyncClient,
    buyer: Buyer,
    free_order: PaidOrder,
) -> None:
    buyer_id = await buyer(email="flaky@example.test")
    _, order = await free_order(buyer_id, quantity=1)
    mailer = build_mailer(tickets, ledger, signing_ring, sink, attempts=4)
    await sink_api.post("/api/faults", json={"kind": "refuse", "count": 2, "code": 451})
    await sink_api.post("/api/faults", json={"kind": "drop", "count": 1})

    await handle_everything(mailer, tickets, order.id)

    assert len(await raw_messages(sink_api, "flaky@example.test")) == 1


async def test_an_outage_longer_than_the_retries_leaves_the_mail_to_a_later_delivery(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    ledger: MailLedger,
    sink: SmtpSink,
    sink_api: httpx.AsyncClient,
    buyer: Buyer,
    free_order: PaidOrder,
) -> None:
    buyer_id = await buyer(email="outage@example.test")
    _, order = await free_order(buyer_id, quantity=1)
    mailer = build_mailer(tickets, ledger, signing_ring, sink, attempts=2)
    await sink_api.post("/api/faults", json={"kind": "down", "seconds": 3})

    with pytest.raises(MailServerUnavailable):
        await handle_everything(mailer, tickets, order.id)
    assert not await ledger.already_sent(order.id, "tickets")
    await asyncio.sleep(3.5)
    await handle_everything(mailer, tickets, order.id)
    await mailer(await log_of(tickets, order.id), LEASE)

    assert len(await raw_messages(sink_api, "outage@example.test")) == 1


async def test_refusals_past_the_retries_are_not_an_outage(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    ledger: MailLedger,
    sink: SmtpSink,
    sink_api: httpx.AsyncClient,
    buyer: Buyer,
    free_order: PaidOrder,
) -> None:
    buyer_id = await buyer(email="refused@example.test")
    _, order = await free_order(buyer_id, quantity=1)
    mailer = build_mailer(tickets, ledger, signing_ring, sink, attempts=2)
    await sink_api.post("/api/faults", json={"kind": "refuse", "count": 2, "code": 450})

    with pytest.raises(TransientMailError) as refused:
        await handle_everything(mailer, tickets, order.id)

    assert not isinstance(refused.value, ConnectionError)
    assert await raw_messages(sink_api, "refused@example.test") == []
