"""The MongoDB ledger of sent mail: at most one recorded message per order and purpose."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from pymongo import ASCENDING, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

COLLECTION = "mail_ledger"
UNIQUE_INDEX = "order_id_purpose_unique"


class SentMail(msgspec.Struct, frozen=True, kw_only=True):
    """One mail the SMTP server accepted: for which order, why, its Message-ID and when."""

    order_id: str
    purpose: str
    message_id: str
    sent_at: datetime


class MailLedger:
    """Which mail went out, so a redelivered job does not send it again.

    The mailer asks `already_sent` before sending and calls `record_sent` after the SMTP
    server accepted the message. A crash between the two sends that mail once more when
    the job comes again: at most one extra copy per crash (docs/tickets.md). `purpose`
    names the mail of the order: `tickets`, `refund_completed:<refund id>`, ...
    """

    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        # Acknowledged by a majority: a recorded mail survives a failover of the primary.
        self.collection: AsyncCollection[dict[str, Any]] = database.get_collection(
            COLLECTION, write_concern=WriteConcern(w="majority")
        )

    async def create_indexes(self) -> None:
        await self.collection.create_index(
            [("order_id", ASCENDING), ("purpose", ASCENDING)], unique=True, name=UNIQUE_INDEX
        )

    async def sent_mail(self, order_id: str, purpose: str) -> SentMail | None:
        """The recorded mail of this order and purpose, if any."""
        document = await self.collection.find_one(
            {"order_id": order_id, "purpose": purpose}, projection={"_id": False}
        )
        return None if document is None else msgspec.convert(document, SentMail)

    async def already_sent(self, order_id: str, purpose: str) -> bool:
        return await self.sent_mail(order_id, purpose) is not None

    async def record_sent(
        self, order_id: str, purpose: str, message_id: str, sent_at: datetime
    ) -> bool:
        """Record a sent mail; False when another delivery had recorded it already.

        Idempotent: the unique index lets one record in per order and purpose, and a
        duplicate key is that other delivery's record, which stays as it was.
        """
        try:
            await self.collection.insert_one(
                {
                    "order_id": order_id,
                    "purpose": purpose,
                    "message_id": message_id,
                    "sent_at": sent_at,
                }
            )
        except DuplicateKeyError:
            return False
        return True
