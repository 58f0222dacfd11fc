"""The account service on the private Redis, with a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from eventhunting.domain.actors import Actor
from eventhunting.services.accounts import AccountService, registration_fingerprint_key
from eventhunting.services.login_throttle import LoginThrottle
from eventhunting.services.passwords import Passwords
from eventhunting.store.append import EventStore
from eventhunting.tokens.access import AccessTokens
from eventhunting.tokens.refresh import RefreshTokens

PARTITIONS = 4
JWT_SECRET = "integration-secret-" + "z" * 40
ACCESS_SECONDS = 300
REFRESH_SECONDS = 3600
FAILURES_PER_ACCOUNT = 3
FAILURES_PER_ADDRESS = 5
FAILURES_BEFORE_SLOWDOWN = 8
FAILURE_WINDOW_SECONDS = 600
ADMIN = Actor("admin", is_admin=True)


async def manages_every_event(actor: Actor, event_id: str) -> None:
    """Who may grant staff at an event is the catalog's rule, tested over HTTP
    (tests/system/test_accounts_staff.py); here grants are about the account's flags."""


class ManualClock:
    """A clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class CountingPasswords(Passwords):
    """Real argon2id hashing that also counts verifications (timing-equality checks)."""

    def __init__(self) -> None:
        super().__init__("test")
        self.verifications = 0

    async def verify(self, password_hash: str | None, password: str) -> bool:
        self.verifications += 1
        return await super().verify(password_hash, password)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def passwords() -> CountingPasswords:
    return CountingPasswords()


@pytest.fixture
def refresh_tokens(redis_client: aioredis.Redis, clock: ManualClock) -> RefreshTokens:
    return RefreshTokens(redis_client, REFRESH_SECONDS, clock=clock)


@pytest.fixture
def throttle(redis_client: aioredis.Redis) -> LoginThrottle:
    return LoginThrottle(
        redis_client,
        per_account=FAILURES_PER_ACCOUNT,
        per_address=FAILURES_PER_ADDRESS,
        slowdown_after=FAILURES_BEFORE_SLOWDOWN,
        window_seconds=FAILURE_WINDOW_SECONDS,
    )


AccountServiceWith = Callable[[LoginThrottle], AccountService]


@pytest.fixture
def accounts_with(
    redis_client: aioredis.Redis,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
    clock: ManualClock,
    passwords: CountingPasswords,
    refresh_tokens: RefreshTokens,
) -> AccountServiceWith:
    """Build the account service around a throttle of the test's own limits."""

    def build(throttle: LoginThrottle) -> AccountService:
        return AccountService(
            store=EventStore(redis_client, PARTITIONS, clock=clock),
            redis=redis_client,
            database=mongo_client[mongo_database_name],
            passwords=passwords,
            access_tokens=AccessTokens(JWT_SECRET, ACCESS_SECONDS, clock=clock),
            refresh_tokens=refresh_tokens,
            throttle=throttle,
            partitions=PARTITIONS,
            fingerprint_key=registration_fingerprint_key(JWT_SECRET),
            ensure_manages_event=manages_every_event,
        )

    return build


@pytest.fixture
def accounts(accounts_with: AccountServiceWith, throttle: LoginThrottle) -> AccountService:
    return accounts_with(throttle)
