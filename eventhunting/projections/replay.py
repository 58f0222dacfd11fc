"""Rebuild read models from the partition logs or the archive into fresh collections, then swap."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from eventhunting.domain.events import EventRegistry, registry
from eventhunting.projections.base import (
    CHECKPOINTS_COLLECTION,
    Database,
    Document,
    FoldingProjection,
    Projection,
    apply_wanted,
    checkpoint_document,
    checkpoint_id,
)
from eventhunting.store import keys
from eventhunting.store.append import StreamEntry, field_of, stream_range, text
from eventhunting.store.archive import EVENTS_COLLECTION, utc_from_document
from eventhunting.store.envelope import (
    EventEnvelope,
    EventMeta,
    decode_payload,
    decode_stored_event,
    stored_event_decoder,
)
from eventhunting.store.progress import ProgressBar
from eventhunting.store.redis_client import RedisClient
from eventhunting.store.restore import archive_json_encoder

REPLAY_PAGE = 5_000
"""Log entries per XRANGE (archived events per cursor batch), and the most events applied at
once: memory holds a few pages, however long the history."""

READ_AHEAD = 2
"""Pages read and decoded ahead while the one before them is applied."""


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


@dataclass(frozen=True, slots=True)
class ReplayPage:
    """One read of one partition: the events a projection wants, in log order, and how far
    the partition was read (`read` entries up to `last_position`, wanted or not)."""

    partition: int
    last_position: str
    read: int
    events: list[EventEnvelope]


def wanted_types(projections: Sequence[Projection]) -> frozenset[str] | None:
    """Event types any of `projections` handles; None when one of them handles all."""
    wanted: set[str] = set()
    for projection in projections:
        if projection.handles is None:
            return None
        wanted |= projection.handles
    return frozenset(wanted)


def decode_log_page(
    event_registry: EventRegistry,
    partition: int,
    entries: Sequence[StreamEntry],
    wanted: frozenset[str] | None,
) -> list[EventEnvelope]:
    """The envelopes of the wanted log entries. The envelope's compact record is decoded
    first (the payload stays raw JSON); a payload is decoded only for a wanted type."""
    events: list[EventEnvelope] = []
    for entry_id, fields in entries:
        stored = stored_event_decoder.decode(fields.get(b"e") or field_of(fields, "e"))
        if wanted is not None and stored.type not in wanted:
            continue
        events.append(
            decode_stored_event(
                event_registry,
                stored,
                stream=text(fields.get(b"s") or field_of(fields, "s")),
                version=int(fields.get(b"v") or field_of(fields, "v")),
                partition=partition,
                position=text(entry_id),
            )
        )
    return events


async def pages_from_logs(
    redis: RedisClient,
    partitions: range,
    event_registry: EventRegistry,
    wanted: frozenset[str] | None,
) -> AsyncIterator[ReplayPage]:
    """The logs of `partitions`, a page of REPLAY_PAGE entries per XRANGE, partition by
    partition."""
    for partition in partitions:
        start = "-"
        while entries := await stream_range(
            redis, keys.log_key(partition), start, "+", count=REPLAY_PAGE
        ):
            last = text(entries[-1][0])
            yield ReplayPage(
                partition=partition,
                last_position=last,
                read=len(entries),
                events=decode_log_page(event_registry, partition, entries, wanted),
            )
            if len(entries) < REPLAY_PAGE:
                break
            start = "(" + last


async def pages_from_archive(
    database: Database,
    partitions: range,
    event_registry: EventRegistry,
    wanted: frozenset[str] | None,
) -> AsyncIterator[ReplayPage]:
    """The archived events of `partitions` in log order per partition, a page of at most
    REPLAY_PAGE events at a time."""
    cursor = database[EVENTS_COLLECTION].find(
        {"partition": {"$gte": partitions.start, "$lt": partitions.stop}},
        sort=[("partition", ASCENDING), ("position_ms", ASCENDING), ("position_seq", ASCENDING)],
        batch_size=REPLAY_PAGE,
    )
    partition, last, read = -1, "", 0
    events: list[EventEnvelope] = []
    async for document in cursor:
        if int(document["partition"]) != partition or read >= REPLAY_PAGE:
            if read:
                yield ReplayPage(partition, last, read, events)
            partition, read, events = int(document["partition"]), 0, []
        last = document["position"]
        read += 1
        if wanted is None or document["type"] in wanted:
            events.append(envelope_of_document(event_registry, document))
    if read:
        yield ReplayPage(partition, last, read, events)


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's sight until the block
    ends (`gc.freeze`).

    A replay allocates pages of entries that live long enough to reach the oldest
    generation, so full collections come every few thousand entries, and each walked the
    whole heap of the process (the app's modules, clients, ...): a third of the time spent
    reading a log. Frozen objects are not walked; they are handed back afterwards, so
    nothing that became garbage in between is kept for good.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def read_ahead(pages: AsyncIterator[ReplayPage]) -> AsyncIterator[ReplayPage]:
    """`pages`, read and decoded by a task of their own up to READ_AHEAD pages ahead, so the
    next pages are fetched and decoded while the database applies the current one."""
    queue: asyncio.Queue[ReplayPage | None] = asyncio.Queue(maxsize=READ_AHEAD)

    async def read() -> None:
        async for page in pages:
            await queue.put(page)
        await queue.put(None)

    reader = asyncio.create_task(read())
    try:
        while (page := await queue.get()) is not None:
            yield page
        await reader
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


class PageApplier:
    """Applies replay pages to projections, as the projector applies delivered batches
    (`apply_wanted`), writing one page while the next is folded.

    A `FoldingProjection` folds page N+1 (taking what it needs from page N's fold) while the
    database applies page N's writes, which were started as a task; a projection's next
    writes start only when its previous ones are done, so they reach the database in log
    order. Other projections apply each page before the next. At most a page's fold and a
    page's writes per projection are held, so memory does not grow with the log.
    """

    def __init__(self, projections: Sequence[Projection], scratch: Database) -> None:
        self.projections = projections
        self.scratch = scratch
        self.folds: dict[str, Any] = {}
        self.writing: dict[str, asyncio.Task[None]] = {}

    async def apply(self, page: Sequence[EventEnvelope], session: AsyncClientSession) -> None:
        for projection in self.projections:
            if not isinstance(projection, FoldingProjection):
                await apply_wanted(projection, page, self.scratch, session)
                continue
            wanted = [event for event in page if projection.wants(event)]
            if not wanted:
                continue
            folded = await projection.fold(
                wanted, self.scratch, session, self.folds.get(projection.name)
            )
            await self.written(projection.name)
            self.folds[projection.name] = folded
            self.writing[projection.name] = asyncio.create_task(self.write(projection, folded))

    async def write(self, projection: FoldingProjection[Any], folded: Any) -> None:
        # A session of its own: a session is not used by two operations at once.
        async with self.scratch.client.start_session() as session:
            await projection.write(folded, self.scratch, session)

    async def written(self, name: str) -> None:
        task = self.writing.pop(name, None)
        if task is not None:
            await task

    async def finish(self) -> None:
        """Wait for the writes still on their way (raising the first failure)."""
        for name in list(self.writing):
            await self.written(name)

    async def abandon(self) -> None:
        for task in self.writing.values():
            task.cancel()
        await asyncio.gather(*self.writing.values(), return_exceptions=True)
        self.writing.clear()


async def prepare_scratch(database: Database, projections: Sequence[Projection]) -> None:
    """Empty collections (with their indexes) for `projections` in the scratch database."""
    scratch = database.client[scratch_name(database)]
    for projection in projections:
        for collection in projection.collections:
            await scratch.drop_collection(collection)
            await scratch.create_collection(collection)
        await projection.create_indexes(scratch)


async def events_to_replay(
    database: Database, redis: RedisClient | None, partitions: int, *, from_archive: bool
) -> int:
    """How many entries a replay of every partition reads (for its progress)."""
    if from_archive:
        return await database[EVENTS_COLLECTION].count_documents({})
    if redis is None:
        raise ValueError("replaying from the partition logs needs a Redis client")
    total = 0
    for partition in range(partitions):
        total += int(await redis.xlen(keys.log_key(partition)))
    return total


async def replay_share(
    database: Database,
    projections: Sequence[Projection],
    shares: Iterable[range],
    *,
    redis: RedisClient | None,
    from_archive: bool,
    advance: Callable[[int], None],
    event_registry: EventRegistry = registry,
) -> ReplayReport:
    """Apply every event of the partitions in `shares` (ranges of partitions, taken one
    after the other as the pages of the one before run out), in log order per partition, to
    the projections' collections in the scratch database (`prepare_scratch` made them);
    `advance` is told how many entries each page read."""
    scratch = database.client[scratch_name(database)]
    wanted = wanted_types(projections)
    if not from_archive and redis is None:
        raise ValueError("replaying from the partition logs needs a Redis client")

    async def pages_of_shares() -> AsyncIterator[ReplayPage]:
        for share in shares:
            if from_archive:
                pages = pages_from_archive(database, share, event_registry, wanted)
            else:
                assert redis is not None
                pages = pages_from_logs(redis, share, event_registry, wanted)
            async for page in pages:
                yield page

    last_positions: dict[int, str] = {}
    count = 0
    applier = PageApplier(projections, scratch)
    with heap_frozen():
        async with database.client.start_session() as session:
            try:
                async for page in read_ahead(pages_of_shares()):
                    await applier.apply(page.events, session)
                    last_positions[page.partition] = page.last_position
                    count += page.read
                    advance(page.read)
                await applier.finish()
            finally:
                await applier.abandon()
    return ReplayReport(
        projections=tuple(p.name for p in projections),
        events=count,
        last_positions=last_positions,
    )


async def swap_in(
    database: Database, projections: Sequence[Projection], last_positions: dict[int, str]
) -> None:
    """Rename the scratch collections over the live ones and set the checkpoints to the
    last positions replayed, so the projector continues from there."""
    scratch = database.client[scratch_name(database)]
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


async def replay(
    database: Database,
    projections: Sequence[Projection],
    *,
    redis: RedisClient | None = None,
    partitions: int,
    from_archive: bool = False,
    event_registry: EventRegistry = registry,
    progress: TextIO | None = None,
) -> ReplayReport:
    """Rebuild `projections` from every event and swap the result in, in this process.

    Events come from the Redis partition logs, or from the MongoDB archive with
    `from_archive`. They are applied, in log order per partition, to the projections'
    collections in a scratch database; each collection is then renamed over the live one
    (renameCollection with dropTarget) and the checkpoints are set to the last position, so
    the projector continues from there. Stop the projector while replaying: what it
    applies to the old collections during the replay is dropped with them.
    (`eventhunting replay --jobs N` spreads the partitions over N processes:
    `replay_jobs.replay_in_jobs`.)
    """
    total = await events_to_replay(database, redis, partitions, from_archive=from_archive)
    await prepare_scratch(database, projections)
    bar = ProgressBar("replay", total, stream=progress)
    report = await replay_share(
        database,
        projections,
        [range(partitions)],
        redis=redis,
        from_archive=from_archive,
        advance=bar.advance,
        event_registry=event_registry,
    )
    bar.finish()
    await swap_in(database, projections, report.last_positions)
    return report
