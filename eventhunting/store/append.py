"""The event store: atomic guarded appends (one Lua script) and reads of streams, logs, counters."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, cast, overload

import msgspec
import ulid

from eventhunting.domain.events import DomainEvent, EventRegistry, registry
from eventhunting.store import keys
from eventhunting.store.batched_script import BatchedScript
from eventhunting.store.envelope import (
    EventEnvelope,
    EventMeta,
    decode_payload,
    decode_stored_event,
    encode_stored_event,
    from_epoch_ms,
    stored_event_decoder,
    to_epoch_ms,
)
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from eventhunting.store.redis_client import RedisClient

APPEND_SCRIPT = resources.files("eventhunting.store").joinpath("append.lua").read_text()


@dataclass(frozen=True, slots=True)
class CounterChange:
    """Add `deltas` to counter hash `name`; every changed field must stay >= 0 and, when
    `sum_fields` is set, their sum must stay <= `ceiling` or the field `ceiling_field`."""

    name: str
    deltas: Mapping[str, int]
    _: KW_ONLY
    sum_fields: tuple[str, ...] = ()
    ceiling_field: str | None = None
    ceiling: int | None = None
    code: str


@dataclass(frozen=True, slots=True)
class CounterSet:
    """Initialise fields of counter hash `name` that do not exist yet."""

    name: str
    values: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Claim:
    """Unique claim `name` must be free or already held by `owner`; the append takes it."""

    name: str
    owner: str
    code: str


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """ZADD `member` with `score` to schedule `name`, or ZREM it when `score` is None."""

    name: str
    member: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class StreamVersion:
    """Another aggregate stream of the partition must be at exactly `version`.

    Lets a command rely on state it read (or cached) from a second stream, such as the
    catalog event an order is priced from: if that stream moved on, the append writes
    nothing and raises GuardRejected(code, stream), and the caller reads again.
    """

    stream: str
    version: int
    _: KW_ONLY
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Numbering:
    """Take the next number of counter `name`'s `field` inside the append and write it into
    the appended events, so a refused or failed append takes no number and the numbers of
    one counter are gapless, whoever appends at the same moment.

    The events carry placeholders that the append replaces in their stored form: a field
    named in `number_fields` that holds 0 gets the number; a field named in `text_fields`
    that holds `text_prefix` followed by `digits` zeros gets `text_prefix` and the number
    on `digits` digits. Past `maximum` the append is refused: GuardRejected(code, name).
    """

    name: str
    field: str
    maximum: int
    code: str
    number_fields: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    text_prefix: str = ""
    digits: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendRequest:
    """Everything one command writes: events of one aggregate stream plus guarded side state."""

    partition: int
    stream: str
    events: Sequence[DomainEvent]
    expected_version: int | None = None
    meta: EventMeta = field(default_factory=EventMeta)
    idempotency_id: str | None = None
    fingerprint: str | None = None
    counters: Sequence[CounterChange | CounterSet] = ()
    claims: Sequence[Claim] = ()
    schedules: Sequence[ScheduleChange] = ()
    stream_versions: Sequence[StreamVersion] = ()
    numbering: Numbering | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    """The stream version after the append and the events it wrote (or wrote earlier)."""

    partition: int
    stream: str
    version: int
    events: tuple[EventEnvelope, ...]
    duplicate: bool = False
    fingerprint: str | None = None
    number: int | None = None
    """The number a `Numbering` took (None without one, and for a repeat)."""
    records: tuple[bytes, ...] = ()
    """Each event as stored (field "e" of its entries; empty for a repeat)."""
    effects_record: bytes | None = None
    """The effects as stored with the last event's log entry (field "x"), if any."""

    @property
    def positions(self) -> tuple[str, ...]:
        return tuple(event.position or "" for event in self.events)


class CounterChangeRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    deltas: dict[str, int]
    sum_fields: list[str] = []
    ceiling_field: str | None = None
    ceiling: int | None = None
    code: str


class CounterSetRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    values: dict[str, int]


class ClaimRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    owner: str
    code: str


class ScheduleRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    member: str
    score: float | None = None


