"""Rebuild read models from the partition logs or the archive into fresh collections, then swap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import redis.asyncio as aioredis
from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from eventhunting.domain.events import EventRegistry, registry
from eventhunting.projections.base import (
    CHECKPOINTS_COLLECTION,
    Database,
    Document,
    Projection,
    apply_wanted,
    checkpoint_document,
    checkpoint_id,
)
from eventhunting.store import keys
from eventhunting.store.append import field_of, stream_range
from eventhunting.store.archive import EVENTS_COLLECTION, utc_from_document
from eventhunting.store.envelope import (
    EventEnvelope,
    EventMeta,
    decode_payload,
    decode_stored_event,
    stored_event_decoder,
)
from eventhunting.store.progress import ProgressBar
from eventhunting.store.restore import archive_json_encoder

# Events read per round trip from Redis or MongoDB.
REPLAY_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class ReplayReport:
    projections: tuple[str, ...]
    events: int
    last_positions: dict[int, str]


def scratch_name(database: Database) -> str:
    return f"{database.name}__replay"


def envelope_of_document(event_registry: EventRegistry, document: Document) -> EventEnvelope:
    """An archived event as the envelope a projector would have received from the log."""
    meta = document.get("meta") or {}
    return EventEnvelope(
        event_id=document["event_id"],
        stream=document["stream"],
        version=int(document["version"]),
        type=document["type"],
        schema=event_registry.by_name[document["type"]].schema,
        occurred_at=utc_from_document(document["occurred_at"]),
        data=decode_payload(
            event_registry,
            document["type"],
            int(document["schema"]),
            archive_json_encoder.encode(document["data"]),
        ),
        meta=EventMeta(
            command_id=meta.get("command_id"),
            correlation_id=meta.get("correlation_id"),
            causation_id=meta.get("causation_id"),
            actor=meta.get("actor"),
        ),
        partition=int(document["partition"]),
        position=document["position"],
    )


def wanted_by_any(projections: Sequence[Projection], type_name: str) -> bool:
    return any(p.handles is None or type_name in p.handles for p in projections)


async def events_from_archive(
    database: Database, event_registry: EventRegistry, projections: Sequence[Projection]
) -> AsyncIterator[tuple[int, str, EventEnvelope | None]]:
    """(partition, position, envelope or None when no projection wants its type)."""
    cursor = database[EVENTS_COLLECTION].find(
        {},
        sort=[("partition", ASCENDING), ("position_ms", ASCENDING), ("position_seq", ASCENDING)],
        batch_size=REPLAY_PAGE,
    )
    async for document in cursor:
        wanted = wanted_by_any(projections, document["type"])
        envelope = envelope_of_document(event_registry, document) if wanted else None
        yield int(document["partition"]), document["position"], envelope


async def events_from_logs(
    redis: aioredis.Redis,
    partitions: int,
    event_registry: EventRegistry,
    projections: Sequence[Projection],
) -> AsyncIterator[tuple[int, str, EventEnvelope | None]]:
    """(partition, position, envelope or None when no projection wants its type)."""
    for partition in range(partitions):
        start = "-"
        while True:
            entries = await stream_range(
                redis, keys.log_key(partition), start, "+", count=REPLAY_PAGE
            )
            for entry_id, fields in entries:
                position = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                stored = stored_event_decoder.decode(field_of(fields, "e"))
                if wanted_by_any(projections, stored.type):
                    yield (
                        partition,
                        position,
                        decode_stored_event(
                            event_registry,
                            stored,
                            stream=field_of(fields, "s").decode(),
                            version=int(field_of(fields, "v")),
                            partition=partition,
                            position=position,
                        ),
                    )
                else:
                    yield partition, position, None
            if len(entries) < REPLAY_PAGE:
                break
            last = entries[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)


async def apply_page(
    projections: Sequence[Projection],
    page: Sequence[EventEnvelope],
    scratch: Database,
    session: AsyncClientSession,
) -> None:
    """Apply a page of events (in log order per partition) to every projection, as the
    projector applies a delivered batch (`apply_wanted`).

    At most REPLAY_PAGE events are held at a time, so memory does not grow with the log.
    """
    for projection in projections:
        await apply_wanted(projection, page, scratch, session)


async def replay(
    database: Database,
    projections: Sequence[Projection],
    *,
    redis: aioredis.Redis | None = None,
    partitions: int,
    from_archive: bool = False,
    event_registry: EventRegistry = registry,
    progress: TextIO | None = None,
) -> ReplayReport:
    """Rebuild `projections` from every event and swap the result in.

    Events come from the Redis partition logs, or from the MongoDB archive with
    `from_archive`. They are applied, in log order per partition, to the projections'
    collections in a scratch database; each collection is then renamed over the live one
    (renameCollection with dropTarget) and the checkpoints are set to the last position, so
    the projector continues from there. Stop the projector while replaying: what it
    applies to the old collections during the replay is dropped with them.
    """
    if not from_archive and redis is None:
        raise ValueError("replaying from the partition logs needs a Redis client")
    scratch = database.client[scratch_name(database)]
    for projection in projections:
        for collection in projection.collections:
            await scratch.drop_collection(collection)
            await scratch.create_collection(collection)
        await projection.create_indexes(scratch)

    if from_archive:
        total = await database[EVENTS_COLLECTION].count_documents({})
        source = events_from_archive(database, event_registry, projections)
    else:
        assert redis is not None
        total = 0
        for partition in range(partitions):
            total += int(await redis.xlen(keys.log_key(partition)))
        source = events_from_logs(redis, partitions, event_registry, projections)

    bar = ProgressBar("replay", total, stream=progress)
    last_positions: dict[int, str] = {}
    count = 0
    page: list[EventEnvelope] = []
    async with database.client.start_session() as session:
        async for partition, position, event in source:
            if event is not None:
                page.append(event)
                if len(page) >= REPLAY_PAGE:
                    await apply_page(projections, page, scratch, session)
                    page = []
            last_positions[partition] = position
            count += 1
            bar.advance()
        await apply_page(projections, page, scratch, session)
    bar.finish()

    admin: Any = database.client.admin
    for projection in projections:
        for collection in projection.collections:
            await admin.command(
                "renameCollection",
                f"{scratch.name}.{collection}",
                to=f"{database.name}.{collection}",
                dropTarget=True,
            )
        checkpoints = database[CHECKPOINTS_COLLECTION]
        # Checkpoints keep their lease fence: a projector fenced out before stays fenced out.
        await checkpoints.delete_many(
            {"projection": projection.name, "partition": {"$nin": list(last_positions)}}
        )
        for partition, position in last_positions.items():
            await checkpoints.update_one(
                {"_id": checkpoint_id(projection.name, partition)},
                {"$set": checkpoint_document(projection.name, partition, position)},
                upsert=True,
            )
    return ReplayReport(
        projections=tuple(p.name for p in projections),
        events=count,
        last_positions=last_positions,
    )
