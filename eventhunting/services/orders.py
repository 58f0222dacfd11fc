"""Order commands against the event store: place, cancel, expire and pay, each one atomic append."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import msgspec
import redis.asyncio as aioredis

from eventhunting.domain.catalog import CatalogEvent
from eventhunting.domain.errors import DomainError
from eventhunting.domain.orders import (
    IdempotencyKeyReused,
    LimitExceeded,
    Order,
    OrderEvent,
    OrderNotFound,
    OrderPlaced,
    OrderStatus,
    PlaceOrder,
    RequestedItem,
    SoldOut,
    buyer_ticket_change,
    decide_cancel,
    decide_expire,
    decide_payment,
    decide_place,
    evolve,
    fold,
    merge_items,
    stock_changes,
)
from eventhunting.store import keys
from eventhunting.store.append import (
    AppendRequest,
    AppendResult,
    CounterChange,
    EventStore,
    ScheduleChange,
    StreamVersion,
    earlier_result_decoder,
    text,
)
from eventhunting.store.counters import inventory_counter, ticket_type_of_inventory_counter
from eventhunting.store.envelope import EventEnvelope, EventMeta
from eventhunting.store.errors import ConcurrencyError, GuardRejected

HOLD_EXPIRY_SCHEDULE = "hold-expiry"
SOLD_OUT = "sold_out"
LIMIT_EXCEEDED = "limit_exceeded"
# A release or payment that would drive a counter below zero means the counters and the
# streams disagree; the guard refuses it rather than writing a wrong number.
COUNTER_MISMATCH = "inventory_mismatch"
# Refused because the cached catalog event is no longer current: read it again and retry.
CATALOG_CHANGED = "catalog_changed"
PLACE_ATTEMPTS = 3
# Catalog events kept per process; an entry is only a hint, checked by every append.
EVENT_CACHE_SIZE = 10_000
# Cancel, expiry and payment re-read the order and decide again after losing a race; the
# second decision always sees a settled order, so a few attempts are plenty.
DECISION_ATTEMPTS = 5

EventLoader = Callable[[str], Awaitable[CatalogEvent]]
Clock = Callable[[], datetime]


def order_stream(order_id: str) -> str:
    return f"order-{order_id}"


def buyer_counter(event_id: str, account_id: str) -> str:
    """Tickets of one event a buyer holds or bought (`tickets`), in the event's partition."""
    return f"buyer:{event_id}:{account_id}"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class OrderFingerprint(msgspec.Struct, frozen=True, array_like=True):
    event_id: str
    items: tuple[RequestedItem, ...]


fingerprint_encoder = msgspec.json.Encoder()


def fingerprint_of(event_id: str, items: Sequence[RequestedItem]) -> str:
    """The request as the store compares it for a repeated Idempotency-Key (merged items)."""
    body = fingerprint_encoder.encode(OrderFingerprint(event_id, merge_items(items)))
    return hashlib.sha256(body).hexdigest()


class ExpiryOutcome(StrEnum):
    EXPIRED = "expired"
    NOT_DUE = "not_due"
    SETTLED = "settled"
    """Paid, cancelled or expired already: nothing is held any more."""
    MISSING = "missing"
    CONTENDED = "contended"
    """Lost the race for the stream every time; the next round tries again."""


@dataclass(frozen=True, slots=True)
class Placement:
    """The order a placement produced; `repeated` when an Idempotency-Key returned it again."""

    order: Order
    repeated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterEffects:
    counters: list[CounterChange]
    schedules: list[ScheduleChange]


def counter_effects(
    events: Sequence[OrderEvent], *, buyer_limit: int | None = None
) -> CounterEffects:
    """The guarded counter changes and schedule changes that go with appending `events`.

    Inventory only ever grows through a placement, which is guarded by capacity; releases
    and payments keep `held + sold` equal or lower and are guarded against going negative.
    """
    held_sold: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    tickets = 0
    for event in events:
        for change in stock_changes(event):
            held_sold[change.ticket_type_id][0] += change.held
            held_sold[change.ticket_type_id][1] += change.sold
        tickets += buyer_ticket_change(event)
    first = events[0]
    grows = isinstance(first, OrderPlaced)
    counters: list[CounterChange] = []
    for ticket_type_id, (held, sold) in held_sold.items():
        deltas = {field: delta for field, delta in (("held", held), ("sold", sold)) if delta}
        if grows:
            counters.append(
                CounterChange(
                    inventory_counter(ticket_type_id),
                    deltas,
                    sum_fields=("held", "sold"),
                    ceiling_field="capacity",
                    code=SOLD_OUT,
                )
            )
        elif deltas:
            counters.append(
                CounterChange(inventory_counter(ticket_type_id), deltas, code=COUNTER_MISMATCH)
            )
    if tickets:
        name = buyer_counter(first.event_id, first.buyer_id)
        if grows and buyer_limit is not None:
            counters.append(
                CounterChange(
                    name,
                    {"tickets": tickets},
                    sum_fields=("tickets",),
                    ceiling=buyer_limit,
                    code=LIMIT_EXCEEDED,
                )
            )
        else:
            code = LIMIT_EXCEEDED if grows else COUNTER_MISMATCH
            counters.append(CounterChange(name, {"tickets": tickets}, code=code))
    final = fold_state_after(events)
    schedules: list[ScheduleChange] = []
    if grows and final is OrderStatus.PENDING:
        assert isinstance(first, OrderPlaced)
        schedules.append(
            ScheduleChange(HOLD_EXPIRY_SCHEDULE, first.order_id, epoch_ms(first.expires_at))
        )
    elif not grows:
        schedules.append(ScheduleChange(HOLD_EXPIRY_SCHEDULE, first.order_id, None))
    return CounterEffects(counters=counters, schedules=schedules)


