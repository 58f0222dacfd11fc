"""A sale's history appended straight to the event store, for read-model and export tests.

sale = await open_sale(store, clock)   # an event with VIP, Standard and Free tickets
await first_half(sale)                 # orders of every outcome, across a UTC midnight
await second_half(sale)                # two hours later: a slow payment and a pending order
await sale.check_in(placed, "Standard")  # one of an order's tickets let in at the door
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from eventhunting.domain.catalog import EventDrafted, EventPublished, TicketTypeAdded, Venue
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import (
    ItemQuantity,
    OrderCancelled,
    OrderExpired,
    OrderLine,
    OrderPaid,
    OrderPlaced,
)
from eventhunting.domain.tickets import TicketCheckedIn
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from eventhunting.store.redis_client import RedisClient

PARTITIONS = 2
PARTITION = 1
ORGANIZER = "organizer-1"


class SteppedClock:
    """The store's clock, moved by hand: events spread over minutes, hours and days."""

    def __init__(self) -> None:
        self.now = datetime(2026, 4, 30, 23, 58, 10, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Sale:
    """Events of one catalog event appended to the store, and what was appended, in order."""

    store: EventStore
    clock: SteppedClock
    event_id: str = field(default_factory=lambda: keys.new_id_in_partition(PARTITION, PARTITIONS))
    ticket_types: dict[str, tuple[str, int]] = field(default_factory=dict)
    appended: list[tuple[DomainEvent, datetime]] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)

    async def append(self, stream: str, *events: DomainEvent) -> None:
        result = await self.store.append(
            AppendRequest(partition=PARTITION, stream=stream, events=list(events))
        )
        self.appended.extend((envelope.data, envelope.occurred_at) for envelope in result.events)

    async def open(self, prices: dict[str, int]) -> None:
        self.ticket_types = {
            name: (keys.new_id_in_partition(PARTITION, PARTITIONS), price)
            for name, price in prices.items()
        }
        now = self.clock()
        await self.append(
            f"event-{self.event_id}",
            EventDrafted(
                event_id=self.event_id,
                organizer_id=ORGANIZER,
                title="Jazz",
                description="",
                venue=Venue(name="Hall", address="1 Street"),
                province="ha-noi",
                starts_at=now + timedelta(days=30),
                ends_at=now + timedelta(days=30, hours=2),
            ),
            *(
                TicketTypeAdded(
                    event_id=self.event_id,
                    ticket_type_id=ticket_type_id,
                    name=name,
                    price=price,
                    quantity=100,
                )
                for name, (ticket_type_id, price) in self.ticket_types.items()
            ),
        )
        await self.append(f"event-{self.event_id}", EventPublished(event_id=self.event_id))

    async def place(self, **quantities: int) -> OrderPlaced:
        order_id = keys.new_id_in_partition(PARTITION, PARTITIONS)
        self.order_ids.append(order_id)
        lines = tuple(
            OrderLine(
                ticket_type_id=self.ticket_types[name][0],
                name=name,
                quantity=quantity,
                unit_price=self.ticket_types[name][1],
                amount=quantity * self.ticket_types[name][1],
            )
            for name, quantity in quantities.items()
        )
        placed = OrderPlaced(
            order_id=order_id,
            event_id=self.event_id,
            buyer_id="buyer",
            items=lines,
            total_amount=sum(line.amount for line in lines),
            placed_at=self.clock(),
            expires_at=self.clock() + timedelta(minutes=15),
        )
        events: list[DomainEvent] = [placed]
        if placed.total_amount == 0:
            events.append(self.payment(placed))
        await self.append(f"order-{order_id}", *events)
        return placed

    def payment(self, placed: OrderPlaced) -> OrderPaid:
        return OrderPaid(
            order_id=placed.order_id,
            event_id=self.event_id,
            buyer_id="buyer",
            items=quantities_of(placed),
            amount=placed.total_amount,
            method="test" if placed.total_amount else "free",
            paid_at=self.clock(),
        )

    async def pay(self, placed: OrderPlaced) -> None:
        await self.append(f"order-{placed.order_id}", self.payment(placed))

    async def check_in(self, placed: OrderPlaced, ticket_type: str) -> None:
        """One ticket of `ticket_type` of the paid order `placed` let in, on its own stream."""
        ticket_id = keys.new_id_in_partition(PARTITION, PARTITIONS)
        await self.append(
            f"ticket-{ticket_id}",
            TicketCheckedIn(
                ticket_id=ticket_id,
                order_id=placed.order_id,
                event_id=self.event_id,
                ticket_type_id=self.ticket_types[ticket_type][0],
                checked_in_at=self.clock(),
                checked_in_by="staff-1",
            ),
        )

    async def cancel(self, placed: OrderPlaced) -> None:
        await self.append(
            f"order-{placed.order_id}",
            OrderCancelled(
                order_id=placed.order_id,
                event_id=self.event_id,
                buyer_id="buyer",
                items=quantities_of(placed),
                cancelled_at=self.clock(),
                cancelled_by="buyer",
            ),
        )

    async def expire(self, placed: OrderPlaced) -> None:
        await self.append(
            f"order-{placed.order_id}",
            OrderExpired(
                order_id=placed.order_id,
                event_id=self.event_id,
                buyer_id="buyer",
                items=quantities_of(placed),
                expired_at=self.clock(),
            ),
        )


def quantities_of(placed: OrderPlaced) -> tuple[ItemQuantity, ...]:
    return tuple(
        ItemQuantity(ticket_type_id=line.ticket_type_id, quantity=line.quantity)
        for line in placed.items
    )


async def first_half(sale: Sale) -> None:
    """Orders of every outcome, across a day boundary, in the event's partition."""
    clock = sale.clock
    paid_soon = await sale.place(VIP=2)
    clock.advance(seconds=30)
    await sale.pay(paid_soon)  # 30 s after placing
    cancelled = await sale.place(VIP=1, Standard=1)
    clock.advance(minutes=1)
    await sale.cancel(cancelled)
    free = await sale.place(Free=3)
    clock.advance(minutes=2)  # now past midnight: a new day
    expired = await sale.place(Standard=4)
    clock.advance(minutes=15)
    await sale.expire(expired)
    clock.advance(minutes=1)
    await sale.pay(expired)  # a late payment takes the tickets again
    assert free.total_amount == 0


async def second_half(sale: Sale) -> None:
    clock = sale.clock
    clock.advance(hours=2)
    slow = await sale.place(Standard=2)
    clock.advance(minutes=7, seconds=3)
    await sale.pay(slow)
    await sale.place(VIP=1)  # still pending


async def open_sale(store: EventStore, clock: SteppedClock) -> Sale:
    sale = Sale(store, clock)
    await sale.open({"VIP": 1_100_000, "Standard": 330_000, "Free": 0})
    # Another event of the same partition, whose orders must never count for the first.
    other = Sale(store, clock)
    await other.open({"GA": 200_000})
    paid = await other.place(GA=5)
    await other.pay(paid)
    return sale


async def redis_now(redis: RedisClient) -> datetime:
    """The Redis server's time: log entry ids (and so `as_of`) are its milliseconds."""
    seconds, microseconds = await redis.time()
    return datetime.fromtimestamp(seconds + microseconds / 1_000_000, tz=UTC)
