"""Events and ticket types over HTTP: organizers manage their events, anyone browses them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, patch, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from msgspec import UNSET, Meta, UnsetType

from eventhunting.api.auth import ORGANIZER, Principal, requires_roles
from eventhunting.api.paging import Page, page_schema
from eventhunting.api.parameters import (
    DEFAULT_PAGE_SIZE,
    PageNumber,
    PageSize,
    instant_of,
    instant_parameter,
)
from eventhunting.bootstrap import Services
from eventhunting.domain import catalog as rules
from eventhunting.domain.catalog import (
    MAX_PER_ORDER,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_TICKET_TYPES,
    MAX_TICKETS_PER_CUSTOMER,
    MAX_TOPICS,
    AddTicketType,
    CancelEvent,
    CatalogEvent,
    ChangeTicketType,
    CreateEvent,
    EventStatus,
    NewTicketType,
    PublishEvent,
    UpdateEvent,
)
from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.provinces import PROVINCE_DIRECTORY
from eventhunting.domain.slugs import slugify
from eventhunting.projections.catalog import (
    CatalogQuery,
    OrganizerEventsQuery,
    create_catalog_indexes,
)
from eventhunting.services.catalog import CatalogService, EventWithAvailability

# RFC 3339 with an offset; a time without one is refused rather than guessed.
Instant = Annotated[datetime, Meta(tz=True)]
Title = Annotated[str, Meta(min_length=1, max_length=rules.MAX_TITLE_LENGTH)]
Description = Annotated[str, Meta(max_length=rules.MAX_DESCRIPTION_LENGTH)]
ProvinceName = Annotated[str, Meta(min_length=1, max_length=100)]
Topic = Annotated[
    str,
    Meta(
        max_length=rules.MAX_TOPIC_LENGTH,
        description="A free tag, kept as its slug (`Nhạc Sống` -> `nhac-song`).",
    ),
]
Topics = Annotated[list[Topic], Meta(max_length=MAX_TOPICS)]
PerCustomer = Annotated[int, Meta(ge=1, le=MAX_TICKETS_PER_CUSTOMER)]
TicketTypeName = Annotated[str, Meta(min_length=1, max_length=rules.MAX_TICKET_TYPE_NAME_LENGTH)]
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


# --- request bodies -----------------------------------------------------------------------


class VenueCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=rules.MAX_VENUE_NAME_LENGTH)]
    address: Annotated[str, Meta(min_length=1, max_length=rules.MAX_VENUE_ADDRESS_LENGTH)]

    def to_venue(self) -> rules.Venue:
        return rules.Venue(name=self.name, address=self.address)


class TicketTypeCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: TicketTypeName
    price: Price
    quantity: Quantity
    sale_starts_at: Instant | None = None
    sale_ends_at: Instant | None = None
    max_per_order: PerOrder | None = None

    def to_new(self) -> NewTicketType:
        return NewTicketType(**msgspec.structs.asdict(self))


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
    venue: VenueCreate
    province: Annotated[
        ProvinceName,
        Meta(description="A provincial-level unit by name or slug; case and diacritics ignored."),
    ]
    starts_at: Instant
    ends_at: Instant
    topics: Topics = msgspec.field(default_factory=list)
    max_tickets_per_customer: PerCustomer | None = None
    restock_refunds: Annotated[
        bool,
        Meta(description="Refunded tickets go back on sale while the event has not started."),
    ] = True
    ticket_types: Annotated[list[TicketTypeCreate], Meta(max_length=MAX_TICKET_TYPES)] = (
        msgspec.field(default_factory=list)
    )


class EventUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Details to change; a field left out stays as it is."""

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    venue: VenueCreate | UnsetType = UNSET
    province: ProvinceName | UnsetType = UNSET
    starts_at: Instant | UnsetType = UNSET
    ends_at: Instant | UnsetType = UNSET
    topics: Topics | UnsetType = UNSET
    max_tickets_per_customer: PerCustomer | UnsetType | None = UNSET
    restock_refunds: bool | UnsetType = UNSET


class EventCancel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=500)] | None = None


# --- responses ----------------------------------------------------------------------------


class Venue(msgspec.Struct, kw_only=True):
    name: str
    address: str


