"""The account service against a real Redis: registration races, roles, login, disabling."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from eventhunting.domain.accounts import (
    ChangeRoles,
    DisableAccount,
    DisabledAccount,
    EmailTaken,
    EnableAccount,
    GrantStaff,
    InvalidCredentials,
    RegisterAccount,
    RevokeStaff,
    TooManyAttempts,
)
from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import IdempotencyKeyReused, InvalidInput
from eventhunting.services.accounts import AccountService
from eventhunting.store import keys
from eventhunting.store.counters import account_flags_counter
from eventhunting.tokens.access import InvalidAccessToken
from tests.integration.accounts.conftest import (
    ADMIN,
    FAILURES_BEFORE_SLOWDOWN,
    FAILURES_PER_ACCOUNT,
    FAILURES_PER_ADDRESS,
    CountingPasswords,
)

PASSWORD = "a fine password"


def email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def test_concurrent_registrations_of_one_email_have_exactly_one_winner(
    accounts: AccountService,
) -> None:
    address = email()
    spellings = [address, address.upper(), f"  {address} ", address.title()] * 3
    outcomes = await asyncio.gather(
        *(
            accounts.register(RegisterAccount(email=spelling, password=PASSWORD, full_name="Racer"))
            for spelling in spellings
        ),
        return_exceptions=True,
    )
    winners = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(outcome, EmailTaken) for outcome in outcomes if outcome not in winners)
    found = await accounts.find_by_email(address)
    assert found is not None
    assert found.account_id == winners[0].account_id


async def test_account_id_lives_in_the_partition_of_its_email(accounts: AccountService) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    assert keys.partition_of(account.account_id, 4) == keys.partition_of(account.email, 4)


async def test_registration_reports_every_bad_field_at_once(accounts: AccountService) -> None:
    with pytest.raises(InvalidInput) as raised:
        await accounts.register(RegisterAccount(email="nope", password="short", full_name="A"))
    assert {error["field"] for error in raised.value.extra["errors"]} == {"email", "password"}


async def test_repeated_idempotency_key_returns_the_first_account(
    accounts: AccountService,
) -> None:
    address = email()
    first = await accounts.register(
        RegisterAccount(email=address, password=PASSWORD, full_name="A"), idempotency_key="k1"
    )
    again = await accounts.register(
        RegisterAccount(email=address, password=PASSWORD, full_name="A"), idempotency_key="k1"
    )
    assert again.account_id == first.account_id


async def test_idempotency_key_with_a_different_body_is_a_conflict(
    accounts: AccountService,
) -> None:
    address = email()
    await accounts.register(
        RegisterAccount(email=address, password=PASSWORD, full_name="A"), idempotency_key="k2"
    )
    with pytest.raises(IdempotencyKeyReused):
        await accounts.register(
            RegisterAccount(email=address, password=PASSWORD, full_name="B"), idempotency_key="k2"
        )


async def test_idempotency_key_with_a_different_password_is_a_conflict(
    accounts: AccountService,
) -> None:
    address = email()
    await accounts.register(
        RegisterAccount(email=address, password=PASSWORD, full_name="A"), idempotency_key="k3"
    )
    with pytest.raises(IdempotencyKeyReused):
        await accounts.register(
            RegisterAccount(email=address, password="another fine password", full_name="A"),
            idempotency_key="k3",
        )


async def test_idempotency_key_with_a_different_email_is_a_conflict_in_any_partition(
    accounts: AccountService,
) -> None:
    first = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A"), idempotency_key="k4"
    )
    # Emails of every partition: the key's record is found wherever the new email lives.
    others = [email() for _ in range(12)]
    assert len({keys.partition_of(other, 4) for other in others}) > 1
    for other in others:
        with pytest.raises(IdempotencyKeyReused):
            await accounts.register(
                RegisterAccount(email=other, password=PASSWORD, full_name="A"), idempotency_key="k4"
            )
        assert await accounts.find_by_email(other) is None
    assert (await accounts.get(first.account_id)).email == first.email


async def test_registration_stores_no_password_in_clear(
    accounts: AccountService, redis_client: aioredis.Redis
) -> None:
    secret = "a very recognisable password"
    await accounts.register(
        RegisterAccount(email=email(), password=secret, full_name="A"), idempotency_key="k5"
    )
    async for key in redis_client.scan_iter():
        kind = await redis_client.type(key)
        if kind == b"string":
            values = [await redis_client.get(key)]
        elif kind == b"stream":
            values = [
                value for _, fields in await redis_client.xrange(key) for value in fields.values()
            ]
        elif kind == b"hash":
            values = list((await redis_client.hgetall(key)).values())
        else:
            values = []
        assert not any(secret.encode() in (value or b"") for value in values), key


async def test_login_returns_tokens_that_authenticate_the_account(
    accounts: AccountService,
) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    pair = await accounts.login(email=account.email, password=PASSWORD, client_address="10.0.0.1")
    state = await accounts.access_state(pair.access_token)
    assert state.account_id == account.account_id
    assert state.roles == {"customer"}
    assert pair.token_type == "Bearer"


async def test_login_with_any_spelling_of_the_email_works(accounts: AccountService) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    pair = await accounts.login(
        email=f" {account.email.upper()} ", password=PASSWORD, client_address="10.0.0.1"
    )
    assert pair.access_token


async def test_unknown_email_and_wrong_password_fail_alike_and_both_verify_a_hash(
    accounts: AccountService, passwords: CountingPasswords
) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    before = passwords.verifications
    with pytest.raises(InvalidCredentials) as unknown:
        await accounts.login(email=email(), password=PASSWORD, client_address="10.0.0.2")
    with pytest.raises(InvalidCredentials) as wrong:
        await accounts.login(email=account.email, password="wrong pass", client_address="10.0.0.2")
    assert passwords.verifications - before == 2
    assert (unknown.value.code, unknown.value.detail) == (wrong.value.code, wrong.value.detail)


async def test_repeated_failures_for_one_account_from_one_address_are_throttled_with_retry_after(
    accounts: AccountService,
) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    for _ in range(FAILURES_PER_ACCOUNT):
        with pytest.raises(InvalidCredentials):
            await accounts.login(
                email=account.email, password="wrong pass", client_address="10.1.0.1"
            )
    with pytest.raises(TooManyAttempts) as raised:
        await accounts.login(email=account.email, password=PASSWORD, client_address="10.1.0.1")
    assert 0 < raised.value.retry_after_seconds <= 600


async def test_failures_from_other_addresses_do_not_lock_the_owner_out(
    accounts: AccountService,
) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    # Two addresses, each at its lock, stay below the account's slow-down ceiling.
    assert 2 * FAILURES_PER_ACCOUNT < FAILURES_BEFORE_SLOWDOWN
    for attacker in range(2):
        for _ in range(FAILURES_PER_ACCOUNT):
            with pytest.raises(InvalidCredentials):
                await accounts.login(
                    email=account.email, password="wrong pass", client_address=f"10.1.2.{attacker}"
                )
        with pytest.raises(TooManyAttempts):
            await accounts.login(
                email=account.email, password="wrong pass", client_address=f"10.1.2.{attacker}"
            )
    pair = await accounts.login(email=account.email, password=PASSWORD, client_address="10.1.3.1")
    assert pair.access_token


async def test_throttled_login_spends_no_hash_verification(
    accounts: AccountService, passwords: CountingPasswords
) -> None:
    address = email()
    for _ in range(FAILURES_PER_ACCOUNT):
        with pytest.raises(InvalidCredentials):
            await accounts.login(email=address, password="wrong pass", client_address="10.2.0.1")
    before = passwords.verifications
    with pytest.raises(TooManyAttempts):
        await accounts.login(email=address, password="wrong pass", client_address="10.2.0.1")
    assert passwords.verifications == before


async def test_repeated_failures_from_one_address_are_throttled_across_emails(
    accounts: AccountService,
) -> None:
    for _ in range(FAILURES_PER_ADDRESS):
        with pytest.raises(InvalidCredentials):
            await accounts.login(email=email(), password="wrong pass", client_address="10.3.0.1")
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    with pytest.raises(TooManyAttempts):
        await accounts.login(email=account.email, password=PASSWORD, client_address="10.3.0.1")
    # Another address is not affected.
    await accounts.login(email=account.email, password=PASSWORD, client_address="10.3.0.2")


async def test_successful_login_forgives_its_addresses_failures_for_the_account(
    accounts: AccountService,
) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    for _ in range(2):
        for _ in range(FAILURES_PER_ACCOUNT - 1):
            with pytest.raises(InvalidCredentials):
                await accounts.login(
                    email=account.email, password="wrong pass", client_address="10.4.0.1"
                )
        await accounts.login(email=account.email, password=PASSWORD, client_address="10.4.0.1")


async def test_role_change_shows_in_the_next_access_check_with_the_same_token(
    accounts: AccountService,
) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    pair = await accounts.login(email=account.email, password=PASSWORD, client_address="10.5.0.1")
    await accounts.change_roles(
        ChangeRoles(account_id=account.account_id, by=ADMIN, roles=("organizer",))
    )
    assert (await accounts.access_state(pair.access_token)).roles == {"customer", "organizer"}
    await accounts.change_roles(ChangeRoles(account_id=account.account_id, by=ADMIN, roles=()))
    assert (await accounts.access_state(pair.access_token)).roles == {"customer"}


async def test_disabled_account_is_refused_for_access_refresh_and_login(
    accounts: AccountService,
) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    pair = await accounts.login(email=account.email, password=PASSWORD, client_address="10.6.0.1")
    await accounts.disable(DisableAccount(account_id=account.account_id, by=ADMIN))
    with pytest.raises(DisabledAccount):
        await accounts.access_state(pair.access_token)
    with pytest.raises(DisabledAccount):
        await accounts.refresh(pair.refresh_token)
    with pytest.raises(DisabledAccount):
        await accounts.login(email=account.email, password=PASSWORD, client_address="10.6.0.1")
    await accounts.enable(EnableAccount(account_id=account.account_id, by=ADMIN))
    await accounts.login(email=account.email, password=PASSWORD, client_address="10.6.0.1")


async def test_staff_grants_show_in_the_access_check(accounts: AccountService) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    pair = await accounts.login(email=account.email, password=PASSWORD, client_address="10.7.0.1")
    await accounts.grant_staff(
        GrantStaff(account_id=account.account_id, event_id="EVENT-1", by=Actor("organizer"))
    )
    assert (await accounts.access_state(pair.access_token)).staff_events == {"EVENT-1"}
    await accounts.revoke_staff(
        RevokeStaff(account_id=account.account_id, event_id="EVENT-1", by=Actor("organizer"))
    )
    assert (await accounts.access_state(pair.access_token)).staff_events == frozenset()


async def test_access_check_falls_back_to_the_stream_when_flags_are_missing(
    accounts: AccountService, redis_client: aioredis.Redis
) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    await accounts.change_roles(
        ChangeRoles(account_id=account.account_id, by=ADMIN, roles=("organizer",))
    )
    pair = await accounts.login(email=account.email, password=PASSWORD, client_address="10.8.0.1")
    partition = keys.partition_of(account.account_id, 4)
    await redis_client.delete(
        keys.counter_key(partition, account_flags_counter(account.account_id))
    )
    assert (await accounts.access_state(pair.access_token)).roles == {"customer", "organizer"}


async def test_token_of_an_account_that_does_not_exist_is_refused(
    accounts: AccountService,
) -> None:
    token = accounts.access_tokens.issue("01NOSUCHACCOUNT", "ghost@example.com").token
    with pytest.raises(InvalidAccessToken):
        await accounts.access_state(token)


async def test_concurrent_role_changes_all_land_in_the_flags(accounts: AccountService) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    await asyncio.gather(
        *(
            accounts.grant_staff(
                GrantStaff(account_id=account.account_id, event_id=f"E{index}", by=ADMIN)
            )
            for index in range(8)
        )
    )
    pair = await accounts.login(email=account.email, password=PASSWORD, client_address="10.9.0.1")
    state = await accounts.access_state(pair.access_token)
    assert state.staff_events == {f"E{index}" for index in range(8)}
    assert (await accounts.get(account.account_id)).staff_events == state.staff_events


async def test_bootstrap_admin_is_created_once_even_when_started_concurrently(
    accounts: AccountService,
) -> None:
    address = email()
    admins = await asyncio.gather(*(accounts.ensure_admin(address, PASSWORD) for _ in range(4)))
    assert len({admin.account_id for admin in admins}) == 1
    assert "admin" in admins[0].roles
    again = await accounts.ensure_admin(address, PASSWORD)
    assert again.account_id == admins[0].account_id
    assert again.version == admins[0].version


async def test_bootstrap_admin_promotes_an_existing_account(accounts: AccountService) -> None:
    account = await accounts.register(
        RegisterAccount(email=email(), password=PASSWORD, full_name="A")
    )
    admin = await accounts.ensure_admin(account.email.upper(), "another password")
    assert admin.account_id == account.account_id
    assert admin.roles == {"customer", "admin"}
