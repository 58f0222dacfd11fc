"""Short-lived HS256 access tokens: issued with a key id, verified with every claim pinned."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import jwt
import msgspec
from jwt.api_jwt import decode_complete

from eventhunting.domain.errors import Unauthenticated

ISSUER = "eventhunting"
AUDIENCE = "eventhunting-api"
ALGORITHM = "HS256"
TOKEN_TYPE = "access"  # noqa: S105 (a claim value, not a secret)
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "typ", "email")
# Several API processes may disagree on the time by a few seconds.
CLOCK_SKEW_SECONDS = 5
# Verified signatures per process. A token is immutable, so a verified one stays verified;
# expiry is checked on every use and roles are never cached (they are read per request).
VERIFIED_CACHE_SIZE = 16_384


class InvalidAccessToken(Unauthenticated):
    """The bearer token is missing, malformed, forged, expired or not an access token."""

    code = "unauthenticated"


class AccessClaims(msgspec.Struct, frozen=True, kw_only=True):
    """What a verified access token says."""

    account_id: str
    email: str
    token_id: str
    issued_at: int
    expires_at: int


class IssuedAccessToken(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    expires_in: int


def key_id_of(secret: str) -> str:
    """A public name for the signing key, so a rotated key is recognised (not the key itself)."""
    return "hs256-" + hashlib.sha256(b"eventhunting-kid:" + secret.encode()).hexdigest()[:16]


def utc_now() -> datetime:
    return datetime.now(UTC)


class AccessTokens:
    """Issues and verifies access tokens signed with one HMAC secret."""

    def __init__(
        self, secret: str, lifetime_seconds: int, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.key = secret.encode()
        self.key_id = key_id_of(secret)
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._verified = functools.lru_cache(maxsize=VERIFIED_CACHE_SIZE)(self._decode)

    def issue(self, account_id: str, email: str) -> IssuedAccessToken:
        issued_at = int(self.clock().timestamp())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": account_id,
            "email": email,
            "iat": issued_at,
            "exp": issued_at + self.lifetime_seconds,
            "jti": secrets.token_urlsafe(12),
            "typ": TOKEN_TYPE,
        }
        token = jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.key_id})
        return IssuedAccessToken(token=token, expires_in=self.lifetime_seconds)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; InvalidAccessToken for anything else."""
        claims = self._verified(token)
        if claims.expires_at <= self.clock().timestamp() - CLOCK_SKEW_SECONDS:
            raise InvalidAccessToken("The access token has expired.")
        return claims

    def _decode(self, token: str) -> AccessClaims:
        """Check signature, algorithm, key id and every claim (pyjwt checks time, too)."""
        try:
            decoded = decode_complete(
                token,
                self.key,
                # Pinned: the token's own `alg` header never chooses the algorithm.
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidAccessToken("The access token has expired.") from None
        except jwt.PyJWTError:
            raise InvalidAccessToken("The access token is not valid.") from None
        header, payload = decoded["header"], decoded["payload"]
        if header.get("kid") != self.key_id:
            raise InvalidAccessToken("The access token is not valid.")
        if payload.get("typ") != TOKEN_TYPE:
            raise InvalidAccessToken("The token is not an access token.")
        subject, email, token_id = payload.get("sub"), payload.get("email"), payload.get("jti")
        if not (isinstance(subject, str) and subject and isinstance(email, str)):
            raise InvalidAccessToken("The access token is not valid.")
        if not isinstance(token_id, str):
            raise InvalidAccessToken("The access token is not valid.")
        return AccessClaims(
            account_id=subject,
            email=email,
            token_id=token_id,
            issued_at=int(payload["iat"]),
            expires_at=int(payload["exp"]),
        )
