"""Rebuild the Redis event store (streams, logs, counters, claims, schedules) from the archive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

import msgspec
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.store import keys
from eventhunting.store.append import (
    AppendEffects,
    EarlierResult,
    effects_decoder,
    text,
)
from eventhunting.store.archive import ARCHIVER_GROUP, EVENTS_COLLECTION, utc_from_document
from eventhunting.store.envelope import (
    StoredEvent,
    StoredMeta,
    stored_event_encoder,
    to_epoch_ms,
)
from eventhunting.store.progress import ProgressBar
from eventhunting.store.redis_client import RedisClient

Document = dict[str, Any]

# Events per Redis pipeline round trip.
RESTORE_BATCH = 500
# Positions remembered per partition to rebuild an idempotency record (its events are contiguous).
MAX_EVENTS_PER_APPEND = 10_000


class RedisNotEmpty(RuntimeError):
    """Restore would write over existing event-store keys."""


@dataclass(frozen=True, slots=True)
class RestoreReport:
    events: int
    partitions: int
    last_positions: dict[int, str]


def builtin_of(value: Any) -> Any:
    """bson.Int64 (an int subclass msgspec does not encode) back to int."""
    if isinstance(value, int):
        return int(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


archive_json_encoder = msgspec.json.Encoder(enc_hook=builtin_of)


def stored_record(document: Document) -> bytes:
    """The `e` field exactly as the append wrote it."""
    meta = document.get("meta") or {}
    stored = StoredEvent(
        event_id=document["event_id"],
        type=document["type"],
        schema=int(document["schema"]),
        occurred_at_ms=to_epoch_ms(utc_from_document(document["occurred_at"])),
        meta=StoredMeta(
            meta.get("command_id"),
            meta.get("correlation_id"),
            meta.get("causation_id"),
            meta.get("actor"),
        ),
        data=msgspec.Raw(archive_json_encoder.encode(document["data"])),
    )
    return stored_event_encoder.encode(stored)


async def store_keys(redis: RedisClient, partitions: int) -> list[bytes | str]:
    found: list[bytes | str] = []
    for partition in range(partitions):
        pattern = keys.hash_tag(partition).replace("{", "\\{").replace("}", "\\}") + ":*"
        async for key in redis.scan_iter(match=pattern, count=1000):
            found.append(key)
    return found


class Restorer:
    """Replays archived events, in log order per partition, into Redis with pipelines."""

    def __init__(self, redis: RedisClient, partitions: int) -> None:
        self.redis = redis
        self.partitions = partitions
        self.positions_of_append: dict[int, list[str]] = {}
        self.last_positions: dict[int, str] = {}

    def add(self, pipe: Any, document: Document) -> None:
        partition = int(document["partition"])
        stream: str = document["stream"]
        version = int(document["version"])
        position: str = document["position"]
        record = stored_record(document)
        pipe.xadd(keys.stream_key(partition, stream), {"e": record}, id=f"0-{version}")
        fields: dict[Any, Any] = {"s": stream, "v": version, "e": record}
        effects_document = document.get("effects")
        if effects_document is not None:
            fields["x"] = archive_json_encoder.encode(effects_document)
        pipe.xadd(keys.log_key(partition), fields, id=position)
        self.last_positions[partition] = position
        pending = self.positions_of_append.setdefault(partition, [])
        pending.append(position)
        if len(pending) > MAX_EVENTS_PER_APPEND:
            del pending[: len(pending) - MAX_EVENTS_PER_APPEND]
        if effects_document is not None:
            effects = effects_decoder.decode(fields["x"])
            self.apply_effects(pipe, partition, stream, version, effects)
            pending.clear()

    def apply_effects(
        self, pipe: Any, partition: int, stream: str, version: int, effects: AppendEffects
    ) -> None:
        """Exactly what append.lua did after its checks passed, in the same order."""
        for initial in effects.counter_sets:
            for field, value in initial.values.items():
                pipe.hsetnx(keys.counter_key(partition, initial.name), field, value)
        for change in effects.counter_changes:
            for field, delta in change.deltas.items():
                pipe.hincrby(keys.counter_key(partition, change.name), field, delta)
        if effects.numbering is not None:
            numbering = effects.numbering
            pipe.hincrby(keys.counter_key(partition, numbering.name), numbering.field, 1)
        for claim in effects.claims:
            pipe.set(keys.claim_key(partition, claim.name), claim.owner)
        for schedule in effects.schedules:
            key = keys.schedule_key(partition, schedule.name)
            if schedule.score is None:
                pipe.zrem(key, schedule.member)
            else:
                pipe.zadd(key, {schedule.member: schedule.score})
        if effects.idempotency_id is not None:
            count = effects.event_count or 1
            positions = self.positions_of_append[partition][-count:]
            earlier = EarlierResult(
                stream=stream,
                version=version,
                count=count,
                positions=" ".join(positions),
                fingerprint=effects.fingerprint,
            )
            pipe.set(
                keys.idempotency_key(partition, effects.idempotency_id),
                msgspec.json.encode(earlier),
            )


async def restore(
    redis: RedisClient,
    database: AsyncDatabase[Document],
    partitions: int,
    *,
    force: bool = False,
    groups_at_end: tuple[str, ...] = (ARCHIVER_GROUP,),
    progress: TextIO | None = None,
) -> RestoreReport:
    """Rebuild Redis from the MongoDB archive after a Redis loss.

    Refuses (RedisNotEmpty) when any event-store key exists, unless `force`, which deletes
    the event-store keys of every partition first (other keys, e.g. sessions, stay). The
    groups in `groups_at_end` (by default the archiver, which has everything already) are
    created at the end of each restored log; other groups start from the beginning and
    skip what they already did (projection checkpoints, the mailer's ledger).
    """
    existing = await store_keys(redis, partitions)
    if existing and not force:
        raise RedisNotEmpty(
            f"Redis holds {len(existing)} event-store keys (e.g. {text(existing[0])}); "
            "restore only runs over an empty store unless forced"
        )
    for start in range(0, len(existing), 1000):
        await redis.unlink(*existing[start : start + 1000])

    events = database[EVENTS_COLLECTION]
    total = await events.count_documents({})
    bar = ProgressBar("restore", total, stream=progress)
    restorer = Restorer(redis, partitions)
    cursor = events.find(
        {},
        sort=[("partition", ASCENDING), ("position_ms", ASCENDING), ("position_seq", ASCENDING)],
        batch_size=RESTORE_BATCH,
    )
    pipe = redis.pipeline(transaction=False)
    queued = 0
    async for document in cursor:
        restorer.add(pipe, document)
        queued += 1
        if queued >= RESTORE_BATCH:
            await pipe.execute()
            bar.advance(queued)
            queued = 0
    if queued:
        await pipe.execute()
        bar.advance(queued)
    bar.finish()
    for group in groups_at_end:
        for partition in range(partitions):
            await redis.xgroup_create(
                keys.log_key(partition),
                group,
                id=restorer.last_positions.get(partition, "0"),
                mkstream=True,
            )
    return RestoreReport(
        events=total, partitions=partitions, last_positions=restorer.last_positions
    )
