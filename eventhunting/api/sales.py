"""Sales analytics over HTTP: an event's figures (live or as of a time), per organizer and day."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import Parameter, ParameterKwarg

from eventhunting.api.auth import ADMIN, ORGANIZER, Principal, requires_roles
from eventhunting.bootstrap import Services
from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.sales import EventSales, Granularity
from eventhunting.services.sales import OrganizerDays, SalesQuery, SalesService

# A query string has no JSON types: the time arrives as text and is read strictly, so
# neither a bare number (Unix time?) nor a time without an offset (UTC? local?) is guessed.
_STRICT_INSTANT = Annotated[datetime, msgspec.Meta(tz=True)]
MAX_INSTANT_LENGTH = 64
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


def instant(description: str, *, query: str | None = None) -> Any:
    return ParameterKwarg(
        query=query,
        description=f"{description} RFC 3339 with an offset, e.g. 2026-05-01T19:00:00+07:00.",
        format="date-time",
        max_length=MAX_INSTANT_LENGTH,
        required=False,
    )


def instant_of(text: str | None, field: str) -> datetime | None:
    """The instant a query parameter names; 422 naming `field` when it is not one."""
    if text is None:
        return None
    try:
        moment = msgspec.convert(text, _STRICT_INSTANT, strict=True)
    except msgspec.ValidationError:
        raise InvalidInput(
            "must be an RFC 3339 date-time with an offset, e.g. 2026-05-01T19:00:00+07:00",
            field=field,
        ) from None
    if not EARLIEST_INSTANT <= moment < LATEST_INSTANT:
        # Nothing happened outside these years, and bucket arithmetic near year 1 or 9999
        # would overflow.
        raise InvalidInput("must be between the years 1970 and 9000", field=field)
    return moment


def sales_service(services: Services) -> SalesService:
    """The sales service on the process's clients (it keeps no state of its own)."""
    return SalesService(
        services.store, services.database, services.catalog.load_event, services.clock
    )


class SalesController(Controller):
    """`/api/v1/events/{id}/sales` and `/api/v1/admin/sales`: how sales are going."""

    path = "/api/v1"
    tags = ["analytics"]

    @get("/events/{event_id:str}/sales", guards=[requires_roles(ORGANIZER)])
    async def event_sales(
        self,
        services: Services,
        principal: Principal,
        event_id: str,
        bucket: Annotated[
            Granularity, Parameter(description="Width of the timeline's buckets (UTC).")
        ] = Granularity.HOUR,
        start: Annotated[
            str | None, instant("Timeline buckets starting at or after this.", query="from")
        ] = None,
        end: Annotated[
            str | None, instant("Timeline buckets starting before this.", query="to")
        ] = None,
        as_of: Annotated[
            str | None, instant("The figures as they stood at this time (folded from the log).")
        ] = None,
    ) -> EventSales:
        """Tickets, revenue (gross, VAT, net), orders by status, conversion, time to pay and a
        timeline, for the event's organizer or an admin."""
        query = SalesQuery(
            granularity=bucket,
            start=instant_of(start, "from"),
            end=instant_of(end, "to"),
            as_of=instant_of(as_of, "as_of"),
        )
        return await sales_service(services).event_sales(
            event_id, query, account_id=principal.account_id, is_admin=principal.is_admin
        )

    @get("/admin/sales", guards=[requires_roles(ADMIN)])
    async def organizer_sales(
        self,
        services: Services,
        start: Annotated[
            str | None, instant("Days starting at or after this (UTC days).", query="from")
        ] = None,
        end: Annotated[str | None, instant("Days starting before this.", query="to")] = None,
    ) -> OrganizerDays:
        """Sales per organizer and UTC day (the last 30 days by default, 366 at most)."""
        return await sales_service(services).organizer_days(
            instant_of(start, "from"), instant_of(end, "to")
        )
