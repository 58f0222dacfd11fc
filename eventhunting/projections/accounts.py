"""The accounts read model in MongoDB and the admins' account list it answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.accounts import (
    CUSTOMER,
    AccountDisabled,
    AccountEnabled,
    AccountRegistered,
    AccountRolesChanged,
    AccountStaffGranted,
    AccountStaffRevoked,
    InvoiceLettersChanged,
)
from eventhunting.projections.base import Projection
from eventhunting.projections.query_page import QueryPage
from eventhunting.store.envelope import EventEnvelope

ACCOUNTS_COLLECTION = "accounts"


def registered_document(event: AccountRegistered, envelope: EventEnvelope) -> dict[str, Any]:
    # The password hash stays on the write side: read models are for showing.
    return {
        "_id": event.account_id,
        "email": event.email,
        "full_name": event.full_name,
        "roles": sorted({*event.roles, CUSTOMER}),
        "staff_events": [],
        "disabled": False,
        "registered_at": envelope.occurred_at,
        "updated_at": envelope.occurred_at,
        "version": envelope.version,
    }


def update_of(data: object) -> dict[str, Any] | None:
    """The MongoDB update an event makes to an existing account document."""
    if isinstance(data, AccountRolesChanged):
        return {"$set": {"roles": sorted({*data.roles, CUSTOMER})}}
    if isinstance(data, AccountDisabled):
        return {"$set": {"disabled": True}}
    if isinstance(data, AccountEnabled):
        return {"$set": {"disabled": False}}
    if isinstance(data, AccountStaffGranted):
        return {"$addToSet": {"staff_events": data.event_id}}
    if isinstance(data, AccountStaffRevoked):
        return {"$pull": {"staff_events": data.event_id}}
    if isinstance(data, InvoiceLettersChanged):
        return {"$set": {"invoice_letters": data.letters}}
    return None


class AccountsProjection(Projection):
    """One document per account; each event applies once, by the document's version."""

    name = "accounts"
    collections = (ACCOUNTS_COLLECTION,)
    handles = frozenset(
        {
            "AccountRegistered",
            "AccountRolesChanged",
            "AccountDisabled",
            "AccountEnabled",
            "AccountStaffGranted",
            "AccountStaffRevoked",
            "InvoiceLettersChanged",
        }
    )

    async def create_indexes(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        accounts = database[ACCOUNTS_COLLECTION]
        await accounts.create_index([("email", ASCENDING)], name="email_unique", unique=True)
        await accounts.create_index(
            [("registered_at", DESCENDING), ("_id", DESCENDING)], name="newest_first"
        )
        await accounts.create_index(
            [("roles", ASCENDING), ("registered_at", DESCENDING)], name="role_newest_first"
        )

    async def apply(
        self,
        event: EventEnvelope,
        database: AsyncDatabase[dict[str, Any]],
        session: AsyncClientSession,
    ) -> None:
        accounts = database[ACCOUNTS_COLLECTION]
        data = event.data
        if isinstance(data, AccountRegistered):
            await accounts.update_one(
                {"_id": data.account_id},
                {"$setOnInsert": registered_document(data, event)},
                upsert=True,
                session=session,
            )
            return
        update = update_of(data)
        account_id = getattr(data, "account_id", None)
        if update is None or not isinstance(account_id, str):
            return
        update.setdefault("$set", {}).update(
            {"version": event.version, "updated_at": event.occurred_at}
        )
        await accounts.update_one(
            {"_id": account_id, "version": {"$lt": event.version}}, update, session=session
        )


@dataclass(frozen=True, slots=True)
class ListedAccount:
    """An account as the read model lists it (never the password hash)."""

    id: str
    email: str
    full_name: str
    roles: list[str]
    staff_events: list[str]
    disabled: bool


@dataclass(frozen=True, slots=True)
class AccountQuery:
    """A page of accounts, newest first; `email` matches exactly (any case), `role` one role."""

    email: str | None = None
    role: str | None = None
    page: int = 1
    page_size: int = 20


async def search_accounts(
    database: AsyncDatabase[dict[str, Any]], query: AccountQuery
) -> QueryPage[ListedAccount]:
    """Accounts matching `query`, newest first, one page of them and the total."""
    conditions: dict[str, Any] = {}
    if query.email:
        conditions["email"] = query.email.strip().lower()
    if query.role:
        conditions["roles"] = query.role
    collection = database[ACCOUNTS_COLLECTION]
    total = await collection.count_documents(conditions)
    cursor = (
        collection.find(conditions, projection={"password_hash": False})
        .sort([("registered_at", DESCENDING), ("_id", DESCENDING)])
        .skip((query.page - 1) * query.page_size)
        .limit(query.page_size)
    )
    items = [
        ListedAccount(
            id=str(document["_id"]),
            email=document["email"],
            full_name=document["full_name"],
            roles=sorted(document.get("roles", [])),
            staff_events=sorted(document.get("staff_events", [])),
            disabled=bool(document.get("disabled", False)),
        )
        async for document in cursor
    ]
    return QueryPage(items=items, total=total, page=query.page, page_size=query.page_size)
