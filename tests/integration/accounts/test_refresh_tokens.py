"""Refresh token families in a real Redis: one use each, reuse revokes, rotation is atomic."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from eventhunting.domain.accounts import InvalidRefreshToken, RefreshTokenReused
from eventhunting.tokens.refresh import RefreshTokens, family_key
from tests.integration.accounts.conftest import REFRESH_SECONDS, ManualClock


async def test_rotation_returns_a_new_token_of_the_same_family(
    refresh_tokens: RefreshTokens,
) -> None:
    first = await refresh_tokens.start_family("acc-1")
    rotated = await refresh_tokens.rotate(first.token)
    assert rotated.account_id == "acc-1"
    assert rotated.issued.family_id == first.family_id
    assert rotated.issued.token != first.token


async def test_each_token_in_a_chain_works_once(refresh_tokens: RefreshTokens) -> None:
    token = (await refresh_tokens.start_family("acc-1")).token
    for _ in range(5):
        token = (await refresh_tokens.rotate(token)).issued.token
    assert (await refresh_tokens.rotate(token)).account_id == "acc-1"


async def test_reusing_a_spent_token_is_refused_as_reuse(refresh_tokens: RefreshTokens) -> None:
    first = await refresh_tokens.start_family("acc-1")
    await refresh_tokens.rotate(first.token)
    with pytest.raises(RefreshTokenReused):
        await refresh_tokens.rotate(first.token)


async def test_reuse_revokes_the_newest_token_of_the_family_too(
    refresh_tokens: RefreshTokens,
) -> None:
    first = await refresh_tokens.start_family("acc-1")
    newest = (await refresh_tokens.rotate(first.token)).issued.token
    with pytest.raises(RefreshTokenReused):
        await refresh_tokens.rotate(first.token)
    with pytest.raises(InvalidRefreshToken):
        await refresh_tokens.rotate(newest)


async def test_reuse_leaves_other_families_of_the_account_alone(
    refresh_tokens: RefreshTokens,
) -> None:
    phone = await refresh_tokens.start_family("acc-1")
    laptop = await refresh_tokens.start_family("acc-1")
    await refresh_tokens.rotate(phone.token)
    with pytest.raises(RefreshTokenReused):
        await refresh_tokens.rotate(phone.token)
    assert (await refresh_tokens.rotate(laptop.token)).account_id == "acc-1"


async def test_concurrent_uses_of_one_token_let_exactly_one_succeed(
    refresh_tokens: RefreshTokens,
) -> None:
    first = await refresh_tokens.start_family("acc-1")
    outcomes = await asyncio.gather(
        *(refresh_tokens.rotate(first.token) for _ in range(20)), return_exceptions=True
    )
    winners = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(loser, RefreshTokenReused | InvalidRefreshToken) for loser in losers)
    assert any(isinstance(loser, RefreshTokenReused) for loser in losers)
    # The race counts as reuse: the family, winner included, is revoked.
    with pytest.raises(InvalidRefreshToken):
        await refresh_tokens.rotate(winners[0].issued.token)


async def test_expired_token_is_refused(refresh_tokens: RefreshTokens, clock: ManualClock) -> None:
    first = await refresh_tokens.start_family("acc-1")
    clock.advance(REFRESH_SECONDS + 1)
    with pytest.raises(InvalidRefreshToken, match="expired"):
        await refresh_tokens.rotate(first.token)


async def test_unknown_token_is_refused_without_revoking_the_family(
    refresh_tokens: RefreshTokens,
) -> None:
    first = await refresh_tokens.start_family("acc-1")
    with pytest.raises(InvalidRefreshToken):
        await refresh_tokens.rotate(first.family_id + ".guessed-secret")
    assert (await refresh_tokens.rotate(first.token)).account_id == "acc-1"


async def test_only_a_digest_of_the_token_is_stored(
    refresh_tokens: RefreshTokens, redis_client: aioredis.Redis
) -> None:
    first = await refresh_tokens.start_family("acc-1")
    stored = await redis_client.hgetall(family_key(first.family_id))
    secret = first.token.split(".", 1)[1].encode()
    assert stored
    assert all(secret not in field and secret not in value for field, value in stored.items())


async def test_family_expires_from_redis_with_its_newest_token(
    refresh_tokens: RefreshTokens, redis_client: aioredis.Redis
) -> None:
    first = await refresh_tokens.start_family("acc-1")
    ttl = await redis_client.ttl(family_key(first.family_id))
    assert 0 < ttl <= REFRESH_SECONDS


async def test_logout_revokes_the_family_of_the_callers_own_token(
    refresh_tokens: RefreshTokens,
) -> None:
    first = await refresh_tokens.start_family("acc-1")
    assert await refresh_tokens.revoke(first.token, "acc-1")
    with pytest.raises(InvalidRefreshToken):
        await refresh_tokens.rotate(first.token)


async def test_logout_with_someone_elses_token_revokes_nothing(
    refresh_tokens: RefreshTokens,
) -> None:
    first = await refresh_tokens.start_family("acc-1")
    assert not await refresh_tokens.revoke(first.token, "acc-2")
    assert (await refresh_tokens.rotate(first.token)).account_id == "acc-1"
