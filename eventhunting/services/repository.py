"""One way to decide and append: load an aggregate, decide, append at the version read, retry."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import msgspec

from eventhunting.domain.errors import DomainError, IdempotencyKeyReused
from eventhunting.domain.events import Command, DomainEvent, RecordedEvent, fold
from eventhunting.store import keys
from eventhunting.store.append import (
    AppendRequest,
    AppendResult,
    Claim,
    CounterChange,
    CounterSet,
    EventStore,
    Numbering,
    ScheduleChange,
    StreamVersion,
    text,
)
from eventhunting.store.envelope import EventEnvelope, EventMeta
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from eventhunting.store.redis_client import RedisClient

S = TypeVar("S")

# The one retry policy of every command: when another command won the race for the stream,
# read and decide again, at most this many times, after a short random pause that grows
# with the attempt (each round at least one contender wins, so contention settles fast).
DECISION_ATTEMPTS = 8
RETRY_PAUSE_SECONDS = 0.003

_fingerprint_encoder = msgspec.json.Encoder(order="deterministic")


def fingerprint_of(command: Command) -> str:
    """A stable digest of what a command asks, to tell a repeated request from a reused
    Idempotency-Key."""
    body = [type(command).__name__, msgspec.structs.asdict(command)]
    return hashlib.sha256(_fingerprint_encoder.encode(body)).hexdigest()


@dataclass(frozen=True, slots=True)
class StreamKind(Generic[S]):
    """One kind of aggregate: its stream name prefix and its fold."""

    name: str
    evolve: Callable[[S | None, RecordedEvent], S]

    def stream(self, aggregate_id: str) -> str:
        return f"{self.name}-{aggregate_id}"

    def fold(self, history: Sequence[RecordedEvent]) -> S | None:
        return fold(self.evolve, history)


@dataclass(frozen=True, slots=True, kw_only=True)
class Effects:
    """What an append writes besides the events: guarded counters, claims, schedules, and a
    number the append takes and writes into the events (an invoice's)."""

    counters: Sequence[CounterChange | CounterSet] = ()
    claims: Sequence[Claim] = ()
    schedules: Sequence[ScheduleChange] = ()
    stream_versions: Sequence[StreamVersion] = ()
    numbering: Numbering | None = None


NO_EFFECTS = Effects()


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An Idempotency-Key as the store records it: a scoped id and the request's fingerprint."""

    id: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Saved(Generic[S]):
    """The state after a command, the events it wrote, and whether it was a repeat.

    For a repeated Idempotency-Key, `events` are those the first request wrote and `state`
    is the aggregate after them (nothing was decided or written again).
    """

    state: S
    events: tuple[EventEnvelope, ...]
    repeated: bool = False
    appended: AppendResult | None = None
    """The store's result of this command's own append (None for a repeat)."""


@dataclass(slots=True)
class Loaded(Generic[S]):
    """An aggregate as read: its state (None when the stream is empty) and version."""

    state: S | None
    version: int
    history: list[EventEnvelope] = field(default_factory=list)


class Repository(Generic[S]):
    """Loads aggregates of one kind and appends what decisions return.

    The one write path of every service (read docs/internals.md, "Writing a command"):

        saved = await repository.decide_and_append(
            order_id, lambda order: decide_cancel(order, command), actor=buyer_id
        )

    Rules, the same for every command:

    - `decide(state)` is a pure domain function returning the new events (`[]`: nothing to
      do, nothing is written) or raising a `DomainError`.
    - The events are appended at the version read; when another command got there first
      (`ConcurrencyError`) the aggregate is read and decided again (`DECISION_ATTEMPTS`).
    - With an `Idempotency`, a known key answers with the first request's result before
      anything is decided (deciding again could refuse the repeat), a key racing in at the
      same moment is caught by the append script (or, when the decision refuses what the
      racing twin did, by looking the key up again), and a known key with another
      fingerprint raises `IdempotencyKeyReused`.
    """

    def __init__(self, store: EventStore, kind: StreamKind[S]) -> None:
        self.store = store
        self.kind = kind

    def partition_of(self, aggregate_id: str) -> int:
        return keys.partition_of(aggregate_id, self.store.partitions)

    async def load(self, aggregate_id: str) -> Loaded[S]:
        history = await self.store.read_stream(
            self.partition_of(aggregate_id), self.kind.stream(aggregate_id)
        )
        return Loaded(state=self.kind.fold(history), version=len(history), history=history)

    async def find(self, aggregate_id: str) -> S | None:
        return (await self.load(aggregate_id)).state

    async def decide_and_append(
        self,
        aggregate_id: str,
        decide: Callable[[S | None], list[DomainEvent] | Awaitable[list[DomainEvent]]],
        *,
        effects: Callable[[S | None, list[DomainEvent]], Effects] | None = None,
        idempotency: Idempotency | None = None,
        actor: str | None = None,
        decide_again_on: Callable[[GuardRejected], bool] | None = None,
        loaded: Loaded[S] | None = None,
    ) -> Saved[S] | None:
        """Decide on the current state and append; None when the decision was to do nothing.

        `loaded` is the aggregate the caller has just read: the first decision uses it instead
        of reading again, and when it shows the command was not done yet the known-key lookup
        is left to the append script (which answers a repeat all the same). Hot paths (the
        IPN) save two round trips that way.

        `decide` is usually a pure domain function; it may be a coroutine when deciding
        needs a fresh read besides the aggregate (a catalog event).
        `decide_again_on` names guard refusals that, like a lost race, mean "the state the
        decision used moved on": the command is decided again on a fresh read.
        """
        partition = self.partition_of(aggregate_id)
        stream = self.kind.stream(aggregate_id)
        if idempotency is not None and loaded is None:
            earlier = await self.earlier(partition, idempotency)
            if earlier is not None:
                return earlier
        for attempt in range(1, DECISION_ATTEMPTS + 1):
            if loaded is None or attempt > 1:
                loaded = await self.load(aggregate_id)
            try:
                decided = decide(loaded.state)
                events = await decided if inspect.isawaitable(decided) else decided
            except DomainError:
                # The same request, racing in between the key check and the read, may be
                # what the decision refuses (a name it took): then answer as it did.
                earlier = (
                    None if idempotency is None else await self.earlier(partition, idempotency)
                )
                if earlier is None:
                    raise
                return earlier
            if not events:
                return None
            extra = effects(loaded.state, events) if effects is not None else NO_EFFECTS
            request = AppendRequest(
                partition=partition,
                stream=stream,
                events=events,
                expected_version=loaded.version,
                meta=EventMeta(command_id=idempotency.id if idempotency else None, actor=actor),
                idempotency_id=idempotency.id if idempotency else None,
                fingerprint=idempotency.fingerprint if idempotency else None,
                counters=extra.counters,
                claims=extra.claims,
                schedules=extra.schedules,
                stream_versions=extra.stream_versions,
                numbering=extra.numbering,
            )
            try:
                result = await self.store.append(request)
            except ConcurrencyError:
                if attempt == DECISION_ATTEMPTS:
                    raise
            except GuardRejected as rejected:
                if decide_again_on is None or not decide_again_on(rejected):
                    raise
                if attempt == DECISION_ATTEMPTS:
                    raise
            else:
                if result.duplicate:
                    assert idempotency is not None
                    return await self.repeated(
                        partition, idempotency, result.events, result.fingerprint
                    )
                state = self.kind.fold([*loaded.history, *result.events])
                assert state is not None, "a decision's events always produce a state"
                return Saved(state=state, events=result.events, appended=result)
            await asyncio.sleep(random.uniform(0, RETRY_PAUSE_SECONDS * attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def earlier(self, partition: int, idempotency: Idempotency) -> Saved[S] | None:
        """The first result of a known Idempotency-Key in `partition`; None for a new key."""
        result = await self.store.find_earlier(partition, idempotency.id)
        if result is None:
            return None
        return await self.repeated(partition, idempotency, result.events, result.fingerprint)

    async def repeated(
        self,
        partition: int,
        idempotency: Idempotency,
        events: tuple[EventEnvelope, ...],
        fingerprint: str | None,
    ) -> Saved[S]:
        """What a repeated key answers: the first request's events and the state after them."""
        if fingerprint is not None and fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReused()
        assert events, "an idempotency record always points at written events"
        history = await self.store.read_stream(partition, events[0].stream)
        state = self.kind.fold(history[: events[-1].version])
        assert state is not None
        return Saved(state=state, events=events, repeated=True)


async def claim_request_body(
    redis: RedisClient, partition: int, idempotency_id: str, fingerprint: str
) -> bool:
    """Tie an Idempotency-Key to its request body, across partitions; True when seen before.

    The append's own idempotency record lives in the partition the command writes to; a
    command whose partition depends on its body (an order: the event's; a registration: the
    email's) could not see the same key used with another body. This record, in a partition
    fixed by the key's owner, can. `IdempotencyKeyReused` when the body differs.
    """
    record = keys.idempotency_key(partition, f"body:{idempotency_id}")
    earlier = await redis.set(record, fingerprint, nx=True, get=True)
    if isinstance(earlier, bytes | str) and text(earlier) != fingerprint:
        raise IdempotencyKeyReused()
    return earlier is not None
