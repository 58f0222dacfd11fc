"""Order commands against the event store: place, cancel, expire and pay, each one atomic append."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec
from cachetools import LRUCache
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.catalog import CatalogEvent, EventNotFound
from eventhunting.domain.errors import DomainError
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import (
    STREAM_KIND,
    SYSTEM_CANCELLER,
    CancelOrder,
    ExpireOrder,
    LimitExceeded,
    Order,
    OrderCancelled,
    OrderExpired,
    OrderNotFound,
    OrderPaid,
    OrderPlaced,
    OrderStatus,
    PaymentFailed,
    PaymentStarted,
    PaymentSucceeded,
    PayOrder,
    PlaceOrder,
    RefundCompleted,
    RefundFailed,
    RefundRequested,
    RefundResolution,
    RefundResolved,
    ReleaseHold,
    RequestedItem,
    SoldOut,
    buyer_ticket_change,
    decide_cancel,
    decide_expire,
    decide_payment,
    decide_place,
    decide_release_hold,
    evolve,
    merge_items,
    stock_changes,
)
from eventhunting.projections.orders import OrderList, OrderQuery, list_orders
from eventhunting.services.catalog import EVENTS
from eventhunting.services.invoice_numbers import invoice_numbering
from eventhunting.services.repository import (
    Effects,
    Idempotency,
    Repository,
    StreamKind,
    claim_request_body,
    fingerprint_of,
)
from eventhunting.store import keys
from eventhunting.store.append import (
    CounterChange,
    EventStore,
    ScheduleChange,
    StreamVersion,
    text,
)
from eventhunting.store.counters import inventory_counter, ticket_type_of_inventory_counter
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from eventhunting.store.redis_client import RedisClient

ORDERS = StreamKind(STREAM_KIND, evolve)

HOLD_EXPIRY_SCHEDULE = "hold-expiry"
# Payment attempts whose result VNPAY has not told us are asked about (querydr) from this
# schedule, score = the pay page's expiry; the reconciler waits its configured delay more.
PAYMENT_CHECK_SCHEDULE = "payment-check"
# Failed refunds the reconciler calls the gateway for again, member `<order id>/<refund id>`,
# score = when (the failure's `retry_at`, or now for an admin's retry).
REFUND_RETRY_SCHEDULE = "refund-retry"
SOLD_OUT = "sold_out"
LIMIT_EXCEEDED = "limit_exceeded"
# A release or payment that would drive a counter below zero means the counters and the
# streams disagree; the guard refuses it rather than writing a wrong number.
COUNTER_MISMATCH = "inventory_mismatch"
# Refused because the cached catalog event is no longer current: read it again and decide.
CATALOG_CHANGED = "catalog_changed"
# Catalog events kept per process; an entry is only a hint, checked by every append.
EVENT_CACHE_SIZE = 10_000

EventLoader = Callable[[str], Awaitable[CatalogEvent]]
Clock = Callable[[], datetime]


def buyer_counter(event_id: str, account_id: str) -> str:
    """Tickets of one event a buyer holds or bought (`tickets`), in the event's partition."""
    return f"buyer:{event_id}:{account_id}"


def event_orders_index(event_id: str) -> str:
    """The sorted set of every order placed for an event (score = placed at, ms), written by
    the placement's own append: the exact list a cancellation settles."""
    return f"event-orders:{event_id}"


def refund_retry_member(order_id: str, refund_id: str) -> str:
    return f"{order_id}/{refund_id}"


def refund_schedule_changes(events: Sequence[DomainEvent]) -> list[ScheduleChange]:
    """A failed refund due again goes into the retry schedule; a settled one leaves it."""
    changes: list[ScheduleChange] = []
    for event in events:
        if not isinstance(event, RefundCompleted | RefundFailed | RefundResolved):
            continue
        member = refund_retry_member(event.order_id, event.refund_id)
        due: datetime | None = None
        if isinstance(event, RefundFailed):
            due = event.retry_at
        elif isinstance(event, RefundResolved) and event.resolution is RefundResolution.RETRY:
            due = event.resolved_at
        changes.append(
            ScheduleChange(REFUND_RETRY_SCHEDULE, member, None if due is None else epoch_ms(due))
        )
    return changes


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


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


