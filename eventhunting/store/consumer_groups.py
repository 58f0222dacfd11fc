"""Consumer-group runtime over the partition logs: ordered batches, ack on success, dead letters."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import msgspec
import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.exceptions import ResponseError

from eventhunting.domain.events import EventRegistry, registry
from eventhunting.store import keys
from eventhunting.store.append import decode_log_entry, text
from eventhunting.store.envelope import EventEnvelope

logger = logging.getLogger("eventhunting.store.consumer_groups")

T = TypeVar("T")

PROCESSED = Counter(
    "eventhunting_consumer_processed_total", "Log entries handled and acked.", ["group"]
)
FAILURES = Counter(
    "eventhunting_consumer_failures_total", "Handler failures on a single entry.", ["group"]
)
DEAD_LETTERED = Counter(
    "eventhunting_consumer_dead_lettered_total",
    "Entries moved to <group>:dead after too many deliveries.",
    ["group"],
)
LAG = Gauge(
    "eventhunting_consumer_lag",
    "Log entries not yet delivered to the group.",
    ["group", "partition"],
)
PENDING = Gauge(
    "eventhunting_consumer_pending",
    "Entries delivered to the group and not yet acked.",
    ["group", "partition"],
)

# After an unexpected Redis error the loop waits this long before reading again.
ERROR_BACKOFF_SECONDS = 1.0
# How often lag and pending gauges are refreshed from XINFO GROUPS.
METRICS_INTERVAL_SECONDS = 5.0


class ConsumerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How a consumer reads, retries and gives up."""

    block_ms: int = 1_000
    """How long one XREADGROUP waits for new entries."""
    count: int = 100
    """Entries read per partition per XREADGROUP (the batch size)."""
    claim_idle_ms: int = 30_000
    """Entries pending this long (their consumer died) are taken over with XAUTOCLAIM."""
    max_deliveries: int = 5
    """An entry that failed on its last of this many deliveries goes to <group>:dead."""
    retry_delay_ms: int = 1_000
    """Wait before redelivering an entry whose handler failed."""
    only_partitions: tuple[int, ...] | None = None
    """Read only these partitions (to split a group's partitions over several processes)."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One raw partition-log entry: where it is and its stored fields."""

    partition: int
    position: str
    stream: str
    version: int
    record: bytes
    effects: bytes | None


BatchHandler = Callable[[list[T]], Awaitable[None]]


def raw_field(fields: Mapping[Any, Any], name: str) -> bytes | None:
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


def log_entry(partition: int, entry_id: bytes | str, fields: Mapping[Any, Any]) -> LogEntry:
    stream = raw_field(fields, "s")
    version = raw_field(fields, "v")
    record = raw_field(fields, "e")
    if stream is None or version is None or record is None:
        raise ValueError(f"log entry {text(entry_id)} of partition {partition} is malformed")
    return LogEntry(
        partition=partition,
        position=text(entry_id),
        stream=stream.decode(),
        version=int(version),
        record=record,
        effects=raw_field(fields, "x"),
    )


def envelope_decoder(
    event_registry: EventRegistry = registry,
) -> Callable[[LogEntry], EventEnvelope]:
    """Decode log entries into envelopes (upcast to the current schemas of `event_registry`)."""

    def decode(entry: LogEntry) -> EventEnvelope:
        fields = {
            b"s": entry.stream.encode(),
            b"v": str(entry.version).encode(),
            b"e": entry.record,
        }
        return decode_log_entry(event_registry, entry.partition, entry.position, fields)

    return decode


