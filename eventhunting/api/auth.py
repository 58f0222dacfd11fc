"""Who is calling: the Principal, the `principal`/`maybe_principal` dependencies and route guards.

Use in handlers and controllers:

    @post("/api/v1/events", guards=[requires_roles("organizer")])
    async def create(self, principal: Principal, ...) -> ...

    @get("/api/v1/orders", guards=[signed_in])
    async def mine(self, principal: Principal) -> ...

    @get("/api/v1/events/{event_id:str}")      # public, shows drafts to their owner
    async def show(self, maybe_principal: Principal | None) -> ...

Every non-public route needs a guard: guards run before the body is read, and the OpenAPI
document lists each guarded route's roles in its `security` entry, which the route-walking
test reads to check 401 and 403 on every route.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import msgspec
from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute

from eventhunting.bootstrap import Services
from eventhunting.domain.accounts import ADMIN, CUSTOMER, ORGANIZER, STAFF
from eventhunting.domain.errors import Forbidden, Unauthenticated

BEARER_SCHEME = "BearerToken"
"""Name of the security scheme in the OpenAPI document."""

_PRINCIPAL_SCOPE_KEY = "eventhunting.principal"

__all__ = [
    "ADMIN",
    "AUTH_DEPENDENCIES",
    "BEARER_SCHEME",
    "CUSTOMER",
    "ORGANIZER",
    "SECURITY_COMPONENTS",
    "STAFF",
    "Principal",
    "RoleGuard",
    "authenticate",
    "declare_security",
    "requires_roles",
    "signed_in",
]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The signed-in caller with the roles the account has right now.

    `roles` always contains `customer`; `staff_events` are the event ids the caller may
    check tickets in at. Roles come from current account state on every request, so a
    role change or a disabled account takes effect immediately for new requests.
    """

    account_id: str
    email: str
    roles: frozenset[str]
    staff_events: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def has_role(self, role: str) -> bool:
        """Whether the caller has `role`; admins have every role."""
        return role in self.roles or self.is_admin

    def has_any_role(self, roles: Iterable[str]) -> bool:
        return self.is_admin or any(role in self.roles for role in roles)

    def is_staff_for(self, event_id: str) -> bool:
        """Staff of this event (check-in); admins count as staff everywhere."""
        return event_id in self.staff_events or self.is_admin


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The caller of this request, verified once and remembered for the rest of it.

    Raises the 401 problem `unauthenticated` (or `account_disabled`) when there is no valid
    bearer token.
    """
    scope = cast(dict[str, Any], connection.scope)
    known = scope.get(_PRINCIPAL_SCOPE_KEY)
    if isinstance(known, Principal):
        return known
    header = connection.headers.get("authorization")
    if not header:
        raise Unauthenticated("Sign in first: send Authorization: Bearer <access token>.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("The Authorization header must be: Bearer <access token>.")
    services: Services = connection.app.state.services
    state = await services.accounts.access_state(token)
    principal = Principal(
        account_id=state.account_id,
        email=state.email,
        roles=state.roles,
        staff_events=state.staff_events,
    )
    scope[_PRINCIPAL_SCOPE_KEY] = principal
    return principal


class RoleGuard:
    """A Litestar guard: the caller must be signed in and, when `roles` is not empty, have
    at least one of them (admins pass every role check)."""

    def __init__(self, roles: Iterable[str] = ()) -> None:
        self.roles: tuple[str, ...] = tuple(sorted(set(roles)))

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        principal = await authenticate(connection)
        if self.roles and not principal.has_any_role(self.roles):
            needed = " or ".join(self.roles)
            raise Forbidden(f"This needs the {needed} role.")

    def __repr__(self) -> str:
        return f"requires_roles{self.roles!r}" if self.roles else "signed_in"


signed_in = RoleGuard()
"""Guard: any signed-in account (every account has the `customer` role)."""


def requires_roles(*roles: str) -> RoleGuard:
    """Guard: signed in with at least one of `roles` (`customer`, `organizer`, `admin`)."""
    if not roles:
        raise ValueError("requires_roles needs at least one role; use signed_in for any account")
    unknown = set(roles) - {CUSTOMER, ORGANIZER, ADMIN}
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; per-event staff is checked in code")
    return RoleGuard(roles)


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return await authenticate(request)


async def provide_maybe_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """None for an anonymous request; a present but invalid token still answers 401."""
    if "authorization" not in request.headers:
        return None
    return await authenticate(request)


AUTH_DEPENDENCIES: dict[str, Provide] = {
    "principal": Provide(provide_principal),
    "maybe_principal": Provide(provide_maybe_principal),
}
"""Dependencies any handler can ask for by parameter name."""

SECURITY_COMPONENTS = Components(
    security_schemes={
        BEARER_SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="Access token from POST /api/v1/auth/login or /api/v1/auth/refresh.",
        )
    }
)


def guards_of(handler: HTTPRouteHandler) -> list[RoleGuard]:
    return [
        guard
        for layer in handler.ownership_layers
        for guard in (layer.guards or [])
        if isinstance(guard, RoleGuard)
    ]


def declare_security(app: Litestar) -> None:
    """Write each guarded operation's roles into its OpenAPI `security` entry.

    OpenAPI 3.1 lets a non-OAuth requirement list role names; an empty list means any
    signed-in account. Routes without a RoleGuard get no entry (public).
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            guards = guards_of(handler)
            if not guards:
                continue
            roles = sorted({role for guard in guards for role in guard.roles})
            handler.security = [*(handler.security or []), {BEARER_SCHEME: roles}]
