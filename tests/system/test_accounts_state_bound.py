"""A role change or a disabled account reaches every API process within the cache bound.

Two API processes share Redis and MongoDB, as when scaled out: the change goes through one,
the other has the account's state cached and must apply the change within
EVENTHUNTING_ACCOUNT_STATE_CACHE_SECONDS.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support.accounts import SignedIn, sign_in_admin, sign_up
from tests.support.servers import free_port, wait_for_port
from tests.support.system import RunningSystem, stop_process

CACHE_SECONDS = 2
# Time for the polling requests themselves on a busy test machine.
MARGIN_SECONDS = 1.5
POLL_SECONDS = 0.05


@pytest.fixture(scope="module")
def second_api(api_system: RunningSystem) -> Iterator[str]:
    """Another `eventhunting api` process on the same stores, secret and settings."""
    port = free_port()
    environment = {
        **api_system.environment,
        "EVENTHUNTING_ACCOUNT_STATE_CACHE_SECONDS": str(CACHE_SECONDS),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "eventhunting.cli", "api", "--port", str(port)], env=environment
    )
    try:
        wait_for_port(port, timeout=30, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture
async def other_http(second_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=second_api, timeout=30) as client:
        yield client


async def seconds_until(
    other_http: httpx.AsyncClient, user: SignedIn, path: str, status: int
) -> float:
    """How long until the other process answers `path` for `user` with `status`."""
    started = time.monotonic()
    while True:
        response = await other_http.get(path, headers=user.headers)
        elapsed = time.monotonic() - started
        if response.status_code == status:
            return elapsed
        assert elapsed < 30, response.text
        await asyncio.sleep(POLL_SECONDS)


async def test_revoked_role_is_refused_by_another_process_within_the_cache_bound(
    http: httpx.AsyncClient, other_http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    user = await sign_up(http, api_system, roles=["admin"])
    # The other process reads and keeps the account's state.
    assert (await other_http.get("/api/v1/admin/accounts", headers=user.headers)).status_code == 200
    revoke = await http.put(
        f"/api/v1/admin/accounts/{user.account_id}/roles", json={"roles": []}, headers=admin.headers
    )
    assert revoke.status_code == 200, revoke.text
    assert (await http.get("/api/v1/admin/accounts", headers=user.headers)).status_code == 403
    waited = await seconds_until(other_http, user, "/api/v1/admin/accounts", 403)
    assert waited <= CACHE_SECONDS + MARGIN_SECONDS


async def test_disabled_account_is_refused_by_another_process_within_the_cache_bound(
    http: httpx.AsyncClient, other_http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    user = await sign_up(http, api_system)
    assert (await other_http.get("/api/v1/me", headers=user.headers)).status_code == 200
    disable = await http.put(
        f"/api/v1/admin/accounts/{user.account_id}/disabled",
        json={"disabled": True},
        headers=admin.headers,
    )
    assert disable.status_code == 200, disable.text
    waited = await seconds_until(other_http, user, "/api/v1/me", 401)
    assert waited <= CACHE_SECONDS + MARGIN_SECONDS
    refused = await other_http.get("/api/v1/me", headers=user.headers)
    assert refused.json()["code"] == "account_disabled"


async def test_granted_role_is_honoured_by_another_process_within_the_cache_bound(
    http: httpx.AsyncClient, other_http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    admin = await sign_in_admin(http, api_system)
    user = await sign_up(http, api_system)
    assert (await other_http.get("/api/v1/admin/accounts", headers=user.headers)).status_code == 403
    grant = await http.put(
        f"/api/v1/admin/accounts/{user.account_id}/roles",
        json={"roles": ["admin"]},
        headers=admin.headers,
    )
    assert grant.status_code == 200, grant.text
    waited = await seconds_until(other_http, user, "/api/v1/admin/accounts", 200)
    assert waited <= CACHE_SECONDS + MARGIN_SECONDS
