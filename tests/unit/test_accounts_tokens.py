"""Access tokens: what is issued, and every kind of tampering is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from eventhunting.tokens.access import (
    AUDIENCE,
    ISSUER,
    AccessTokens,
    InvalidAccessToken,
    key_id_of,
)
from eventhunting.tokens.refresh import family_of

SECRET = "test-secret-" + "x" * 64


def tokens(clock_offset: timedelta = timedelta()) -> AccessTokens:
    return AccessTokens(SECRET, 900, clock=lambda: datetime.now(UTC) + clock_offset)


def segments(token: str) -> list[str]:
    return token.split(".")


def decode_segment(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


def encode_segment(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def valid_claims() -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "01ACCOUNT",
        "email": "ana@example.com",
        "iat": now,
        "exp": now + 600,
        "jti": "j1",
        "typ": "access",
    }


def test_issued_token_verifies_to_its_account_and_email() -> None:
    issued = tokens().issue("01ACCOUNT", "ana@example.com")
    claims = tokens().verify(issued.token)
    assert claims.account_id == "01ACCOUNT"
    assert claims.email == "ana@example.com"
    assert issued.expires_in == 900
    assert claims.expires_at - claims.issued_at == 900


def test_issued_token_carries_every_required_claim_and_a_key_id() -> None:
    token = tokens().issue("01ACCOUNT", "ana@example.com").token
    header, payload = decode_segment(segments(token)[0]), decode_segment(segments(token)[1])
    assert header == {"alg": "HS256", "kid": key_id_of(SECRET), "typ": "JWT"}
    assert set(payload) == {"iss", "aud", "sub", "email", "iat", "exp", "jti", "typ"}
    assert payload["typ"] == "access"


def test_key_id_does_not_reveal_the_secret() -> None:
    assert SECRET not in key_id_of(SECRET)
    assert key_id_of(SECRET) != key_id_of(SECRET + "2")


def test_changed_payload_is_refused() -> None:
    header, payload, signature = segments(tokens().issue("01ACCOUNT", "ana@example.com").token)
    claims = decode_segment(payload)
    claims["sub"] = "01SOMEONE-ELSE"
    with pytest.raises(InvalidAccessToken):
        tokens().verify(".".join([header, encode_segment(claims), signature]))


def test_alg_none_token_is_refused() -> None:
    header = encode_segment({"alg": "none", "typ": "JWT", "kid": key_id_of(SECRET)})
    token = f"{header}.{encode_segment(valid_claims())}."
    with pytest.raises(InvalidAccessToken):
        tokens().verify(token)


def test_token_signed_with_another_key_is_refused() -> None:
    token = jwt.encode(
        valid_claims(),
        "another-secret-" + "y" * 32,
        algorithm="HS256",
        headers={"kid": key_id_of(SECRET)},
    )
    with pytest.raises(InvalidAccessToken):
        tokens().verify(token)


def test_token_with_another_algorithm_is_refused_even_with_the_right_key() -> None:
    token = jwt.encode(
        valid_claims(), SECRET, algorithm="HS512", headers={"kid": key_id_of(SECRET)}
    )
    with pytest.raises(InvalidAccessToken):
        tokens().verify(token)


def test_expired_token_is_refused() -> None:
    token = tokens(clock_offset=-timedelta(hours=1)).issue("01ACCOUNT", "a@example.com").token
    with pytest.raises(InvalidAccessToken, match="expired"):
        tokens().verify(token)


def test_token_with_an_unknown_key_id_is_refused() -> None:
    token = jwt.encode(valid_claims(), SECRET, algorithm="HS256", headers={"kid": "other"})
    with pytest.raises(InvalidAccessToken):
        tokens().verify(token)


def test_token_without_a_key_id_is_refused() -> None:
    token = jwt.encode(valid_claims(), SECRET, algorithm="HS256")
    with pytest.raises(InvalidAccessToken):
        tokens().verify(token)


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "exp", "jti", "typ", "email"])
def test_token_missing_a_required_claim_is_refused(claim: str) -> None:
    claims = valid_claims()
    del claims[claim]
    token = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": key_id_of(SECRET)})
    with pytest.raises(InvalidAccessToken):
        tokens().verify(token)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("iss", "someone-else"), ("aud", "another-api"), ("typ", "refresh"), ("sub", "")],
)
def test_token_with_a_wrong_claim_value_is_refused(claim: str, value: str) -> None:
    claims = {**valid_claims(), claim: value}
    token = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": key_id_of(SECRET)})
    with pytest.raises(InvalidAccessToken):
        tokens().verify(token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "😀.😀.😀"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidAccessToken):
        tokens().verify(garbage)


@pytest.mark.parametrize(
    "token", ["", "no-separator", ".secret", "family.", "{p1}.secret", "x" * 300 + ".y"]
)
def test_malformed_refresh_token_has_no_family(token: str) -> None:
    with pytest.raises(Exception, match="not valid"):
        family_of(token)


def test_token_verified_earlier_is_refused_once_it_expires() -> None:
    clock = [datetime.now(UTC)]
    access = AccessTokens(SECRET, 900, clock=lambda: clock[0])
    token = access.issue("01ACCOUNT", "ana@example.com").token
    assert access.verify(token).account_id == "01ACCOUNT"
    clock[0] += timedelta(seconds=900 + 60)
    with pytest.raises(InvalidAccessToken, match="expired"):
        access.verify(token)


def test_refused_token_stays_refused_when_presented_again() -> None:
    header, payload, signature = segments(tokens().issue("01ACCOUNT", "a@example.com").token)
    forged = ".".join([header, encode_segment({**decode_segment(payload), "sub": "x"}), signature])
    access = tokens()
    for _ in range(3):
        with pytest.raises(InvalidAccessToken):
            access.verify(forged)
