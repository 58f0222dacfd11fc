"""Properties of order decisions under random interleavings of place, cancel, expire and pay."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eventhunting.domain.catalog import CatalogEvent, EventStatus, TicketType, Venue
from eventhunting.domain.errors import DomainError
from eventhunting.domain.orders import (
    CancelOrder,
    ExpireOrder,
    Order,
    OrderEvent,
    OrderStatus,
    PayOrder,
    PlaceOrder,
    RequestedItem,
    after,
    buyer_ticket_change,
    decide_cancel,
    decide_expire,
    decide_payment,
    decide_place,
    merge_items,
    stock_changes,
)

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CAPACITY = {"a": 5, "b": 3, "c": 8}
PRICES = {"a": 100, "b": 0, "c": 50_000}
LIMIT = 6
BUYERS = ("u1", "u2", "u3")

item_lists = st.lists(
    st.builds(
        RequestedItem,
        ticket_type_id=st.sampled_from(sorted(CAPACITY)),
        quantity=st.integers(min_value=1, max_value=4),
    ),
    min_size=1,
    max_size=4,
)


@given(item_lists)
def test_merging_keeps_every_ticket_and_one_item_per_type(items: list[RequestedItem]) -> None:
    merged = merge_items(items)
    assert len({item.ticket_type_id for item in merged}) == len(merged)
    totals: Counter[str] = Counter()
    for item in items:
        totals[item.ticket_type_id] += item.quantity
    assert {item.ticket_type_id: item.quantity for item in merged} == dict(totals)


class GuardedOrders(RuleBasedStateMachine):
    """The store's guards modelled in memory: an append passes every guard or writes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.terms = CatalogEvent(
            id="ev",
            version=len(CAPACITY) + 2,
            status=EventStatus.PUBLISHED,
            organizer_id="org",
            title="Festival",
            description="",
            venue=Venue(name="Park", address="Somewhere"),
            province="ha-noi",
            starts_at=START + timedelta(days=300),
            ends_at=START + timedelta(days=301),
            topics=(),
            max_tickets_per_customer=LIMIT,
            ticket_types=tuple(
                TicketType(id=name, name=name.upper(), price=PRICES[name], quantity=capacity)
                for name, capacity in CAPACITY.items()
            ),
            drafted_at=START,
            updated_at=START,
            published_at=START,
        )
        self.held: Counter[str] = Counter()
        self.sold: Counter[str] = Counter()
        self.buyer_tickets: Counter[str] = Counter()
        self.streams: dict[str, list[OrderEvent]] = {}
        self.orders: dict[str, Order] = {}

    def append(self, order_id: str, expected: Order | None, events: list[OrderEvent]) -> None:
        current = self.orders.get(order_id)
        assert (current.version if current else 0) == (expected.version if expected else 0)
        held, sold, tickets = self.held.copy(), self.sold.copy(), self.buyer_tickets.copy()
        for event in events:
            for change in stock_changes(event):
                held[change.ticket_type_id] += change.held
                sold[change.ticket_type_id] += change.sold
            tickets[event.buyer_id] += buyer_ticket_change(event)
        for name, capacity in CAPACITY.items():
            if held[name] < 0 or sold[name] < 0 or held[name] + sold[name] > capacity:
                return
        if any(count < 0 or count > LIMIT for count in tickets.values()):
            return
        self.held, self.sold, self.buyer_tickets = held, sold, tickets
        order = after(current, events, self.now)
        assert order is not None
        self.orders[order_id] = order
        self.streams.setdefault(order_id, []).extend(events)

    @rule(buyer=st.sampled_from(BUYERS), items=item_lists)
    def place(self, buyer: str, items: list[RequestedItem]) -> None:
        order_id = f"o{len(self.streams) + 1}"
        command = PlaceOrder(event_id="ev", buyer_id=buyer, items=tuple(items))
        try:
            events = decide_place(
                None, command, event=self.terms, order_id=order_id, now=self.now, hold_seconds=60
            )
        except DomainError:
            return
        self.append(order_id, None, list(events))

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order = self.orders[data.draw(st.sampled_from(sorted(self.orders)))]
        try:
            events = decide_cancel(
                order, CancelOrder(order_id=order.id, by=order.buyer_id), now=self.now
            )
        except DomainError:
            assert order.status is not OrderStatus.PENDING
            return
        self.append(order.id, order, list(events))

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data())
    def pay(self, data: st.DataObject) -> None:
        order = self.orders[data.draw(st.sampled_from(sorted(self.orders)))]
        try:
            events = decide_payment(
                order,
                PayOrder(order_id=order.id, amount=order.total_amount, method="test"),
                now=self.now,
            )
        except DomainError:
            assert order.status is not OrderStatus.PENDING
            return
        self.append(order.id, order, list(events))

    @rule(seconds=st.integers(min_value=1, max_value=90))
    def time_passes_and_holds_expire(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        for order in list(self.orders.values()):
            events = decide_expire(order, ExpireOrder(order_id=order.id), now=self.now)
            if events:
                self.append(order.id, order, list(events))

    @invariant()
    def never_oversold_nor_negative(self) -> None:
        for name, capacity in CAPACITY.items():
            assert self.held[name] >= 0
            assert self.sold[name] >= 0
            assert self.held[name] + self.sold[name] <= capacity

    @invariant()
    def counters_equal_the_orders_they_come_from(self) -> None:
        held: Counter[str] = Counter()
        sold: Counter[str] = Counter()
        tickets: Counter[str] = Counter()
        for order in self.orders.values():
            for line in order.items:
                if order.status is OrderStatus.PENDING:
                    held[line.ticket_type_id] += line.quantity
                elif order.status is OrderStatus.PAID:
                    sold[line.ticket_type_id] += line.quantity
            if order.status in (OrderStatus.PENDING, OrderStatus.PAID):
                tickets[order.buyer_id] += order.ticket_count
        assert +held == +self.held
        assert +sold == +self.sold
        assert +tickets == +self.buyer_tickets

    @invariant()
    def a_paid_order_was_never_released(self) -> None:
        for events in self.streams.values():
            kinds = {type(event).__name__ for event in events}
            assert not ({"OrderPaid"} <= kinds and kinds & {"OrderCancelled", "OrderExpired"})


GuardedOrders.TestCase.settings = settings(max_examples=75, stateful_step_count=40, deadline=None)
TestGuardedOrders = GuardedOrders.TestCase
