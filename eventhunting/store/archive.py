"""The archiver: copies every partition-log entry into the MongoDB `events` collection."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from prometheus_client import Counter
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.store import keys
from eventhunting.store.append import AppendResult, text
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    Lease,
    LogEntry,
    log_entry,
    position_key,
    raw_entry,
    unique_consumer_name,
)
from eventhunting.store.envelope import EventEnvelope, from_epoch_ms, stored_event_decoder
from eventhunting.store.redis_client import RedisClient

EVENTS_COLLECTION = "events"
ARCHIVER_GROUP = "archiver"

ARCHIVED = Counter("eventhunting_archived_events_total", "Events written to the MongoDB archive.")

Document = dict[str, Any]

EVENT_INDEXES = [
    IndexModel([("stream", ASCENDING), ("version", ASCENDING)], name="stream_version", unique=True),
    IndexModel([("event_id", ASCENDING)], name="event_id", unique=True),
    IndexModel(
        [("partition", ASCENDING), ("position_ms", ASCENDING), ("position_seq", ASCENDING)],
        name="partition_position",
        unique=True,
    ),
    IndexModel([("occurred_at", ASCENDING)], name="occurred_at"),
    IndexModel([("type", ASCENDING), ("occurred_at", ASCENDING)], name="type_occurred_at"),
]


async def create_event_indexes(database: AsyncDatabase[Document]) -> None:
    """Indexes of `events`: unique (stream, version) and event_id; replay by partition and time."""
    await database[EVENTS_COLLECTION].create_indexes(EVENT_INDEXES)


def archive_document(entry: LogEntry) -> Document:
    """The archived form of one log entry: readable fields, data in its written schema.

    `data` and `effects` are the stored JSON decoded as-is, so encoding them again gives back
    the bytes Redis held (restore relies on it).
    """
    stored = stored_event_decoder.decode(entry.record)
    milliseconds, sequence = position_key(entry.position)
    document: Document = {
        "_id": stored.event_id,
        "event_id": stored.event_id,
        "stream": entry.stream,
        "version": entry.version,
        "type": stored.type,
        "schema": stored.schema,
        "occurred_at": from_epoch_ms(stored.occurred_at_ms),
        "data": msgspec.json.decode(stored.data),
        "meta": {
            "command_id": stored.meta.command_id,
            "correlation_id": stored.meta.correlation_id,
            "causation_id": stored.meta.causation_id,
            "actor": stored.meta.actor,
        },
        "partition": entry.partition,
        "position": entry.position,
        "position_ms": milliseconds,
        "position_seq": sequence,
    }
    if entry.effects is not None:
        document["effects"] = msgspec.json.decode(entry.effects)
    return document


class Archiver:
    """Batch handler of the `archiver` group: an idempotent insert of every entry."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.events = database[EVENTS_COLLECTION]

    async def __call__(self, entries: list[LogEntry], lease: Lease) -> None:
        # Idempotent and order-free: a former lease holder writing late writes the same thing.
        await self.archive(entries)

    async def archive(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        # $setOnInsert: the archive is immutable, and a redelivered entry changes nothing.
        operations = [
            UpdateOne({"_id": document["_id"]}, {"$setOnInsert": document}, upsert=True)
            for document in map(archive_document, entries)
        ]
        await self.events.bulk_write(operations, ordered=False)
        ARCHIVED.inc(len(entries))


async def run_archiver(
    redis: RedisClient,
    database: AsyncDatabase[Document],
    config: ConsumerConfig,
    stop: asyncio.Event,
    *,
    partitions: int,
    consumer: str | None = None,
) -> None:
    """Run the `archiver` consumer group until `stop` is set."""
    group: ConsumerGroup[LogEntry] = ConsumerGroup(
        redis,
        ARCHIVER_GROUP,
        consumer or unique_consumer_name(),
        partitions,
        Archiver(database),
        config,
        decode=raw_entry,
    )
    await group.run(stop, prepare=lambda: create_event_indexes(database))


async def archive_appended(
    redis: RedisClient,
    database: AsyncDatabase[Document],
    events: Sequence[EventEnvelope],
    appended: AppendResult | None = None,
) -> None:
    """Write the events of one append to the archive now, exactly as the archiver will.

    For money: a command that must survive a total loss of Redis (a payment VNPAY was told we
    recorded) archives its own append before it answers. The entries are the partition
    log's to the byte, so the archiver's later copy changes nothing: taken from `appended`,
    the append's own result (what it stored, where), or else read back from the log (one
    append's entries are consecutive there).
    """
    if not events:
        return
    partition = events[0].partition
    positions = [event.position for event in events if event.position is not None]
    if partition is None or len(positions) != len(events):
        raise ValueError("only events read from or appended to a partition log can be archived")
    if appended is not None and appended.records:
        entries = entries_of(appended)
    else:
        wanted = set(positions)
        raw: Any = await redis.xrange(keys.log_key(partition), positions[0], positions[-1])
        entries = [
            log_entry(partition, entry_id, fields)
            for entry_id, fields in raw
            if text(entry_id) in wanted
        ]
        if len(entries) != len(wanted):
            raise LookupError("the appended events are not all in the partition log")
    await Archiver(database).archive(entries)


def entries_of(appended: AppendResult) -> list[LogEntry]:
    """The partition-log entries an append wrote, from its own result."""
    last = len(appended.events) - 1
    return [
        LogEntry(
            partition=appended.partition,
            position=event.position or "",
            stream=appended.stream,
            version=event.version,
            record=record,
            effects=appended.effects_record if index == last else None,
        )
        for index, (event, record) in enumerate(zip(appended.events, appended.records, strict=True))
    ]


def utc_from_document(moment: datetime) -> datetime:
    """BSON dates come back naive unless the client is tz_aware; both mean UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
