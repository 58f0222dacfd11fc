"""The delivery loop of a consumer group: strict log order per owned partition, ack on success."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Generic, Protocol, TypeVar, cast

import msgspec
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from eventhunting.store import keys
from eventhunting.store.append import text
from eventhunting.store.consumer_groups.dead_letters import DeadLetters
from eventhunting.store.consumer_groups.entries import (
    Delivered,
    LogEntry,
    entries_of_reply,
    envelope_decoder,
)
from eventhunting.store.consumer_groups.metrics import (
    FAILURES,
    OWNED_PARTITIONS,
    PROCESSED,
    export_group_metrics,
)
from eventhunting.store.consumer_groups.outages import is_outage
from eventhunting.store.consumer_groups.ownership import Lease, LeaseLost, PartitionOwnership
from eventhunting.store.redis_client import RedisClient, is_cluster

logger = logging.getLogger("eventhunting.store.consumer_groups")

T = TypeVar("T")

ACK_SCRIPT = resources.files(__package__).joinpath("fenced_ack.lua").read_text()

# After a Redis error the loop waits this long before reading again.
ERROR_BACKOFF_SECONDS = 1.0
# How often lag, pending and ownership gauges are refreshed.
METRICS_INTERVAL_SECONDS = 5.0


async def all_of(rounds: Sequence[Awaitable[Any]]) -> None:
    """Await every round, then raise the first error: a round that fails must not leave the
    others running on while the loop backs off and reads their partitions again."""
    for outcome in await asyncio.gather(*rounds, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


class ConsumerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How a consumer reads, retries, gives up and shares partitions."""

    block_ms: int = 1_000
    """How long one XREADGROUP waits for new entries."""
    count: int = 100
    """Entries read per partition per XREADGROUP (the batch size)."""
    max_deliveries: int = 5
    """An entry whose handler failed this many times (not for an outage) goes to <group>:dead."""
    retry_delay_ms: int = 1_000
    """Wait before handling a failed entry again."""
    lease_ms: int = 10_000
    """Partition lease time: a dead consumer's partitions move to the others within it."""


class ConsumerGroupMissing(RuntimeError):
    """The group vanished from a partition log (NOGROUP): Redis lost its data or it was deleted."""

    def __init__(self, group: str, detail: str) -> None:
        super().__init__(
            f"consumer group {group!r} is missing on a partition log ({detail}); Redis lost"
            " its data or the group was deleted: rebuild Redis with `eventhunting restore`,"
            " then start the workers again"
        )


class BatchHandler(Protocol[T]):
    """Applies one partition's entries, in log order, under the partition's lease.

    It must be idempotent: after a crash an entry can be handled again. A handler that
    commits outside Redis checks `lease.token` there (see `Lease`) and raises `LeaseLost`.
    """

    async def __call__(self, batch: list[T], lease: Lease, /) -> None: ...


@dataclass
class PartitionState:
    """Where the consumer stands on one owned partition."""

    lease: Lease
    catching_up: bool = True
    """Own pending entries are handled (from `cursor`) before new ones are read."""
    cursor: str = "0"
    retry_at: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)


