"""Sales figures folded from catalog and order events: tickets, revenue with VAT, timelines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import msgspec

from eventhunting.domain.catalog import (
    EventCancelled,
    EventDrafted,
    EventPublished,
    EventUpdated,
    TicketTypeAdded,
    TicketTypeChanged,
)
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import (
    CURRENCY,
    CreditNoteIssued,
    OrderCancelled,
    OrderExpired,
    OrderPaid,
    OrderPlaced,
)
from eventhunting.domain.tickets import TicketCheckedIn
from eventhunting.domain.vat import VAT_RATE_PERCENT, vat_included_in

# Prices are VAT-inclusive (what the buyer pays), so VAT is split out of each paid order line
# (`domain/vat.py`, the same rule as invoices) and net = gross - VAT. Changing the rate
# changes every figure after `eventhunting replay --projection sales`.

SALES_EVENT_TYPES = frozenset(
    {
        "EventDrafted",
        "EventUpdated",
        "EventPublished",
        "EventCancelled",
        "TicketTypeAdded",
        "TicketTypeChanged",
        "OrderPlaced",
        "OrderPaid",
        "OrderCancelled",
        "OrderExpired",
        "CreditNoteIssued",
        "TicketCheckedIn",
    }
)
"""Event types that change sales figures (others are skipped)."""


class Granularity(StrEnum):
    """Width of a timeline bucket."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"


BUCKET_WIDTH: dict[Granularity, timedelta] = {
    Granularity.MINUTE: timedelta(minutes=1),
    Granularity.HOUR: timedelta(hours=1),
    Granularity.DAY: timedelta(days=1),
}


BUCKET_SECONDS = tuple(
    (granularity, int(width.total_seconds())) for granularity, width in BUCKET_WIDTH.items()
)


def bucket_start(moment: datetime, granularity: Granularity) -> datetime:
    """The start of the UTC bucket holding `moment` (days are UTC days)."""
    moment = moment.astimezone(UTC)
    if granularity is Granularity.MINUTE:
        return moment.replace(second=0, microsecond=0)
    if granularity is Granularity.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


# --- time to pay: a histogram in fixed buckets, so a median needs no list of orders --------

TIME_TO_PAY_RESOLUTION: tuple[tuple[int | None, int], ...] = (
    (60, 1),
    (600, 5),
    (3_600, 30),
    (None, 300),
)
"""(up to this many seconds, bucket width): whole seconds under a minute, 5 s under ten
minutes, 30 s under an hour, five minutes beyond. At most ~60 + 108 + 100 + 276 buckets
for holds up to a day, however many orders are paid."""


def time_to_pay_bucket(seconds: float) -> int:
    """The lower edge, in seconds, of the histogram bucket holding `seconds`."""
    whole = max(int(seconds), 0)
    for limit, width in TIME_TO_PAY_RESOLUTION:
        if limit is None or whole < limit:
            return whole - whole % width
    raise AssertionError("the last resolution has no limit")


def time_to_pay_width(lower_edge: int) -> int:
    """The width of the histogram bucket starting at `lower_edge`."""
    for limit, width in TIME_TO_PAY_RESOLUTION:
        if limit is None or lower_edge < limit:
            return width
    raise AssertionError("the last resolution has no limit")


def median_bucket(histogram: Mapping[int, int]) -> int | None:
    """The lower edge of the bucket holding the (lower) median, or None when it is empty."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = (total + 1) // 2
    seen = 0
    for edge in sorted(histogram):
        seen += histogram[edge]
        if seen >= rank:
            return edge
    raise AssertionError("rank is within the total")


# --- what the fold remembers of an order ------------------------------------------------


class OrderLineRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    ticket_type_id: str
    quantity: int
    amount: int


class OrderRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What later events of an order need to know of it: its lines, prices and start."""

    order_id: str
    event_id: str
    organizer_id: str
    placed_at: datetime
    total_amount: int
    lines: tuple[OrderLineRecord, ...]
    status: str = "pending"
    refunded_tickets: int = 0
    """Tickets its credit notes took back (the order counts as refunded when all are)."""


BUCKET_COUNTERS = (
    "orders_placed",
    "orders_paid",
    "orders_cancelled",
    "orders_expired",
    "orders_refunded",
    "tickets_ordered",
    "tickets_sold",
    "tickets_released",
    "tickets_refunded",
    "tickets_checked_in",
    "gross",
    "vat",
    "refunded",
    "refunded_vat",
)
"""Counters of a timeline bucket."""