def fold_state_after(events: Sequence[OrderEvent]) -> OrderStatus | None:
    """The status the appended events end in, for an order placed by the first of them."""
    if not isinstance(events[0], OrderPlaced):
        return None
    order = fold(events)
    return None if order is None else order.status


def translate_guard(rejected: GuardRejected) -> DomainError:
    """Store guard codes become the order domain's errors, without counter names."""
    if rejected.code == SOLD_OUT:
        ticket_type_id = ticket_type_of_inventory_counter(rejected.name)
        return SoldOut(
            f"Not enough tickets of ticket type {ticket_type_id!r} are left.",
            ticket_type_id=ticket_type_id,
        )
    if rejected.code == LIMIT_EXCEEDED:
        return LimitExceeded("This order would exceed your ticket limit for the event.")
    return rejected


class OrderService:
    """Places, reads, cancels, expires and pays orders; every change is one guarded append."""

    def __init__(
        self,
        *,
        store: EventStore,
        redis: aioredis.Redis,
        load_event: EventLoader,
        hold_seconds: int,
        clock: Clock,
    ) -> None:
        self.store = store
        self.redis = redis
        self.load_event = load_event
        self.hold_seconds = hold_seconds
        self.clock = clock
        self.partitions = store.partitions
        self.events: dict[str, CatalogEvent] = {}

    def now(self) -> datetime:
        """The clock at millisecond precision, the precision MongoDB keeps: an order reads
        the same from its stream and from the read model."""
        moment = self.clock()
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def partition_of(self, entity_id: str) -> int:
        return keys.partition_of(entity_id, self.partitions)

    async def place(
        self,
        *,
        buyer_id: str,
        event_id: str,
        items: Sequence[RequestedItem],
        idempotency_key: str | None = None,
    ) -> Placement:
        """Hold the requested tickets in one atomic append, or change nothing and raise.

        The event is usually decided on from the cache; the append checks that its stream is
        still at the cached version, and any refusal based on the cache is decided again on
        a fresh read, so a cached event never changes an outcome.
        """
        partition = self.partition_of(event_id)
        fingerprint: str | None = None
        idempotency_id: str | None = None
        if idempotency_key is not None:
            fingerprint = fingerprint_of(event_id, items)
            idempotency_id = f"order:{buyer_id}:{idempotency_key}"
            if await self.claim_idempotency_key(idempotency_id, buyer_id, fingerprint):
                earlier = await self.earlier_placement(partition, idempotency_id)
                if earlier is not None:
                    return earlier
        order_id = keys.new_id_in_partition(partition, self.partitions)
        for attempt in range(1, PLACE_ATTEMPTS + 1):
            fresh = attempt > 1 or event_id not in self.events
            event = await self.event_terms(event_id, fresh=fresh)
            command = PlaceOrder(
                order_id=order_id,
                event_id=event_id,
                buyer_id=buyer_id,
                items=tuple(items),
                placed_at=self.now(),
                hold_seconds=self.hold_seconds,
            )
            try:
                events = decide_place(command, event)
            except DomainError:
                if fresh:
                    raise
                continue
            effects = counter_effects(events, buyer_limit=event.max_tickets_per_customer)
            request = AppendRequest(
                partition=partition,
                stream=order_stream(order_id),
                events=events,
                expected_version=0,
                meta=EventMeta(command_id=idempotency_id, actor=buyer_id),
                idempotency_id=idempotency_id,
                fingerprint=fingerprint,
                counters=effects.counters,
                schedules=effects.schedules,
                stream_versions=[StreamVersion(event.stream, event.version, code=CATALOG_CHANGED)],
            )
            try:
                result = await self.store.append(request)
            except GuardRejected as rejected:
                if rejected.code == CATALOG_CHANGED and attempt < PLACE_ATTEMPTS:
                    continue
                raise translate_guard(rejected) from None
            if result.duplicate and result.fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body."
                )
            order = order_of(result.events)
            assert order is not None, "an append returns the events it wrote"
            return Placement(order=order, repeated=result.duplicate)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def event_terms(self, event_id: str, *, fresh: bool) -> CatalogEvent:
        """The catalog event, from the cache unless `fresh` (then the cache is refreshed)."""
        if not fresh:
            cached = self.events.get(event_id)
            if cached is not None:
                return cached
        event = await self.load_event(event_id)
        if len(self.events) >= EVENT_CACHE_SIZE:
            # Dicts keep insertion order: dropping the oldest entry bounds the cache.
            self.events.pop(next(iter(self.events)))
        self.events[event_id] = event
        return event

    async def claim_idempotency_key(
        self, idempotency_id: str, buyer_id: str, fingerprint: str
    ) -> bool:
        """Tie the key to the request body before appending; True when it was seen before.

        The append's own idempotency record lives in the event's partition, so it cannot see
        the same key used earlier for another event; this record, keyed by the buyer, can.
        """
        record = keys.idempotency_key(self.partition_of(buyer_id), f"body:{idempotency_id}")
        earlier = await self.redis.set(record, fingerprint, nx=True, get=True)
        if isinstance(earlier, bytes | str) and text(earlier) != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used with a different request body."
            )
        return earlier is not None

    async def earlier_placement(self, partition: int, idempotency_id: str) -> Placement | None:
        """The order a repeated key placed, without deciding again (the sale may have moved
        on since); None when the first request with the key placed nothing."""
        stored = await self.redis.get(keys.idempotency_key(partition, idempotency_id))
        if stored is None:
            return None
        result = await self.store.earlier_result(partition, earlier_result_decoder.decode(stored))
        order = order_of(result.events)
        assert order is not None
        return Placement(order=order, repeated=True)

    async def get(self, order_id: str) -> Order:
        """The order as its stream says now (read-your-writes)."""
        history = await self.store.read_stream(self.partition_of(order_id), order_stream(order_id))
        order = order_of(history)
        if order is None:
            raise OrderNotFound(f"There is no order {order_id!r}.")
        return order

    async def cancel(self, order_id: str, *, by: str) -> Order:
        """The buyer gives up a pending order; its tickets are free again at once."""
        return await self.decide_and_append(
            order_id, lambda order: decide_cancel(order, by=by, now=self.now()), actor=by
        )

    async def expire(self, order_id: str) -> ExpiryOutcome:
        """Expire the order if its hold ran out and it is still pending.

        Losing a race to a payment or cancel (ConcurrencyError) is normal: the order is read
        again and is then settled, so exactly one of them took effect.
        """
        for _ in range(DECISION_ATTEMPTS):
            try:
                order = await self.get(order_id)
            except OrderNotFound:
                return ExpiryOutcome.MISSING
            if order.status is not OrderStatus.PENDING:
                return ExpiryOutcome.SETTLED
            expired = decide_expire(order, now=self.now())
            if expired is None:
                return ExpiryOutcome.NOT_DUE
            try:
                await self.append_decision(order, expired, actor="expirer")
            except ConcurrencyError:
                continue
            return ExpiryOutcome.EXPIRED
        return ExpiryOutcome.CONTENDED

    async def mark_paid(
        self,
        order_id: str,
        *,
        amount: int,
        method: str,
        payment_reference: str | None = None,
        paid_at: datetime | None = None,
    ) -> Order:
        """Record full payment of a pending order; loses cleanly to an expiry or cancel."""
        return await self.decide_and_append(
            order_id,
            lambda order: decide_payment(
                order,
                paid_at=paid_at or self.now(),
                amount=amount,
                method=method,
                payment_reference=payment_reference,
            ),
            actor=method,
        )

    async def decide_and_append(
        self, order_id: str, decide: Callable[[Order], OrderEvent], *, actor: str
    ) -> Order:
        attempt = 1
        while True:
            order = await self.get(order_id)
            try:
                return await self.append_decision(order, decide(order), actor=actor)
            except ConcurrencyError:
                if attempt == DECISION_ATTEMPTS:
                    raise
                attempt += 1

    async def append_decision(self, order: Order, event: OrderEvent, *, actor: str) -> Order:
        """Append one event after `order.version`; ConcurrencyError when another won the race."""
        effects = counter_effects([event])
        result = await self.store.append(
            AppendRequest(
                partition=self.partition_of(order.id),
                stream=order_stream(order.id),
                events=[event],
                expected_version=order.version,
                meta=EventMeta(actor=actor),
                counters=effects.counters,
                schedules=effects.schedules,
            )
        )
        return after(order, result)

    async def due_orders(self, partition: int, now: datetime, limit: int) -> list[str]:
        """Ids of orders in `partition` whose hold deadline has passed, earliest first."""
        members = await self.redis.zrangebyscore(
            keys.schedule_key(partition, HOLD_EXPIRY_SCHEDULE),
            "-inf",
            epoch_ms(now),
            start=0,
            num=limit,
        )
        return [text(member) for member in members if isinstance(member, bytes | str)]

    async def forget_schedule(self, order_id: str) -> None:
        """Drop a schedule entry of an order that is no longer pending (nothing to release)."""
        await self.redis.zrem(
            keys.schedule_key(self.partition_of(order_id), HOLD_EXPIRY_SCHEDULE), order_id
        )


def order_of(history: Sequence[EventEnvelope]) -> Order | None:
    return fold(envelope.data for envelope in history)


def after(order: Order, result: AppendResult) -> Order:
    state = order
    for envelope in result.events:
        state = evolve(state, envelope.data)
    return state