class ConsumerGroup(Generic[T]):
    """One consumer of a consumer group over the partition logs it holds leases for.

    Exact by construction: each partition is owned by one consumer at a time (fenced
    leases, `PartitionOwnership`) and handled strictly in log order. An entry is
    acknowledged only after its handler returned; when an entry fails, the entries after it
    in its partition wait (they stay pending, in order) and the entry is handled again after
    `retry_delay_ms`. So no entry is ever passed over, whatever fails or restarts. An entry
    that failed `max_deliveries` times with an error that is not an outage (see
    `is_outage`) is copied to `{p<k>}:<group>:dead` with the error and acknowledged, and its
    partition goes on. A new owner first handles every entry the group still has pending on
    the partition (the former owner's included), then new ones.
    """

    def __init__(
        self,
        redis: RedisClient,
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
        self.partition_count = partitions
        self.config = config or ConsumerConfig()
        self.handler = handler
        self.decode: Callable[[LogEntry], T] = decode or cast(
            Callable[[LogEntry], T], envelope_decoder()
        )
        self.ownership = PartitionOwnership(
            redis, group, consumer, partitions, lease_ms=self.config.lease_ms
        )
        self.dead_letters = DeadLetters(redis, group)
        self.ack_script = redis.register_script(ACK_SCRIPT)
        self.states: dict[int, PartitionState] = {}
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        """On a Redis Cluster, the blocking read in flight of each partition that has one."""
        self.next_metrics = 0.0

    async def ensure_groups(self) -> None:
        """Create the group on every partition log (from its start) unless it exists."""
        for partition in range(self.partition_count):
            try:
                await self.redis.xgroup_create(
                    keys.log_key(partition), self.group, id="0", mkstream=True
                )
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def run(
        self, stop: asyncio.Event, *, prepare: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Consume until `stop` is set; the batch in hand is finished first, leases given back.

        `prepare` (creating the handler's indexes, say) runs first and, like every round,
        is retried with backoff while Redis or MongoDB is unreachable.
        """
        leases_stop = asyncio.Event()
        maintaining: asyncio.Task[None] | None = None
        ready = False
        try:
            while not stop.is_set():
                try:
                    if not ready:
                        if prepare is not None:
                            await prepare()
                        await self.ensure_groups()
                        await self.ownership.refresh()
                        maintaining = asyncio.create_task(self.ownership.maintain(leases_stop))
                        ready = True
                    await self.step(stop)
                except ResponseError as error:
                    if "NOGROUP" in str(error):
                        raise ConsumerGroupMissing(self.group, str(error)) from None
                    await self.back_off(stop, error)
                except Exception as error:
                    if not (is_outage(error) or isinstance(error, RedisError | OSError)):
                        raise
                    await self.back_off(stop, error)
        finally:
            await self.stop_waiting()
            leases_stop.set()
            if maintaining is not None:
                await maintaining
            with contextlib.suppress(RedisError, OSError):
                await self.ownership.release_all()

    async def back_off(self, stop: asyncio.Event, error: BaseException) -> None:
        """After a Redis error: wait, then re-read every owned partition's pending entries."""
        logger.warning(
            "consumer round failed; retrying",
            extra={"group": self.group, "error": repr(error)},
        )
        for state in self.states.values():
            state.catching_up, state.cursor = True, "0"
        await self.stop_waiting()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=ERROR_BACKOFF_SECONDS)

    async def step(self, stop: asyncio.Event | None = None) -> None:
        """One round: follow lease changes, retry what is due, then read new entries."""
        await self.follow_ownership()
        now = time.monotonic()
        if now >= self.next_metrics:
            self.next_metrics = now + METRICS_INTERVAL_SECONDS
            await self.export_metrics()
            await self.recover_stranded()
        due = [s for s in self.states.values() if s.catching_up and s.retry_at <= now]
        fresh = [p for p, s in self.states.items() if not s.catching_up]
        waits = [s.retry_at - now for s in self.states.values() if s.catching_up]
        wait_ms = self.config.block_ms
        if waits:
            wait_ms = max(1, min(wait_ms, int(min(waits) * 1000)))
        rounds = [self.catch_up(state) for state in due]
        if fresh:
            rounds.append(self.read_new(fresh, None if due else wait_ms))
        if rounds:
            await all_of(rounds)
            return
        # Nothing owned or everything waiting for a retry: wake for a lease change or a retry.
        self.ownership.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ownership.changed.wait(), timeout=wait_ms / 1000)

    async def follow_ownership(self) -> None:
        """Drop partitions whose lease is gone, give back surplus ones, adopt new ones."""
        held = self.ownership.held
        for partition in list(self.states):
            if held.get(partition) != self.states[partition].lease:
                del self.states[partition]
                await self.stop_waiting(partition)
        for partition in list(self.ownership.surplus):
            self.states.pop(partition, None)
            await self.stop_waiting(partition)
            await self.ownership.release(partition)
        for partition, lease in list(held.items()):
            if partition not in self.states:
                await self.adopt(lease)
        OWNED_PARTITIONS.labels(self.group).set(len(self.states))

    async def adopt(self, lease: Lease) -> None:
        """Take over every entry the group has pending on the partition, then own it."""
        log = keys.log_key(lease.partition)
        start = "0-0"
        while True:
            reply: Any = await self.redis.xautoclaim(
                log, self.group, self.consumer, 0, start_id=start, count=self.config.count
            )
            start = text(reply[0])
            if start == "0-0":
                break
        self.states[lease.partition] = PartitionState(lease=lease)

    async def catch_up(self, state: PartitionState) -> None:
        """Handle the next page of this consumer's own pending entries of the partition."""
        partition = state.lease.partition
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {keys.log_key(partition): state.cursor},
            count=self.config.count,
        )
        delivered = entries_of_reply(reply).get(partition)
        if delivered is None:
            state.catching_up = False
            return
        if delivered.vanished:
            await self.ack(state, delivered.vanished)
        if delivered.entries and await self.process(state, delivered.entries):
            state.cursor = delivered.entries[-1].position
        elif not delivered.entries:
            state.cursor = delivered.vanished[-1]

    async def read_new(self, partitions: Sequence[int], block_ms: int | None) -> None:
        if is_cluster(self.redis):
            await self.read_new_per_slot(self.redis, partitions, block_ms)
            return
        streams: dict[Any, Any] = {keys.log_key(p): ">" for p in partitions}
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, streams, count=self.config.count, block=block_ms
        )
        await self.process_delivered(entries_of_reply(reply))

    async def read_new_per_slot(
        self, cluster: RedisCluster, partitions: Sequence[int], block_ms: int | None
    ) -> None:
        """On a Redis Cluster one XREADGROUP reads one slot, so one partition log.

        Partitions with no blocking read in flight are read without blocking, pipelined
        (one round trip per node). When nothing came, every partition gets a blocking read
        of its own, which stays in flight across rounds until its partition has entries (or
        its lease goes: `stop_waiting`), and the round waits for the first to answer (at
        most `block_ms`). So an entry is handled as soon as it is appended, whichever
        partition it is in, as the single multi-stream read does on one server.
        """
        # Partitions whose blocking read answered get their entries from it alone: a second
        # read now would deliver later entries, which must wait until these are handled.
        idle = [partition for partition in partitions if partition not in self.waiting]
        ready = self.harvest()
        if idle:
            async with cluster.pipeline(transaction=False) as pipe:
                for partition in idle:
                    pipe.xreadgroup(
                        self.group,
                        self.consumer,
                        {keys.log_key(partition): ">"},
                        count=self.config.count,
                    )
                # A read for new entries must not be sent again after a lost reply (what it
                # delivered would stay pending unseen while later entries are handled first):
                # errors come back per read, and the round fails and catches up instead.
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
            if failed is not None:
                raise failed
            for reply in replies:
                ready.update(entries_of_reply(reply))
        if any(delivered.entries for delivered in ready.values()) or block_ms is None:
            await self.process_delivered(ready)
            return
        for partition in partitions:
            if partition not in self.waiting:
                log = keys.log_key(partition)
                # Addressed to the log's node: redis-py then sends it once (after a
                # connection error it would send a read for new entries again, see above).
                self.waiting[partition] = asyncio.ensure_future(
                    cluster.execute_command(
                        "XREADGROUP", "GROUP", self.group, self.consumer,
                        "COUNT", self.config.count, "BLOCK", block_ms,
                        "STREAMS", log, ">",
                        target_nodes=cluster.get_node_from_key(log),
                    )
                )  # fmt: skip
        await asyncio.wait(
            self.waiting.values(), timeout=block_ms / 1000, return_when=asyncio.FIRST_COMPLETED
        )
        await self.process_delivered(self.harvest())

    def harvest(self) -> dict[int, Delivered]:
        """What the blocking reads that answered delivered; the first error they met."""
        delivered: dict[int, Delivered] = {}
        error: BaseException | None = None
        for partition, task in list(self.waiting.items()):
            if not task.done():
                continue
            del self.waiting[partition]
            if task.cancelled():
                continue
            if task.exception() is not None:
                error = error or task.exception()
                continue
            delivered.update(entries_of_reply(task.result()))
        if error is not None:
            raise error
        return delivered

    async def stop_waiting(self, partition: int | None = None) -> None:
        """Cancel the blocking read of a partition (every one when None) before it is given
        up. Entries it was handed just before stay pending: the next owner takes them over."""
        partitions = list(self.waiting) if partition is None else [partition]
        for each in partitions:
            task = self.waiting.pop(each, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                    await task

    async def process_delivered(self, batches: dict[int, Delivered]) -> None:
        """Handle what a read delivered, for partitions still owned and reading new entries
        (a partition catching up finds these entries in its own pending list, in order)."""
        await all_of(
            [
                self.process(self.states[partition], delivered.entries)
                for partition, delivered in batches.items()
                if partition in self.states
                and not self.states[partition].catching_up
                and delivered.entries
            ]
        )

    async def process(self, state: PartitionState, entries: list[LogEntry]) -> bool:
        """Handle entries in order; False when one failed and the rest of them must wait."""
        if len(entries) > 1 and entries[0].position in state.failures:
            # The entry that failed last time goes alone first, so it is not retried twice.
            return await self.process(state, entries[:1]) and await self.process(state, entries[1:])
        error = await self.try_handle(state, entries)
        if error is None:
            await self.ack(state, [entry.position for entry in entries])
            return True
        if isinstance(error, LeaseLost):
            self.drop(state)
            return False
        for entry in entries:
            if len(entries) > 1:
                error = await self.try_handle(state, [entry])
            if error is None:
                await self.ack(state, [entry.position])
                continue
            if isinstance(error, LeaseLost):
                self.drop(state)
                return False
            if not await self.record_failure(state, entry, error):
                return False
        return True

    async def record_failure(
        self, state: PartitionState, entry: LogEntry, error: Exception
    ) -> bool:
        """Count a failure; True when the entry was dead-lettered and the partition goes on."""
        FAILURES.labels(self.group).inc()
        outage = is_outage(error)
        failures = state.failures.get(entry.position, 0) + (0 if outage else 1)
        state.failures[entry.position] = failures
        logger.warning(
            "handler failed",
            extra={
                "group": self.group,
                "partition": entry.partition,
                "position": entry.position,
                "stream": entry.stream,
                "failures": failures,
                "outage": outage,
                "error": repr(error),
            },
        )
        if not outage and failures >= self.config.max_deliveries:
            try:
                await self.dead_letters.bury(state.lease, entry, failures, error)
            except LeaseLost:
                self.drop(state)
                return False
            del state.failures[entry.position]
            return True
        state.catching_up, state.cursor = True, "0"
        state.retry_at = time.monotonic() + self.config.retry_delay_ms / 1000
        return False

    async def try_handle(self, state: PartitionState, entries: list[LogEntry]) -> Exception | None:
        """Run the handler on decoded entries; the error it raised, or None on success."""
        try:
            decoded = [self.decode(entry) for entry in entries]
            await self.handler(decoded, state.lease)
        except Exception as error:
            return error
        for entry in entries:
            state.failures.pop(entry.position, None)
        return None

    async def ack(self, state: PartitionState, positions: Sequence[str]) -> None:
        lease = state.lease
        acked = await self.ack_script(
            keys=[keys.lease_key(lease.partition, self.group), keys.log_key(lease.partition)],
            args=[lease.value, self.group, *positions],
        )
        if acked == -1:
            self.drop(state)
            return
        PROCESSED.labels(self.group).inc(len(positions))

    def drop(self, state: PartitionState) -> None:
        """The lease passed on: stop handling the partition at once."""
        partition = state.lease.partition
        if self.states.get(partition) is state:
            del self.states[partition]
        waiting = self.waiting.pop(partition, None)
        if waiting is not None:
            waiting.cancel()
        self.ownership.forget(partition)
        logger.warning(
            "partition lease lost while handling",
            extra={"group": self.group, "partition": partition},
        )

    async def recover_stranded(self) -> None:
        """Catch up a partition read for new entries that has entries pending for this consumer.

        Between rounds a partition read with ">" has nothing pending for us: what was handled
        is acked, and a failure turns it to catching up. Entries can still be stranded there:
        redis-py sends a command again after a connection error (and a cluster pipeline after
        a failover), so a read whose reply was lost is repeated, and what the lost reply
        delivered stays pending unseen. Catching up (reading our own pending entries in order)
        handles them; a blocking read in flight is given up first (its entries are pending
        too)."""
        for partition, state in list(self.states.items()):
            if state.catching_up:
                continue
            summary: Any = await self.redis.xpending(keys.log_key(partition), self.group)
            mine = [
                consumer
                for consumer in summary.get("consumers") or []
                if text(consumer["name"]) == self.consumer and int(consumer["pending"])
            ]
            if mine and self.states.get(partition) is state and not state.catching_up:
                logger.warning(
                    "entries pending unseen; catching up",
                    extra={"group": self.group, "partition": partition},
                )
                await self.stop_waiting(partition)
                state.catching_up, state.cursor = True, "0"

    async def export_metrics(self) -> None:
        await export_group_metrics(self.redis, self.group, sorted(self.states))
