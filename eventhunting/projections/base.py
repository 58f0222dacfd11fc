"""Projection base class and the projector: event batches and checkpoints in one transaction."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from prometheus_client import Counter
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.events import EventRegistry, registry
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    Lease,
    LeaseLost,
    envelope_decoder,
    position_key,
)
from eventhunting.store.envelope import EventEnvelope
from eventhunting.store.redis_client import RedisClient

Document = dict[str, Any]
Database = AsyncDatabase[Document]

CHECKPOINTS_COLLECTION = "projection_checkpoints"
PROJECTOR_GROUP = "projector"

PROJECTED = Counter(
    "eventhunting_projected_events_total", "Events applied to read models.", ["projection"]
)


class Projection(ABC):
    """A read model in MongoDB, built only from events.

    Subclass it and set `name` (stable; it keys the checkpoints) and `collections` (every
    collection the projection owns), optionally `handles` (event type names it cares
    about; None = all), then implement `apply` and, if needed, `create_indexes`::

        class OrdersProjection(Projection):
            name = "orders"
            collections = ("orders",)
            handles = frozenset({"OrderPlaced", "OrderPaid"})

            async def create_indexes(self, db: Database) -> None:
                await db["orders"].create_index([("buyer_id", 1), ("placed_at", -1)])

            async def apply(
                self, event: EventEnvelope, db: Database, session: AsyncClientSession
            ) -> None:
                match event.data:
                    case OrderPlaced() as placed:
                        await db["orders"].update_one(
                            {"_id": placed.order_id},
                            {"$setOnInsert": {"status": "pending", "version": event.version}},
                            upsert=True,
                            session=session,
                        )

    The projector and `eventhunting replay` both hand a projection its events through
    `apply_batch` (the wanted events of one delivered batch, or of one replay page). By
    default it applies them one by one with `apply`; a projection that can fold many
    events at once (`sales`) overrides it and writes what the whole batch added in a few
    bulk writes.

    Rules that keep the projector correct and `eventhunting replay` equal to it:

    - Pass `session` to every read and write: the batch and the checkpoint commit together.
    - Touch only your own `collections`, always through `db[...]` (replay hands you a scratch
      database and swaps the collections in afterwards).
    - Be deterministic: derive everything from the event (`event.occurred_at`, ids, data),
      never from the clock or random numbers.
    - Events of one partition arrive in log order (so an aggregate's in version order), each
      exactly once: an event at or below the partition checkpoint is never applied again.
    - Raise to refuse an event: the batch rolls back, it is retried, and after the
      configured number of deliveries it lands in `{p<k>}:projector:dead`.
    """

    name: ClassVar[str]
    collections: ClassVar[tuple[str, ...]] = ()
    handles: ClassVar[frozenset[str] | None] = None

    def wants(self, event: EventEnvelope) -> bool:
        return self.handles is None or event.type in self.handles

    async def create_indexes(self, db: Database) -> None:  # noqa: B027 - optional hook
        """Create the indexes of this projection's collections (idempotent); none by default."""

    @abstractmethod
    async def apply(self, event: EventEnvelope, db: Database, session: AsyncClientSession) -> None:
        """Fold one event into the read model, writing with `session`."""

    async def apply_batch(
        self, events: Sequence[EventEnvelope], db: Database, session: AsyncClientSession
    ) -> None:
        """Fold wanted events (in log order per partition, none applied before) at once."""
        for event in events:
            await self.apply(event, db, session)


Folded = TypeVar("Folded")


class FoldingProjection(Projection, Generic[Folded]):
    """A projection that folds a batch in memory first (`fold`) and writes what the batch
    added afterwards (`write`), in a few bulk writes.

    The projector does both in its transaction (`apply_batch`). `eventhunting replay` writes
    one page while it folds the next: `fold` is then handed the fold of the batch before
    (`previous`), whose writes may still be on their way to the database, so what
    `previous` knows is newer than what the database holds; the writes of one projection
    are still made one batch after the other, in log order.
    """

    async def apply(self, event: EventEnvelope, db: Database, session: AsyncClientSession) -> None:
        if self.wants(event):
            await self.apply_batch([event], db, session)

    async def apply_batch(
        self, events: Sequence[EventEnvelope], db: Database, session: AsyncClientSession
    ) -> None:
        if events:
            await self.write(await self.fold(events, db, session, None), db, session)

    @abstractmethod
    async def fold(
        self,
        events: Sequence[EventEnvelope],
        db: Database,
        session: AsyncClientSession,
        previous: Folded | None,
    ) -> Folded:
        """Fold wanted events (in log order per partition, none applied before) in memory,
        reading with `session` what earlier batches left that `previous` does not know."""

    @abstractmethod
    async def write(self, folded: Folded, db: Database, session: AsyncClientSession) -> None:
        """Write what `folded` adds to the read model."""


async def apply_wanted(
    projection: Projection,
    events: Sequence[EventEnvelope],
    db: Database,
    session: AsyncClientSession,
) -> int:
    """Hand `projection` the events of `events` it wants in one `apply_batch`; how many.

    The one way events reach a projection, live (a delivered batch, in the projector's
    transaction) and in a replay (a page).
    """
    wanted = [event for event in events if projection.wants(event)]
    if wanted:
        await projection.apply_batch(wanted, db, session)
    return len(wanted)


def checkpoint_id(projection: str, partition: int) -> str:
    return f"{projection}:{partition}"


def checkpoint_document(
    projection: str, partition: int, position: str, fence: int | None = None
) -> Document:
    milliseconds, sequence = position_key(position)
    document: Document = {
        "projection": projection,
        "partition": partition,
        "position": position,
        "position_ms": milliseconds,
        "position_seq": sequence,
    }
    if fence is not None:
        document["fence"] = fence
    return document


class Projector:
    """Batch handler of the projector group: applies one partition's batch to every projection.

    The runtime hands it each partition's entries strictly in log order, so a
    (projection, partition) checkpoint is one position: everything at or below it is
    applied, nothing above it is. The batch and the checkpoints are written in ONE
    transaction (`with_transaction` retries transient errors and unknown commit results);
    events at or below a checkpoint are skipped, so a redelivered entry applies nothing
    twice. Each checkpoint also keeps the fencing token of the lease it was written under:
    a projector whose lease passed on, and whose successor already committed, finds a
    greater token there and raises `LeaseLost` instead of committing.
    """

    def __init__(self, database: Database, projections: Sequence[Projection]) -> None:
        self.database = database
        self.client = database.client
        self.projections = list(projections)
        self.checkpoints = database[CHECKPOINTS_COLLECTION]

    async def __call__(self, batch: list[EventEnvelope], lease: Lease) -> None:
        if not batch:
            return
        partition = batch[0].partition
        if partition != lease.partition or any(event.position is None for event in batch):
            raise ValueError("the projector needs events read from the leased partition's log")
        async with self.client.start_session() as session:
            applied = await session.with_transaction(
                lambda session: self.apply_batch(lease, batch, session)
            )
        for name, count in applied.items():
            PROJECTED.labels(name).inc(count)

    async def apply_batch(
        self, lease: Lease, batch: list[EventEnvelope], session: AsyncClientSession
    ) -> dict[str, int]:
        partition = lease.partition
        ids = [checkpoint_id(p.name, partition) for p in self.projections]
        stored = {
            document["_id"]: document
            async for document in self.checkpoints.find({"_id": {"$in": ids}}, session=session)
        }
        applied: dict[str, int] = {}
        for projection in self.projections:
            identifier = checkpoint_id(projection.name, partition)
            checkpoint = stored.get(identifier) or {}
            if int(checkpoint.get("fence", 0)) > lease.token:
                raise LeaseLost(partition)
            done = position_key(checkpoint.get("position", "0-0"))
            fresh = [event for event in batch if position_key(event.position or "0-0") > done]
            count = await apply_wanted(projection, fresh, self.database, session)
            newest = max(done, position_key(batch[-1].position or "0-0"))
            await self.checkpoints.update_one(
                {"_id": identifier},
                {
                    "$set": checkpoint_document(
                        projection.name, partition, f"{newest[0]}-{newest[1]}", lease.token
                    )
                },
                upsert=True,
                session=session,
            )
            applied[projection.name] = count
        return applied


async def create_projection_indexes(database: Database, projections: Sequence[Projection]) -> None:
    for projection in projections:
        await projection.create_indexes(database)


async def run_projector(
    redis: RedisClient,
    database: Database,
    projections: Sequence[Projection],
    config: ConsumerConfig,
    stop: asyncio.Event,
    *,
    partitions: int,
    consumer: str,
    event_registry: EventRegistry = registry,
) -> None:
    """Run the `projector` consumer group until `stop` is set."""
    group: ConsumerGroup[EventEnvelope] = ConsumerGroup(
        redis,
        PROJECTOR_GROUP,
        consumer,
        partitions,
        Projector(database, projections),
        config,
        decode=envelope_decoder(event_registry),
    )
    await group.run(stop, prepare=lambda: create_projection_indexes(database, projections))
