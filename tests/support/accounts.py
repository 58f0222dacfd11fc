"""Create accounts with roles through the HTTP API, for system tests of any feature.

user = await sign_up(http, api_system)                         # a customer
organizer = await sign_up(http, api_system, roles=["organizer"])
admin = await sign_in_admin(http, api_system)
await http.post("/api/v1/events", json=..., headers=organizer.headers)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from eventhunting.bootstrap import Services
from eventhunting.domain.accounts import RegisterAccount
from tests.support.system import RunningSystem

DEFAULT_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class SignedIn:
    """An account with fresh tokens."""

    account_id: str
    email: str
    password: str
    roles: tuple[str, ...]
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.access_token)


def auth_headers(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.test"


async def register(
    http: httpx.AsyncClient,
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    full_name: str = "Test User",
) -> dict[str, object]:
    """POST /api/v1/auth/register; returns the account body (asserts 201)."""
    response = await http.post(
        "/api/v1/auth/register",
        json={"email": email or unique_email(), "password": password, "full_name": full_name},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def login(http: httpx.AsyncClient, email: str, password: str) -> tuple[str, str]:
    """POST /api/v1/auth/login; returns (access token, refresh token) (asserts 200)."""
    response = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["access_token"], body["refresh_token"]


async def sign_in_admin(http: httpx.AsyncClient, system: RunningSystem) -> SignedIn:
    """The bootstrap admin of the running system, signed in."""
    email = system.environment["EVENTHUNTING_BOOTSTRAP_ADMIN_EMAIL"]
    password = system.environment["EVENTHUNTING_BOOTSTRAP_ADMIN_PASSWORD"]
    access, refresh = await login(http, email, password)
    me = await http.get("/api/v1/me", headers=auth_headers(access))
    assert me.status_code == 200, me.text
    return SignedIn(
        account_id=me.json()["id"],
        email=email,
        password=password,
        roles=tuple(me.json()["roles"]),
        access_token=access,
        refresh_token=refresh,
    )


async def grant_roles(
    http: httpx.AsyncClient, system: RunningSystem, account_id: str, roles: Sequence[str]
) -> None:
    """Set an account's roles as the bootstrap admin (takes effect on the next request)."""
    admin = await sign_in_admin(http, system)
    response = await http.put(
        f"/api/v1/admin/accounts/{account_id}/roles",
        json={"roles": list(roles)},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text


async def sign_up(
    http: httpx.AsyncClient,
    system: RunningSystem,
    *,
    roles: Sequence[str] = (),
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    full_name: str = "Test User",
) -> SignedIn:
    """Register a new account, grant `roles` (e.g. ["organizer"]) and sign it in."""
    email = email or unique_email("-".join(roles) or "customer")
    account = await register(http, email=email, password=password, full_name=full_name)
    account_id = str(account["id"])
    if roles:
        await grant_roles(http, system, account_id, roles)
    access, refresh = await login(http, email, password)
    return SignedIn(
        account_id=account_id,
        email=str(account["email"]),
        password=password,
        roles=tuple(sorted({"customer", *roles})),
        access_token=access,
        refresh_token=refresh,
    )


async def grant_staff(
    http: httpx.AsyncClient, manager: SignedIn, event_id: str, account_id: str
) -> None:
    """Make `account_id` staff of `event_id`, as its organizer or an admin."""
    response = await http.put(
        f"/api/v1/events/{event_id}/staff/{account_id}", headers=manager.headers
    )
    assert response.status_code == 200, response.text


async def mint_buyers(services: Services, count: int, concurrency: int = 32) -> list[str]:
    """Register `count` customers through the accounts service; their access tokens (for
    the flash-sale tests and the benchmarks).

    Much faster than 2,000 HTTP calls and the same accounts: the API sees them as any other.
    """
    gate = asyncio.Semaphore(concurrency)
    run = uuid.uuid4().hex[:8]

    async def one(number: int) -> str:
        async with gate:
            account = await services.accounts.register(
                RegisterAccount(
                    email=f"flash-{run}-{number}@example.test",
                    password=DEFAULT_PASSWORD,
                    full_name=f"Buyer {number}",
                )
            )
            return (await services.accounts.issue_tokens(account)).access_token

    return list(await asyncio.gather(*(one(n) for n in range(count))))