def order_effects(events: Sequence[DomainEvent], *, buyer_limit: int | None = None) -> Effects:
    """The guarded counter and schedule changes that go with appending an order's `events`.

    Stock only ever grows through a placement or a payment that takes released tickets
    again, guarded by capacity (and the buyer's limit); every other change keeps
    `held + sold` equal or lower and is guarded against going negative (a refund puts its
    `items` back: `sold` and the buyer's count go down). An invoice or a credit note takes
    the next number of its series inside the append (`services/invoice_numbers.py`).
    """
    held_sold: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    tickets = 0
    grows = False
    placed: OrderPlaced | None = None
    settles = False
    counters: list[CounterChange] = []
    for event in events:
        for change in stock_changes(event):
            held_sold[change.ticket_type_id][0] += change.held
            held_sold[change.ticket_type_id][1] += change.sold
        tickets += buyer_ticket_change(event)
        if isinstance(event, OrderPlaced):
            placed, grows = event, True
        elif isinstance(event, OrderPaid) and event.restocked:
            grows = True
        if isinstance(event, OrderPaid | OrderCancelled | OrderExpired):
            settles = True
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
    first = next(
        (
            e
            for e in events
            if isinstance(e, OrderPlaced | OrderPaid | OrderCancelled | OrderExpired)
        ),
        None,
    )
    refund = next((e for e in events if isinstance(e, RefundRequested) and e.items), None)
    buyer = None if first is None else (first.event_id, first.buyer_id)
    if buyer is None and refund is not None and refund.event_id and refund.buyer_id:
        # Refunded tickets no longer count against the buyer's limit.
        buyer = (refund.event_id, refund.buyer_id)
    if tickets and buyer is not None:
        name = buyer_counter(*buyer)
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
    schedules = refund_schedule_changes(events)
    if placed is not None:
        schedules.append(
            ScheduleChange(
                event_orders_index(placed.event_id), placed.order_id, epoch_ms(placed.placed_at)
            )
        )
    if placed is not None and not settles:
        schedules.append(
            ScheduleChange(HOLD_EXPIRY_SCHEDULE, placed.order_id, epoch_ms(placed.expires_at))
        )
    elif settles and placed is None:
        order_id = next(
            e.order_id for e in events if isinstance(e, OrderPaid | OrderCancelled | OrderExpired)
        )
        schedules.append(ScheduleChange(HOLD_EXPIRY_SCHEDULE, order_id, None))
    for event in events:
        if isinstance(event, PaymentStarted):
            deadline = epoch_ms(event.expires_at)
            schedules.append(ScheduleChange(PAYMENT_CHECK_SCHEDULE, event.txn_ref, deadline))
        elif isinstance(event, PaymentSucceeded | PaymentFailed):
            schedules.append(ScheduleChange(PAYMENT_CHECK_SCHEDULE, event.txn_ref, None))
    return Effects(counters=counters, schedules=schedules, numbering=invoice_numbering(events))


