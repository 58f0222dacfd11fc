"""Sales figures: one event's, live or as of a time (folding its log), and per organizer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.catalog import CatalogEvent
from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.orders import STREAM_KIND as ORDER_STREAM_KIND
from eventhunting.domain.orders import OrderPlaced
from eventhunting.domain.sales import (
    BUCKET_COUNTERS,
    BUCKET_WIDTH,
    EventSales,
    Granularity,
    SalesTally,
    Timeline,
    bucket_start,
    event_sales,
    net_revenue,
    timeline_bucket,
)
from eventhunting.domain.tickets import TICKET_STREAM_KIND, TicketCheckedIn
from eventhunting.projections.sales import (
    find_event_sales,
    find_timeline,
    organizer_days,
    timeline_documents,
)
from eventhunting.services.catalog import EVENTS
from eventhunting.store import keys
from eventhunting.store.append import EventStore, decode_log_entry, field_of, stream_range, text
from eventhunting.store.envelope import stored_event_decoder

MAX_TIMELINE_BUCKETS = 10_080
"""Most buckets one timeline may span: a week of minutes, 420 days of hours."""
ORGANIZER_DAYS_DEFAULT = 30
ORGANIZER_DAYS_MAX = 366
HISTORY_PAGE = 1_000
"""Partition-log entries read per XRANGE when folding a history for `as_of`."""
FIRST_EVENT_OF_OTHER_STREAMS = {
    ORDER_STREAM_KIND: "OrderPlaced",
    TICKET_STREAM_KIND: "TicketCheckedIn",
}
"""Besides the event's own stream, the kinds of stream an event's sales are folded from, by
the event that ties such a stream to the event (it carries the `event_id`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SalesQuery:
    """Which figures: the timeline's bucket width and range, and optionally a past moment."""

    granularity: Granularity = Granularity.HOUR
    start: datetime | None = None
    end: datetime | None = None
    as_of: datetime | None = None


class OrganizerDay(msgspec.Struct, kw_only=True):
    """One organizer's sales on one UTC day, summed over their events."""

    organizer_id: str
    day: datetime
    events: int
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


class OrganizerDays(msgspec.Struct, kw_only=True):
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    items: list[OrganizerDay]


def timeline_range(query: SalesQuery, now: datetime) -> tuple[datetime, datetime]:
    """[from, to) of the timeline: by default the span of MAX_TIMELINE_BUCKETS buckets that
    ends with the bucket holding `as_of` (or now)."""
    width = BUCKET_WIDTH[query.granularity]
    end = query.end
    if end is None:
        end = bucket_start(query.as_of or now, query.granularity) + width
    start = query.start if query.start is not None else end - width * MAX_TIMELINE_BUCKETS
    if start >= end:
        raise InvalidInput("must be later than from", field="to")
    if end - start > width * MAX_TIMELINE_BUCKETS:
        raise InvalidInput(
            f"a timeline spans at most {MAX_TIMELINE_BUCKETS} buckets of a {query.granularity};"
            " narrow from/to or choose a wider bucket",
            field="from",
            code="timeline_too_long",
        )
    return start, end


def in_catalog_order(sales: EventSales, event: CatalogEvent) -> EventSales:
    """Ticket types in the order the event lists them (the read model keeps no order)."""
    rank = {ticket_type.id: index for index, ticket_type in enumerate(event.ticket_types)}
    sales.ticket_types.sort(key=lambda t: (rank.get(t.id, len(rank)), t.id))
    return sales


class SalesService:
    """Organizers' and admins' sales figures, from the `sales` read model or the event log."""

    def __init__(
        self,
        store: EventStore,
        database: AsyncDatabase[dict[str, Any]],
        load_event: Callable[[str], Awaitable[CatalogEvent]],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.database = database
        self.load_event = load_event
        self.clock = clock

    async def event_sales(
        self, event_id: str, query: SalesQuery, *, account_id: str, is_admin: bool
    ) -> EventSales:
        """The event's figures now (read model) or as they stood at `query.as_of` (its log),
        for its organizer or an admin (a draft is 404 to anyone else, an event 403)."""
        event = await self.load_event(event_id)
        event.ensure_managed_by(account_id, is_admin=is_admin)
        start, end = timeline_range(query, self.clock())
        if query.as_of is None:
            document = await find_event_sales(self.database, event_id)
            buckets = timeline_documents(
                await find_timeline(self.database, event_id, query.granularity, start, end)
            )
        else:
            stored = await find_event_sales(self.database, event_id)
            first = None if stored is None else stored.get("first_position")
            tally = await self.history_until(event_id, query.as_of, first_position=first)
            document = tally.document(event_id)
            buckets = tally.bucket_documents(event_id, query.granularity, start, end)
        sales = event_sales(
            event_id=event.id,
            organizer_id=event.organizer_id,
            title=event.title,
            document=document,
            timeline=Timeline(
                bucket=query.granularity,
                start=start,
                end=end,
                items=[timeline_bucket(bucket) for bucket in buckets],
            ),
            as_of=query.as_of,
        )
        return in_catalog_order(sales, event)

    async def history_until(
        self, event_id: str, as_of: datetime, *, first_position: str | None = None
    ) -> SalesTally:
        """Fold the event's history up to `as_of` from its partition log.

        Reads the entries of the event's partition from its first entry (or the log's start)
        up to the millisecond of `as_of` (log entry ids are milliseconds), and folds those of
        the event's stream, of its orders' streams and of its tickets' check-ins: the work is
        one partition's entries over that span, whatever the rest of the system holds.
        """
        partition = keys.partition_of(event_id, self.store.partitions)
        event_stream = EVENTS.stream(event_id)
        order_streams: set[str] = set()
        tally = SalesTally()
        end = str(max(int(as_of.timestamp() * 1000), 0))
        start = first_position or "-"
        while True:
            entries = await stream_range(
                self.store.redis, keys.log_key(partition), start, end, count=HISTORY_PAGE
            )
            for entry_id, fields in entries:
                stream = text(field_of(fields, "s"))
                if stream != event_stream and stream not in order_streams:
                    # An order's stream is folded from its OrderPlaced of this event on; a
                    # ticket's stream holds only its check-in.
                    kind = stream.partition("-")[0]
                    wanted = FIRST_EVENT_OF_OTHER_STREAMS.get(kind)
                    if wanted is None:
                        continue
                    if stored_event_decoder.decode(field_of(fields, "e")).type != wanted:
                        continue
                envelope = decode_log_entry(self.store.registry, partition, entry_id, fields)
                if isinstance(envelope.data, OrderPlaced | TicketCheckedIn):
                    if envelope.data.event_id != event_id:
                        continue
                    if isinstance(envelope.data, OrderPlaced):
                        order_streams.add(stream)
                tally.apply(envelope.data, envelope.occurred_at)
            if len(entries) < HISTORY_PAGE:
                return tally
            start = "(" + text(entries[-1][0])

    async def organizer_days(self, start: datetime | None, end: datetime | None) -> OrganizerDays:
        """Per organizer and UTC day, days starting in [start, end) (the last 30 by default)."""
        day = BUCKET_WIDTH[Granularity.DAY]
        if end is None:
            end = bucket_start(self.clock(), Granularity.DAY) + day
        if start is None:
            start = end - day * ORGANIZER_DAYS_DEFAULT
        if start >= end:
            raise InvalidInput("must be later than from", field="to")
        if end - start > day * ORGANIZER_DAYS_MAX:
            raise InvalidInput(
                f"at most {ORGANIZER_DAYS_MAX} days at once", field="from", code="range_too_long"
            )
        rows = await organizer_days(self.database, start, end)
        items = []
        for row in rows:
            counters = {name: int(row.get(name) or 0) for name in BUCKET_COUNTERS}
            items.append(
                OrganizerDay(
                    organizer_id=row["_id"]["organizer_id"],
                    day=timeline_documents([{"start": row["_id"]["day"]}])[0]["start"],
                    events=int(row["events"]),
                    net=net_revenue(counters),
                    **counters,
                )
            )
        return OrganizerDays(start=start, end=end, items=items)
