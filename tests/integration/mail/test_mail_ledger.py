"""The mail ledger on MongoDB (stand-in or real replica set): one record per order and purpose."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from eventhunting.mail.ledger import COLLECTION, UNIQUE_INDEX, MailLedger, SentMail

SENT_AT = datetime(2026, 3, 1, 2, 5, 7, 123_000, tzinfo=UTC)


@pytest.fixture
async def ledger(mongodb_url: str) -> AsyncIterator[MailLedger]:
    """A ledger in a fresh database, on a client built as the composition root builds it."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        ledger = MailLedger(client[name])
        await ledger.create_indexes()
        yield ledger
    finally:
        await client.drop_database(name)
        await client.close()


async def test_a_recorded_mail_is_already_sent_with_its_message_id(ledger: MailLedger) -> None:
    assert not await ledger.already_sent("order-1", "tickets")
    assert await ledger.record_sent("order-1", "tickets", "<m1@eventhunting.test>", SENT_AT)
    assert await ledger.already_sent("order-1", "tickets")
    assert await ledger.sent_mail("order-1", "tickets") == SentMail(
        order_id="order-1", purpose="tickets", message_id="<m1@eventhunting.test>", sent_at=SENT_AT
    )


async def test_recording_again_keeps_the_first_record_and_says_so(ledger: MailLedger) -> None:
    assert await ledger.record_sent("order-1", "tickets", "<first@x>", SENT_AT)
    later = SENT_AT + timedelta(minutes=5)
    assert not await ledger.record_sent("order-1", "tickets", "<second@x>", later)
    recorded = await ledger.sent_mail("order-1", "tickets")
    assert recorded is not None
    assert (recorded.message_id, recorded.sent_at) == ("<first@x>", SENT_AT)
    assert await ledger.collection.count_documents({}) == 1


async def test_each_purpose_and_order_is_recorded_on_its_own(ledger: MailLedger) -> None:
    assert await ledger.record_sent("order-1", "tickets", "<a@x>", SENT_AT)
    assert not await ledger.already_sent("order-1", "refund_completed:refund-1")
    assert not await ledger.already_sent("order-2", "tickets")
    assert await ledger.record_sent("order-1", "refund_completed:refund-1", "<b@x>", SENT_AT)
    assert await ledger.record_sent("order-2", "tickets", "<c@x>", SENT_AT)
    assert await ledger.collection.count_documents({}) == 3


async def test_of_concurrent_deliveries_exactly_one_records_the_mail(ledger: MailLedger) -> None:
    results = await asyncio.gather(
        *(ledger.record_sent("order-9", "tickets", f"<delivery-{n}@x>", SENT_AT) for n in range(12))
    )
    assert results.count(True) == 1
    assert await ledger.collection.count_documents({"order_id": "order-9"}) == 1


async def test_the_unique_index_is_created_once_and_again_without_harm(
    ledger: MailLedger,
) -> None:
    await ledger.create_indexes()
    indexes = {index["name"]: index async for index in await ledger.collection.list_indexes()}
    assert ledger.collection.name == COLLECTION
    assert indexes[UNIQUE_INDEX]["unique"] is True
    assert list(indexes[UNIQUE_INDEX]["key"].items()) == [("order_id", 1), ("purpose", 1)]
