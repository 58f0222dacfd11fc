"""Order decisions: placing, freezing prices, merging items, paying, cancelling, expiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from eventhunting.domain.catalog import (
    CatalogEvent,
    EventNotFound,
    EventStatus,
    TicketType,
    Venue,
)
from eventhunting.domain.errors import Conflict, InvalidInput
from eventhunting.domain.events import registry
from eventhunting.domain.orders import (
    CancelOrder,
    EventNotOnSale,
    ExpireOrder,
    LimitExceeded,
    NotOrderBuyer,
    Order,
    OrderCancelled,
    OrderEvent,
    OrderExpired,
    OrderNotPending,
    OrderPaid,
    OrderPlaced,
    OrderStatus,
    PayOrder,
    PlaceOrder,
    ReleaseHold,
    RequestedItem,
    SaleClosed,
    StockChange,
    after,
    buyer_ticket_change,
    decide_cancel,
    decide_expire,
    decide_payment,
    decide_place,
    decide_release_hold,
    merge_items,
    stock_changes,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOLD = 900


def cancel_by(buyer: str, order: Order) -> CancelOrder:
    return CancelOrder(order_id=order.id, by=buyer)


def pay(order: Order, *, amount: int) -> PayOrder:
    return PayOrder(order_id=order.id, amount=amount, method="vnpay")


def terms(**changes: object) -> CatalogEvent:
    base = CatalogEvent(
        id="ev1",
        version=5,
        status=EventStatus.PUBLISHED,
        organizer_id="org1",
        title="Concert",
        description="",
        venue=Venue(name="Hall", address="1 Street"),
        province="ha-noi",
        starts_at=NOW + timedelta(days=29),
        ends_at=NOW + timedelta(days=30),
        topics=(),
        max_tickets_per_customer=None,
        ticket_types=(
            TicketType(id="vip", name="VIP", price=500_000, quantity=10, max_per_order=4),
            TicketType(id="std", name="Standard", price=200_000, quantity=100),
            TicketType(id="free", name="Community", price=0, quantity=50),
        ),
        drafted_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
        published_at=NOW - timedelta(days=1),
    )
    return msgspec.structs.replace(base, **changes)


def one_ticket_type(
    *, sale_starts_at: datetime | None = None, sale_ends_at: datetime | None = None
) -> tuple[TicketType, ...]:
    return (
        TicketType(
            id="std",
            name="S",
            price=1,
            quantity=10,
            sale_starts_at=sale_starts_at,
            sale_ends_at=sale_ends_at,
        ),
    )


def place(*items: tuple[str, int], buyer: str = "b1") -> PlaceOrder:
    return PlaceOrder(
        event_id="ev1",
        buyer_id=buyer,
        items=tuple(RequestedItem(ticket_type_id=t, quantity=q) for t, q in items),
    )


def decide_place_at(
    command: PlaceOrder, event: CatalogEvent | None, at: datetime = NOW
) -> list[OrderEvent]:
    """Place as the server does: order id `o1`, the clock at `at`, holds of HOLD seconds."""
    return decide_place(None, command, event=event, order_id="o1", now=at, hold_seconds=HOLD)


def placed_order(*items: tuple[str, int]) -> Order:
    order = after(None, decide_place_at(place(*items), terms()), NOW)
    assert order is not None
    return order


def test_placing_freezes_prices_and_computes_the_total() -> None:
    [placed] = decide_place_at(place(("vip", 2), ("std", 1)), terms())
    assert isinstance(placed, OrderPlaced)
    assert [(line.ticket_type_id, line.unit_price, line.amount) for line in placed.items] == [
        ("vip", 500_000, 1_000_000),
        ("std", 200_000, 200_000),
    ]
    assert placed.total_amount == 1_200_000
    assert placed.currency == "VND"


def test_hold_expires_hold_seconds_after_placing() -> None:
    [placed] = decide_place_at(place(("std", 1)), terms())
    assert isinstance(placed, OrderPlaced)
    assert placed.expires_at == NOW + timedelta(seconds=HOLD)


def test_duplicate_ticket_types_are_merged_in_first_seen_order() -> None:
    merged = merge_items(
        [
            RequestedItem(ticket_type_id="std", quantity=1),
            RequestedItem(ticket_type_id="vip", quantity=1),
            RequestedItem(ticket_type_id="std", quantity=2),
        ]
    )
    assert merged == (
        RequestedItem(ticket_type_id="std", quantity=3),
        RequestedItem(ticket_type_id="vip", quantity=1),
    )


def test_merged_quantity_counts_against_max_per_order() -> None:
    with pytest.raises(InvalidInput) as raised:
        decide_place_at(place(("vip", 3), ("vip", 2)), terms())
    assert raised.value.code == "max_per_order_exceeded"
    assert raised.value.extra["errors"][0]["field"] == "items[0].quantity"


def test_an_order_needs_items() -> None:
    with pytest.raises(InvalidInput) as raised:
        decide_place_at(place(), terms())
    assert raised.value.extra["errors"] == [
        {"field": "items", "message": "An order needs at least one item."}
    ]


def test_quantities_below_one_are_rejected_with_their_field() -> None:
    with pytest.raises(InvalidInput) as raised:
        decide_place_at(place(("std", 1), ("vip", 0)), terms())
    assert raised.value.extra["errors"][0]["field"] == "items[1].quantity"


def test_ticket_types_of_another_event_are_invalid_input() -> None:
    with pytest.raises(InvalidInput) as raised:
        decide_place_at(place(("std", 1), ("elsewhere", 1)), terms())
    assert raised.value.code == "invalid_input"
    assert raised.value.extra["errors"][0]["field"] == "items[1].ticket_type_id"


def test_an_unknown_event_is_not_found() -> None:
    with pytest.raises(EventNotFound):
        decide_place_at(place(("std", 1)), None)


def test_a_draft_event_is_not_found() -> None:
    with pytest.raises(EventNotFound):
        decide_place_at(place(("std", 1)), terms(status=EventStatus.DRAFT, published_at=None))


def test_a_cancelled_event_is_not_on_sale() -> None:
    with pytest.raises(EventNotOnSale):
        decide_place_at(place(("std", 1)), terms(status=EventStatus.CANCELLED))


def test_without_its_own_sale_end_a_ticket_type_sells_until_the_event_ends() -> None:
    event = terms(ends_at=NOW + timedelta(seconds=1))
    assert decide_place_at(place(("std", 1)), event)
    with pytest.raises(EventNotOnSale):
        decide_place_at(place(("std", 1)), event, at=NOW + timedelta(seconds=1))


def test_an_event_that_has_ended_is_not_on_sale() -> None:
    with pytest.raises(EventNotOnSale):
        decide_place_at(place(("std", 1)), terms(ends_at=NOW))


def test_sale_not_started_is_closed() -> None:
    early = terms(ticket_types=one_ticket_type(sale_starts_at=NOW))
    with pytest.raises(SaleClosed):
        decide_place_at(place(("std", 1)), early, at=NOW - timedelta(seconds=1))
    assert decide_place_at(place(("std", 1)), early, at=NOW)


def test_sale_ended_is_closed() -> None:
    late = terms(ticket_types=one_ticket_type(sale_ends_at=NOW))
    with pytest.raises(SaleClosed):
        decide_place_at(place(("std", 1)), late, at=NOW)


def test_more_than_the_per_customer_limit_in_one_order_is_refused() -> None:
    with pytest.raises(LimitExceeded):
        decide_place_at(place(("std", 2), ("vip", 2)), terms(max_tickets_per_customer=3))


def test_a_free_order_is_paid_at_once() -> None:
    events = decide_place_at(place(("free", 2)), terms())
    assert [type(event) for event in events] == [OrderPlaced, OrderPaid]
    order = after(None, events, NOW)
    assert order is not None
    assert order.status is OrderStatus.PAID
    assert order.paid_at == NOW
    assert order.version == 2


def test_folding_tracks_status_and_version() -> None:
    order = placed_order(("std", 2))
    assert order.status is OrderStatus.PENDING
    assert order.version == 1
    assert order.ticket_count == 2


def test_the_buyer_cancels_a_pending_order() -> None:
    order = placed_order(("std", 2))
    [cancelled] = decide_cancel(order, cancel_by("b1", order), now=NOW)
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.items[0].quantity == 2
    settled = after(None, [*decide_place_at(place(("std", 2)), terms()), cancelled], NOW)
    assert settled is not None
    assert settled.status is OrderStatus.CANCELLED


def test_someone_else_cannot_cancel() -> None:
    order = placed_order(("std", 1))
    with pytest.raises(NotOrderBuyer):
        decide_cancel(order, cancel_by("intruder", order), now=NOW)


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.EXPIRED, OrderStatus.CANCELLED])
def test_only_pending_orders_can_be_cancelled(status: OrderStatus) -> None:
    order = msgspec.structs.replace(placed_order(("std", 1)), status=status)
    with pytest.raises(OrderNotPending) as raised:
        decide_cancel(order, cancel_by("b1", order), now=NOW)
    assert raised.value.code == "order_not_pending"


def test_the_system_releases_a_pending_hold_with_its_reason() -> None:
    order = placed_order(("std", 2))
    command = ReleaseHold(order_id=order.id, reason="event_cancelled")
    [released] = decide_release_hold(order, command, now=NOW)
    assert isinstance(released, OrderCancelled)
    assert (released.cancelled_by, released.reason) == ("system", "event_cancelled")
    assert stock_changes(released) == [StockChange("std", -2, 0)]


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.EXPIRED, OrderStatus.CANCELLED])
def test_releasing_a_settled_order_decides_nothing(status: OrderStatus) -> None:
    order = msgspec.structs.replace(placed_order(("std", 1)), status=status)
    command = ReleaseHold(order_id=order.id, reason="event_cancelled")
    assert decide_release_hold(order, command, now=NOW) == []


def test_expiry_waits_for_the_deadline() -> None:
    order = placed_order(("std", 1))
    early = order.expires_at - timedelta(milliseconds=1)
    assert decide_expire(order, ExpireOrder(order_id=order.id), now=early) == []
    [expired] = decide_expire(order, ExpireOrder(order_id=order.id), now=order.expires_at)
    assert isinstance(expired, OrderExpired)


def test_a_paid_order_never_expires() -> None:
    order = msgspec.structs.replace(placed_order(("std", 1)), status=OrderStatus.PAID)
    late = order.expires_at + timedelta(hours=1)
    assert decide_expire(order, ExpireOrder(order_id=order.id), now=late) == []


def test_payment_needs_the_full_amount() -> None:
    order = placed_order(("std", 1))
    with pytest.raises(Conflict) as raised:
        decide_payment(order, pay(order, amount=1), now=NOW)
    assert raised.value.code == "payment_amount_mismatch"


def test_an_expired_order_cannot_be_paid() -> None:
    order = msgspec.structs.replace(placed_order(("std", 1)), status=OrderStatus.EXPIRED)
    with pytest.raises(OrderNotPending):
        decide_payment(order, pay(order, amount=order.total_amount), now=NOW)


def test_events_move_tickets_between_held_and_sold() -> None:
    order = placed_order(("std", 2), ("vip", 1))
    [placed] = decide_place_at(place(("std", 2), ("vip", 1)), terms())
    [paid] = decide_payment(order, pay(order, amount=order.total_amount), now=NOW)
    [released] = decide_cancel(order, cancel_by("b1", order), now=NOW)
    assert stock_changes(placed) == [StockChange("std", 2, 0), StockChange("vip", 1, 0)]
    assert stock_changes(paid) == [StockChange("std", -2, 2), StockChange("vip", -1, 1)]
    assert stock_changes(released) == [StockChange("std", -2, 0), StockChange("vip", -1, 0)]
    assert (buyer_ticket_change(placed), buyer_ticket_change(paid)) == (3, 0)
    assert buyer_ticket_change(released) == -3


def test_order_events_are_registered_for_the_order_stream() -> None:
    for name in ("OrderPlaced", "OrderCancelled", "OrderExpired", "OrderPaid"):
        assert registry.by_name[name].stream_kind == "order"


def test_order_events_survive_a_json_round_trip() -> None:
    events = decide_place_at(place(("free", 1)), terms())
    for event in events:
        described = registry.type_of(event)
        raw = msgspec.json.decode(msgspec.json.encode(event))
        assert registry.decode(described.name, described.schema, raw) == event