def position_key(position: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair."""
    milliseconds, _, sequence = position.partition("-")
    return int(milliseconds), int(sequence or 0)


@dataclass
class Blocked:
    """An aggregate whose entry failed: it and its later entries wait for the retry."""

    failed: LogEntry
    retry_at: float
    held: list[LogEntry] = field(default_factory=list)


class ConsumerGroup(Generic[T]):
    """Runs one consumer of a consumer group over all partition logs.

    Contract for the handler: it receives entries of ONE partition, in log order, and must
    be idempotent (an entry can be delivered again after a crash). Entries are acked only
    after the handler returns. When a batch fails, its entries are handled one by one: an
    entry that fails blocks later entries of its own aggregate stream (they are held, in
    order) but not entries of other aggregates. A failing entry is redelivered after
    `retry_delay_ms`; once it failed on delivery `max_deliveries` (and other entries were
    handled successfully since its first failure, so an outage of the handler's database
    dead-letters nothing) it is copied to `{p<k>}:<group>:dead` with the error, acked, and
    its held entries go on.

    Several processes may share a group: entries pending longer than `claim_idle_ms` on a
    dead consumer are taken over with XAUTOCLAIM. Strict per-aggregate order across
    processes needs disjoint `only_partitions`.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        group: str,
        consumer: str,
        partitions: int,
        handler: BatchHandler[T],
        config: ConsumerConfig | None = None,
        *,
        decode: Callable[[LogEntry], T] | None = None,
    ) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.config = config or ConsumerConfig()
        self.partitions = (
            list(self.config.only_partitions)
            if self.config.only_partitions is not None
            else list(range(partitions))
        )
        self.handler = handler
        self.decode: Callable[[LogEntry], T] = decode or cast(
            Callable[[LogEntry], T], envelope_decoder()
        )
        self.blocked: dict[int, dict[str, Blocked]] = {p: {} for p in self.partitions}
        self.next_autoclaim = 0.0
        self.next_metrics = 0.0
        self.last_success = float("-inf")
        self.first_failures: dict[str, float] = {}

    async def ensure_groups(self) -> None:
        """Create the group on every partition log (from its start) unless it exists."""
        for partition in self.partitions:
            try:
                await self.redis.xgroup_create(
                    keys.log_key(partition), self.group, id="0", mkstream=True
                )
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished first."""
        await self.ensure_groups()
        await self.process_own_pending()
        while not stop.is_set():
            try:
                await self.step()
            except ResponseError as error:
                if "NOGROUP" in str(error):
                    raise
                logger.exception("consumer step failed", extra={"group": self.group})
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
            except (ConnectionError, TimeoutError, OSError):
                logger.exception("redis unavailable", extra={"group": self.group})
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)

    async def step(self) -> None:
        """One round: retries due, takeover of idle entries, then new entries."""
        now = time.monotonic()
        await self.retry_due(now)
        # A partition where another consumer still has pending entries is not read further
        # until those are taken over, so a takeover after a crash keeps the log order.
        taken = await self.partitions_pending_elsewhere()
        if taken or now >= self.next_autoclaim:
            self.next_autoclaim = now + self.config.claim_idle_ms / 2000
            await self.claim_idle_entries(taken or self.partitions)
            taken = await self.partitions_pending_elsewhere() if taken else taken
        if now >= self.next_metrics:
            self.next_metrics = now + METRICS_INTERVAL_SECONDS
            await self.export_metrics()
        block_ms = self.config.block_ms
        if any(self.blocked.values()) or taken:
            # Wake up in time for the earliest retry or takeover.
            block_ms = min(block_ms, self.config.retry_delay_ms, self.config.claim_idle_ms // 4)
        readable = [p for p in self.partitions if p not in taken]
        if readable:
            await self.read_new(readable, max(block_ms, 1))
        else:
            await asyncio.sleep(block_ms / 1000)

    async def partitions_pending_elsewhere(self) -> list[int]:
        """Partitions where another consumer of the group holds unacknowledged entries."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in self.partitions:
                pipe.xpending(keys.log_key(partition), self.group)
            summaries: list[Any] = await pipe.execute()
        return [
            partition
            for partition, summary in zip(self.partitions, summaries, strict=True)
            if any(
                text(consumer["name"]) != self.consumer and int(consumer["pending"]) > 0
                for consumer in summary.get("consumers") or []
            )
        ]

    async def process_own_pending(self) -> None:
        """Re-read what this consumer was given before it stopped or died."""
        for partition in self.partitions:
            after = "0"
            while True:
                reply = await self.redis.xreadgroup(
                    self.group,
                    self.consumer,
                    {keys.log_key(partition): after},
                    count=self.config.count,
                )
                entries = self.entries_of(reply).get(partition, [])
                if not entries:
                    break
                await self.process(partition, entries)
                after = entries[-1].position

    async def read_new(self, partitions: Sequence[int], block_ms: int) -> None:
        streams: dict[Any, Any] = {keys.log_key(p): ">" for p in partitions}
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, streams, count=self.config.count, block=block_ms
        )
        batches = self.entries_of(reply)
        await asyncio.gather(
            *(self.process(partition, entries) for partition, entries in batches.items())
        )

    async def claim_idle_entries(self, partitions: Sequence[int]) -> None:
        """Take over entries that another (dead) consumer left pending too long."""
        for partition in partitions:
            await self.refresh_blocked(partition)
            start = "0-0"
            while True:
                reply: Any = await self.redis.xautoclaim(
                    keys.log_key(partition),
                    self.group,
                    self.consumer,
                    self.config.claim_idle_ms,
                    start_id=start,
                    count=self.config.count,
                )
                start = text(reply[0])
                deleted = [text(entry_id) for entry_id in (reply[2] if len(reply) > 2 else [])]
                if deleted:
                    await self.redis.xack(keys.log_key(partition), self.group, *deleted)
                known = self.known_positions(partition)
                entries = [
                    log_entry(partition, entry_id, fields)
                    for entry_id, fields in reply[1]
                    if fields is not None and text(entry_id) not in known
                ]
                if entries:
                    logger.info(
                        "took over idle entries",
                        extra={"group": self.group, "partition": partition, "count": len(entries)},
                    )
                    await self.process(partition, entries)
                if start == "0-0":
                    break

    async def refresh_blocked(self, partition: int) -> None:
        """Reset the idle time of entries held here, so no other consumer takes them over."""
        known: list[Any] = sorted(self.known_positions(partition))
        if known:
            await self.redis.xclaim(
                keys.log_key(partition), self.group, self.consumer, 0, known, justid=True
            )

    def known_positions(self, partition: int) -> set[str]:
        known: set[str] = set()
        for blocked in self.blocked[partition].values():
            known.add(blocked.failed.position)
            known.update(entry.position for entry in blocked.held)
        return known

    def entries_of(self, reply: Any) -> dict[int, list[LogEntry]]:
        """XREADGROUP reply (RESP2 list or RESP3 dict) as entries per partition."""
        if not reply:
            return {}
        pairs = reply.items() if isinstance(reply, dict) else reply
        batches: dict[int, list[LogEntry]] = {}
        for stream_name, stream_entries in pairs:
            partition = int(text(stream_name).split("}", 1)[0].removeprefix("{p"))
            entries = stream_entries
            if entries and isinstance(entries[0], list):
                # RESP3 replies wrap the entry list in one more list.
                entries = entries[0]
            batches[partition] = [
                log_entry(partition, entry_id, fields)
                for entry_id, fields in entries
                if fields is not None
            ]
        return {partition: entries for partition, entries in batches.items() if entries}

    async def process(self, partition: int, entries: Sequence[LogEntry]) -> None:
        """Handle entries of one partition in order, holding those of blocked aggregates."""
        blocked = self.blocked[partition]
        ready: list[LogEntry] = []
        for entry in entries:
            waiting = blocked.get(entry.stream)
            if waiting is not None:
                if entry.position != waiting.failed.position and all(
                    held.position != entry.position for held in waiting.held
                ):
                    waiting.held.append(entry)
            else:
                ready.append(entry)
        if not ready:
            return
        if await self.try_handle(ready) is None:
            await self.ack(partition, ready)
            return
        for entry in ready:
            await self.process_one(partition, entry)

    async def process_one(self, partition: int, entry: LogEntry) -> None:
        blocked = self.blocked[partition]
        waiting = blocked.get(entry.stream)
        if waiting is not None:
            waiting.held.append(entry)
            return
        error = await self.try_handle([entry])
        if error is None:
            await self.ack(partition, [entry])
            return
        FAILURES.labels(self.group).inc()
        deliveries = await self.deliveries(partition, entry.position)
        logger.warning(
            "handler failed",
            extra={
                "group": self.group,
                "position": entry.position,
                "stream": entry.stream,
                "deliveries": deliveries,
                "error": repr(error),
            },
        )
        first_failed_at = self.first_failures.setdefault(entry.position, time.monotonic())
        # Only an entry that fails while others succeed is poison; when everything fails
        # (the handler's database is down) entries wait instead of being dead-lettered.
        if deliveries >= self.config.max_deliveries and self.last_success > first_failed_at:
            self.first_failures.pop(entry.position, None)
            await self.dead_letter(partition, entry, deliveries, error)
            return
        blocked[entry.stream] = Blocked(
            failed=entry, retry_at=time.monotonic() + self.config.retry_delay_ms / 1000
        )

    async def retry_due(self, now: float) -> None:
        """Redeliver failed entries whose retry time has come, then their held successors."""
        for partition in self.partitions:
            blocked = self.blocked[partition]
            for stream in [s for s, waiting in blocked.items() if waiting.retry_at <= now]:
                waiting = blocked.pop(stream)
                # XCLAIM counts the redelivery, so a crash-looping poison entry is counted too.
                await self.redis.xclaim(
                    keys.log_key(partition),
                    self.group,
                    self.consumer,
                    0,
                    [waiting.failed.position],
                )
                await self.process_one(partition, waiting.failed)
                again = blocked.get(stream)
                if again is not None:
                    again.held.extend(waiting.held)
                elif waiting.held:
                    await self.process(partition, waiting.held)

    async def try_handle(self, entries: list[LogEntry]) -> Exception | None:
        """Run the handler on decoded entries; the error it raised, or None on success."""
        try:
            decoded = [self.decode(entry) for entry in entries]
            await self.handler(decoded)
        except Exception as error:
            return error
        self.last_success = time.monotonic()
        for entry in entries:
            self.first_failures.pop(entry.position, None)
        return None

    async def ack(self, partition: int, entries: Sequence[LogEntry]) -> None:
        await self.redis.xack(
            keys.log_key(partition), self.group, *(entry.position for entry in entries)
        )
        PROCESSED.labels(self.group).inc(len(entries))

    async def deliveries(self, partition: int, position: str) -> int:
        pending: Any = await self.redis.xpending_range(
            keys.log_key(partition), self.group, min=position, max=position, count=1
        )
        return int(pending[0]["times_delivered"]) if pending else 1

    async def dead_letter(
        self, partition: int, entry: LogEntry, deliveries: int, error: Exception
    ) -> None:
        fields: dict[Any, Any] = {
            "s": entry.stream,
            "v": entry.version,
            "e": entry.record,
            "position": entry.position,
            "group": self.group,
            "consumer": self.consumer,
            "deliveries": deliveries,
            "error": "".join(traceback.format_exception(error))[-4000:],
            "failed_at_ms": int(time.time() * 1000),
        }
        if entry.effects is not None:
            fields["x"] = entry.effects
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.dead_letter_key(partition, self.group), fields)
            pipe.xack(keys.log_key(partition), self.group, entry.position)
            await pipe.execute()
        DEAD_LETTERED.labels(self.group).inc()
        logger.error(
            "entry dead-lettered",
            extra={
                "group": self.group,
                "partition": partition,
                "position": entry.position,
                "stream": entry.stream,
                "deliveries": deliveries,
            },
        )

    async def export_metrics(self) -> None:
        for partition in self.partitions:
            groups: Any = await self.redis.xinfo_groups(keys.log_key(partition))
            for info in groups:
                if text(info["name"]) == self.group:
                    label = str(partition)
                    LAG.labels(self.group, label).set(int(info.get("lag") or 0))
                    PENDING.labels(self.group, label).set(int(info.get("pending") or 0))
