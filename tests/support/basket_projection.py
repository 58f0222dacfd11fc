"""A small projection over the store-test events, used by projector, replay and crash tests."""

from __future__ import annotations

import asyncio
import os

from pymongo.asynchronous.client_session import AsyncClientSession

from eventhunting.projections.base import Database, Projection
from eventhunting.store.envelope import EventEnvelope
from tests.support.store_events import BasketClosed, ItemAdded

# Seconds each event takes to apply; the crash test sets it so a kill lands mid-batch.
APPLY_DELAY_VARIABLE = "EVENTHUNTING_TEST_APPLY_DELAY"


class PoisonError(RuntimeError):
    """Raised for items whose sku starts with 'poison'."""


class BasketProjection(Projection):
    """baskets: one document per basket with its items (pushed, so a double apply shows)."""

    name = "baskets"
    collections = ("baskets",)

    def __init__(self) -> None:
        self.delay = float(os.environ.get(APPLY_DELAY_VARIABLE, "0"))

    async def create_indexes(self, db: Database) -> None:
        await db["baskets"].create_index("closed_reason")

    async def apply(self, event: EventEnvelope, db: Database, session: AsyncClientSession) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        baskets = db["baskets"]
        match event.data:
            case ItemAdded(sku=sku) if sku.startswith("poison"):
                raise PoisonError(f"cannot project {sku}")
            case ItemAdded(sku=sku, quantity=quantity):
                await baskets.update_one(
                    {"_id": event.stream},
                    {
                        "$push": {"items": {"sku": sku, "quantity": quantity}},
                        "$set": {"version": event.version, "updated_at": event.occurred_at},
                    },
                    upsert=True,
                    session=session,
                )
            case BasketClosed(reason=reason):
                await baskets.update_one(
                    {"_id": event.stream},
                    {"$set": {"closed_reason": reason, "version": event.version}},
                    upsert=True,
                    session=session,
                )
