"""The accounts read model follows the account streams, once per event, and never holds hashes."""

from __future__ import annotations

import uuid
from typing import Any

from pymongo import AsyncMongoClient

from eventhunting.domain.accounts import (
    ChangeRoles,
    DisableAccount,
    GrantStaff,
    RegisterAccount,
    RevokeStaff,
)
from eventhunting.projections.accounts import ACCOUNTS_COLLECTION, AccountsProjection
from eventhunting.projections.base import Projector
from eventhunting.projections.replay import replay
from eventhunting.services.accounts import AccountService
from tests.integration.accounts.conftest import ADMIN
from tests.support.leases import lease_of

PASSWORD = "a fine password"


async def project_everything(accounts: AccountService, projector: Projector) -> None:
    """Feed every partition log to the projector in small batches."""
    for partition in range(accounts.partitions):
        after = "0"
        while batch := await accounts.store.read_log(partition, after, count=3):
            await projector(batch, lease_of(batch))
            after = batch[-1].position or after


async def test_read_model_follows_roles_staff_and_disabling(
    accounts: AccountService,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    database = mongo_client[mongo_database_name]
    projection = AccountsProjection()
    await projection.create_indexes(database)
    email = f"read-{uuid.uuid4().hex[:8]}@example.com"
    account = await accounts.register(
        RegisterAccount(email=email, password=PASSWORD, full_name="Reader")
    )
    await accounts.change_roles(
        ChangeRoles(account_id=account.account_id, by=ADMIN, roles=("organizer",))
    )
    await accounts.grant_staff(GrantStaff(account_id=account.account_id, event_id="E1", by=ADMIN))
    await accounts.grant_staff(GrantStaff(account_id=account.account_id, event_id="E2", by=ADMIN))
    await accounts.revoke_staff(RevokeStaff(account_id=account.account_id, event_id="E1", by=ADMIN))
    await accounts.disable(DisableAccount(account_id=account.account_id, by=ADMIN))

    await project_everything(accounts, Projector(database, [projection]))

    document = await database[ACCOUNTS_COLLECTION].find_one({"_id": account.account_id})
    assert document is not None
    assert document["email"] == email
    assert document["roles"] == ["customer", "organizer"]
    assert document["staff_events"] == ["E2"]
    assert document["disabled"] is True
    assert document["version"] == 6
    assert "password_hash" not in document
    assert not any("argon2" in str(value) for value in document.values())


async def test_applying_events_again_changes_nothing(
    accounts: AccountService,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    database = mongo_client[mongo_database_name]
    projection = AccountsProjection()
    account = await accounts.register(
        RegisterAccount(
            email=f"again-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, full_name="A"
        )
    )
    await accounts.grant_staff(GrantStaff(account_id=account.account_id, event_id="E1", by=ADMIN))
    await accounts.revoke_staff(RevokeStaff(account_id=account.account_id, event_id="E1", by=ADMIN))
    history = await accounts.store.read_stream(f"account-{account.account_id}")

    async with mongo_client.start_session() as session:
        for envelope in [*history, *history]:
            await projection.apply(envelope, database, session)

    document = await database[ACCOUNTS_COLLECTION].find_one({"_id": account.account_id})
    assert document is not None
    assert document["staff_events"] == []
    assert document["version"] == 3


async def test_replay_rebuilds_the_same_read_model(
    accounts: AccountService,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    database = mongo_client[mongo_database_name]
    projection = AccountsProjection()
    await projection.create_indexes(database)
    for index in range(3):
        account = await accounts.register(
            RegisterAccount(
                email=f"replay-{index}-{uuid.uuid4().hex[:8]}@example.com",
                password=PASSWORD,
                full_name=f"R{index}",
            )
        )
        await accounts.change_roles(
            ChangeRoles(account_id=account.account_id, by=ADMIN, roles=("organizer",))
        )
    await accounts.disable(DisableAccount(account_id=account.account_id, by=ADMIN))
    await project_everything(accounts, Projector(database, [projection]))
    projected = await database[ACCOUNTS_COLLECTION].find().sort("_id").to_list()

    await replay(database, [projection], redis=accounts.store.redis, partitions=accounts.partitions)

    assert await database[ACCOUNTS_COLLECTION].find().sort("_id").to_list() == projected
    assert len(projected) == 3
