"""Sales analytics over HTTP: an event's figures (live or as of a time), per organizer and day."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from eventhunting.api.auth import ADMIN, ORGANIZER, Principal, requires_roles
from eventhunting.api.parameters import instant_of, instant_parameter
from eventhunting.bootstrap import Services
from eventhunting.domain.sales import EventSales, Granularity
from eventhunting.services.sales import OrganizerDays, SalesQuery, SalesService


# A query string has no JSON types: the time arrives as text and is read strictly, so
# neither a bare number (Unix time?) nor a time without an offset (UTC? local?) is guessed.
def provide_sales(state: State) -> SalesService:
    services: Services = state.services
    return services.sales


class SalesController(Controller):
    """`/api/v1/events/{id}/sales` and `/api/v1/admin/sales`: how sales are going."""

    path = "/api/v1"
    tags = ["analytics"]
    dependencies = {"sales": Provide(provide_sales, sync_to_thread=False)}

    @get("/events/{event_id:str}/sales", guards=[requires_roles(ORGANIZER)])
    async def event_sales(
        self,
        sales: SalesService,
        principal: Principal,
        event_id: str,
        bucket: Annotated[
            Granularity, Parameter(description="Width of the timeline's buckets (UTC).")
        ] = Granularity.HOUR,
        start: Annotated[
            str | None,
            instant_parameter("Timeline buckets starting at or after this.", query="from"),
        ] = None,
        end: Annotated[
            str | None, instant_parameter("Timeline buckets starting before this.", query="to")
        ] = None,
        as_of: Annotated[
            str | None,
            instant_parameter("The figures as they stood at this time (folded from the log)."),
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
        return await sales.event_sales(
            event_id, query, account_id=principal.account_id, is_admin=principal.is_admin
        )

    @get("/admin/sales", guards=[requires_roles(ADMIN)])
    async def organizer_sales(
        self,
        sales: SalesService,
        start: Annotated[
            str | None,
            instant_parameter("Days starting at or after this (UTC days).", query="from"),
        ] = None,
        end: Annotated[
            str | None, instant_parameter("Days starting before this.", query="to")
        ] = None,
    ) -> OrganizerDays:
        """Sales per organizer and UTC day (the last 30 days by default, 366 at most)."""
        return await sales.organizer_days(instant_of(start, "from"), instant_of(end, "to"))
