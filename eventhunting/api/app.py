"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.routes import HTTPRoute
from litestar.types import ControllerRouterHandler
from tenacity import AsyncRetrying, before_sleep_log, wait_exponential_jitter

from eventhunting import __version__
from eventhunting.api.accounts import ACCOUNT_ROUTES, create_bootstrap_admin
from eventhunting.api.auth import AUTH_DEPENDENCIES, SECURITY_COMPONENTS, declare_security
from eventhunting.api.bodies import StrictJSONBody
from eventhunting.api.catalog import (
    CatalogController,
    OrganizerEventsController,
    create_catalog_indexes_at_startup,
)
from eventhunting.api.checkins import CheckinController
from eventhunting.api.dead_letters import DeadLetterController
from eventhunting.api.errors import EXCEPTION_HANDLERS
from eventhunting.api.health import HealthController
from eventhunting.api.openapi import complete_document
from eventhunting.api.orders import OrderController
from eventhunting.api.pages import PAGE_ROUTES
from eventhunting.api.payments import PaymentController, VnpayGatewayController
from eventhunting.api.refunds import AdminRefundController, RefundController
from eventhunting.api.request_log import request_log_middleware
from eventhunting.api.sales import SalesController
from eventhunting.api.tickets import TICKET_ROUTES
from eventhunting.bootstrap import Services, build_services
from eventhunting.settings import Settings

# Each feature adds its controllers here.
ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    HealthController,
    *ACCOUNT_ROUTES,
    CatalogController,
    OrganizerEventsController,
    OrderController,
    SalesController,
    CheckinController,
    *TICKET_ROUTES,
    DeadLetterController,
    PaymentController,
    VnpayGatewayController,
    RefundController,
    AdminRefundController,
    *PAGE_ROUTES,
]

ROUTE_SETS: dict[str, list[ControllerRouterHandler]] = {
    "all": ROUTE_HANDLERS,
    # An API process of its own for VNPAY's calls (`eventhunting api --only payments`): the
    # IPN never waits behind buyers' requests in a busy process (docs/payments.md).
    "payments": [HealthController, VnpayGatewayController],
}


def create_app(
    settings: Settings, *, services: Services | None = None, routes: str = "all"
) -> Litestar:
    """Build the app with one of ROUTE_SETS; clients are created on start-up, never at import."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        built = services or await build_services(settings)
        app.state.services = built
        for hook in STARTUP_HOOKS:
            await hook(built)
        # Orders are taken from Redis alone: MongoDB being down must not keep the API from
        # serving, so its start-up work is retried in the background until it succeeds.
        background = [
            asyncio.create_task(retry_until_done(hook, built), name=f"startup:{hook.__name__}")
            for hook in MONGODB_STARTUP_HOOKS
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if services is None:
                await built.close()

    app = Litestar(
        route_handlers=ROUTE_SETS[routes],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_log_middleware],
        # Bodies are JSON and decoded strictly; responses are encoded as Litestar does.
        dto=StrictJSONBody,
        return_dto=None,
        dependencies=AUTH_DEPENDENCIES,
        openapi_config=OpenAPIConfig(
            title="EventHunting API",
            version=__version__,
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            components=[SECURITY_COMPONENTS],
        ),
        on_app_init=[_without_default_logging],
        debug=False,
    )
    declare_security(app)
    complete_document(app)
    allow_every_method_of_each_route(app)
    return app


def allow_every_method_of_each_route(app: Litestar) -> None:
    """Make OPTIONS list every method of its path in `Allow`.

    Litestar 2 builds a path's OPTIONS handler with the first route made for that path and
    keeps it when later handlers of the same path replace the route, so `Allow` named only
    the first methods (litestar-org/litestar#4169, fixed in Litestar 3). The handler reads
    the route it closes over; point it at the route that serves the path.
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            function = handler.fn
            if function.__qualname__.startswith("HTTPRoute.create_options_handler."):
                for name, cell in zip(
                    function.__code__.co_freevars, function.__closure__ or (), strict=True
                ):
                    if name == "self":
                        cell.cell_contents = route


YOUNG_GENERATION_THRESHOLD = 7_000
"""Allocations between collections of the youngest generation (CPython's default is 700)."""


def freeze_startup_heap() -> None:
    """Keep the cyclic garbage collector off what start-up built, before serving.

    Modules, the app and its routes (~70,000 objects) live as long as the process; left in
    the oldest generation, every full collection scanned them again (~35 ms each under load,
    a stall for every request in flight). Frozen, they are never scanned; young objects are
    collected ten times less often, which a request-per-millisecond server can afford.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


def _without_default_logging(config: AppConfig) -> AppConfig:
    config.logging_config = None
    return config


logger = logging.getLogger("eventhunting.api")

StartupHook = Callable[[Services], Awaitable[None]]
STARTUP_HOOKS: list[StartupHook] = [create_bootstrap_admin]
"""Run once before the API serves (Redis only: the store of record must be there)."""
MONGODB_STARTUP_HOOKS: list[StartupHook] = [create_catalog_indexes_at_startup]
"""Run in the background at start-up and retried with backoff until MongoDB answers."""


async def retry_until_done(hook: StartupHook, services: Services) -> None:
    async for attempt in AsyncRetrying(
        wait=wait_exponential_jitter(initial=0.5, max=30),
        before_sleep=before_sleep_log(logger, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            await hook(services)
