"""argon2id password hashing off the event loop, with a dummy hash for unknown accounts."""

from __future__ import annotations

import asyncio
import secrets
from typing import Literal

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

PasswordHashProfile = Literal["standard", "test"]


def hasher_for(profile: PasswordHashProfile) -> PasswordHasher:
    """argon2id with the library's recommended cost, or a cheap cost for test suites only."""
    if profile == "standard":
        return PasswordHasher(type=Type.ID)
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)


class Passwords:
    """Hashes and verifies passwords in a worker thread so requests keep flowing."""

    def __init__(self, profile: PasswordHashProfile) -> None:
        self.hasher = hasher_for(profile)
        # Verifying against this when the email is unknown costs the same as a real check,
        # so response time does not tell whether an account exists.
        self.dummy_hash = self.hasher.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no hash, spend a verify and say False."""
        if password_hash is None:
            await asyncio.to_thread(self._verify, self.dummy_hash, password)
            return False
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