(
    ORDERS_PLACED,
    ORDERS_PAID,
    ORDERS_CANCELLED,
    ORDERS_EXPIRED,
    ORDERS_REFUNDED,
    TICKETS_ORDERED,
    TICKETS_SOLD,
    TICKETS_RELEASED,
    TICKETS_REFUNDED,
    TICKETS_CHECKED_IN,
    GROSS,
    VAT,
    REFUNDED,
    REFUNDED_VAT,
) = range(len(BUCKET_COUNTERS))
"""Positions of the counters in the per-second lists the fold adds to."""

RELEASED_BY_OUTCOME = {"cancelled": ORDERS_CANCELLED, "expired": ORDERS_EXPIRED}

TICKET_COUNTERS = ("ordered", "held", "sold", "released", "refunded", "checked_in")
REVENUE_COUNTERS = ("gross", "vat", "refunded", "refunded_vat")
ORDER_COUNTERS = ("placed", "paid", "cancelled", "expired", "refunded")

BucketKey = tuple[str, Granularity, datetime]

SECONDS_KEPT = 4_096
"""(event, second) pairs counted before they are spread into timeline buckets."""


class TicketTypePaths(NamedTuple):
    """The dotted paths of one ticket type's counters in the per-event document."""

    ordered: str
    held: str
    sold: str
    released: str
    refunded: str
    checked_in: str
    gross: str
    vat: str
    refunded_amount: str
    refunded_vat: str

    @classmethod
    def of(cls, ticket_type_id: str) -> TicketTypePaths:
        prefix = f"ticket_types.{ticket_type_id}"
        names = {"refunded_amount": "revenue_refunded"}
        return cls(*(f"{prefix}.{names.get(name, name)}" for name in cls._fields))


