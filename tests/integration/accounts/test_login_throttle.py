"""Sign-in attempt slots on a real Redis: concurrent guesses, addresses, slow-down, windows."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from eventhunting.domain.accounts import InvalidCredentials, RegisterAccount, TooManyAttempts
from eventhunting.services.accounts import AccountService
from eventhunting.services.login_throttle import LoginThrottle
from tests.integration.accounts.conftest import AccountServiceWith, CountingPasswords

PASSWORD = "a fine password"
WRONG = "not the password"
GUESSES = 100


def email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def throttle(
    redis: aioredis.Redis,
    *,
    per_account: int = 1_000,
    per_address: int = 1_000,
    slowdown_after: int = 1_000,
    window_seconds: float = 600,
    spacing_seconds: float | None = None,
) -> LoginThrottle:
    return LoginThrottle(
        redis,
        per_account=per_account,
        per_address=per_address,
        slowdown_after=slowdown_after,
        window_seconds=window_seconds,
        spacing_seconds=spacing_seconds,
    )


async def guess_concurrently(
    accounts: AccountService, logins: list[tuple[str, str]]
) -> list[BaseException | object]:
    """Wrong passwords for (email, address) pairs, all at once."""
    return await asyncio.gather(
        *(
            accounts.login(email=guessed_email, password=WRONG, client_address=address)
            for guessed_email, address in logins
        ),
        return_exceptions=True,
    )


def count(outcomes: list[BaseException | object], kind: type[BaseException]) -> int:
    assert all(isinstance(o, InvalidCredentials | TooManyAttempts) for o in outcomes), outcomes
    return sum(isinstance(outcome, kind) for outcome in outcomes)


async def test_concurrent_wrong_guesses_from_one_address_verify_at_most_the_limit(
    accounts_with: AccountServiceWith,
    redis_client: aioredis.Redis,
    passwords: CountingPasswords,
) -> None:
    accounts = accounts_with(throttle(redis_client, per_account=5))
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    before = passwords.verifications
    outcomes = await guess_concurrently(accounts, [(account.email, "10.9.0.1")] * GUESSES)
    assert passwords.verifications - before == 5
    assert count(outcomes, InvalidCredentials) == 5
    assert count(outcomes, TooManyAttempts) == GUESSES - 5
    # The owner, elsewhere, is not locked out by someone else's guesses.
    pair = await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.0.2")
    assert pair.access_token


async def test_concurrent_guesses_from_one_address_across_emails_verify_at_most_its_limit(
    accounts_with: AccountServiceWith,
    redis_client: aioredis.Redis,
    passwords: CountingPasswords,
) -> None:
    accounts = accounts_with(throttle(redis_client, per_address=5))
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    before = passwords.verifications
    outcomes = await guess_concurrently(accounts, [(email(), "10.9.1.1") for _ in range(GUESSES)])
    assert passwords.verifications - before == 5
    assert count(outcomes, TooManyAttempts) == GUESSES - 5
    with pytest.raises(TooManyAttempts):
        await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.1.1")
    await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.1.2")


async def test_guesses_from_many_addresses_past_the_ceiling_are_spaced_not_locked(
    accounts_with: AccountServiceWith,
    redis_client: aioredis.Redis,
    passwords: CountingPasswords,
) -> None:
    spacing = 0.5
    accounts = accounts_with(
        throttle(redis_client, per_account=5, slowdown_after=10, spacing_seconds=spacing)
    )
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    before = passwords.verifications
    outcomes = await guess_concurrently(
        accounts, [(account.email, f"10.9.2.{index}") for index in range(GUESSES)]
    )
    # Ten below the ceiling, then one per spacing.
    assert passwords.verifications - before == 11
    assert count(outcomes, InvalidCredentials) == 11
    # The owner is slowed down, not locked out: a 429 asks them to wait the spacing...
    with pytest.raises(TooManyAttempts) as raised:
        await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.3.1")
    assert raised.value.retry_after_seconds == 1
    await asyncio.sleep(spacing + 0.1)
    # ...after which the right password works, and the next guess waits again.
    await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.3.1")
    with pytest.raises(TooManyAttempts):
        await accounts.login(email=account.email, password=WRONG, client_address="10.9.2.1")


async def test_correct_passwords_give_their_slots_back(
    accounts_with: AccountServiceWith, redis_client: aioredis.Redis
) -> None:
    accounts = accounts_with(throttle(redis_client, per_account=3, per_address=3))
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await accounts.login(email=account.email, password=WRONG, client_address="10.9.4.1")
    # One slot is left: were successes to keep theirs, the second would be refused.
    for _ in range(5):
        await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.4.1")


async def test_attempt_refused_for_its_account_gives_its_address_slot_back(
    accounts_with: AccountServiceWith, redis_client: aioredis.Redis
) -> None:
    accounts = accounts_with(throttle(redis_client, per_account=2, per_address=3))
    locked = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    other = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="B")
    )
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await accounts.login(email=locked.email, password=WRONG, client_address="10.9.5.1")
    for _ in range(5):
        with pytest.raises(TooManyAttempts):
            await accounts.login(email=locked.email, password=WRONG, client_address="10.9.5.1")
    # Two failures hold two of the address's three slots; the refusals hold none.
    await accounts.login(email=other.email, password=PASSWORD, client_address="10.9.5.1")


async def test_failures_are_forgotten_when_the_window_ends(
    accounts_with: AccountServiceWith, redis_client: aioredis.Redis
) -> None:
    window = 1.0
    accounts = accounts_with(
        throttle(redis_client, per_account=2, per_address=2, window_seconds=window)
    )
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await accounts.login(email=account.email, password=WRONG, client_address="10.9.6.1")
    with pytest.raises(TooManyAttempts) as raised:
        await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.6.1")
    assert raised.value.retry_after_seconds == 1
    # Every counter expires with its window; none is left behind without a TTL.
    counters = [key async for key in redis_client.scan_iter("login-failures:*")]
    assert counters
    for key in counters:
        assert 0 < await redis_client.pttl(key) <= window * 1000
    await asyncio.sleep(window + 0.1)
    assert [key async for key in redis_client.scan_iter("login-failures:*")] == []
    await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.6.1")