class TicketType(msgspec.Struct, kw_only=True):
    id: str
    name: str
    price: int
    quantity: int
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    max_per_order: int | None
    available: int | UnsetType = UNSET
    """Tickets left right now (single-event reads only; lists leave it out)."""

    @classmethod
    def of(cls, ticket_type: rules.TicketType, available: int | UnsetType = UNSET) -> TicketType:
        return cls(
            id=ticket_type.id,
            name=ticket_type.name,
            price=ticket_type.price,
            quantity=ticket_type.quantity,
            sale_starts_at=ticket_type.sale_starts_at,
            sale_ends_at=ticket_type.sale_ends_at,
            max_per_order=ticket_type.max_per_order,
            available=available,
        )


class Event(msgspec.Struct, kw_only=True):
    id: str
    status: str
    organizer_id: str
    title: str
    description: str
    venue: Venue
    province: str
    starts_at: datetime
    ends_at: datetime
    topics: list[str]
    max_tickets_per_customer: int | None
    restock_refunds: bool
    ticket_types: list[TicketType]
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    cancelled_at: datetime | None

    @classmethod
    def of(cls, event: CatalogEvent, available: dict[str, int] | None = None) -> Event:
        """The event; with `available`, each ticket type's live count (single reads only)."""
        province = PROVINCE_DIRECTORY.by_slug.get(event.province)
        return cls(
            id=event.id,
            status=event.status.value,
            organizer_id=event.organizer_id,
            title=event.title,
            description=event.description,
            venue=Venue(name=event.venue.name, address=event.venue.address),
            province=province.name if province else event.province,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            topics=list(event.topics),
            max_tickets_per_customer=event.max_tickets_per_customer,
            restock_refunds=event.restock_refunds,
            ticket_types=[
                TicketType.of(t, UNSET if available is None else available.get(t.id, 0))
                for t in event.ticket_types
            ],
            created_at=event.drafted_at,
            updated_at=event.updated_at,
            published_at=event.published_at,
            cancelled_at=event.cancelled_at,
        )

    @classmethod
    def live(cls, found: EventWithAvailability) -> Event:
        return cls.of(found.event, dict(found.available))


async def create_catalog_indexes_at_startup(services: Services) -> None:
    await create_catalog_indexes(services.database)


def provide_catalog(state: State) -> CatalogService:
    services: Services = state.services
    return services.catalog


def province_slug(text: str) -> str:
    return PROVINCE_DIRECTORY.resolve(text).slug


def unless_unset(value: list[str] | UnsetType) -> tuple[str, ...] | UnsetType:
    return value if isinstance(value, UnsetType) else tuple(value)


