"""An event store held in memory with append.lua's semantics, for fast service tests."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, overload

from eventhunting.domain.events import EventRegistry, registry
from eventhunting.store import keys
from eventhunting.store.append import (
    NO_EFFECTS,
    AppendEffects,
    AppendRequest,
    AppendResult,
    EarlierResult,
    filled,
    prepare_append,
    utc_now,
)
from eventhunting.store.envelope import EventEnvelope, decode_stored_event, stored_event_decoder
from eventhunting.store.errors import ConcurrencyError, GuardRejected


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One partition-log entry: an event of `stream` at `version`, as stored."""

    position: tuple[int, int]
    """`<milliseconds>-<sequence>` as numbers, increasing in append order as in XADD `*`."""
    stream: str
    version: int
    record: bytes
    """The stored event (a stream entry's field "e"), decoded and upcast on every read."""

    @property
    def position_text(self) -> str:
        return f"{self.position[0]}-{self.position[1]}"


@dataclass(slots=True)
class PartitionState:
    """What Redis keeps under one partition's `{p<k>}` keys."""

    log: list[LogEntry] = field(default_factory=list)
    streams: dict[str, list[bytes]] = field(default_factory=dict)
    idempotency: dict[str, EarlierResult] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)
    schedules: dict[str, dict[str, float]] = field(default_factory=dict)
    """Schedule name -> member -> score (a sorted set's members and scores)."""

    def next_position(self) -> tuple[int, int]:
        """The next log position: the wall clock's millisecond, or the last one's next
        sequence number when the clock has not moved past it (what Redis does)."""
        now_ms = time.time_ns() // 1_000_000
        if not self.log:
            return (now_ms, 0)
        last_ms, last_sequence = self.log[-1].position
        return (now_ms, 0) if now_ms > last_ms else (last_ms, last_sequence + 1)


@dataclass(slots=True)
class InMemoryStorage:
    """Everything in-memory stores hold; stores opened on one storage share it (for
    example one with an older build's event registry writing and a newer one reading)."""

    partitions: dict[int, PartitionState] = field(default_factory=dict)

    def partition(self, partition: int) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None:
            state = self.partitions[partition] = PartitionState()
        return state


class CounterDraft:
    """Counter values as they will be after an append, read through to the stored ones."""

    def __init__(self, stored: dict[str, dict[str, int]]) -> None:
        self.stored = stored
        self.changed: dict[str, dict[str, int]] = {}

    def value(self, name: str, field_name: str) -> int | None:
        changed = self.changed.get(name)
        if changed is not None and field_name in changed:
            return changed[field_name]
        return self.stored.get(name, {}).get(field_name)

    def set(self, name: str, field_name: str, value: int) -> None:
        self.changed.setdefault(name, {})[field_name] = value


