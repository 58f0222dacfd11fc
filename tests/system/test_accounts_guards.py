"""Every route of the OpenAPI document is guarded: 401 without a token, 403 without the role.

The walk reads the document of the running API, so routes added later are covered without
touching this file. A route is public only if it is listed in PUBLIC_OPERATIONS below;
every other route must declare a guard (`signed_in` or `requires_roles(...)` from
`eventhunting.api.auth`), which shows up as its `security` entry listing the roles.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from eventhunting.api.auth import BEARER_SCHEME
from tests.support.accounts import SignedIn, sign_up
from tests.support.catalog import create_event
from tests.support.system import RunningSystem

PUBLIC_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/events/{}"),
        ("GET", "/api/v1/payments/vnpay/return"),
        ("GET", "/api/v1/payments/vnpay/ipn"),
        ("GET", "/api/v1/checkins/public-key"),
    }
)
"""(method, path with parameters written `{}`) of routes anyone may call."""

METHODS = ("get", "post", "put", "patch", "delete")
PLACEHOLDER_ID = "01JNOSUCHTHING000000000000"
_PARAMETER = re.compile(r"\{[^}]*\}")


def shape(path: str) -> str:
    return _PARAMETER.sub("{}", path)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                found.append((method.upper(), path, item[method]))
    return found


def required_roles(operation: dict[str, Any]) -> list[str] | None:
    """The roles in the operation's bearer requirement; None when it declares none."""
    for requirement in operation.get("security") or []:
        if BEARER_SCHEME in requirement:
            roles: list[str] = requirement[BEARER_SCHEME]
            return roles
    return None


async def call(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    url = _PARAMETER.sub(PLACEHOLDER_ID, path)
    body = None if method in ("GET", "DELETE") else {}
    return await http.request(method, url, json=body, headers=headers)


@pytest.fixture
async def openapi(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture
async def customer(http: httpx.AsyncClient, api_system: RunningSystem) -> SignedIn:
    return await sign_up(http, api_system)


def guarded(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for method, path, operation in operations(document)
        if (method, shape(path)) not in PUBLIC_OPERATIONS
    ]


async def test_the_walk_covers_the_account_routes(openapi: dict[str, Any]) -> None:
    walked = {(method, path) for method, path, _ in guarded(openapi)}
    assert ("GET", "/api/v1/me") in walked
    assert ("PUT", "/api/v1/admin/accounts/{account_id}/roles") in walked
    assert ("POST", "/api/v1/auth/logout") in walked


async def test_every_non_public_route_declares_a_guard(openapi: dict[str, Any]) -> None:
    undeclared = [
        f"{method} {path}"
        for method, path, operation in guarded(openapi)
        if required_roles(operation) is None
    ]
    assert undeclared == [], "add guards=[signed_in] or requires_roles(...) to these routes"


async def test_public_routes_declare_no_guard(openapi: dict[str, Any]) -> None:
    declared = [
        f"{method} {path}"
        for method, path, operation in operations(openapi)
        if (method, shape(path)) in PUBLIC_OPERATIONS and required_roles(operation) is not None
    ]
    assert declared == [], "a guarded route is listed as public; update PUBLIC_OPERATIONS"


async def test_every_non_public_route_answers_401_without_a_token(
    http: httpx.AsyncClient, openapi: dict[str, Any]
) -> None:
    wrong: list[str] = []
    for method, path, _ in guarded(openapi):
        response = await call(http, method, path)
        if response.status_code != 401 or response.json().get("code") != "unauthenticated":
            wrong.append(f"{method} {path} -> {response.status_code} {response.text[:120]}")
    assert wrong == []


async def test_every_non_public_route_answers_401_with_a_forged_token(
    http: httpx.AsyncClient, openapi: dict[str, Any], customer: SignedIn
) -> None:
    header, payload, _ = customer.access_token.split(".")
    forged = {"Authorization": f"Bearer {header}.{payload}.AAAA"}
    wrong: list[str] = []
    for method, path, _ in guarded(openapi):
        response = await call(http, method, path, forged)
        if response.status_code != 401:
            wrong.append(f"{method} {path} -> {response.status_code}")
    assert wrong == []


async def test_every_role_route_answers_403_to_a_customer(
    http: httpx.AsyncClient, openapi: dict[str, Any], customer: SignedIn
) -> None:
    checked = 0
    wrong: list[str] = []
    for method, path, operation in guarded(openapi):
        roles = required_roles(operation) or []
        if not roles or "customer" in roles:
            continue
        checked += 1
        response = await call(http, method, path, customer.headers)
        if response.status_code != 403 or response.json().get("code") != "forbidden":
            wrong.append(f"{method} {path} -> {response.status_code} {response.text[:120]}")
    assert wrong == []
    assert checked >= 4  # at least the admin account routes


async def test_every_admin_route_answers_403_to_an_organizer(
    http: httpx.AsyncClient, openapi: dict[str, Any], api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    wrong: list[str] = []
    for method, path, operation in guarded(openapi):
        if required_roles(operation) != ["admin"]:
            continue
        response = await call(http, method, path, organizer.headers)
        if response.status_code != 403:
            wrong.append(f"{method} {path} -> {response.status_code}")
    assert wrong == []


async def test_public_route_shows_more_to_the_owner_and_refuses_a_bad_token(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    organizer = await sign_up(http, api_system, roles=["organizer"])
    draft = await create_event(http, organizer)
    path = f"/api/v1/events/{draft['id']}"
    assert (await http.get(path, headers=organizer.headers)).status_code == 200
    assert (await http.get(path)).status_code == 404
    forged = {"Authorization": "Bearer not-a-token"}
    response = await http.get(path, headers=forged)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
