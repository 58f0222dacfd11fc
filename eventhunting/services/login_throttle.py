"""Failed-login counters in Redis per account email and per client address (429 past a limit)."""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from eventhunting.domain.accounts import TooManyAttempts


def account_key(normalised_email: str) -> str:
    # Hashed so Redis keys do not list people's email addresses.
    digest = hashlib.sha256(normalised_email.encode()).hexdigest()[:32]
    return f"login-failures:account:{digest}"


def address_key(address: str) -> str:
    return f"login-failures:address:{address}"


class LoginThrottle:
    """Fixed windows: the first failure starts the window, the limit closes the door until
    the window ends (the Retry-After)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        per_account: int,
        per_address: int,
        window_seconds: int,
    ) -> None:
        self.redis = redis
        self.per_account = per_account
        self.per_address = per_address
        self.window_seconds = window_seconds

    async def check(self, normalised_email: str, address: str) -> None:
        """Raise TooManyAttempts when either counter is at its limit."""
        keys = (account_key(normalised_email), address_key(address))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            account_count, account_ttl, address_count, address_ttl = await pipe.execute()
        waits: list[int] = []
        if account_count is not None and int(account_count) >= self.per_account:
            waits.append(int(account_ttl))
        if address_count is not None and int(address_count) >= self.per_address:
            waits.append(int(address_ttl))
        if waits:
            retry_after = max(1, *waits)
            raise TooManyAttempts(
                f"Too many failed sign-in attempts; try again in {retry_after} seconds.",
                retry_after_seconds=retry_after,
            )

    async def record_failure(self, normalised_email: str, address: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (account_key(normalised_email), address_key(address)):
                # Starts the window with the first failure; later failures do not extend it.
                pipe.set(key, 0, ex=self.window_seconds, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def record_success(self, normalised_email: str) -> None:
        await self.redis.delete(account_key(normalised_email))