class InMemoryEventStore:
    """The event-store port in memory: append.lua's checks, order and all-or-nothing writes.

    Every call takes one event-loop turn before it runs, as a round trip to Redis would, so
    concurrent commands interleave between their reads and appends; an append then checks
    and writes without awaiting, so appends are atomic with respect to each other. Events
    are stored encoded and decoded (upcast) on every read, like the Redis store's.
    """

    def __init__(
        self,
        partitions: int,
        *,
        clock: Callable[[], datetime] = utc_now,
        event_registry: EventRegistry = registry,
        storage: InMemoryStorage | None = None,
    ) -> None:
        self.partitions = partitions
        self.clock = clock
        self.registry = event_registry
        self.storage = InMemoryStorage() if storage is None else storage

    async def append(self, request: AppendRequest) -> AppendResult:
        """Write the request atomically, or raise ConcurrencyError/GuardRejected writing nothing."""
        prepared = prepare_append(
            request, partitions=self.partitions, event_registry=self.registry, clock=self.clock
        )
        effects = prepared.effects or NO_EFFECTS
        await asyncio.sleep(0)
        outcome = self.write(request, effects, [event.record for event in prepared.events])
        if isinstance(outcome, EarlierResult):
            return await self.earlier_result(request.partition, outcome)
        version, positions, number = outcome
        return prepared.written(version, positions, number, self.registry)

    def write(
        self, request: AppendRequest, effects: AppendEffects, records: list[bytes]
    ) -> EarlierResult | tuple[int, list[str], int | None]:
        """append.lua without a single await: the earlier result of a repeated idempotency id,
        or the new stream version, the log positions of the events written and the number a
        numbering took; raises
        ConcurrencyError or GuardRejected, writing nothing, on a refusal."""
        state = self.storage.partition(request.partition)
        if effects.idempotency_id is not None:
            earlier = state.idempotency.get(effects.idempotency_id)
            if earlier is not None:
                return earlier
        current = len(state.streams.get(request.stream, ()))
        expected = request.expected_version
        if expected is not None and expected >= 0 and current != expected:
            raise ConcurrencyError(current, expected_version=expected, stream=request.stream)
        for read in effects.stream_versions:
            if len(state.streams.get(read.stream, ())) != read.version:
                raise GuardRejected(read.code, read.stream)
        for claim in effects.claims:
            owner = state.claims.get(claim.name)
            if owner is not None and owner != claim.owner:
                raise GuardRejected(claim.code, claim.name)
        counters = CounterDraft(state.counters)
        for initial in effects.counter_sets:
            for field_name, value in initial.values.items():
                if counters.value(initial.name, field_name) is None:
                    counters.set(initial.name, field_name, value)
        for change in effects.counter_changes:
            for field_name, delta in change.deltas.items():
                value = (counters.value(change.name, field_name) or 0) + delta
                if value < 0:
                    raise GuardRejected(change.code, change.name)
                counters.set(change.name, field_name, value)
            if change.sum_fields:
                total = sum(counters.value(change.name, f) or 0 for f in change.sum_fields)
                if change.ceiling_field is not None:
                    ceiling = counters.value(change.name, change.ceiling_field) or 0
                else:
                    ceiling = change.ceiling or 0
                if total > ceiling:
                    raise GuardRejected(change.code, change.name)
        number = None
        numbering = effects.numbering
        if numbering is not None:
            number = (counters.value(numbering.name, numbering.field) or 0) + 1
            if number > numbering.maximum:
                raise GuardRejected(numbering.code, numbering.name)
            counters.set(numbering.name, numbering.field, number)
            records = [filled(record, numbering, number) for record in records]

        stream = state.streams.setdefault(request.stream, [])
        positions: list[str] = []
        for record in records:
            stream.append(record)
            entry = LogEntry(state.next_position(), request.stream, len(stream), record)
            state.log.append(entry)
            positions.append(entry.position_text)
        for name, fields in counters.changed.items():
            state.counters.setdefault(name, {}).update(fields)
        for claim in effects.claims:
            state.claims[claim.name] = claim.owner
        for schedule in effects.schedules:
            if schedule.score is not None:
                state.schedules.setdefault(schedule.name, {})[schedule.member] = float(
                    schedule.score
                )
            else:
                state.schedules.get(schedule.name, {}).pop(schedule.member, None)
        if effects.idempotency_id is not None:
            state.idempotency[effects.idempotency_id] = EarlierResult(
                stream=request.stream,
                version=len(stream),
                count=len(records),
                positions=" ".join(positions),
                fingerprint=effects.fingerprint,
            )
        return len(stream), positions, number

    async def earlier_result(self, partition: int, earlier: EarlierResult) -> AppendResult:
        """The result an idempotent append stored, rebuilt from the events it wrote."""
        await asyncio.sleep(0)
        first_version = earlier.version - earlier.count + 1
        records = self.storage.partition(partition).streams.get(earlier.stream, [])
        positions = earlier.positions.split(" ")
        envelopes = tuple(
            decode_stored_event(
                self.registry,
                stored_event_decoder.decode(record),
                stream=earlier.stream,
                version=first_version + index,
                partition=partition,
                position=positions[index],
            )
            for index, record in enumerate(records[max(first_version - 1, 0) : earlier.version])
        )
        return AppendResult(
            partition=partition,
            stream=earlier.stream,
            version=earlier.version,
            events=envelopes,
            duplicate=True,
            fingerprint=earlier.fingerprint,
        )

    async def find_earlier(self, partition: int, idempotency_id: str) -> AppendResult | None:
        """What an append with this idempotency id wrote, or None when none was made."""
        await asyncio.sleep(0)
        earlier = self.storage.partition(partition).idempotency.get(idempotency_id)
        return None if earlier is None else await self.earlier_result(partition, earlier)

    @overload
    async def read_stream(
        self, stream: str, /, *, after_version: int = 0
    ) -> list[EventEnvelope]: ...

    @overload
    async def read_stream(
        self, partition: int, stream: str, *, after_version: int = 0
    ) -> list[EventEnvelope]: ...

    async def read_stream(
        self,
        partition: int | str | None = None,
        stream: str | None = None,
        *,
        after_version: int = 0,
    ) -> list[EventEnvelope]:
        """The events of one aggregate stream in version order (empty when it does not exist).

        Call it as `read_stream(stream)` (the partition follows from the id in the stream name)
        or `read_stream(partition, stream)`.
        """
        if isinstance(partition, str):
            partition, stream = None, partition
        if stream is None:
            raise TypeError("read_stream needs a stream name")
        if partition is None:
            partition = keys.partition_of_stream(stream, self.partitions)
        await asyncio.sleep(0)
        records = self.storage.partition(partition).streams.get(stream, [])
        first = max(after_version, 0)
        return [
            decode_stored_event(
                self.registry,
                stored_event_decoder.decode(record),
                stream=stream,
                version=first + index + 1,
                partition=partition,
            )
            for index, record in enumerate(records[first:])
        ]

    async def stream_version(self, partition: int, stream: str) -> int:
        """The current version of an aggregate stream (0 when it does not exist)."""
        await asyncio.sleep(0)
        return len(self.storage.partition(partition).streams.get(stream, ()))

    async def read_counters(
        self, partition: int, names: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """Write-side counter hashes by name; a counter that does not exist reads as {}."""
        await asyncio.sleep(0)
        counters = self.storage.partition(partition).counters
        return {name: dict(counters.get(name, {})) for name in names}

    async def read_claim(self, partition: int, name: str) -> str | None:
        """The owner of a unique claim, or None when it is free."""
        await asyncio.sleep(0)
        return self.storage.partition(partition).claims.get(name)

    async def read_log(
        self, partition: int, after: str = "0", count: int = 100
    ) -> list[EventEnvelope]:
        """Up to `count` events of a partition log strictly after position `after`."""
        if count < 1:
            raise ValueError("count must be a positive integer")
        after_position = position_of(after)
        await asyncio.sleep(0)
        log = self.storage.partition(partition).log
        start = bisect.bisect_right(log, after_position, key=lambda entry: entry.position)
        return [
            decode_stored_event(
                self.registry,
                stored_event_decoder.decode(entry.record),
                stream=entry.stream,
                version=entry.version,
                partition=partition,
                position=entry.position_text,
            )
            for entry in log[start : start + count]
        ]


def position_of(text: str) -> tuple[int, int]:
    """A log position `<ms>-<seq>` (or `<ms>`, sequence 0) as numbers, as XRANGE reads it."""
    milliseconds, _, sequence = text.partition("-")
    try:
        return (int(milliseconds), int(sequence or 0))
    except ValueError:
        raise ValueError(f"{text!r} is not a log position <ms>-<seq>") from None


if TYPE_CHECKING:
    from eventhunting.store.port import EventStorePort

    def _in_memory_store_is_an_event_store_port(store: InMemoryEventStore) -> EventStorePort:
        return store