class SalesTally:
    """Folds events into what they add to each event's sales figures and timeline buckets.

    The same fold serves the `sales` projection (which writes `sets` with $set and
    `increments` with $inc, then starts a new tally for the next batch) and time travel
    (which folds one event's history from its start and reads the figures at once).
    `organizers` and `orders` are what earlier batches left behind that this one needs.
    Dotted paths name the fields of the per-event document, as MongoDB does.

    The fold runs once per event of every replay, so its hot paths are plain: counter paths
    are built once per ticket type, and timeline counters are added per event and second into
    lists indexed by position (`ORDERS_PLACED`, ...), spread into minute, hour and day
    buckets when they are read.
    """

    def __init__(
        self,
        organizers: Mapping[str, str] | None = None,
        orders: Mapping[str, OrderRecord] | None = None,
    ) -> None:
        self.organizers: dict[str, str] = dict(organizers or {})
        self.orders: dict[str, OrderRecord] = dict(orders or {})
        self.earlier_orders = frozenset(self.orders)
        """Orders this tally was given (recorded by earlier batches); the others it placed."""
        self.changed_orders: dict[str, OrderRecord] = {}
        self.sets: dict[str, dict[str, Any]] = {}
        self.increments: dict[str, dict[str, int]] = {}
        self.counted_buckets: dict[BucketKey, dict[str, int]] = {}
        self.seconds: dict[tuple[str, int], list[int]] = {}
        self.moments: dict[int, datetime] = {}
        self.ticket_type_paths: dict[str, TicketTypePaths] = {}

    # --- folding --------------------------------------------------------------------------

    def apply(self, data: DomainEvent, occurred_at: datetime) -> None:
        """Fold one event (in log order); events that do not change sales are ignored."""
        match data:  # the frequent types first: each case is a type check
            case OrderPlaced():
                self.placed(data, occurred_at)
            case OrderPaid():
                self.paid(data, occurred_at)
            case OrderCancelled():
                self.released(data.order_id, "cancelled", occurred_at)
            case OrderExpired():
                self.released(data.order_id, "expired", occurred_at)
            case TicketCheckedIn():
                self.checked_in(data, occurred_at)
            case CreditNoteIssued():
                self.credited(data, occurred_at)
            case EventDrafted():
                self.organizers[data.event_id] = data.organizer_id
                self.set(
                    data.event_id,
                    organizer_id=data.organizer_id,
                    title=data.title,
                    status="draft",
                    currency=CURRENCY,
                )
            case EventUpdated():
                self.set(data.event_id, title=data.title)
            case EventPublished():
                self.set(data.event_id, status="published")
            case EventCancelled():
                self.set(data.event_id, status="cancelled")
            case TicketTypeAdded() | TicketTypeChanged():
                prefix = f"ticket_types.{data.ticket_type_id}"
                self.set(
                    data.event_id,
                    **{
                        f"{prefix}.name": data.name,
                        f"{prefix}.price": data.price,
                        f"{prefix}.quantity": data.quantity,
                    },
                )
            case _:
                pass

    def placed(self, placed: OrderPlaced, occurred_at: datetime) -> None:
        event_id = placed.event_id
        organizer = self.organizers.get(event_id)
        if organizer is None:
            raise ValueError(f"order {placed.order_id} of unknown event {event_id}")
        lines = tuple(
            [
                OrderLineRecord(
                    ticket_type_id=line.ticket_type_id, quantity=line.quantity, amount=line.amount
                )
                for line in placed.items
            ]
        )
        record = OrderRecord(
            order_id=placed.order_id,
            event_id=event_id,
            organizer_id=organizer,
            placed_at=placed.placed_at,
            total_amount=placed.total_amount,
            lines=lines,
        )
        self.orders[record.order_id] = self.changed_orders[record.order_id] = record
        counters = self.counters_of(event_id)
        tickets = 0
        for line in lines:
            paths = self.paths_of(line.ticket_type_id)
            quantity = line.quantity
            counters[paths.ordered] = counters.get(paths.ordered, 0) + quantity
            counters[paths.held] = counters.get(paths.held, 0) + quantity
            tickets += quantity
        counters["orders.placed"] = counters.get("orders.placed", 0) + 1
        second = self.second_of(event_id, occurred_at)
        second[ORDERS_PLACED] += 1
        second[TICKETS_ORDERED] += tickets

    def paid(self, paid: OrderPaid, occurred_at: datetime) -> None:
        record = self.known_order(paid.order_id)
        if record.status == "paid":
            raise ValueError(f"order {paid.order_id} was paid twice")
        # A payment that lands after the hold was released takes the tickets from stock
        # again: they leave `released` instead of `held`, and the order leaves its outcome.
        late = record.status != "pending"
        self.remember(msgspec.structs.replace(record, status="paid"))
        counters = self.counters_of(record.event_id)
        tickets = gross = vat = 0
        for line in record.lines:
            paths = self.paths_of(line.ticket_type_id)
            quantity, amount = line.quantity, line.amount
            line_vat = vat_included_in(amount)
            taken_from = paths.released if late else paths.held
            counters[taken_from] = counters.get(taken_from, 0) - quantity
            counters[paths.sold] = counters.get(paths.sold, 0) + quantity
            counters[paths.gross] = counters.get(paths.gross, 0) + amount
            counters[paths.vat] = counters.get(paths.vat, 0) + line_vat
            tickets += quantity
            gross += amount
            vat += line_vat
        counters["orders.paid"] = counters.get("orders.paid", 0) + 1
        if late:
            outcome = f"orders.{record.status}"
            counters[outcome] = counters.get(outcome, 0) - 1
        if record.total_amount > 0:
            # Free orders are paid the moment they are placed; they would only pull the
            # median of the orders someone actually paid for towards zero.
            waited = (paid.paid_at - record.placed_at).total_seconds()
            edge = f"time_to_pay.{time_to_pay_bucket(waited)}"
            counters[edge] = counters.get(edge, 0) + 1
        second = self.order_second(record, occurred_at)
        second[ORDERS_PAID] += 1
        second[TICKETS_SOLD] += tickets
        second[GROSS] += gross
        second[VAT] += vat

    def released(self, order_id: str, outcome: str, occurred_at: datetime) -> None:
        record = self.known_order(order_id)
        if record.status != "pending":
            raise ValueError(f"order {order_id} is {record.status}, not pending")
        self.remember(msgspec.structs.replace(record, status=outcome))
        counters = self.counters_of(record.event_id)
        tickets = 0
        for line in record.lines:
            paths = self.paths_of(line.ticket_type_id)
            quantity = line.quantity
            counters[paths.held] = counters.get(paths.held, 0) - quantity
            counters[paths.released] = counters.get(paths.released, 0) + quantity
            tickets += quantity
        counted = f"orders.{outcome}"
        counters[counted] = counters.get(counted, 0) + 1
        second = self.order_second(record, occurred_at)
        second[RELEASED_BY_OUTCOME[outcome]] += 1
        second[TICKETS_RELEASED] += tickets

    def credited(self, note: CreditNoteIssued, occurred_at: datetime) -> None:
        """A completed refund's credit note: its (negative) lines say which of the order's
        lines gave tickets and money back, with the VAT split the invoice had."""
        record = self.known_order(note.order_id)
        counters = self.counters_of(record.event_id)
        tickets = amount = vat = 0
        for line in note.lines:
            if not 1 <= line.line <= len(record.lines):
                raise ValueError(f"credit note {note.number} names line {line.line}")
            paths = self.paths_of(record.lines[line.line - 1].ticket_type_id)
            counters[paths.refunded] = counters.get(paths.refunded, 0) - line.quantity
            counters[paths.refunded_amount] = counters.get(paths.refunded_amount, 0) - line.amount
            counters[paths.refunded_vat] = counters.get(paths.refunded_vat, 0) - line.vat_amount
            tickets -= line.quantity
            amount -= line.amount
            vat -= line.vat_amount
        refunded_tickets = record.refunded_tickets + tickets
        whole = sum(line.quantity for line in record.lines)
        self.remember(msgspec.structs.replace(record, refunded_tickets=refunded_tickets))
        second = self.order_second(record, occurred_at)
        if record.refunded_tickets < whole <= refunded_tickets:
            counters["orders.refunded"] = counters.get("orders.refunded", 0) + 1
            second[ORDERS_REFUNDED] += 1
        second[TICKETS_REFUNDED] += tickets
        second[REFUNDED] += amount
        second[REFUNDED_VAT] += vat

    def checked_in(self, checked: TicketCheckedIn, occurred_at: datetime) -> None:
        # A ticket's check-in is the only event of its stream, so it is never counted twice.
        if checked.event_id not in self.organizers:
            raise ValueError(f"ticket {checked.ticket_id} of unknown event {checked.event_id}")
        self.add(checked.event_id, {self.paths_of(checked.ticket_type_id).checked_in: 1})
        self.second_of(checked.event_id, occurred_at)[TICKETS_CHECKED_IN] += 1

    # --- bookkeeping ------------------------------------------------------------------------

    def known_order(self, order_id: str) -> OrderRecord:
        record = self.orders.get(order_id)
        if record is None:
            raise ValueError(f"order {order_id} was never placed")
        return record

    def remember(self, record: OrderRecord) -> None:
        self.orders[record.order_id] = record
        self.changed_orders[record.order_id] = record

    def set(self, event_id: str, **values: Any) -> None:
        self.sets.setdefault(event_id, {}).update(values)

    def counters_of(self, event_id: str) -> dict[str, int]:
        """The increments of one event's document (dotted paths), created when first used."""
        counters = self.increments.get(event_id)
        if counters is None:
            counters = self.increments[event_id] = {}
        return counters

    def paths_of(self, ticket_type_id: str) -> TicketTypePaths:
        # The dotted paths are built once per ticket type, not once per event folded.
        paths = self.ticket_type_paths.get(ticket_type_id)
        if paths is None:
            paths = self.ticket_type_paths[ticket_type_id] = TicketTypePaths.of(ticket_type_id)
        return paths

    def add(self, event_id: str, deltas: Mapping[str, int]) -> None:
        counters = self.counters_of(event_id)
        for path, delta in deltas.items():
            counters[path] = counters.get(path, 0) + delta

    def order_second(self, record: OrderRecord, occurred_at: datetime) -> list[int]:
        # A bucket carries its event's organizer (for per-organizer figures), which an
        # order read back from an earlier batch brings along.
        self.organizers.setdefault(record.event_id, record.organizer_id)
        return self.second_of(record.event_id, occurred_at)

    def second_of(self, event_id: str, occurred_at: datetime) -> list[int]:
        """The timeline counters of `event_id` in the whole second of `occurred_at`.

        Counted per event and second first (an add by position per counter), and spread
        into the minute, hour and day buckets only when the buckets are read, or when many
        seconds are waiting: three buckets per event folded cost three times as much.
        """
        key = (event_id, int(occurred_at.timestamp()))
        counters = self.seconds.get(key)
        if counters is None:
            if len(self.seconds) >= SECONDS_KEPT:
                self.spread_seconds()
            counters = self.seconds[key] = [0] * len(BUCKET_COUNTERS)
        return counters

    def spread_seconds(self) -> None:
        """Add the counters kept per second to their minute, hour and day buckets."""
        for (event_id, seconds), counters in self.seconds.items():
            changed = [
                (name, delta)
                for name, delta in zip(BUCKET_COUNTERS, counters, strict=True)
                if delta
            ]
            # Whole seconds since the epoch: UTC minutes, hours and days all start at a
            # multiple of their width; each bucket's datetime is made once.
            for granularity, width in BUCKET_SECONDS:
                start = seconds - seconds % width
                moment = self.moments.get(start)
                if moment is None:
                    moment = self.moments[start] = datetime.fromtimestamp(start, UTC)
                bucket = self.counted_buckets.setdefault((event_id, granularity, moment), {})
                for name, delta in changed:
                    bucket[name] = bucket.get(name, 0) + delta
        self.seconds.clear()

    @property
    def buckets(self) -> dict[BucketKey, dict[str, int]]:
        """What the events folded add to each (event, granularity, bucket start)."""
        self.spread_seconds()
        return self.counted_buckets

    # --- reading the figures of a tally that started from an event's beginning --------------

    def document(self, event_id: str) -> dict[str, Any] | None:
        """The per-event document the projection would hold, or None when nothing happened."""
        if event_id not in self.sets and event_id not in self.increments:
            return None
        document: dict[str, Any] = {"_id": event_id}
        for path, value in self.sets.get(event_id, {}).items():
            put_path(document, path, value)
        for path, delta in self.increments.get(event_id, {}).items():
            put_path(document, path, delta)
        return document

    def bucket_documents(
        self, event_id: str, granularity: Granularity, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Timeline buckets of one event starting in [start, end), oldest first."""
        return [
            {"start": moment, **counters}
            for (owner, width, moment), counters in sorted(
                self.buckets.items(), key=lambda item: item[0][2]
            )
            if owner == event_id and width is granularity and start <= moment < end
        ]


def put_path(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        document = document.setdefault(name, {})
    document[leaf] = value


# --- figures as the API answers them -----------------------------------------------------


class TicketFigures(msgspec.Struct, kw_only=True):
    """Tickets ordered (ever held), held now, sold, released (held, then cancelled or
    expired), refunded and checked in."""

    ordered: int = 0
    held: int = 0
    sold: int = 0
    released: int = 0
    refunded: int = 0
    checked_in: int = 0


class RevenueFigures(msgspec.Struct, kw_only=True):
    """Integer VND: `gross` of paid orders (VAT included) and its `vat`; `refunded` by
    credit notes (VAT included) and its `refunded_vat`; `net` is what stays, without VAT:
    (gross - vat) - (refunded - refunded_vat)."""

    gross: int = 0
    vat: int = 0
    net: int = 0
    refunded: int = 0
    refunded_vat: int = 0


class TicketTypeSales(msgspec.Struct, kw_only=True):
    id: str
    name: str
    price: int
    quantity: int
    tickets: TicketFigures
    revenue: RevenueFigures


class OrderFigures(msgspec.Struct, kw_only=True):
    placed: int = 0
    pending: int = 0
    paid: int = 0
    cancelled: int = 0
    expired: int = 0
    refunded: int = 0


class Conversion(msgspec.Struct, kw_only=True):
    """Orders paid of orders placed (a hold that became a sale), and the same for tickets."""

    orders_placed: int
    orders_paid: int
    order_rate: float | None
    tickets_ordered: int
    tickets_sold: int
    ticket_rate: float | None


class TimeToPay(msgspec.Struct, kw_only=True):
    """From placing to paying, over orders that had something to pay. The median is the
    lower edge of its histogram bucket: exact to `resolution_seconds`."""

    orders: int
    median_seconds: int | None
    resolution_seconds: int | None


class TimelineBucket(msgspec.Struct, kw_only=True):
    start: datetime
    orders_placed: int = 0
    orders_paid: int = 0
    orders_cancelled: int = 0
    orders_expired: int = 0
    orders_refunded: int = 0
    tickets_ordered: int = 0
    tickets_sold: int = 0
    tickets_released: int = 0
    tickets_refunded: int = 0
    tickets_checked_in: int = 0
    gross: int = 0
    vat: int = 0
    net: int = 0
    refunded: int = 0
    refunded_vat: int = 0


class Timeline(msgspec.Struct, kw_only=True):
    """Buckets with activity that start in [`from`, `to`), oldest first (empty ones left out)."""

    bucket: Granularity
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    items: list[TimelineBucket]


class EventSales(msgspec.Struct, kw_only=True):
    event_id: str
    organizer_id: str
    title: str
    status: str | None
    as_of: datetime | None
    currency: str
    vat_rate_percent: int
    ticket_types: list[TicketTypeSales]
    tickets: TicketFigures
    revenue: RevenueFigures
    orders: OrderFigures
    conversion: Conversion
    time_to_pay: TimeToPay
    timeline: Timeline


def _count(document: Mapping[str, Any], name: str) -> int:
    return int(document.get(name) or 0)


def ticket_type_sales(ticket_type_id: str, document: Mapping[str, Any]) -> TicketTypeSales:
    tickets = TicketFigures(**{name: _count(document, name) for name in TICKET_COUNTERS})
    revenue = revenue_figures(
        gross=_count(document, "gross"),
        vat=_count(document, "vat"),
        refunded=_count(document, "revenue_refunded"),
        refunded_vat=_count(document, "refunded_vat"),
    )
    return TicketTypeSales(
        id=ticket_type_id,
        name=str(document.get("name", "")),
        price=_count(document, "price"),
        quantity=_count(document, "quantity"),
        tickets=tickets,
        revenue=revenue,
    )


def net_revenue(counters: Mapping[str, int]) -> int:
    """What stays of the money, without VAT: (gross - vat) - (refunded - refunded_vat)."""
    return (counters["gross"] - counters["vat"]) - (counters["refunded"] - counters["refunded_vat"])


def revenue_figures(*, gross: int, vat: int, refunded: int, refunded_vat: int) -> RevenueFigures:
    counters = {"gross": gross, "vat": vat, "refunded": refunded, "refunded_vat": refunded_vat}
    return RevenueFigures(net=net_revenue(counters), **counters)


def rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def timeline_bucket(document: Mapping[str, Any]) -> TimelineBucket:
    counters = {name: _count(document, name) for name in BUCKET_COUNTERS}
    start: datetime = document["start"]
    return TimelineBucket(
        start=start if start.tzinfo else start.replace(tzinfo=UTC),
        net=net_revenue(counters),
        **counters,
    )


def event_sales(
    *,
    event_id: str,
    organizer_id: str,
    title: str,
    document: Mapping[str, Any] | None,
    timeline: Timeline,
    as_of: datetime | None = None,
) -> EventSales:
    """The figures of one event from its per-event document (projection or tally)."""
    document = document or {}
    ticket_types = [
        ticket_type_sales(ticket_type_id, fields)
        for ticket_type_id, fields in (document.get("ticket_types") or {}).items()
    ]
    tickets = TicketFigures(
        **{
            name: sum(getattr(sales.tickets, name) for sales in ticket_types)
            for name in TICKET_COUNTERS
        }
    )
    revenue = revenue_figures(
        **{
            name: sum(getattr(sales.revenue, name) for sales in ticket_types)
            for name in REVENUE_COUNTERS
        }
    )
    counts = document.get("orders") or {}
    orders = OrderFigures(**{name: _count(counts, name) for name in ORDER_COUNTERS})
    orders.pending = orders.placed - orders.paid - orders.cancelled - orders.expired
    histogram = {
        int(edge): int(count) for edge, count in (document.get("time_to_pay") or {}).items()
    }
    median = median_bucket(histogram)
    return EventSales(
        event_id=event_id,
        organizer_id=organizer_id,
        title=title,
        status=document.get("status"),
        as_of=as_of,
        currency=str(document.get("currency", CURRENCY)),
        vat_rate_percent=VAT_RATE_PERCENT,
        ticket_types=ticket_types,
        tickets=tickets,
        revenue=revenue,
        orders=orders,
        conversion=Conversion(
            orders_placed=orders.placed,
            orders_paid=orders.paid,
            order_rate=rate(orders.paid, orders.placed),
            tickets_ordered=tickets.ordered,
            tickets_sold=tickets.sold,
            ticket_rate=rate(tickets.sold, tickets.ordered),
        ),
        time_to_pay=TimeToPay(
            orders=sum(histogram.values()),
            median_seconds=median,
            resolution_seconds=None if median is None else time_to_pay_width(median),
        ),
        timeline=timeline,
    )


def fold_sales(events: Iterable[tuple[DomainEvent, datetime]]) -> SalesTally:
    """A tally of (event, occurred_at) pairs in log order, from an empty start."""
    tally = SalesTally()
    for data, occurred_at in events:
        tally.apply(data, occurred_at)
    return tally
