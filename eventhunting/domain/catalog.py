"""The event catalog: events and their ticket types, their rules, folded from one stream."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypedDict, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from eventhunting.domain.events import Command, DomainEvent, RecordedEvent, registry
from eventhunting.domain.events import fold as fold_history
from eventhunting.domain.slugs import slugify

STREAM_KIND = "event"

MAX_TITLE_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 20_000
MAX_VENUE_NAME_LENGTH = 200
MAX_VENUE_ADDRESS_LENGTH = 500
MAX_TOPICS = 10
MAX_TOPIC_LENGTH = 40
MAX_TICKET_TYPE_NAME_LENGTH = 100
MAX_TICKET_TYPES = 50
MAX_PRICE = 1_000_000_000
"""VND; a ceiling that catches a misplaced digit, far above any real ticket."""
MAX_QUANTITY = 1_000_000
MAX_PER_ORDER = 100
MAX_TICKETS_PER_CUSTOMER = 1_000
MAX_EVENT_DURATION = timedelta(days=366)
MAX_SCHEDULE_AHEAD = timedelta(days=3 * 366)
"""How far in the future an event may start; later dates are almost always typos."""


class EventStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class Venue(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str
    address: str


# --- events -------------------------------------------------------------------------------


@registry.event("EventDrafted", stream_kind=STREAM_KIND)
class EventDrafted(DomainEvent, frozen=True, kw_only=True):
    """An organizer drafted an event; only they and admins see it until it is published.
    `province` is the slug of a current provincial-level unit, `topics` are slugs."""

    event_id: str
    organizer_id: str
    title: str
    description: str
    venue: Venue
    province: str
    starts_at: datetime
    ends_at: datetime
    topics: tuple[str, ...] = ()
    max_tickets_per_customer: int | None = None
    restock_refunds: bool = True
    """Refunded tickets go back on sale while the event has not started."""


@registry.event("EventUpdated", stream_kind=STREAM_KIND)
class EventUpdated(DomainEvent, frozen=True, kw_only=True):
    """The event's details changed; carries every detail as it is after the change."""

    event_id: str
    title: str
    description: str
    venue: Venue
    province: str
    starts_at: datetime
    ends_at: datetime
    topics: tuple[str, ...] = ()
    max_tickets_per_customer: int | None = None
    restock_refunds: bool = True
    """Refunded tickets go back on sale while the event has not started."""


@registry.event("EventPublished", stream_kind=STREAM_KIND)
class EventPublished(DomainEvent, frozen=True, kw_only=True):
    """The event is public: listed in the catalog and on sale within its sale windows."""

    event_id: str


@registry.event("EventCancelled", stream_kind=STREAM_KIND)
class EventCancelled(DomainEvent, frozen=True, kw_only=True):
    """The event will not take place; nothing more is sold and it can no longer change."""

    event_id: str
    reason: str | None = None


@registry.event("TicketTypeAdded", stream_kind=STREAM_KIND)
class TicketTypeAdded(DomainEvent, frozen=True, kw_only=True):
    """A ticket type was added to an event. `price` is integer VND (0 = free); a missing
    sale start means on sale from publication, a missing sale end means until the event ends."""

    event_id: str
    ticket_type_id: str
    name: str
    price: int
    quantity: int
    sale_starts_at: datetime | None = None
    sale_ends_at: datetime | None = None
    max_per_order: int | None = None


@registry.event("TicketTypeChanged", stream_kind=STREAM_KIND)
class TicketTypeChanged(DomainEvent, frozen=True, kw_only=True):
    """A ticket type changed; carries every field as it is after the change, and the
    quantity before it (the capacity counter moved by `quantity - previous_quantity`)."""

    event_id: str
    ticket_type_id: str
    name: str
    price: int
    quantity: int
    previous_quantity: int
    sale_starts_at: datetime | None = None
    sale_ends_at: datetime | None = None
    max_per_order: int | None = None


CatalogDomainEvent = (
    EventDrafted
    | EventUpdated
    | EventPublished
    | EventCancelled
    | TicketTypeAdded
    | TicketTypeChanged
)

# --- errors -------------------------------------------------------------------------------


class EventNotFound(NotFound):
    code = "event_not_found"


class TicketTypeNotFound(NotFound):
    code = "ticket_type_not_found"


# --- state --------------------------------------------------------------------------------


