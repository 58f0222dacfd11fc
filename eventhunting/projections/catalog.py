"""The catalog read model: one document per event, searched by text, province, topic and date."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain import catalog
from eventhunting.domain.catalog import CatalogEvent, EventStatus
from eventhunting.domain.events import registry
from eventhunting.domain.slugs import fold
from eventhunting.projections.base import Database, Projection
from eventhunting.projections.query_page import QueryPage
from eventhunting.store.envelope import EventEnvelope
from eventhunting.store.keys import aggregate_id_of

COLLECTION = "catalog_events"

# Every event of an event stream, so an event type added to the catalog is projected too.
CATALOG_EVENT_TYPES = frozenset(
    name
    for name, described in registry.by_name.items()
    if described.stream_kind == catalog.STREAM_KIND
)

MAX_PAGE_SIZE = 100
MAX_SEARCH_TERMS = 8

# Documents hold the folded CatalogEvent plus these derived fields, which are not state.
_DERIVED_FIELDS = ("_id", "listed", "search")
_WORD = re.compile(r"[a-z0-9]+")


def document_of(event: CatalogEvent) -> dict[str, Any]:
    """The read-model document of an event: its state, whether it is listed, and the folded
    text that search matches (diacritics and case removed, so `ha noi` finds `Hà Nội`)."""
    document: dict[str, Any] = msgspec.to_builtins(event, builtin_types=(datetime,))
    del document["id"]
    return {
        "_id": event.id,
        **document,
        "listed": event.is_public(),
        "search": fold(f"{event.title}\n{event.description}"),
    }


def event_of(document: dict[str, Any]) -> CatalogEvent:
    state = {key: value for key, value in document.items() if key not in _DERIVED_FIELDS}
    state["id"] = document["_id"]
    return msgspec.convert(_in_utc(state), CatalogEvent)


def _in_utc(value: Any) -> Any:
    """Datetimes as aware UTC whichever `tz_aware` the client reading them was built with."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dict):
        return {key: _in_utc(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_in_utc(item) for item in value]
    return value


class CatalogProjection(Projection):
    """Folds each event's stream into one document with the domain's own `evolve`, so the
    read model always agrees with what the write side decides on."""

    name = "catalog"
    collections = (COLLECTION,)
    handles = CATALOG_EVENT_TYPES

    async def create_indexes(self, db: Database) -> None:
        await create_catalog_indexes(db)

    async def apply(self, event: EventEnvelope, db: Database, session: AsyncClientSession) -> None:
        collection = db[COLLECTION]
        event_id = aggregate_id_of(event.stream)
        found = await collection.find_one({"_id": event_id}, session=session)
        state = None if found is None else event_of(found)
        if state is not None and state.version >= event.version:
            return  # delivered again after a crash: already applied
        state = catalog.evolve(state, event)
        await collection.replace_one(
            {"_id": event_id}, document_of(state), upsert=True, session=session
        )


async def create_catalog_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Indexes for the list filters, each ending in the sort (starts_at, _id). Idempotent."""
    await db[COLLECTION].create_indexes(
        [
            IndexModel(
                [("listed", ASCENDING), ("starts_at", ASCENDING), ("_id", ASCENDING)],
                name="listed_starts_at",
            ),
            IndexModel(
                [("listed", ASCENDING), ("province", ASCENDING), ("starts_at", ASCENDING)],
                name="listed_province_starts_at",
            ),
            IndexModel(
                [("listed", ASCENDING), ("topics", ASCENDING), ("starts_at", ASCENDING)],
                name="listed_topics_starts_at",
            ),
            IndexModel([("organizer_id", ASCENDING)], name="organizer_id"),
            IndexModel(
                [("organizer_id", ASCENDING), ("starts_at", ASCENDING), ("_id", ASCENDING)],
                name="organizer_starts_at",
            ),
        ]
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogQuery:
    """A page of listed events; `province` and `topic` are slugs, `starts_after` is
    inclusive and `starts_before` exclusive."""

    text: str | None = None
    province: str | None = None
    topic: str | None = None
    starts_after: datetime | None = None
    starts_before: datetime | None = None
    page: int = 1
    page_size: int = 20


def filter_of(query: CatalogQuery) -> dict[str, Any]:
    """The MongoDB filter of a catalog query.

    Text search matches every word of `text` as a substring of the folded title and
    description with `$regex`, not `$text`: the MongoDB stand-in has no text search, and one
    query language keeps results identical on the stand-in and on a real replica set.
    """
    conditions: dict[str, Any] = {"listed": True}
    if query.province is not None:
        conditions["province"] = query.province
    if query.topic is not None:
        conditions["topics"] = query.topic
    starts: dict[str, datetime] = {}
    if query.starts_after is not None:
        starts["$gte"] = query.starts_after
    if query.starts_before is not None:
        starts["$lt"] = query.starts_before
    if starts:
        conditions["starts_at"] = starts
    words = _WORD.findall(fold(query.text or ""))[:MAX_SEARCH_TERMS]
    if words:
        conditions["$and"] = [{"search": {"$regex": re.escape(word)}} for word in words]
    return conditions


async def search_catalog(
    db: AsyncDatabase[dict[str, Any]], query: CatalogQuery
) -> QueryPage[CatalogEvent]:
    """Listed events matching `query`, soonest first, one page of them and the total."""
    collection = db[COLLECTION]
    conditions = filter_of(query)
    total = await collection.count_documents(conditions)
    cursor = (
        collection.find(conditions)
        .sort([("starts_at", ASCENDING), ("_id", ASCENDING)])
        .skip((query.page - 1) * query.page_size)
        .limit(query.page_size)
    )
    items = [event_of(document) async for document in cursor]
    return QueryPage(items=items, total=total, page=query.page, page_size=query.page_size)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrganizerEventsQuery:
    """An organizer's own events in every state (drafts included), or in one `status`."""

    organizer_id: str
    status: EventStatus | None = None
    page: int = 1
    page_size: int = 20


async def events_of_organizer(
    db: AsyncDatabase[dict[str, Any]], query: OrganizerEventsQuery
) -> QueryPage[CatalogEvent]:
    """The organizer's events matching `query`, soonest first, one page of them and the total."""
    collection = db[COLLECTION]
    conditions: dict[str, Any] = {"organizer_id": query.organizer_id}
    if query.status is not None:
        conditions["status"] = query.status.value
    total = await collection.count_documents(conditions)
    cursor = (
        collection.find(conditions)
        .sort([("starts_at", ASCENDING), ("_id", ASCENDING)])
        .skip((query.page - 1) * query.page_size)
        .limit(query.page_size)
    )
    items = [event_of(document) async for document in cursor]
    return QueryPage(items=items, total=total, page=query.page, page_size=query.page_size)
