"""Opaque refresh tokens: stored only as SHA-256 in Redis, rotated on use, reuse revokes all."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import msgspec

from eventhunting.domain.accounts import InvalidRefreshToken, RefreshTokenReused
from eventhunting.store.redis_client import RedisClient

ROTATE_SCRIPT = resources.files("eventhunting.tokens").joinpath("refresh_rotate.lua").read_text()
REVOKE_SCRIPT = resources.files("eventhunting.tokens").joinpath("refresh_revoke.lua").read_text()

FAMILY_ID_BYTES = 16
SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 256


class IssuedRefreshToken(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    family_id: str
    expires_at_ms: int


class RotatedRefreshToken(msgspec.Struct, frozen=True, kw_only=True):
    """A fresh token of the same family, and whose it is."""

    account_id: str
    issued: IssuedRefreshToken


def family_key(family_id: str) -> str:
    # The family id is the hash tag: one family, one slot, on a Redis Cluster too.
    return f"refresh:{{{family_id}}}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def family_of(token: str) -> str:
    """The family id carried in a token `<family id>.<secret>`; InvalidRefreshToken if none."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidRefreshToken("The refresh token is not valid.")
    family_id, separator, secret = token.partition(".")
    if not separator or not family_id or not secret or "{" in family_id or "}" in family_id:
        raise InvalidRefreshToken("The refresh token is not valid.")
    return family_id


def utc_now() -> datetime:
    return datetime.now(UTC)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RefreshTokens:
    """Refresh token families in Redis. Only digests are stored; tokens are shown once."""

    def __init__(
        self,
        redis: RedisClient,
        lifetime_seconds: int,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.redis = redis
        self.lifetime_ms = lifetime_seconds * 1000
        self.clock = clock
        self.rotate_script = redis.register_script(ROTATE_SCRIPT)
        self.revoke_script = redis.register_script(REVOKE_SCRIPT)

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def _new_token(self, family_id: str) -> tuple[str, str]:
        token = f"{family_id}.{secrets.token_urlsafe(SECRET_BYTES)}"
        return token, token_digest(token)

    async def start_family(self, account_id: str) -> IssuedRefreshToken:
        """A new family (one per login) with its first token."""
        family_id = secrets.token_urlsafe(FAMILY_ID_BYTES)
        token, digest = self._new_token(family_id)
        expires_at_ms = self._now_ms() + self.lifetime_ms
        key = family_key(family_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "account": account_id,
                    "current": digest,
                    "expires_ms": expires_at_ms,
                    "revoked": "0",
                },
            )
            pipe.pexpireat(key, expires_at_ms)
            await pipe.execute()
        return IssuedRefreshToken(token=token, family_id=family_id, expires_at_ms=expires_at_ms)

    async def rotate(self, token: str) -> RotatedRefreshToken:
        """Spend `token` and return its replacement.

        Raises RefreshTokenReused (after revoking the family) when the token was spent
        before, and InvalidRefreshToken when it is unknown, expired or revoked.
        """
        family_id = family_of(token)
        replacement, replacement_digest = self._new_token(family_id)
        now_ms = self._now_ms()
        expires_at_ms = now_ms + self.lifetime_ms
        reply: list[Any] = await self.rotate_script(
            keys=[family_key(family_id)],
            args=[token_digest(token), replacement_digest, now_ms, expires_at_ms],
        )
        outcome = text(reply[0])
        if outcome == "ok":
            return RotatedRefreshToken(
                account_id=text(reply[1]),
                issued=IssuedRefreshToken(
                    token=replacement, family_id=family_id, expires_at_ms=expires_at_ms
                ),
            )
        if outcome == "reused":
            raise RefreshTokenReused(
                "This refresh token was already used; every token of its sign-in is revoked."
            )
        if outcome == "expired":
            raise InvalidRefreshToken("The refresh token has expired.")
        raise InvalidRefreshToken("The refresh token is not valid.")

    async def revoke(self, token: str, account_id: str) -> bool:
        """Revoke the family of `token` if it is one of `account_id`'s; True when revoked."""
        family_id = family_of(token)
        reply = await self.revoke_script(
            keys=[family_key(family_id)], args=[token_digest(token), account_id]
        )
        return int(reply) == 1
