"""The sales fold: tickets, revenue with VAT, orders, time to pay and timelines from events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventhunting.domain.catalog import EventDrafted, EventPublished, TicketTypeAdded, Venue
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import (
    CreditNoteIssued,
    CreditNoteLine,
    InvoiceReference,
    ItemQuantity,
    OrderCancelled,
    OrderExpired,
    OrderLine,
    OrderPaid,
    OrderPlaced,
)
from eventhunting.domain.sales import (
    EventSales,
    Granularity,
    OrderLineRecord,
    OrderRecord,
    SalesTally,
    Timeline,
    bucket_start,
    event_sales,
    fold_sales,
    median_bucket,
    time_to_pay_bucket,
    time_to_pay_width,
)
from eventhunting.domain.tickets import TicketCheckedIn
from eventhunting.domain.vat import vat_included_in
from eventhunting.projections.sales import order_document, order_record

START = datetime(2026, 5, 1, 9, 59, 30, tzinfo=UTC)
EVENT = "event-1"
VIP, STANDARD = "tt-vip", "tt-standard"


def drafted() -> list[tuple[DomainEvent, datetime]]:
    return [
        (
            EventDrafted(
                event_id=EVENT,
                organizer_id="organizer-1",
                title="Jazz",
                description="",
                venue=Venue(name="Hall", address="1 Street"),
                province="ha-noi",
                starts_at=START + timedelta(days=30),
                ends_at=START + timedelta(days=30, hours=2),
            ),
            START,
        ),
        (
            TicketTypeAdded(
                event_id=EVENT, ticket_type_id=VIP, name="VIP", price=1_100_000, quantity=10
            ),
            START,
        ),
        (
            TicketTypeAdded(
                event_id=EVENT, ticket_type_id=STANDARD, name="Standard", price=0, quantity=50
            ),
            START,
        ),
        (EventPublished(event_id=EVENT), START),
    ]


def placed(order_id: str, at: datetime, vip: int = 0, standard: int = 0) -> OrderPlaced:
    lines = []
    if vip:
        lines.append(
            OrderLine(
                ticket_type_id=VIP,
                name="VIP",
                quantity=vip,
                unit_price=1_100_000,
                amount=vip * 1_100_000,
            )
        )
    if standard:
        lines.append(
            OrderLine(
                ticket_type_id=STANDARD, name="Standard", quantity=standard, unit_price=0, amount=0
            )
        )
    return OrderPlaced(
        order_id=order_id,
        event_id=EVENT,
        buyer_id="buyer",
        items=tuple(lines),
        total_amount=sum(line.amount for line in lines),
        placed_at=at,
        expires_at=at + timedelta(minutes=15),
    )


def quantities(order: OrderPlaced) -> tuple[ItemQuantity, ...]:
    return tuple(
        ItemQuantity(ticket_type_id=line.ticket_type_id, quantity=line.quantity)
        for line in order.items
    )


def paid(order: OrderPlaced, at: datetime) -> OrderPaid:
    return OrderPaid(
        order_id=order.order_id,
        event_id=EVENT,
        buyer_id="buyer",
        items=quantities(order),
        amount=order.total_amount,
        method="test" if order.total_amount else "free",
        paid_at=at,
    )


def figures(tally: SalesTally, granularity: Granularity = Granularity.HOUR) -> EventSales:
    start, end = START - timedelta(days=1), START + timedelta(days=1)
    return event_sales(
        event_id=EVENT,
        organizer_id="organizer-1",
        title="Jazz",
        document=tally.document(EVENT),
        timeline=Timeline(
            bucket=granularity,
            start=start,
            end=end,
            items=[],
        ),
    )


def test_vat_is_split_out_of_inclusive_prices_rounding_half_up() -> None:
    assert vat_included_in(1_100_000) == 100_000
    assert vat_included_in(0) == 0
    assert vat_included_in(11) == 1
    assert vat_included_in(5) == 0  # 0.4545...
    assert vat_included_in(6) == 1  # 0.5454...
    assert vat_included_in(1_080_000, rate_percent=8) == 80_000


@given(st.integers(min_value=0, max_value=10**12))
def test_net_plus_vat_is_gross_and_vat_is_the_nearest_dong(gross: int) -> None:
    vat = vat_included_in(gross)
    assert abs(vat * 110 - gross * 10) <= 55


def test_buckets_are_utc_minutes_hours_and_days() -> None:
    moment = datetime(2026, 5, 1, 8, 59, 30, tzinfo=timezone(timedelta(hours=7)))
    assert bucket_start(moment, Granularity.MINUTE) == datetime(2026, 5, 1, 1, 59, tzinfo=UTC)
    assert bucket_start(moment, Granularity.HOUR) == datetime(2026, 5, 1, 1, tzinfo=UTC)
    assert bucket_start(moment, Granularity.DAY) == datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "edge", "width"),
    [(0, 0, 1), (59.9, 59, 1), (60, 60, 5), (64, 60, 5), (599, 595, 5), (600, 600, 30),
     (3_599, 3_570, 30), (3_600, 3_600, 300), (86_399, 86_100, 300), (-3, 0, 1)],
)  # fmt: skip
def test_time_to_pay_buckets_widen_with_the_wait(seconds: float, edge: int, width: int) -> None:
    assert time_to_pay_bucket(seconds) == edge
    assert time_to_pay_width(edge) == width


def test_the_median_bucket_is_the_lower_median() -> None:
    assert median_bucket({}) is None
    assert median_bucket({10: 1}) == 10
    assert median_bucket({10: 1, 20: 1}) == 10
    assert median_bucket({10: 1, 20: 1, 30: 1}) == 20
    assert median_bucket({5: 3, 60: 1, 600: 10}) == 600


def test_a_sale_counts_tickets_revenue_orders_and_time_to_pay() -> None:
    first = placed("o1", START, vip=2)
    second = placed("o2", START + timedelta(seconds=10), vip=1)
    third = placed("o3", START + timedelta(seconds=20), vip=1, standard=2)
    free = placed("o4", START + timedelta(seconds=30), standard=3)
    pending = placed("o5", START + timedelta(seconds=40), vip=1)
    history = [
        *drafted(),
        (first, START),
        (second, START + timedelta(seconds=10)),
        (third, START + timedelta(seconds=20)),
        (free, START + timedelta(seconds=30)),
        (paid(free, START + timedelta(seconds=30)), START + timedelta(seconds=30)),
        (pending, START + timedelta(seconds=40)),
        (paid(first, START + timedelta(seconds=45)), START + timedelta(seconds=45)),
        (
            OrderCancelled(
                order_id="o2",
                event_id=EVENT,
                buyer_id="buyer",
                items=quantities(second),
                cancelled_at=START + timedelta(seconds=50),
                cancelled_by="buyer",
            ),
            START + timedelta(seconds=50),
        ),
        (
            OrderExpired(
                order_id="o3",
                event_id=EVENT,
                buyer_id="buyer",
                items=quantities(third),
                expired_at=START + timedelta(minutes=16),
            ),
            START + timedelta(minutes=16),
        ),
    ]
    sales = figures(fold_sales(history))
    assert sales.status == "published"
    by_id = {t.id: t for t in sales.ticket_types}
    vip, standard = by_id[VIP], by_id[STANDARD]
    assert (vip.tickets.ordered, vip.tickets.held, vip.tickets.sold, vip.tickets.released) == (
        5,
        1,
        2,
        2,
    )
    assert (standard.tickets.ordered, standard.tickets.sold, standard.tickets.released) == (5, 3, 2)
    assert (vip.revenue.gross, vip.revenue.vat, vip.revenue.net) == (2_200_000, 200_000, 2_000_000)
    assert standard.revenue.gross == 0
    assert (vip.name, vip.price, vip.quantity) == ("VIP", 1_100_000, 10)
    orders = sales.orders
    assert (orders.placed, orders.pending, orders.paid, orders.cancelled, orders.expired) == (
        5,
        1,
        2,
        1,
        1,
    )
    assert sales.conversion.order_rate == 0.4
    assert sales.conversion.ticket_rate == 0.5
    # Only the order with something to pay counts: 45 s from placing to paying.
    assert sales.time_to_pay.orders == 1
    assert sales.time_to_pay.median_seconds == 45
    assert sales.time_to_pay.resolution_seconds == 1
    assert sales.revenue.gross == 2_200_000
    assert sales.tickets.refunded == 0
    assert sales.tickets.checked_in == 0


def test_timeline_buckets_count_activity_by_minute_hour_and_day() -> None:
    first = placed("o1", START, vip=2)
    second = placed("o2", START + timedelta(seconds=40), vip=1)
    tally = fold_sales(
        [
            *drafted(),
            (first, START),  # 09:59:30
            (second, START + timedelta(seconds=40)),  # 10:00:10
            (paid(first, START + timedelta(seconds=50)), START + timedelta(seconds=50)),
        ]
    )
    day = tally.bucket_documents(
        EVENT, Granularity.DAY, START - timedelta(days=1), START + timedelta(days=1)
    )
    assert len(day) == 1
    assert (day[0]["orders_placed"], day[0]["tickets_ordered"], day[0]["tickets_sold"]) == (2, 3, 2)
    assert (day[0]["gross"], day[0]["vat"]) == (2_200_000, 200_000)
    hours = tally.bucket_documents(
        EVENT, Granularity.HOUR, START - timedelta(days=1), START + timedelta(days=1)
    )
    assert [
        (h["start"].hour, h.get("orders_placed", 0), h.get("orders_paid", 0)) for h in hours
    ] == [
        (9, 1, 0),
        (10, 1, 1),
    ]
    # A bucket belongs to a range when its start does: 09:59 starts before 09:59:30.
    minutes = tally.bucket_documents(EVENT, Granularity.MINUTE, START, START + timedelta(minutes=2))
    assert [m["start"] for m in minutes] == [datetime(2026, 5, 1, 10, 0, tzinfo=UTC)]


def checked_in(ticket_id: str, ticket_type_id: str, at: datetime) -> TicketCheckedIn:
    return TicketCheckedIn(
        ticket_id=ticket_id,
        order_id="o1",
        event_id=EVENT,
        ticket_type_id=ticket_type_id,
        checked_in_at=at,
        checked_in_by="staff-1",
    )


def test_check_ins_count_per_ticket_type_and_in_the_bucket_of_the_check_in() -> None:
    order = placed("o1", START, vip=1, standard=2)
    door_opens = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    tally = fold_sales(
        [
            *drafted(),
            (order, START),
            (paid(order, START), START),
            (checked_in("t1", STANDARD, door_opens), door_opens),
            (checked_in("t2", STANDARD, door_opens), door_opens + timedelta(minutes=1)),
            (checked_in("t3", VIP, door_opens), door_opens + timedelta(hours=1)),
        ]
    )
    sales = figures(tally)
    by_type = {t.id: t.tickets.checked_in for t in sales.ticket_types}
    assert by_type == {VIP: 1, STANDARD: 2}
    assert sales.tickets.checked_in == 3
    hours = tally.bucket_documents(
        EVENT, Granularity.HOUR, START - timedelta(days=1), START + timedelta(days=1)
    )
    assert [(h["start"].hour, h.get("tickets_checked_in", 0)) for h in hours] == [
        (9, 0),
        (12, 2),
        (13, 1),
    ]


def test_a_check_in_at_an_event_never_drafted_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        fold_sales([(checked_in("t1", VIP, START), START)])


def test_a_payment_for_an_order_never_placed_is_refused() -> None:
    order = placed("o1", START, vip=1)
    with pytest.raises(ValueError, match="never placed"):
        fold_sales([*drafted(), (paid(order, START), START)])


def test_a_late_payment_takes_the_released_tickets_back_and_counts_as_paid() -> None:
    order = placed("o1", START, vip=2)
    expired = OrderExpired(
        order_id="o1", event_id=EVENT, buyer_id="buyer", items=quantities(order), expired_at=START
    )
    late = paid(order, START + timedelta(minutes=20))
    sales = figures(fold_sales([*drafted(), (order, START), (expired, START), (late, START)]))
    vip = next(t for t in sales.ticket_types if t.id == VIP)
    assert (vip.tickets.held, vip.tickets.released, vip.tickets.sold) == (0, 0, 2)
    assert (sales.orders.paid, sales.orders.expired, sales.orders.pending) == (1, 0, 0)
    assert sales.time_to_pay.median_seconds == 1_200


def test_an_order_paid_twice_is_refused() -> None:
    order = placed("o1", START, vip=1)
    twice = [(order, START), (paid(order, START), START), (paid(order, START), START)]
    with pytest.raises(ValueError, match="paid twice"):
        fold_sales([*drafted(), *twice])


def test_folding_in_batches_adds_up_to_folding_at_once() -> None:
    orders = [placed(f"o{n}", START + timedelta(seconds=n), vip=1) for n in range(6)]
    history = [*drafted()] + [(order, START) for order in orders]
    history += [(paid(order, START + timedelta(seconds=70)), START) for order in orders[:3]]
    whole = fold_sales(history)
    first = fold_sales(history[:7])
    second = SalesTally(first.organizers, first.orders)
    for data, moment in history[7:]:
        second.apply(data, moment)
    merged = dict(first.increments[EVENT])
    for path, delta in second.increments[EVENT].items():
        merged[path] = merged.get(path, 0) + delta
    assert {k: v for k, v in merged.items() if v} == {
        k: v for k, v in whole.increments[EVENT].items() if v
    }


def credit_note(order: OrderPlaced, number: str, *lines: CreditNoteLine) -> CreditNoteIssued:
    return CreditNoteIssued(
        order_id=order.order_id,
        event_id=EVENT,
        buyer_id="buyer",
        organizer_id="organizer-1",
        refund_id=f"refund-{number}",
        series="S",
        sequence=int(number),
        number=f"S-{number}",
        symbol="1K26TEH",
        issued_at=START,
        adjusts=InvoiceReference(symbol="1K26TEH", number="S-1", issued_at=START),
        lines=lines,
        total_amount=sum(line.amount for line in lines),
        vat_amount=sum(line.vat_amount for line in lines),
        amount_before_vat=sum(line.amount_before_vat for line in lines),
        reason="cancelled",
    )


def credited(position: int, quantity: int, unit_price: int) -> CreditNoteLine:
    amount = quantity * unit_price
    vat = vat_included_in(amount)
    return CreditNoteLine(
        line=position,
        description="",
        quantity=-quantity,
        unit_price=unit_price,
        amount=-amount,
        vat_rate=8,
        vat_amount=-vat,
        amount_before_vat=-(amount - vat),
    )


def test_credit_notes_count_refunded_tickets_and_money_and_the_order_once_all_came_back() -> None:
    order = placed("o1", START, vip=3, standard=1)
    later = START + timedelta(minutes=5)
    history = [
        *drafted(),
        (order, START),
        (paid(order, START + timedelta(seconds=30)), START + timedelta(seconds=30)),
        (credit_note(order, "2", credited(1, 1, 1_100_000)), later),
    ]
    partly = figures(fold_sales(history))
    vip = {t.id: t for t in partly.ticket_types}[VIP]
    one_vat = vat_included_in(1_100_000)
    assert (vip.tickets.sold, vip.tickets.refunded) == (3, 1)
    assert (vip.revenue.refunded, vip.revenue.refunded_vat) == (1_100_000, one_vat)
    assert partly.orders.refunded == 0
    gross, vat = 3_300_000, vat_included_in(3_300_000)
    assert partly.revenue.net == (gross - vat) - (1_100_000 - one_vat)

    history.append((credit_note(order, "3", credited(1, 2, 1_100_000), credited(2, 1, 0)), later))
    tally = fold_sales(history)
    whole = figures(tally)
    by_id = {t.id: t for t in whole.ticket_types}
    assert (by_id[VIP].tickets.refunded, by_id[STANDARD].tickets.refunded) == (3, 1)
    assert whole.tickets.refunded == 4
    assert whole.orders.refunded == 1
    assert whole.revenue.refunded == gross
    # Rounded per note, the VAT given back can differ from the invoice's by a dong.
    assert abs(whole.revenue.refunded_vat - vat) <= 1
    [bucket] = [
        counters
        for (_, granularity, start), counters in tally.buckets.items()
        if granularity is Granularity.MINUTE and start == bucket_start(later, Granularity.MINUTE)
    ]
    assert bucket["tickets_refunded"] == 4
    assert bucket["orders_refunded"] == 1
    assert bucket["refunded"] == gross


def test_a_credit_note_naming_a_line_the_order_does_not_have_is_refused() -> None:
    order = placed("o1", START, vip=1)
    history = [*drafted(), (order, START), (paid(order, START), START)]
    with pytest.raises(ValueError, match="names line 2"):
        fold_sales([*history, (credit_note(order, "2", credited(2, 1, 1_100_000)), START)])


@given(
    lines=st.lists(
        st.tuples(st.text(min_size=1), st.integers(1, 10), st.integers(0, 10**9)),
        min_size=1,
        max_size=4,
    ),
    status=st.sampled_from(["pending", "paid", "cancelled", "expired"]),
    refunded=st.integers(0, 40),
)
def test_an_order_record_is_stored_with_every_field_and_read_back_the_same(
    lines: list[tuple[str, int, int]], status: str, refunded: int
) -> None:
    record = OrderRecord(
        order_id="o1",
        event_id=EVENT,
        organizer_id="organizer-1",
        placed_at=START,
        total_amount=sum(amount for _, _, amount in lines),
        lines=tuple(OrderLineRecord(ticket_type_id=t, quantity=q, amount=a) for t, q, a in lines),
        status=status,
        refunded_tickets=refunded,
    )
    document = order_document(record)
    assert set(document) == {"_id"} | (set(OrderRecord.__struct_fields__) - {"order_id"})
    assert order_record(document) == record