def translate_guard(rejected: GuardRejected) -> DomainError | GuardRejected:
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
        redis: RedisClient,
        load_event: EventLoader,
        hold_seconds: int,
        clock: Clock,
        database: AsyncDatabase[dict[str, Any]] | None = None,
    ) -> None:
        self.database = database
        self.store = store
        self.redis = redis
        self.load_event = load_event
        self.hold_seconds = hold_seconds
        self.clock = clock
        self.partitions = store.partitions
        self.repository = Repository(store, ORDERS)
        # Catalog events by id, a hint checked by every append; the least recently used goes.
        self.events: LRUCache[str, CatalogEvent] = LRUCache(maxsize=EVENT_CACHE_SIZE)

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
        order_id = keys.new_id_in_partition(partition, self.partitions)
        command = PlaceOrder(event_id=event_id, buyer_id=buyer_id, items=tuple(items))
        placed_at = self.now()
        idempotency: Idempotency | None = None
        if idempotency_key is not None:
            merged = msgspec.structs.replace(command, items=merge_items(command.items))
            idempotency = Idempotency(f"order:{buyer_id}:{idempotency_key}", fingerprint_of(merged))
            # The key is tied to its body in the buyer's partition first: the append's own
            # record lives in the event's partition and cannot see the key used elsewhere.
            if await claim_request_body(
                self.redis, self.partition_of(buyer_id), idempotency.id, idempotency.fingerprint
            ):
                earlier = await self.repository.earlier(partition, idempotency)
                if earlier is not None:
                    return Placement(order=earlier.state, repeated=True)
        used: list[CatalogEvent] = []

        def decide(order: Order | None, event: CatalogEvent) -> list[DomainEvent]:
            return list(
                decide_place(
                    order,
                    command,
                    event=event,
                    order_id=order_id,
                    now=placed_at,
                    hold_seconds=self.hold_seconds,
                )
            )

        async def decide_with_terms(order: Order | None) -> list[DomainEvent]:
            fresh = bool(used) or event_id not in self.events
            event = await self.event_terms(event_id, fresh=fresh)
            try:
                events = decide(order, event)
            except DomainError:
                if fresh:
                    raise
                event = await self.event_terms(event_id, fresh=True)
                events = decide(order, event)
            used.append(event)
            return list(events)

        def effects(order: Order | None, events: list[DomainEvent]) -> Effects:
            event = used[-1]
            counted = order_effects(events, buyer_limit=event.max_tickets_per_customer)
            return Effects(
                counters=counted.counters,
                schedules=counted.schedules,
                stream_versions=[
                    StreamVersion(EVENTS.stream(event.id), event.version, code=CATALOG_CHANGED)
                ],
            )

        try:
            saved = await self.repository.decide_and_append(
                order_id,
                decide_with_terms,
                effects=effects,
                idempotency=idempotency,
                actor=buyer_id,
                decide_again_on=lambda rejected: rejected.code == CATALOG_CHANGED,
            )
        except GuardRejected as rejected:
            raise translate_guard(rejected) from None
        assert saved is not None, "a placement always decides events"
        return Placement(order=saved.state, repeated=saved.repeated)

    async def event_terms(self, event_id: str, *, fresh: bool) -> CatalogEvent:
        """The catalog event, from the cache unless `fresh` (then the cache is refreshed)."""
        if not fresh:
            cached = self.events.get(event_id)
            if cached is not None:
                return cached
        event = await self.load_event(event_id)
        self.events[event_id] = event
        return event

    async def get(self, order_id: str) -> Order:
        """The order as its stream says now (read-your-writes)."""
        order = await self.repository.find(order_id)
        if order is None:
            raise OrderNotFound(f"There is no order {order_id!r}.")
        return order

    async def get_visible(self, order_id: str, *, viewer_id: str, viewer_is_admin: bool) -> Order:
        """The order if the viewer is its buyer, an admin or the event's organizer; else 404."""
        order = await self.get(order_id)
        if order.buyer_id == viewer_id or viewer_is_admin:
            return order
        try:
            organizer_id = (await self.event_terms(order.event_id, fresh=False)).organizer_id
        except EventNotFound:
            organizer_id = None
        if organizer_id != viewer_id:
            raise OrderNotFound(f"There is no order {order_id!r}.")
        return order

    async def list_for_buyer(self, query: OrderQuery) -> OrderList:
        """The buyer's orders from the read model, newest first (may lag a moment)."""
        if self.database is None:
            raise RuntimeError("listing orders needs the read models' database")
        return await list_orders(self.database, query)

    async def cancel(self, order_id: str, *, by: str) -> Order:
        """The buyer gives up a pending order; its tickets are free again at once."""
        command = CancelOrder(order_id=order_id, by=by)
        saved = await self.repository.decide_and_append(
            order_id,
            lambda order: list(decide_cancel(order, command, now=self.now())),
            effects=lambda order, events: order_effects(events),
            actor=by,
        )
        assert saved is not None
        return saved.state

    async def release_hold(self, order_id: str, *, reason: str) -> bool:
        """The system cancels a pending order (its tickets are free again at once); False
        when it is settled already, so asking again changes nothing."""
        command = ReleaseHold(order_id=order_id, reason=reason)
        saved = await self.repository.decide_and_append(
            order_id,
            lambda order: list(decide_release_hold(order, command, now=self.now())),
            effects=lambda order, events: order_effects(events),
            actor=SYSTEM_CANCELLER,
        )
        return saved is not None

    async def expire(self, order_id: str) -> ExpiryOutcome:
        """Expire the order if its hold ran out and it is still pending.

        Losing a race to a payment or cancel is normal: the order is read again and is then
        settled, so exactly one of them took effect.
        """
        command = ExpireOrder(order_id=order_id)
        try:
            saved = await self.repository.decide_and_append(
                order_id,
                lambda order: list(decide_expire(order, command, now=self.now())),
                effects=lambda order, events: order_effects(events),
                actor="expirer",
            )
        except OrderNotFound:
            return ExpiryOutcome.MISSING
        except ConcurrencyError:
            return ExpiryOutcome.CONTENDED
        if saved is not None:
            return ExpiryOutcome.EXPIRED
        order = await self.get(order_id)
        if order.status is OrderStatus.PENDING:
            return ExpiryOutcome.NOT_DUE
        return ExpiryOutcome.SETTLED

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
        command = PayOrder(
            order_id=order_id, amount=amount, method=method, payment_reference=payment_reference
        )
        saved = await self.repository.decide_and_append(
            order_id,
            lambda order: list(decide_payment(order, command, now=paid_at or self.now())),
            effects=lambda order, events: order_effects(events),
            actor=method,
        )
        assert saved is not None
        return saved.state

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
