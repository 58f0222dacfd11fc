"""Sign-in attempt slots in Redis, taken before a password is verified (429 past a limit)."""

from __future__ import annotations

import asyncio
import hashlib
import math
from importlib import resources

from eventhunting.domain.accounts import TooManyAttempts
from eventhunting.store.redis_client import RedisClient

RESERVE_SCRIPT = resources.files("eventhunting.services").joinpath("login_reserve.lua").read_text()
RELEASE_SCRIPT = resources.files("eventhunting.services").joinpath("login_release.lua").read_text()


def email_tag(normalised_email: str) -> str:
    # Hashed so Redis keys do not list people's email addresses; the braces keep every key
    # of one email in one Redis Cluster slot, so one script can check them together.
    return "{" + hashlib.sha256(normalised_email.encode()).hexdigest()[:32] + "}"


def account_address_key(normalised_email: str, address: str) -> str:
    """Attempts for one email from one client address: the lock."""
    return f"login-failures:{email_tag(normalised_email)}:address:{address}"


def account_key(normalised_email: str) -> str:
    """Attempts for one email from every address: past the ceiling, attempts are spaced."""
    return f"login-failures:{email_tag(normalised_email)}:account"


def spacing_key(normalised_email: str) -> str:
    """Present while the next spaced attempt for one email must wait."""
    return f"login-failures:{email_tag(normalised_email)}:spacing"


def address_key(address: str) -> str:
    """Attempts from one client address, across emails: bounds its password-hashing work."""
    return f"login-failures:address:{{{address}}}"


class LoginThrottle:
    """Fixed windows of attempt slots. An attempt takes a slot from its address, then from
    its email-and-address pair and its email before the password is checked; a failure
    keeps the slots, a success gives them back. The first slot starts a counter's window.

    - `per_account`: attempts for one email from one address within the window; at the
      limit that pair waits out the window. Failures elsewhere never lock an owner out.
    - `per_address`: attempts from one address across emails; bounds the argon2 work one
      address can cause.
    - `slowdown_after`: attempts for one email from every address; past it, the email gets
      one attempt per `spacing_seconds` (others wait), so a spread-out guesser is slowed
      and the owner still gets in once the spacing allows.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        per_account: int,
        per_address: int,
        slowdown_after: int,
        window_seconds: float,
        spacing_seconds: float | None = None,
    ) -> None:
        self.redis = redis
        self.per_account = per_account
        self.per_address = per_address
        self.slowdown_after = slowdown_after
        self.window_ms = max(1, round(window_seconds * 1000))
        # By default, past the ceiling an email gets about as many attempts again per window.
        spacing = window_seconds / slowdown_after if spacing_seconds is None else spacing_seconds
        self.spacing_ms = max(1, round(spacing * 1000))
        self.reserve_script = redis.register_script(RESERVE_SCRIPT)
        self.release_script = redis.register_script(RELEASE_SCRIPT)

    async def reserve(self, normalised_email: str, address: str) -> None:
        """Take an attempt slot, or raise TooManyAttempts with the seconds to wait."""
        # Address first: it bounds the work of one address, whatever emails it tries.
        wait_ms = int(
            await self.reserve_script(
                keys=[address_key(address)], args=[self.window_ms, self.per_address]
            )
        )
        if wait_ms:
            raise too_many_attempts(wait_ms)
        wait_ms = int(
            await self.reserve_script(
                keys=[
                    account_address_key(normalised_email, address),
                    account_key(normalised_email),
                    spacing_key(normalised_email),
                ],
                args=[self.window_ms, self.per_account, self.slowdown_after, self.spacing_ms],
            )
        )
        if wait_ms:
            await self.release_script(keys=[address_key(address)], args=["return"])
            raise too_many_attempts(wait_ms)

    async def give_back(self, normalised_email: str, address: str) -> None:
        """After a correct password: forgive this address's failures for the email and
        return the attempt's slots."""
        account_keys = [
            account_address_key(normalised_email, address),
            account_key(normalised_email),
        ]
        # Two hash slots (the email's and the address's), so two calls, side by side.
        await asyncio.gather(
            self.release_script(keys=account_keys, args=["clear", "return"]),
            self.release_script(keys=[address_key(address)], args=["return"]),
        )


def too_many_attempts(wait_ms: int) -> TooManyAttempts:
    retry_after = max(1, math.ceil(wait_ms / 1000))
    return TooManyAttempts(
        f"Too many sign-in attempts; try again in {retry_after} seconds.",
        retry_after_seconds=retry_after,
    )