class TicketType(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    price: int
    quantity: int
    sale_starts_at: datetime | None = None
    sale_ends_at: datetime | None = None
    max_per_order: int | None = None


class CatalogEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as its stream says it is now, at stream `version`."""

    id: str
    version: int
    status: EventStatus
    organizer_id: str
    title: str
    description: str
    venue: Venue
    province: str
    starts_at: datetime
    ends_at: datetime
    topics: tuple[str, ...]
    max_tickets_per_customer: int | None
    ticket_types: tuple[TicketType, ...] = ()
    restock_refunds: bool = True
    drafted_at: datetime
    updated_at: datetime
    published_at: datetime | None = None
    cancelled_at: datetime | None = None

    def ticket_type(self, ticket_type_id: str) -> TicketType:
        for ticket_type in self.ticket_types:
            if ticket_type.id == ticket_type_id:
                return ticket_type
        raise TicketTypeNotFound(f"event {self.id} has no ticket type {ticket_type_id}")

    def sale_window(self, ticket_type: TicketType) -> tuple[datetime | None, datetime]:
        """When `ticket_type` is on sale: from its start (None = publication) to its end."""
        return ticket_type.sale_starts_at, ticket_type.sale_ends_at or self.ends_at

    def is_on_sale(self, ticket_type: TicketType, now: datetime) -> bool:
        if self.status is not EventStatus.PUBLISHED:
            return False
        starts, ends = self.sale_window(ticket_type)
        return (starts is None or starts <= now) and now < ends

    def is_public(self) -> bool:
        """Was ever published: listed, and visible to everyone (cancelled ones marked)."""
        return self.published_at is not None

    def may_manage(self, account_id: str, *, is_admin: bool) -> bool:
        return is_admin or account_id == self.organizer_id

    def ensure_visible_to(self, account_id: str | None, *, is_admin: bool) -> None:
        """Drafts do not exist for anyone but their organizer and admins (404, not 403)."""
        if self.is_public():
            return
        if account_id is not None and self.may_manage(account_id, is_admin=is_admin):
            return
        raise EventNotFound(f"no event {self.id}")

    def ensure_managed_by(self, account_id: str, *, is_admin: bool) -> None:
        self.ensure_visible_to(account_id, is_admin=is_admin)
        if not self.may_manage(account_id, is_admin=is_admin):
            raise Forbidden(
                "only the event's organizer or an admin may change it", code="not_event_organizer"
            )


def evolve(state: CatalogEvent | None, recorded: RecordedEvent) -> CatalogEvent:
    """The state after one more event of the stream (`recorded.version` is its position)."""
    event, version, occurred_at = recorded.data, recorded.version, recorded.occurred_at
    if isinstance(event, EventDrafted):
        return CatalogEvent(
            id=event.event_id,
            version=version,
            status=EventStatus.DRAFT,
            organizer_id=event.organizer_id,
            title=event.title,
            description=event.description,
            venue=event.venue,
            province=event.province,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            topics=event.topics,
            max_tickets_per_customer=event.max_tickets_per_customer,
            restock_refunds=event.restock_refunds,
            drafted_at=occurred_at,
            updated_at=occurred_at,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before EventDrafted")
    if isinstance(event, EventUpdated):
        return msgspec.structs.replace(
            state,
            version=version,
            updated_at=occurred_at,
            title=event.title,
            description=event.description,
            venue=event.venue,
            province=event.province,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            topics=event.topics,
            max_tickets_per_customer=event.max_tickets_per_customer,
            restock_refunds=event.restock_refunds,
        )
    if isinstance(event, EventPublished):
        return msgspec.structs.replace(
            state,
            version=version,
            updated_at=occurred_at,
            status=EventStatus.PUBLISHED,
            published_at=occurred_at,
        )
    if isinstance(event, EventCancelled):
        return msgspec.structs.replace(
            state,
            version=version,
            updated_at=occurred_at,
            status=EventStatus.CANCELLED,
            cancelled_at=occurred_at,
        )
    if isinstance(event, TicketTypeAdded | TicketTypeChanged):
        ticket_type = TicketType(
            id=event.ticket_type_id,
            name=event.name,
            price=event.price,
            quantity=event.quantity,
            sale_starts_at=event.sale_starts_at,
            sale_ends_at=event.sale_ends_at,
            max_per_order=event.max_per_order,
        )
        others = tuple(t for t in state.ticket_types if t.id != event.ticket_type_id)
        if isinstance(event, TicketTypeAdded):
            ticket_types = (*others, ticket_type)
        else:
            ticket_types = tuple(
                ticket_type if t.id == event.ticket_type_id else t for t in state.ticket_types
            )
        return msgspec.structs.replace(
            state, version=version, updated_at=occurred_at, ticket_types=ticket_types
        )
    # Events of other kinds never reach an event stream; ignoring them keeps folding total.
    return msgspec.structs.replace(state, version=version)


def fold(history: Iterable[RecordedEvent]) -> CatalogEvent | None:
    """The current state of an event from its stream (None when the stream is empty)."""
    return fold_history(evolve, history)


# --- commands -----------------------------------------------------------------------------
# A command is what its caller asked: the event it addresses, who asks (`by`) and the body
# as sent (`province` resolved to its slug). What the server supplies, the time and the ids
# it draws, are the decision's keyword arguments, so an Idempotency-Key's fingerprint
# (`fingerprint_of(command)`) covers exactly the request.


class NewTicketType(msgspec.Struct, frozen=True, kw_only=True):
    """A ticket type as an organizer describes it, before it has an id."""

    name: str
    price: int
    quantity: int
    sale_starts_at: datetime | None = None
    sale_ends_at: datetime | None = None
    max_per_order: int | None = None


class CreateEvent(Command, frozen=True, kw_only=True):
    """Draft a new event, organized by `by`, with its first ticket types."""

    by: Actor
    title: str
    description: str
    venue: Venue
    province: str
    starts_at: datetime
    ends_at: datetime
    topics: tuple[str, ...] = ()
    max_tickets_per_customer: int | None = None
    restock_refunds: bool = True
    ticket_types: tuple[NewTicketType, ...] = ()


class UpdateEvent(Command, frozen=True, kw_only=True):
    """Change an event's details; UNSET leaves a detail as it is."""

    event_id: str
    by: Actor
    title: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    venue: Venue | UnsetType = UNSET
    province: str | UnsetType = UNSET
    starts_at: datetime | UnsetType = UNSET
    ends_at: datetime | UnsetType = UNSET
    topics: tuple[str, ...] | UnsetType = UNSET
    max_tickets_per_customer: int | UnsetType | None = UNSET
    restock_refunds: bool | UnsetType = UNSET


class PublishEvent(Command, frozen=True, kw_only=True):
    """Make a draft public."""

    event_id: str
    by: Actor


class CancelEvent(Command, frozen=True, kw_only=True):
    """Call the event off, for good."""

    event_id: str
    by: Actor
    reason: str | None = None


class AddTicketType(Command, frozen=True, kw_only=True):
    """Add a ticket type (with its own inventory) to an event."""

    event_id: str
    by: Actor
    ticket_type: NewTicketType


class ChangeTicketType(Command, frozen=True, kw_only=True):
    """Change one ticket type; UNSET leaves a field as it is, None clears an optional one."""

    event_id: str
    ticket_type_id: str
    by: Actor
    name: str | UnsetType = UNSET
    price: int | UnsetType = UNSET
    quantity: int | UnsetType = UNSET
    sale_starts_at: datetime | UnsetType | None = UNSET
    sale_ends_at: datetime | UnsetType | None = UNSET
    max_per_order: int | UnsetType | None = UNSET


# --- decisions ----------------------------------------------------------------------------


def require_event(state: CatalogEvent | None, event_id: str) -> CatalogEvent:
    """The event, or 404 `event_not_found` when its stream is empty."""
    if state is None:
        raise EventNotFound(f"no event {event_id}")
    return state


def managed_event(state: CatalogEvent | None, event_id: str, by: Actor) -> CatalogEvent:
    """The event, when `by` may change it: its organizer or an admin (a draft is 404 to
    anyone else, a published event 403 `not_event_organizer`)."""
    event = require_event(state, event_id)
    event.ensure_managed_by(by.account_id, is_admin=by.is_admin)
    return event


def decide_create_event(
    state: CatalogEvent | None,
    command: CreateEvent,
    *,
    event_id: str,
    ticket_type_ids: Sequence[str],
    now: datetime,
) -> list[DomainEvent]:
    """Draft an event with its initial ticket types (one TicketTypeAdded each), under the
    ids the server drew."""
    if state is not None:
        raise Conflict(f"event {event_id} exists already", code="event_exists")
    if len(ticket_type_ids) != len(command.ticket_types):
        raise ValueError("one ticket type id is needed per drafted ticket type")
    if len(command.ticket_types) > MAX_TICKET_TYPES:
        raise InvalidInput(
            f"an event has at most {MAX_TICKET_TYPES} ticket types", field="ticket_types"
        )
    drafted = EventDrafted(
        event_id=event_id,
        organizer_id=command.by.account_id,
        **_checked_details(
            title=command.title,
            description=command.description,
            venue=command.venue,
            province=command.province,
            starts_at=command.starts_at,
            ends_at=command.ends_at,
            topics=command.topics,
            max_tickets_per_customer=command.max_tickets_per_customer,
            restock_refunds=command.restock_refunds,
            now=now,
            starts_at_changed=True,
        ),
    )
    added: list[DomainEvent] = []
    names: set[str] = set()
    for index, (ticket_type_id, ticket_type) in enumerate(
        zip(ticket_type_ids, command.ticket_types, strict=True)
    ):
        checked = _checked_ticket_type(
            name=ticket_type.name,
            price=ticket_type.price,
            quantity=ticket_type.quantity,
            sale_starts_at=ticket_type.sale_starts_at,
            sale_ends_at=ticket_type.sale_ends_at,
            max_per_order=ticket_type.max_per_order,
            event_ends_at=drafted.ends_at,
            prefix=f"ticket_types[{index}].",
        )
        _ensure_unique_name(checked.name, names, field=f"ticket_types[{index}].name")
        names.add(_name_key(checked.name))
        added.append(_ticket_type_added(event_id, ticket_type_id, checked))
    return [drafted, *added]


def decide_update_event(
    state: CatalogEvent | None, command: UpdateEvent, *, now: datetime
) -> list[DomainEvent]:
    """Change the event's details; nothing when they are already as asked."""
    state = managed_event(state, command.event_id, command.by)
    _ensure_not_cancelled(state)
    starts_at = _pick(command.starts_at, state.starts_at)
    details = _checked_details(
        title=_pick(command.title, state.title),
        description=_pick(command.description, state.description),
        venue=_pick(command.venue, state.venue),
        province=_pick(command.province, state.province),
        starts_at=starts_at,
        ends_at=_pick(command.ends_at, state.ends_at),
        topics=_pick(command.topics, state.topics),
        max_tickets_per_customer=_pick(
            command.max_tickets_per_customer, state.max_tickets_per_customer
        ),
        restock_refunds=_pick(command.restock_refunds, state.restock_refunds),
        now=now,
        starts_at_changed=_instant(starts_at, "starts_at") != state.starts_at,
    )
    ends_at = details["ends_at"]
    for ticket_type in state.ticket_types:
        if ticket_type.sale_ends_at is not None and ticket_type.sale_ends_at > ends_at:
            raise InvalidInput(
                f"ticket type {ticket_type.name!r} is on sale until after the new end;"
                " change its sale window first",
                field="ends_at",
                code="invalid_sale_window",
            )
        if ticket_type.sale_starts_at is not None and ticket_type.sale_starts_at >= ends_at:
            raise InvalidInput(
                f"ticket type {ticket_type.name!r} goes on sale after the new end",
                field="ends_at",
                code="invalid_sale_window",
            )
    updated = EventUpdated(event_id=state.id, **details)
    current = EventUpdated(
        event_id=state.id,
        title=state.title,
        description=state.description,
        venue=state.venue,
        province=state.province,
        starts_at=state.starts_at,
        ends_at=state.ends_at,
        topics=state.topics,
        max_tickets_per_customer=state.max_tickets_per_customer,
        restock_refunds=state.restock_refunds,
    )
    return [] if updated == current else [updated]


def decide_publish_event(
    state: CatalogEvent | None, command: PublishEvent, *, now: datetime
) -> list[DomainEvent]:
    """Make a draft public; it needs a ticket type and must not have ended."""
    state = managed_event(state, command.event_id, command.by)
    _ensure_not_cancelled(state)
    if state.status is EventStatus.PUBLISHED:
        raise Conflict("the event is already published", code="event_already_published")
    if not state.ticket_types:
        raise Conflict(
            "an event needs at least one ticket type to be published", code="no_ticket_types"
        )
    if state.ends_at <= now:
        raise Conflict("the event has already ended", code="event_ended")
    return [EventPublished(event_id=state.id)]


def decide_cancel_event(state: CatalogEvent | None, command: CancelEvent) -> list[DomainEvent]:
    state = managed_event(state, command.event_id, command.by)
    _ensure_not_cancelled(state)
    return [EventCancelled(event_id=state.id, reason=command.reason)]


def decide_add_ticket_type(
    state: CatalogEvent | None, command: AddTicketType, *, ticket_type_id: str
) -> list[DomainEvent]:
    """Add a ticket type under the id the server drew."""
    state = managed_event(state, command.event_id, command.by)
    _ensure_not_cancelled(state)
    if len(state.ticket_types) >= MAX_TICKET_TYPES:
        raise Conflict(
            f"an event has at most {MAX_TICKET_TYPES} ticket types", code="too_many_ticket_types"
        )
    new = command.ticket_type
    checked = _checked_ticket_type(
        name=new.name,
        price=new.price,
        quantity=new.quantity,
        sale_starts_at=new.sale_starts_at,
        sale_ends_at=new.sale_ends_at,
        max_per_order=new.max_per_order,
        event_ends_at=state.ends_at,
    )
    _ensure_unique_name(checked.name, {_name_key(t.name) for t in state.ticket_types})
    return [_ticket_type_added(state.id, ticket_type_id, checked)]


def decide_change_ticket_type(
    state: CatalogEvent | None, command: ChangeTicketType
) -> list[DomainEvent]:
    """Change a ticket type. A lower quantity must stay >= held + sold: the caller's append
    checks that atomically against the inventory counters, since holds race this change."""
    state = managed_event(state, command.event_id, command.by)
    _ensure_not_cancelled(state)
    current = state.ticket_type(command.ticket_type_id)
    checked = _checked_ticket_type(
        name=_pick(command.name, current.name),
        price=_pick(command.price, current.price),
        quantity=_pick(command.quantity, current.quantity),
        sale_starts_at=_pick(command.sale_starts_at, current.sale_starts_at),
        sale_ends_at=_pick(command.sale_ends_at, current.sale_ends_at),
        max_per_order=_pick(command.max_per_order, current.max_per_order),
        event_ends_at=state.ends_at,
    )
    _ensure_unique_name(
        checked.name,
        {_name_key(t.name) for t in state.ticket_types if t.id != current.id},
    )
    if msgspec.structs.replace(checked, id=current.id) == current:
        return []
    return [
        TicketTypeChanged(
            event_id=state.id,
            ticket_type_id=current.id,
            name=checked.name,
            price=checked.price,
            quantity=checked.quantity,
            previous_quantity=current.quantity,
            sale_starts_at=checked.sale_starts_at,
            sale_ends_at=checked.sale_ends_at,
            max_per_order=checked.max_per_order,
        )
    ]


def _ticket_type_added(event_id: str, ticket_type_id: str, checked: TicketType) -> TicketTypeAdded:
    return TicketTypeAdded(
        event_id=event_id,
        ticket_type_id=ticket_type_id,
        name=checked.name,
        price=checked.price,
        quantity=checked.quantity,
        sale_starts_at=checked.sale_starts_at,
        sale_ends_at=checked.sale_ends_at,
        max_per_order=checked.max_per_order,
    )


def normalise_topics(topics: Iterable[str], *, field: str = "topics") -> tuple[str, ...]:
    """Free tags as slugs (`Nhạc Sống!` -> `nhac-song`), duplicates dropped, order kept."""
    slugs: dict[str, None] = {}
    for index, topic in enumerate(topics):
        slug = slugify(topic)
        if not slug:
            raise InvalidInput(
                f"topic {topic!r} has no letters or digits",
                field=f"{field}[{index}]",
                code="invalid_topic",
            )
        if len(slug) > MAX_TOPIC_LENGTH:
            raise InvalidInput(
                f"a topic has at most {MAX_TOPIC_LENGTH} characters",
                field=f"{field}[{index}]",
                code="invalid_topic",
            )
        slugs[slug] = None
    if len(slugs) > MAX_TOPICS:
        raise InvalidInput(f"an event has at most {MAX_TOPICS} topics", field=field)
    return tuple(slugs)


# --- rules --------------------------------------------------------------------------------


T = TypeVar("T")


def _pick(change: T | UnsetType, current: T) -> T:
    return current if isinstance(change, UnsetType) else change


def _ensure_not_cancelled(state: CatalogEvent) -> None:
    if state.status is EventStatus.CANCELLED:
        raise Conflict("the event is cancelled and can no longer change", code="event_cancelled")


def _instant(moment: datetime, field: str) -> datetime:
    """UTC at millisecond precision, the precision MongoDB keeps, so every read agrees."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput("a time needs a UTC offset (RFC 3339)", field=field)
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def _text(value: str, field: str, *, max_length: int, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput("must not be empty", field=field)
    if len(value) > max_length:
        raise InvalidInput(f"must have at most {max_length} characters", field=field)
    return value


def _bounded(value: int, field: str, *, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidInput(f"must be between {low} and {high}", field=field)
    return value


class _Details(TypedDict):
    title: str
    description: str
    venue: Venue
    province: str
    starts_at: datetime
    ends_at: datetime
    topics: tuple[str, ...]
    max_tickets_per_customer: int | None
    restock_refunds: bool


def _checked_details(
    *,
    title: str,
    description: str,
    venue: Venue,
    province: str,
    starts_at: datetime,
    ends_at: datetime,
    topics: Iterable[str],
    max_tickets_per_customer: int | None,
    restock_refunds: bool,
    now: datetime,
    starts_at_changed: bool,
) -> _Details:
    starts_at = _instant(starts_at, "starts_at")
    ends_at = _instant(ends_at, "ends_at")
    if starts_at_changed and starts_at <= now:
        raise InvalidInput(
            "the event must start in the future", field="starts_at", code="invalid_dates"
        )
    if starts_at > now + MAX_SCHEDULE_AHEAD:
        raise InvalidInput(
            "the event must start within three years", field="starts_at", code="invalid_dates"
        )
    if ends_at <= starts_at:
        raise InvalidInput(
            "the event must end after it starts", field="ends_at", code="invalid_dates"
        )
    if ends_at - starts_at > MAX_EVENT_DURATION:
        raise InvalidInput("an event lasts at most a year", field="ends_at", code="invalid_dates")
    if max_tickets_per_customer is not None:
        _bounded(
            max_tickets_per_customer,
            "max_tickets_per_customer",
            low=1,
            high=MAX_TICKETS_PER_CUSTOMER,
        )
    if not province:
        raise InvalidInput("must not be empty", field="province", code="invalid_province")
    return {
        "title": _text(title, "title", max_length=MAX_TITLE_LENGTH),
        "description": _text(
            description, "description", max_length=MAX_DESCRIPTION_LENGTH, required=False
        ),
        "venue": Venue(
            name=_text(venue.name, "venue.name", max_length=MAX_VENUE_NAME_LENGTH),
            address=_text(venue.address, "venue.address", max_length=MAX_VENUE_ADDRESS_LENGTH),
        ),
        "province": province,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "topics": normalise_topics(topics),
        "max_tickets_per_customer": max_tickets_per_customer,
        "restock_refunds": restock_refunds,
    }


def _checked_ticket_type(
    *,
    name: str,
    price: int,
    quantity: int,
    sale_starts_at: datetime | None,
    sale_ends_at: datetime | None,
    max_per_order: int | None,
    event_ends_at: datetime,
    prefix: str = "",
) -> TicketType:
    if sale_starts_at is not None:
        sale_starts_at = _instant(sale_starts_at, prefix + "sale_starts_at")
    if sale_ends_at is not None:
        sale_ends_at = _instant(sale_ends_at, prefix + "sale_ends_at")
        if sale_ends_at > event_ends_at:
            raise InvalidInput(
                "sales must end by the end of the event",
                field=prefix + "sale_ends_at",
                code="invalid_sale_window",
            )
    if sale_starts_at is not None and sale_starts_at >= (sale_ends_at or event_ends_at):
        raise InvalidInput(
            "sales must start before they end (and before the event ends)",
            field=prefix + "sale_starts_at",
            code="invalid_sale_window",
        )
    if max_per_order is not None:
        _bounded(max_per_order, prefix + "max_per_order", low=1, high=MAX_PER_ORDER)
    return TicketType(
        id="",
        name=_text(name, prefix + "name", max_length=MAX_TICKET_TYPE_NAME_LENGTH),
        price=_bounded(price, prefix + "price", low=0, high=MAX_PRICE),
        quantity=_bounded(quantity, prefix + "quantity", low=1, high=MAX_QUANTITY),
        sale_starts_at=sale_starts_at,
        sale_ends_at=sale_ends_at,
        max_per_order=max_per_order,
    )


def _name_key(name: str) -> str:
    return slugify(name) or name.casefold()


def _ensure_unique_name(name: str, taken: set[str], *, field: str = "name") -> None:
    if _name_key(name) in taken:
        raise InvalidInput(
            f"the event already has a ticket type named {name!r}",
            field=field,
            code="duplicate_ticket_type_name",
        )
