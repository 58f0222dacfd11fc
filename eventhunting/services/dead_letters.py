"""Dead letters of every consumer group, for admins: list them, and hand one back to be retried."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import msgspec
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.consumers.dead_letter_retries import retry_key
from eventhunting.consumers.mailer import MAILER_GROUP
from eventhunting.consumers.reconciler import RECONCILER_GROUP
from eventhunting.domain.errors import Conflict, NotFound
from eventhunting.projections.base import PROJECTOR_GROUP
from eventhunting.store import keys
from eventhunting.store.append import text
from eventhunting.store.archive import ARCHIVER_GROUP, Archiver
from eventhunting.store.consumer_groups import log_entry
from eventhunting.store.redis_client import RedisClient

REQUEUE_SCRIPT = (
    resources.files("eventhunting.services").joinpath("dead_letter_requeue.lua").read_text()
)

RETRIED_BY_WORKER = (MAILER_GROUP, RECONCILER_GROUP)
"""Groups whose worker handles retried dead letters itself (`DeadLetterRetries`)."""
GROUPS = (ARCHIVER_GROUP, PROJECTOR_GROUP, RECONCILER_GROUP, MAILER_GROUP)
"""Every consumer group that can dead-letter an entry."""
# Dead letters read per group and partition for the listing (newest first within it).
LISTING_LIMIT = 1_000


class DeadLetterNotFound(NotFound):
    code = "dead_letter_not_found"


class DeadLetterNotRetryable(Conflict):
    code = "dead_letter_not_retryable"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry a consumer group gave up on, as an admin sees it (no payload, no traceback)."""

    group: str
    partition: int
    id: str
    position: str
    stream: str
    version: int
    event_type: str | None
    error: str
    deliveries: int
    failed_at: datetime
    retried: bool


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    items: list[DeadLetter]
    total: int


def letter_id(partition: int, entry_id: str) -> str:
    """A dead letter's id in the API: its partition and its entry id, `3-1733011200000-0`."""
    return f"{partition}-{entry_id}"


def parse_letter_id(identifier: str, partitions: int) -> tuple[int, str] | None:
    partition_text, _, entry_id = identifier.partition("-")
    milliseconds, _, sequence = entry_id.partition("-")
    if not (partition_text.isdigit() and milliseconds.isdigit() and sequence.isdigit()):
        return None
    partition = int(partition_text)
    if partition >= partitions or len(identifier) > 64:
        return None
    return partition, entry_id


def field(fields: dict[Any, Any], name: str) -> str | None:
    value = fields.get(name.encode(), fields.get(name))
    return None if value is None else text(value)


def last_line(error: str) -> str:
    """The error without its traceback: the last non-empty line (`Kind: message`)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def event_type_of(record: str | None) -> str | None:
    if record is None:
        return None
    try:
        decoded = msgspec.json.decode(record)
    except msgspec.DecodeError:
        return None
    if isinstance(decoded, list) and len(decoded) > 1 and isinstance(decoded[1], str):
        return decoded[1]
    return None


def letter_of(group: str, partition: int, entry_id: Any, fields: dict[Any, Any]) -> DeadLetter:
    failed_ms = int(field(fields, "failed_at_ms") or 0)
    return DeadLetter(
        group=group,
        partition=partition,
        id=letter_id(partition, text(entry_id)),
        position=field(fields, "position") or "",
        stream=field(fields, "s") or "",
        version=int(field(fields, "v") or 0),
        event_type=event_type_of(field(fields, "e")),
        error=last_line(field(fields, "error") or ""),
        deliveries=int(field(fields, "deliveries") or 0),
        failed_at=datetime.fromtimestamp(failed_ms / 1000, UTC),
        retried=field(fields, "retried_at_ms") is not None,
    )


class DeadLetterService:
    """Reads `{p<k>}:<group>:dead` of every group and partition, and retries one entry.

    What a retry does depends on the group:

    - `mailer`, `reconciler`: the entry moves (atomically, once) to `{p<k>}:<group>:retry`,
      which the group's worker hands to its handler under the partition's lease; it comes
      back to the dead letters if it fails `max_deliveries` times again.
    - `archiver`: the entry is archived at once (an idempotent insert by event id).
    - `projector`: refused (409 `dead_letter_not_retryable`): the projector's checkpoint has
      moved past the entry, so handing it back would skip it; fix the cause and rebuild the
      read models with `eventhunting replay` (docs/internals.md).
    """

    def __init__(
        self,
        redis: RedisClient,
        database: AsyncDatabase[dict[str, Any]],
        partitions: int,
    ) -> None:
        self.redis = redis
        self.database = database
        self.partitions = partitions
        self.requeue = redis.register_script(REQUEUE_SCRIPT)

    async def list(
        self, *, group: str | None = None, page: int = 1, page_size: int = 20
    ) -> DeadLetterPage:
        """Dead letters, most recent failure first."""
        groups: Sequence[str] = GROUPS if group is None else [g for g in GROUPS if g == group]
        letters: list[DeadLetter] = []
        for name in groups:
            for partition in range(self.partitions):
                entries: Any = await self.redis.xrevrange(
                    keys.dead_letter_key(partition, name), count=LISTING_LIMIT
                )
                letters.extend(
                    letter_of(name, partition, entry_id, fields) for entry_id, fields in entries
                )
        letters.sort(key=lambda letter: (letter.failed_at, letter.id), reverse=True)
        start = (page - 1) * page_size
        return DeadLetterPage(items=letters[start : start + page_size], total=len(letters))

    async def retry(self, group: str, identifier: str, *, by: str) -> DeadLetter:
        """Hand a dead letter back to its group (see the class); the letter as it was."""
        parsed = parse_letter_id(identifier, self.partitions)
        if group not in GROUPS or parsed is None:
            raise DeadLetterNotFound(f"There is no dead letter {identifier!r} of {group!r}.")
        partition, entry_id = parsed
        dead_key = keys.dead_letter_key(partition, group)
        found: Any = await self.redis.xrange(dead_key, entry_id, entry_id)
        if not found:
            raise DeadLetterNotFound(f"There is no dead letter {identifier!r} of {group!r}.")
        letter = letter_of(group, partition, found[0][0], found[0][1])
        if group == PROJECTOR_GROUP:
            raise DeadLetterNotRetryable(
                "The projector's checkpoint is past this entry: fix the cause, then rebuild"
                " the read models with `eventhunting replay`."
            )
        if group == ARCHIVER_GROUP:
            fields = found[0][1]
            entry = log_entry(partition, letter.position, fields)
            await Archiver(self.database).archive([entry])
            await self.redis.xdel(dead_key, entry_id)
            return letter
        moved = await self.requeue(
            keys=[dead_key, retry_key(partition, group)],
            args=[entry_id, by, int(time.time() * 1000)],
        )
        if not moved:
            raise DeadLetterNotFound(f"There is no dead letter {identifier!r} of {group!r}.")
        return letter
