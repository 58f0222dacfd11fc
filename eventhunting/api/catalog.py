"""Events and ticket types over HTTP: organizers manage their events, anyone browses them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from msgspec import UNSET, Meta, UnsetType

from eventhunting.api.auth import ORGANIZER, Principal, requires_roles
from eventhunting.api.parameters import (
    DEFAULT_PAGE_SIZE,
    PageNumber,
    PageSize,
    instant_of,
    instant_parameter,
)
from eventhunting.bootstrap import Services
from eventhunting.domain import catalog
from eventhunting.domain.catalog import (
    MAX_PER_ORDER,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_TICKET_TYPES,
    MAX_TICKETS_PER_CUSTOMER,
    MAX_TOPICS,
    CatalogEvent,
    TicketType,
)
from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.provinces import PROVINCE_DIRECTORY
from eventhunting.domain.slugs import slugify
from eventhunting.projections.catalog import CatalogQuery, create_catalog_indexes
from eventhunting.services.catalog import Actor

# RFC 3339 with an offset; a time without one is refused rather than guessed.
Instant = Annotated[datetime, Meta(tz=True)]
Title = Annotated[str, Meta(min_length=1, max_length=catalog.MAX_TITLE_LENGTH)]
Description = Annotated[str, Meta(max_length=catalog.MAX_DESCRIPTION_LENGTH)]
ProvinceName = Annotated[str, Meta(min_length=1, max_length=100)]
Topic = Annotated[
    str,
    Meta(
        max_length=catalog.MAX_TOPIC_LENGTH,
        description="A free tag, kept as its slug (`Nhạc Sống` -> `nhac-song`).",
    ),
]
Topics = Annotated[list[Topic], Meta(max_length=MAX_TOPICS)]
PerCustomer = Annotated[int, Meta(ge=1, le=MAX_TICKETS_PER_CUSTOMER)]
TicketTypeName = Annotated[str, Meta(min_length=1, max_length=catalog.MAX_TICKET_TYPE_NAME_LENGTH)]
Price = Annotated[int, Meta(ge=0, le=MAX_PRICE, description="Integer VND; 0 is free.")]
Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY)]
PerOrder = Annotated[int, Meta(ge=1, le=MAX_PER_ORDER)]
IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Repeating a request with the same key and body returns the first result.",
    ),
]


class VenueBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=catalog.MAX_VENUE_NAME_LENGTH)]
    address: Annotated[str, Meta(min_length=1, max_length=catalog.MAX_VENUE_ADDRESS_LENGTH)]


class TicketTypeCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: TicketTypeName
    price: Price
    quantity: Quantity
    sale_starts_at: Instant | None = None
    sale_ends_at: Instant | None = None
    max_per_order: PerOrder | None = None

    def to_draft(self) -> catalog.TicketTypeDraft:
        return catalog.TicketTypeDraft(**msgspec.structs.asdict(self))


class TicketTypeUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; a field left out stays as it is, null clears an optional one."""

    name: TicketTypeName | UnsetType = UNSET
    price: Price | UnsetType = UNSET
    quantity: Quantity | UnsetType = UNSET
    sale_starts_at: Instant | UnsetType | None = UNSET
    sale_ends_at: Instant | UnsetType | None = UNSET
    max_per_order: PerOrder | UnsetType | None = UNSET


class EventCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: Title
    description: Description = ""
    venue: VenueBody
    province: Annotated[
        ProvinceName,
        Meta(description="A provincial-level unit by name or slug; case and diacritics ignored."),
    ]
    starts_at: Instant
    ends_at: Instant
    topics: Topics = msgspec.field(default_factory=list)
    max_tickets_per_customer: PerCustomer | None = None
    ticket_types: Annotated[list[TicketTypeCreate], Meta(max_length=MAX_TICKET_TYPES)] = (
        msgspec.field(default_factory=list)
    )


class EventUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Details to change; a field left out stays as it is."""

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    venue: VenueBody | UnsetType = UNSET
    province: ProvinceName | UnsetType = UNSET
    starts_at: Instant | UnsetType = UNSET
    ends_at: Instant | UnsetType = UNSET
    topics: Topics | UnsetType = UNSET
    max_tickets_per_customer: PerCustomer | UnsetType | None = UNSET


class EventCancel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=500)] | None = None


class VenueOut(msgspec.Struct, kw_only=True):
    name: str
    address: str


class TicketTypeOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    price: int
    quantity: int
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    max_per_order: int | None
    available: int | UnsetType = UNSET
    """Tickets left right now (single-event reads only; lists leave it out)."""


class EventOut(msgspec.Struct, kw_only=True):
    id: str
    status: str
    organizer_id: str
    title: str
    description: str
    venue: VenueOut
    province: str
    starts_at: datetime
    ends_at: datetime
    topics: list[str]
    max_tickets_per_customer: int | None
    ticket_types: list[TicketTypeOut]
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    cancelled_at: datetime | None


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventOut]
    total: int
    page: int
    page_size: int


async def create_catalog_indexes_at_startup(services: Services) -> None:
    await create_catalog_indexes(services.database)


def actor_of(principal: Principal) -> Actor:
    return Actor(account_id=principal.account_id, is_admin=principal.is_admin)


def province_slug(text: str) -> str:
    return PROVINCE_DIRECTORY.resolve(text).slug


def ticket_type_out(ticket_type: TicketType, available: int | UnsetType = UNSET) -> TicketTypeOut:
    return TicketTypeOut(
        id=ticket_type.id,
        name=ticket_type.name,
        price=ticket_type.price,
        quantity=ticket_type.quantity,
        sale_starts_at=ticket_type.sale_starts_at,
        sale_ends_at=ticket_type.sale_ends_at,
        max_per_order=ticket_type.max_per_order,
        available=available,
    )


def event_out(event: CatalogEvent, available: dict[str, int] | None = None) -> EventOut:
    province = PROVINCE_DIRECTORY.by_slug.get(event.province)
    return EventOut(
        id=event.id,
        status=event.status.value,
        organizer_id=event.organizer_id,
        title=event.title,
        description=event.description,
        venue=VenueOut(name=event.venue.name, address=event.venue.address),
        province=province.name if province else event.province,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        topics=list(event.topics),
        max_tickets_per_customer=event.max_tickets_per_customer,
        ticket_types=[
            ticket_type_out(t, UNSET if available is None else available.get(t.id, 0))
            for t in event.ticket_types
        ],
        created_at=event.drafted_at,
        updated_at=event.updated_at,
        published_at=event.published_at,
        cancelled_at=event.cancelled_at,
    )


def _changes_of(body: EventUpdate) -> catalog.EventChanges:
    return catalog.EventChanges(
        title=body.title,
        description=body.description,
        venue=UNSET
        if isinstance(body.venue, UnsetType)
        else catalog.Venue(name=body.venue.name, address=body.venue.address),
        province=UNSET if isinstance(body.province, UnsetType) else province_slug(body.province),
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        topics=body.topics,
        max_tickets_per_customer=body.max_tickets_per_customer,
    )


class CatalogController(Controller):
    """`/api/v1/events`: the catalog of events and their ticket types."""

    path = "/api/v1/events"
    tags = ["events"]

    @post("/", guards=[requires_roles(ORGANIZER)], status_code=HTTP_201_CREATED)
    async def create_event(
        self,
        services: Services,
        principal: Principal,
        data: EventCreate,
        idempotency_key: IdempotencyKey = None,
    ) -> EventOut:
        """Draft an event (status `draft`), with its ticket types."""
        draft = catalog.EventDraft(
            title=data.title,
            description=data.description,
            venue=catalog.Venue(name=data.venue.name, address=data.venue.address),
            province=province_slug(data.province),
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            topics=data.topics,
            max_tickets_per_customer=data.max_tickets_per_customer,
            ticket_types=[ticket_type.to_draft() for ticket_type in data.ticket_types],
        )
        created = await services.catalog.create_event(
            actor_of(principal), draft, idempotency_key=idempotency_key
        )
        return event_out(created.event, dict(created.available))

    @get("/")
    async def list_events(
        self,
        services: Services,
        q: Annotated[
            str | None, Parameter(max_length=200, description="Words of the title or description.")
        ] = None,
        province: Annotated[str | None, Parameter(max_length=100)] = None,
        topic: Annotated[str | None, Parameter(max_length=100)] = None,
        starts_after: Annotated[
            str | None, instant_parameter("Starts at or after this (inclusive).")
        ] = None,
        starts_before: Annotated[str | None, instant_parameter("Starts before this.")] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> EventPage:
        """Published events (cancelled ones marked), soonest first."""
        after = instant_of(starts_after, "starts_after")
        before = instant_of(starts_before, "starts_before")
        if after and before and before <= after:
            raise InvalidInput("must be later than starts_after", field="starts_before")
        topic_slug = None
        if topic is not None:
            topic_slug = slugify(topic)
            if not topic_slug:
                raise InvalidInput(
                    "a topic needs letters or digits", field="topic", code="invalid_topic"
                )
        found = await services.catalog.search(
            CatalogQuery(
                text=q,
                province=None if province is None else province_slug(province),
                topic=topic_slug,
                starts_after=after,
                starts_before=before,
                page=page,
                page_size=page_size,
            )
        )
        return EventPage(
            items=[event_out(event) for event in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )

    @get("/{event_id:str}")
    async def show_event(
        self, services: Services, maybe_principal: Principal | None, event_id: str
    ) -> EventOut:
        """One event with each ticket type's live `available`; drafts only for their owner."""
        viewer = None if maybe_principal is None else actor_of(maybe_principal)
        detail = await services.catalog.event_detail(event_id, viewer)
        return event_out(detail.event, dict(detail.available))

    @patch("/{event_id:str}", guards=[requires_roles(ORGANIZER)], status_code=HTTP_200_OK)
    async def update_event(
        self, services: Services, principal: Principal, event_id: str, data: EventUpdate
    ) -> EventOut:
        """Change the event's details (its organizer or an admin)."""
        updated = await services.catalog.update_event(
            actor_of(principal), event_id, _changes_of(data)
        )
        return event_out(updated.event, dict(updated.available))

    @post("/{event_id:str}/publish", guards=[requires_roles(ORGANIZER)], status_code=HTTP_200_OK)
    async def publish_event(
        self, services: Services, principal: Principal, event_id: str
    ) -> EventOut:
        """Publish a draft that has at least one ticket type."""
        published = await services.catalog.publish_event(actor_of(principal), event_id)
        return event_out(published.event, dict(published.available))

    @post("/{event_id:str}/cancel", guards=[requires_roles(ORGANIZER)], status_code=HTTP_200_OK)
    async def cancel_event(
        self,
        services: Services,
        principal: Principal,
        event_id: str,
        data: EventCancel | None = None,
    ) -> EventOut:
        """Cancel the event; it stays listed, marked `cancelled`, and no longer changes."""
        cancelled = await services.catalog.cancel_event(
            actor_of(principal), event_id, reason=None if data is None else data.reason
        )
        return event_out(cancelled.event, dict(cancelled.available))

    @post(
        "/{event_id:str}/ticket-types",
        guards=[requires_roles(ORGANIZER)],
        status_code=HTTP_201_CREATED,
    )
    async def add_ticket_type(
        self,
        services: Services,
        principal: Principal,
        event_id: str,
        data: TicketTypeCreate,
        idempotency_key: IdempotencyKey = None,
    ) -> TicketTypeOut:
        """Add a ticket type with its own inventory."""
        ticket_type, available = await services.catalog.add_ticket_type(
            actor_of(principal), event_id, data.to_draft(), idempotency_key=idempotency_key
        )
        return ticket_type_out(ticket_type, available)

    @patch(
        "/{event_id:str}/ticket-types/{ticket_type_id:str}",
        guards=[requires_roles(ORGANIZER)],
        status_code=HTTP_200_OK,
    )
    async def change_ticket_type(
        self,
        services: Services,
        principal: Principal,
        event_id: str,
        ticket_type_id: str,
        data: TicketTypeUpdate,
    ) -> TicketTypeOut:
        """Change a ticket type; the quantity never goes below held + sold (409)."""
        changes = catalog.TicketTypeChanges(**msgspec.structs.asdict(data))
        ticket_type, available = await services.catalog.change_ticket_type(
            actor_of(principal), event_id, ticket_type_id, changes
        )
        return ticket_type_out(ticket_type, available)
