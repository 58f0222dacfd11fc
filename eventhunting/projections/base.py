"""Projection base class and the projector: event batches and checkpoints in one transaction."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import redis.asyncio as aioredis
from prometheus_client import Counter
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.events import EventRegistry, registry
from eventhunting.store.consumer_groups import (
    ConsumerConfig,
    ConsumerGroup,
    envelope_decoder,
    position_key,
)
from eventhunting.store.envelope import EventEnvelope

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

    Rules that keep the projector correct and `eventhunting replay` equal to it:

    - Pass `session` to every read and write: the batch and the checkpoint commit together.
    - Touch only your own `collections`, always through `db[...]` (replay hands you a scratch
      database and swaps the collections in afterwards).
    - Be deterministic: derive everything from the event (`event.occurred_at`, ids, data),
      never from the clock or random numbers.
    - Events of one aggregate arrive in version order; events of one partition in log order.
      An event at or below the partition checkpoint is never applied twice.
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


def checkpoint_id(projection: str, partition: int) -> str:
    return f"{projection}:{partition}"


def checkpoint_document(
    projection: str, partition: int, position: str, gaps: Sequence[str] = ()
) -> Document:
    milliseconds, sequence = position_key(position)
    return {
        "projection": projection,
        "partition": partition,
        "position": position,
        "position_ms": milliseconds,
        "position_seq": sequence,
        "gaps": sorted(gaps, key=position_key),
    }


class Projector:
    """Batch handler of the projector group: applies one partition's batch to every projection.

    The batch and each projection's (projection, partition) checkpoint are written in ONE
    transaction (`with_transaction` retries transient errors and unknown commit results).
    Events at or below a checkpoint are skipped, so redelivery applies nothing twice. When a
    single event fails, the runtime goes on with other aggregates; its position is kept in
    the checkpoint's `gaps` until it is applied, so it is not skipped when retried.
    """

    def __init__(self, database: Database, projections: Sequence[Projection]) -> None:
        self.database = database
        self.client = database.client
        self.projections = list(projections)
        self.checkpoints = database[CHECKPOINTS_COLLECTION]
        self.failed: dict[int, set[str]] = {}

    async def __call__(self, batch: list[EventEnvelope]) -> None:
        if not batch:
            return
        partition = batch[0].partition
        if partition is None or any(event.position is None for event in batch):
            raise ValueError("the projector needs events read from a partition log")
        failed = self.failed.setdefault(partition, set())
        try:
            async with self.client.start_session() as session:
                applied = await session.with_transaction(
                    lambda session: self.apply_batch(partition, batch, session)
                )
        except Exception:
            if len(batch) == 1:
                failed.add(batch[0].position or "")
            raise
        newest = position_key(batch[-1].position or "0-0")
        failed.difference_update(
            position for position in list(failed) if position_key(position) <= newest
        )
        for name, count in applied.items():
            PROJECTED.labels(name).inc(count)

    async def apply_batch(
        self, partition: int, batch: list[EventEnvelope], session: AsyncClientSession
    ) -> dict[str, int]:
        ids = [checkpoint_id(p.name, partition) for p in self.projections]
        stored = {
            document["_id"]: document
            async for document in self.checkpoints.find({"_id": {"$in": ids}}, session=session)
        }
        failed = self.failed.get(partition, set())
        applied: dict[str, int] = {}
        for projection in self.projections:
            identifier = checkpoint_id(projection.name, partition)
            checkpoint = stored.get(identifier)
            done = position_key(checkpoint["position"]) if checkpoint else (0, 0)
            gaps = set(checkpoint.get("gaps", ())) if checkpoint else set()
            newest = done
            count = 0
            for event in batch:
                position = event.position or ""
                at = position_key(position)
                if at <= done and position not in gaps:
                    continue
                if projection.wants(event):
                    await projection.apply(event, self.database, session)
                    count += 1
                gaps.discard(position)
                newest = max(newest, at)
            newest_position = f"{newest[0]}-{newest[1]}"
            # Failed events this batch overtook stay applicable when they are retried.
            gaps.update(p for p in failed if position_key(p) < newest)
            await self.checkpoints.update_one(
                {"_id": identifier},
                {
                    "$set": checkpoint_document(
                        projection.name, partition, newest_position, list(gaps)
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
    redis: aioredis.Redis,
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
    await create_projection_indexes(database, projections)
    group: ConsumerGroup[EventEnvelope] = ConsumerGroup(
        redis,
        PROJECTOR_GROUP,
        consumer,
        partitions,
        Projector(database, projections),
        config,
        decode=envelope_decoder(event_registry),
    )
    await group.run(stop)
