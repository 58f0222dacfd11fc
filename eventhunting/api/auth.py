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
test reads to check 401 and 403 on every route. A hot route may skip the dependencies and
take the caller its guard verified with `principal_of(request)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from cachetools import TLRUCache
from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute

from eventhunting.bootstrap import Services
from eventhunting.domain.accounts import ADMIN, CUSTOMER, ORGANIZER, STAFF
from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import Forbidden, Unauthenticated

BEARER_SCHEME = "BearerToken"
"""Name of the security scheme in the OpenAPI document."""

_PRINCIPAL_SCOPE_KEY = "eventhunting.principal"
_ACCOUNT_STATES_KEY = "account_states"
# Accounts whose state one API process remembers; beyond it the oldest entry goes.
ACCOUNT_STATE_CACHE_SIZE = 65_536

__all__ = [
    "ADMIN",
    "AUTH_DEPENDENCIES",
    "BEARER_SCHEME",
    "CUSTOMER",
    "ORGANIZER",
    "SECURITY_COMPONENTS",
    "STAFF",
    "AccountStateCache",
    "Principal",
    "RoleGuard",
    "authenticate",
    "declare_security",
    "forget_account_state",
    "principal_of",
    "requires_roles",
    "signed_in",
]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The signed-in caller with the roles the account has now.

    `roles` always contains `customer`; `staff_events` are the event ids the caller may
    check tickets in at. Roles come from current account state, read at most
    `EVENTHUNTING_ACCOUNT_STATE_CACHE_SECONDS` ago (see `AccountStateCache`).
    """

    account_id: str
    email: str
    roles: frozenset[str]
    staff_events: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def actor(self) -> Actor:
        """The caller as commands name who asks (`by`)."""
        return Actor(self.account_id, is_admin=self.is_admin)

    def has_role(self, role: str) -> bool:
        """Whether the caller has `role`; admins have every role."""
        return role in self.roles or self.is_admin

    def has_any_role(self, roles: Iterable[str]) -> bool:
        return self.is_admin or any(role in self.roles for role in roles)

    def is_staff_for(self, event_id: str) -> bool:
        """Staff of this event (check-in); admins count as staff everywhere."""
        return event_id in self.staff_events or self.is_admin


@dataclass(frozen=True, slots=True)
class CachedState:
    expires_at: float
    roles: frozenset[str]
    staff_events: frozenset[str]


class AccountStateCache:
    """Each account's roles, staff grants and enabled state, kept for a few seconds per process.

    An entry is used for at most `seconds` after the read that produced it began (0 turns the
    cache off), so a role change or a disabled account made anywhere applies to every API
    process within `seconds`, a bound well below the access-token lifetime (settings refuse
    a longer one). A change made through this process is forgotten here at once. Only
    enabled accounts are kept: a disabled one is read again on every request. The token is
    still verified on every request (signature and expiry).
    """

    def __init__(
        self,
        seconds: float,
        *,
        size: int = ACCOUNT_STATE_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        # Each entry expires `seconds` after the read that produced it began (not after it
        # was stored), and the least recently used goes first when the cache is full.
        self._entries: TLRUCache[str, CachedState] = TLRUCache(
            maxsize=size, ttu=lambda _key, state, _now: state.expires_at, timer=clock
        )

    def get(self, account_id: str) -> tuple[frozenset[str], frozenset[str]] | None:
        """(roles, staff events) read less than `seconds` ago, or None."""
        state = self._entries.get(account_id)
        return None if state is None else (state.roles, state.staff_events)

    def put(
        self,
        account_id: str,
        roles: frozenset[str],
        staff_events: frozenset[str],
        *,
        read_started: float,
    ) -> None:
        """Remember a state whose read began at `read_started` (a `clock()` value)."""
        if self.seconds <= 0:
            return
        self._entries[account_id] = CachedState(
            expires_at=read_started + self.seconds, roles=roles, staff_events=staff_events
        )

    def forget(self, account_id: str) -> None:
        self._entries.pop(account_id, None)

    def __len__(self) -> int:
        return len(self._entries)


def account_states(app: Litestar) -> AccountStateCache:
    """The app's account-state cache, made on first use from the settings of its services."""
    cache = app.state.get(_ACCOUNT_STATES_KEY)
    if cache is None:
        services: Services = app.state.services
        cache = AccountStateCache(services.settings.auth.account_state_cache_seconds)
        app.state[_ACCOUNT_STATES_KEY] = cache
    assert isinstance(cache, AccountStateCache)
    return cache


def forget_account_state(app: Litestar, account_id: str) -> None:
    """Drop what this process remembers of an account after changing its roles or state."""
    account_states(app).forget(account_id)


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
    app = connection.app
    services: Services = app.state.services
    cache = account_states(app)
    claims = services.accounts.verify_access_token(token)
    remembered = cache.get(claims.account_id)
    if remembered is not None:
        roles, staff_events = remembered
    else:
        read_started = cache.clock()
        state = await services.accounts.access_state(token)
        roles, staff_events = state.roles, state.staff_events
        cache.put(state.account_id, roles, staff_events, read_started=read_started)
    principal = Principal(
        account_id=claims.account_id,
        email=claims.email,
        roles=roles,
        staff_events=staff_events,
    )
    scope[_PRINCIPAL_SCOPE_KEY] = principal
    return principal


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The caller a `signed_in` or `requires_roles` guard of this route already verified.

    Cheaper than the `principal` dependency on hot routes; on a route without a guard it is a
    programming error.
    """
    known = connection.scope.get(_PRINCIPAL_SCOPE_KEY)
    if not isinstance(known, Principal):
        raise RuntimeError("principal_of needs a signed_in or requires_roles guard on the route")
    return known


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