class StreamVersionRecord(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    version: int
    code: str


class FillRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One placeholder of a numbering in the events' stored JSON: every occurrence of `find`
    becomes `before` + the number on `digits` digits (as it is when 0) + `after`."""

    find: str
    before: str
    digits: int
    after: str


class NumberingRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    field: str
    maximum: int
    code: str
    fills: list[FillRecord]


class AppendEffects(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Side state of one append (ARGV[3] of append.lua, field "x" of its last log entry)."""

    idempotency_id: str | None = None
    fingerprint: str | None = None
    event_count: int | None = None
    """How many events the idempotent append wrote (to rebuild its record on restore)."""
    counter_sets: list[CounterSetRecord] = []
    counter_changes: list[CounterChangeRecord] = []
    claims: list[ClaimRecord] = []
    schedules: list[ScheduleRecord] = []
    stream_versions: list[StreamVersionRecord] = []
    """Checks only: restore has nothing to replay for them."""
    numbering: NumberingRecord | None = None


class EarlierResult(msgspec.Struct, frozen=True, kw_only=True):
    """The idempotency record the script stores and returns for a repeated id."""

    stream: str
    version: int
    count: int
    positions: str
    fingerprint: str | None = None


NO_EFFECTS = AppendEffects()
effects_encoder = msgspec.json.Encoder()
effects_decoder = msgspec.json.Decoder(AppendEffects)
earlier_result_decoder = msgspec.json.Decoder(EarlierResult)


def utc_now() -> datetime:
    return datetime.now(UTC)


def text(value: bytes | str) -> str:
    """Redis replies are bytes or str depending on the client's decode_responses."""
    return value.decode() if isinstance(value, bytes) else value


def effects_of(request: AppendRequest) -> AppendEffects | None:
    sets = [
        CounterSetRecord(name=change.name, values=dict(change.values))
        for change in request.counters
        if isinstance(change, CounterSet)
    ]
    changes = [
        CounterChangeRecord(
            name=change.name,
            deltas=dict(change.deltas),
            sum_fields=list(change.sum_fields),
            ceiling_field=change.ceiling_field,
            ceiling=change.ceiling,
            code=change.code,
        )
        for change in request.counters
        if isinstance(change, CounterChange)
    ]
    effects = AppendEffects(
        idempotency_id=request.idempotency_id,
        fingerprint=request.fingerprint if request.idempotency_id is not None else None,
        event_count=len(request.events) if request.idempotency_id is not None else None,
        counter_sets=sets,
        counter_changes=changes,
        claims=[ClaimRecord(name=c.name, owner=c.owner, code=c.code) for c in request.claims],
        schedules=[
            ScheduleRecord(name=s.name, member=s.member, score=s.score) for s in request.schedules
        ],
        stream_versions=[
            StreamVersionRecord(stream=v.stream, version=v.version, code=v.code)
            for v in request.stream_versions
        ],
        numbering=None if request.numbering is None else numbering_record(request.numbering),
    )
    return None if effects == NO_EFFECTS else effects


def numbering_record(numbering: Numbering) -> NumberingRecord:
    """A numbering as the script applies it: the exact JSON text of each placeholder.

    A placeholder is found with its key (`"sequence":0`, `"number":"...-00000000"`): inside a
    JSON string every quote is escaped, so no text an event carries can look like one.
    """
    fills: list[FillRecord] = []
    for name in numbering.number_fields:
        key = f"{field_key(name)}:"
        fills.append(FillRecord(find=f"{key}0", before=key, digits=0, after=""))
    for name in numbering.text_fields:
        key = f"{field_key(name)}:"
        placeholder = effects_encoder.encode(numbering.text_prefix + "0" * numbering.digits)
        before = placeholder[: -numbering.digits - 1].decode()
        fills.append(
            FillRecord(
                find=key + placeholder.decode(),
                before=key + before,
                digits=numbering.digits,
                after='"',
            )
        )
    return NumberingRecord(
        name=numbering.name,
        field=numbering.field,
        maximum=numbering.maximum,
        code=numbering.code,
        fills=fills,
    )


def field_key(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"a numbered field needs a plain name, not {name!r}")
    return f'"{name}"'


def filled(record: bytes, numbering: NumberingRecord, number: int) -> bytes:
    """A stored event with the numbering's placeholders replaced by `number` (append.lua's
    own replacement, for the in-memory store and for the events an append returns)."""
    for fill in numbering.fills:
        digits = str(number).zfill(fill.digits)
        record = record.replace(fill.find.encode(), f"{fill.before}{digits}{fill.after}".encode())
    return record


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """One event of an append with its drawn id, encoded as stored (field "e" of its entries)."""

    event_id: str
    type_name: str
    schema: int
    record: bytes


@dataclass(frozen=True, slots=True)
class PreparedAppend:
    """An append request checked and encoded, not yet written (the same for every store)."""

    request: AppendRequest
    occurred_at_ms: int
    events: tuple[PreparedEvent, ...]
    effects: AppendEffects | None
    """What the script gets besides the events (None: nothing)."""
    effects_json: bytes
    """ARGV[3] of append.lua, stored with the last log entry: the effects encoded, or b""."""

    def written(
        self,
        version: int,
        positions: Sequence[str],
        number: int | None = None,
        event_registry: EventRegistry = registry,
    ) -> AppendResult:
        """The result once written: `version` is the stream's version after the append,
        `positions` are the partition-log positions of the events, in order, and `number` the
        one a numbering took (the events returned carry it, as stored)."""
        request = self.request
        data = list(request.events)
        numbering = self.effects.numbering if self.effects is not None else None
        first_version = version - len(self.events) + 1
        stored_at = from_epoch_ms(self.occurred_at_ms)  # exactly what a later read returns
        records = tuple(prepared.record for prepared in self.events)
        if numbering is not None and number is not None:
            records = tuple(filled(record, numbering, number) for record in records)
            for index, (prepared, record) in enumerate(zip(self.events, records, strict=True)):
                if record != prepared.record:
                    stored = stored_event_decoder.decode(record)
                    data[index] = decode_payload(
                        event_registry, prepared.type_name, prepared.schema, bytes(stored.data)
                    )
        envelopes = tuple(
            EventEnvelope(
                event_id=prepared.event_id,
                stream=request.stream,
                version=first_version + index,
                type=prepared.type_name,
                schema=prepared.schema,
                occurred_at=stored_at,
                data=event,
                meta=request.meta,
                partition=request.partition,
                position=positions[index],
            )
            for index, (prepared, event) in enumerate(zip(self.events, data, strict=True))
        )
        return AppendResult(
            partition=request.partition,
            stream=request.stream,
            version=version,
            events=envelopes,
            number=number,
            records=records,
            effects_record=self.effects_json or None,
        )


def prepare_append(
    request: AppendRequest,
    *,
    partitions: int,
    event_registry: EventRegistry,
    clock: Callable[[], datetime],
) -> PreparedAppend:
    """Check an append request and encode its events, with ids drawn at the clock's time."""
    if not request.events:
        raise ValueError("an append needs at least one event")
    if not 0 <= request.partition < partitions:
        raise ValueError(f"partition {request.partition} is outside 0..{partitions - 1}")
    occurred_at = clock()
    occurred_at_ms = to_epoch_ms(occurred_at)
    meta = request.meta
    prepared: list[PreparedEvent] = []
    for event in request.events:
        described = event_registry.type_of(event)
        # What ULID.from_datetime does (monotonic within a millisecond), minus a copy.
        event_id = str(ulid.default_generator.generate(occurred_at_ms))
        record = encode_stored_event(
            event_id=event_id,
            type_name=described.name,
            schema=described.schema,
            occurred_at=occurred_at,
            meta=meta,
            data=event,
        )
        prepared.append(PreparedEvent(event_id, described.name, described.schema, record))
    effects = effects_of(request)
    if effects is not None and effects.numbering is not None:
        for fill in effects.numbering.fills:
            placeholder = fill.find.encode()
            if not any(placeholder in event.record for event in prepared):
                raise ValueError(f"no event of the append holds the placeholder {fill.find}")
    return PreparedAppend(
        request=request,
        occurred_at_ms=occurred_at_ms,
        events=tuple(prepared),
        effects=effects,
        effects_json=b"" if effects is None else effects_encoder.encode(effects),
    )


def keys_of(request: AppendRequest, effects: AppendEffects | None) -> list[str]:
    """Every key the script touches, declared so Redis Cluster can route and check it."""
    partition = request.partition
    declared = [keys.log_key(partition), keys.stream_key(partition, request.stream)]
    if effects is None:
        return declared
    if effects.idempotency_id is not None:
        declared.append(keys.idempotency_key(partition, effects.idempotency_id))
    counter_names = {c.name: None for c in effects.counter_sets}
    counter_names.update((c.name, None) for c in effects.counter_changes)
    declared += [keys.counter_key(partition, name) for name in counter_names]
    declared += [keys.claim_key(partition, c.name) for c in effects.claims]
    declared += [
        keys.schedule_key(partition, name)
        for name in dict.fromkeys(s.name for s in effects.schedules)
    ]
    declared += [keys.stream_key(partition, v.stream) for v in effects.stream_versions]
    if effects.numbering is not None and effects.numbering.name not in counter_names:
        declared.append(keys.counter_key(partition, effects.numbering.name))
    return declared


class EventStore:
    """Appends to and reads from the Redis event store of `partitions` partitions."""

    def __init__(
        self,
        redis: RedisClient,
        partitions: int,
        *,
        clock: Callable[[], datetime] = utc_now,
        event_registry: EventRegistry = registry,
    ) -> None:
        self.redis = redis
        self.partitions = partitions
        self.clock = clock
        self.registry = event_registry
        # Concurrent appends share pipelined round trips; the script is loaded on first use
        # and again whenever the server answers NOSCRIPT.
        self.append_script = BatchedScript(redis, APPEND_SCRIPT)

    async def append(self, request: AppendRequest) -> AppendResult:
        """Write the request atomically, or raise ConcurrencyError/GuardRejected writing nothing."""
        prepared = prepare_append(
            request, partitions=self.partitions, event_registry=self.registry, clock=self.clock
        )
        effects = prepared.effects
        expected = -1 if request.expected_version is None else request.expected_version
        reply = await self.append_script(
            keys=keys_of(request, effects),
            args=[
                expected,
                request.stream,
                prepared.effects_json,
                *(event.record for event in prepared.events),
            ],
            # A guarded append runs at most once however often it is sent: a second run
            # answers "version" or "dup" (see docs/internals.md, "Running on Redis Cluster").
            repeatable=request.expected_version is not None or request.idempotency_id is not None,
        )
        outcome = text(reply[0])
        if outcome == "ok":
            number = int(reply[3]) if len(reply) > 3 else None
            return prepared.written(int(reply[1]), text(reply[2]).split(" "), number, self.registry)
        if outcome == "dup":
            earlier = earlier_result_decoder.decode(reply[1])
            return await self.earlier_result(request.partition, earlier)
        if outcome == "version":
            raise ConcurrencyError(
                int(reply[1]), expected_version=request.expected_version, stream=request.stream
            )
        if outcome == "guard":
            raise GuardRejected(text(reply[1]), text(reply[2]))
        raise RuntimeError(f"unexpected reply from append.lua: {reply!r}")

    async def earlier_result(self, partition: int, earlier: EarlierResult) -> AppendResult:
        first_version = earlier.version - earlier.count + 1
        entries = await stream_range(
            self.redis,
            keys.stream_key(partition, earlier.stream),
            f"0-{first_version}",
            f"0-{earlier.version}",
        )
        positions = earlier.positions.split(" ")
        envelopes = tuple(
            decode_stored_event(
                self.registry,
                stored_event_decoder.decode(field_of(fields, "e")),
                stream=earlier.stream,
                version=first_version + index,
                partition=partition,
                position=positions[index],
            )
            for index, (_, fields) in enumerate(entries)
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
        stored = await self.redis.get(keys.idempotency_key(partition, idempotency_id))
        if stored is None:
            return None
        return await self.earlier_result(partition, earlier_result_decoder.decode(stored))

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
        entries = await stream_range(
            self.redis, keys.stream_key(partition, stream), f"0-{after_version + 1}", "+"
        )
        return [
            decode_stored_event(
                self.registry,
                stored_event_decoder.decode(field_of(fields, "e")),
                stream=stream,
                version=int(text(entry_id).split("-", 1)[1]),
                partition=partition,
            )
            for entry_id, fields in entries
        ]

    async def stream_version(self, partition: int, stream: str) -> int:
        """The current version of an aggregate stream (0 when it does not exist)."""
        return int(await self.redis.xlen(keys.stream_key(partition, stream)))

    async def read_counters(
        self, partition: int, names: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """Write-side counter hashes by name; a counter that does not exist reads as {}."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(keys.counter_key(partition, name))
            replies: list[dict[Any, Any]] = await pipe.execute()
        return {
            name: {text(field): int(value) for field, value in reply.items()}
            for name, reply in zip(names, replies, strict=True)
        }

    async def read_claim(self, partition: int, name: str) -> str | None:
        """The owner of a unique claim, or None when it is free."""
        owner = await self.redis.get(keys.claim_key(partition, name))
        return None if owner is None else text(owner)

    async def read_log(
        self, partition: int, after: str = "0", count: int = 100
    ) -> list[EventEnvelope]:
        """Up to `count` events of a partition log strictly after position `after`."""
        start = "-" if after in ("0", "0-0") else f"({after}"
        entries = await stream_range(self.redis, keys.log_key(partition), start, "+", count=count)
        return [
            decode_log_entry(self.registry, partition, entry_id, fields)
            for entry_id, fields in entries
        ]


StreamEntry = tuple[bytes | str, Mapping[Any, Any]]


async def stream_range(
    redis: RedisClient, key: str, start: str, end: str, count: int | None = None
) -> list[StreamEntry]:
    """XRANGE with the reply typed as (entry id, fields) pairs."""
    reply: Any = await redis.xrange(key, start, end, count=count)
    return cast(list[StreamEntry], reply)


def field_of(fields: Mapping[Any, Any], name: str) -> bytes:
    value = fields.get(name.encode())
    if value is None:
        value = fields[name]
    return value if isinstance(value, bytes) else str(value).encode()


def decode_log_entry(
    event_registry: EventRegistry, partition: int, entry_id: bytes | str, fields: Mapping[Any, Any]
) -> EventEnvelope:
    """Turn one partition-log entry into an envelope with its partition and position."""
    return decode_stored_event(
        event_registry,
        stored_event_decoder.decode(field_of(fields, "e")),
        stream=text(field_of(fields, "s")),
        version=int(field_of(fields, "v")),
        partition=partition,
        position=text(entry_id),
    )
