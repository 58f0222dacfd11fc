"""The messages the sink accepted, in memory and optionally in a folder on disk."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.errors import MessageError
from email.parser import BytesHeaderParser

from ulid import ULID

from eventhunting.standins.smtp.storage import MessageEnvelope, MessageFolder

_header_parser = BytesHeaderParser(policy=policy.default)


def subject_of(raw: bytes) -> str:
    """The decoded Subject header, or "" when there is none or it cannot be read."""
    try:
        subject = _header_parser.parsebytes(raw).get("subject")
    except (MessageError, ValueError, LookupError):
        return ""
    return "" if subject is None else str(subject)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    envelope: MessageEnvelope
    raw: bytes
    subject: str


class Inbox:
    """Accepted messages by id, in arrival order; every change reaches the folder first."""

    def __init__(self, folder: MessageFolder | None = None) -> None:
        self.folder = folder
        self._messages: dict[str, StoredMessage] = {}
        # Disk writes of concurrent sessions go one at a time so the index lists them all.
        self._disk_lock = asyncio.Lock()

    def load(self) -> int:
        """Read the folder's messages (at start, before serving); return how many."""
        if self.folder is None:
            return 0
        self.folder.prepare()
        for envelope, raw in self.folder.load():
            self._messages[envelope.id] = StoredMessage(envelope, raw, subject_of(raw))
        return len(self._messages)

    async def add(
        self, *, mail_from: str, rcpt_tos: list[str], raw: bytes, auth_user: str | None
    ) -> StoredMessage:
        envelope = MessageEnvelope(
            id=str(ULID()),
            mail_from=mail_from,
            rcpt_tos=list(rcpt_tos),
            received_at=datetime.now(UTC),
            size=len(raw),
            auth_user=auth_user,
        )
        message = StoredMessage(envelope, raw, subject_of(raw))
        async with self._disk_lock:
            if self.folder is not None:
                index = [kept.envelope for kept in self._messages.values()] + [envelope]
                await asyncio.to_thread(self.folder.save, envelope, raw, index)
            self._messages[envelope.id] = message
        return message

    def newest_first(self) -> list[StoredMessage]:
        return list(reversed(self._messages.values()))

    def get(self, message_id: str) -> StoredMessage | None:
        return self._messages.get(message_id)

    def __len__(self) -> int:
        return len(self._messages)

    async def clear(self) -> int:
        async with self._disk_lock:
            message_ids = list(self._messages)
            if self.folder is not None:
                await asyncio.to_thread(self.folder.clear, message_ids)
            self._messages.clear()
        return len(message_ids)