class CatalogController(Controller):
    """`/api/v1/events`: the catalog of events and their ticket types."""

    path = "/api/v1/events"
    tags = ["events"]
    dependencies = {"catalog": Provide(provide_catalog, sync_to_thread=False)}

    @post("/", guards=[requires_roles(ORGANIZER)], status_code=HTTP_201_CREATED)
    async def create_event(
        self,
        catalog: CatalogService,
        principal: Principal,
        data: EventCreate,
        idempotency_key: IdempotencyKey = None,
    ) -> Event:
        """Draft an event (status `draft`), with its ticket types."""
        command = CreateEvent(
            by=principal.actor,
            title=data.title,
            description=data.description,
            venue=data.venue.to_venue(),
            province=province_slug(data.province),
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            topics=tuple(data.topics),
            max_tickets_per_customer=data.max_tickets_per_customer,
            restock_refunds=data.restock_refunds,
            ticket_types=tuple(ticket_type.to_new() for ticket_type in data.ticket_types),
        )
        return Event.live(await catalog.create_event(command, idempotency_key=idempotency_key))

    @get("/")
    async def list_events(
        self,
        catalog: CatalogService,
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
    ) -> Annotated[Page[Event], page_schema("EventPage")]:
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
        found = await catalog.search(
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
        return Page(
            items=[Event.of(event) for event in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )

    @get("/{event_id:str}")
    async def show_event(
        self, catalog: CatalogService, maybe_principal: Principal | None, event_id: str
    ) -> Event:
        """One event with each ticket type's live `available`; drafts only for their owner."""
        viewer = None if maybe_principal is None else maybe_principal.actor
        return Event.live(await catalog.event_detail(event_id, viewer))

    @patch("/{event_id:str}", guards=[requires_roles(ORGANIZER)], status_code=HTTP_200_OK)
    async def update_event(
        self, catalog: CatalogService, principal: Principal, event_id: str, data: EventUpdate
    ) -> Event:
        """Change the event's details (its organizer or an admin)."""
        command = UpdateEvent(
            event_id=event_id,
            by=principal.actor,
            title=data.title,
            description=data.description,
            venue=UNSET if isinstance(data.venue, UnsetType) else data.venue.to_venue(),
            province=UNSET
            if isinstance(data.province, UnsetType)
            else province_slug(data.province),
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            topics=unless_unset(data.topics),
            max_tickets_per_customer=data.max_tickets_per_customer,
            restock_refunds=data.restock_refunds,
        )
        return Event.live(await catalog.update_event(command))

    @post("/{event_id:str}/publish", guards=[requires_roles(ORGANIZER)], status_code=HTTP_200_OK)
    async def publish_event(
        self, catalog: CatalogService, principal: Principal, event_id: str
    ) -> Event:
        """Publish a draft that has at least one ticket type."""
        command = PublishEvent(event_id=event_id, by=principal.actor)
        return Event.live(await catalog.publish_event(command))

    @post("/{event_id:str}/cancel", guards=[requires_roles(ORGANIZER)], status_code=HTTP_200_OK)
    async def cancel_event(
        self,
        catalog: CatalogService,
        principal: Principal,
        event_id: str,
        data: EventCancel | None = None,
    ) -> Event:
        """Cancel the event; it stays listed, marked `cancelled`, and no longer changes."""
        command = CancelEvent(
            event_id=event_id,
            by=principal.actor,
            reason=None if data is None else data.reason,
        )
        return Event.live(await catalog.cancel_event(command))

    @post(
        "/{event_id:str}/ticket-types",
        guards=[requires_roles(ORGANIZER)],
        status_code=HTTP_201_CREATED,
    )
    async def add_ticket_type(
        self,
        catalog: CatalogService,
        principal: Principal,
        event_id: str,
        data: TicketTypeCreate,
        idempotency_key: IdempotencyKey = None,
    ) -> TicketType:
        """Add a ticket type with its own inventory."""
        command = AddTicketType(event_id=event_id, by=principal.actor, ticket_type=data.to_new())
        ticket_type, available = await catalog.add_ticket_type(
            command, idempotency_key=idempotency_key
        )
        return TicketType.of(ticket_type, available)

    @patch(
        "/{event_id:str}/ticket-types/{ticket_type_id:str}",
        guards=[requires_roles(ORGANIZER)],
        status_code=HTTP_200_OK,
    )
    async def change_ticket_type(
        self,
        catalog: CatalogService,
        principal: Principal,
        event_id: str,
        ticket_type_id: str,
        data: TicketTypeUpdate,
    ) -> TicketType:
        """Change a ticket type; the quantity never goes below held + sold (409)."""
        command = ChangeTicketType(
            event_id=event_id,
            ticket_type_id=ticket_type_id,
            by=principal.actor,
            **msgspec.structs.asdict(data),
        )
        ticket_type, available = await catalog.change_ticket_type(command)
        return TicketType.of(ticket_type, available)


class OrganizerEventsController(Controller):
    """`/api/v1/me/events`: the caller's own events, drafts included."""

    path = "/api/v1/me/events"
    tags = ["events"]
    guards = [requires_roles(ORGANIZER)]
    dependencies = {"catalog": Provide(provide_catalog, sync_to_thread=False)}

    @get("", summary="The caller's own events in every state (read model; may lag a moment)")
    async def list_own_events(
        self,
        catalog: CatalogService,
        principal: Principal,
        status: EventStatus | None = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Annotated[Page[Event], page_schema("EventPage")]:
        """Events the caller organizes (drafts, published and cancelled), soonest first."""
        found = await catalog.events_of_organizer(
            OrganizerEventsQuery(
                organizer_id=principal.account_id, status=status, page=page, page_size=page_size
            )
        )
        return Page(
            items=[Event.of(event) for event in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )
