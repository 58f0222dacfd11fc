"""The catalog read model: what is listed, how it is searched, and that replay rebuilds it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import (
    CancelEvent,
    ChangeTicketType,
    EventStatus,
    PublishEvent,
    UpdateEvent,
)
from eventhunting.projections.base import Projector
from eventhunting.projections.catalog import (
    COLLECTION,
    CatalogProjection,
    CatalogQuery,
    OrganizerEventsQuery,
    events_of_organizer,
    search_catalog,
)
from eventhunting.projections.replay import replay
from eventhunting.services.catalog import CatalogService
from eventhunting.store.append import EventStore
from tests.integration.catalog.conftest import (
    ORGANIZER,
    ManualClock,
    event_draft,
    project_everything,
    ticket,
)
from tests.support.leases import lease_of

Database = AsyncDatabase[dict[str, Any]]


async def published(catalog: CatalogService, clock: ManualClock, **overrides: Any) -> str:
    created = await catalog.create_event(event_draft(clock, **overrides))
    await catalog.publish_event(PublishEvent(event_id=created.event.id, by=ORGANIZER))
    return created.event.id


async def titles(database: Database, **query: Any) -> list[str]:
    page = await search_catalog(database, CatalogQuery(**query))
    return [event.title for event in page.items]


async def test_only_published_and_cancelled_events_are_listed(
    catalog: CatalogService, store: EventStore, database: Database, clock: ManualClock
) -> None:
    await catalog.create_event(event_draft(clock, title="Draft"))
    await published(catalog, clock, title="Live")
    gone = await published(catalog, clock, title="Gone")
    await catalog.cancel_event(CancelEvent(event_id=gone, by=ORGANIZER))
    dropped = await catalog.create_event(event_draft(clock, title="Dropped draft"))
    await catalog.cancel_event(CancelEvent(event_id=dropped.event.id, by=ORGANIZER))
    await project_everything(store, database)
    page = await search_catalog(database, CatalogQuery())
    assert sorted((e.title, e.status.value) for e in page.items) == [
        ("Gone", "cancelled"),
        ("Live", "published"),
    ]


async def test_the_read_model_holds_the_folded_state_of_the_stream(
    catalog: CatalogService, store: EventStore, database: Database, clock: ManualClock
) -> None:
    event_id = await published(catalog, clock)
    state = await catalog.load_event(event_id)
    await catalog.update_event(UpdateEvent(event_id=event_id, by=ORGANIZER, title="Renamed"))
    await catalog.change_ticket_type(
        ChangeTicketType(
            event_id=event_id, ticket_type_id=state.ticket_types[0].id, by=ORGANIZER, price=0
        )
    )
    await project_everything(store, database)
    [listed] = (await search_catalog(database, CatalogQuery())).items
    assert listed == await catalog.load_event(event_id)


async def test_text_search_ignores_case_and_diacritics_and_needs_every_word(
    catalog: CatalogService, store: EventStore, database: Database, clock: ManualClock
) -> None:
    await published(catalog, clock, title="Đêm nhạc Jazz", description="Saxophone")
    await published(catalog, clock, title="Hòa nhạc giao hưởng", description="Beethoven")
    await project_everything(store, database)
    assert await titles(database, text="dem NHAC") == ["Đêm nhạc Jazz"]
    assert await titles(database, text="beethoven") == ["Hòa nhạc giao hưởng"]
    assert sorted(await titles(database, text="nhạc")) == ["Hòa nhạc giao hưởng", "Đêm nhạc Jazz"]
    assert await titles(database, text="jazz beethoven") == []


async def test_events_are_filtered_by_province_and_topic(
    catalog: CatalogService, store: EventStore, database: Database, clock: ManualClock
) -> None:
    await published(catalog, clock, title="HN rock", province="ha-noi", topics=["rock"])
    await published(catalog, clock, title="SG rock", province="ho-chi-minh", topics=["Rock"])
    await published(catalog, clock, title="SG jazz", province="ho-chi-minh", topics=["jazz"])
    await project_everything(store, database)
    assert sorted(await titles(database, province="ho-chi-minh")) == ["SG jazz", "SG rock"]
    assert sorted(await titles(database, topic="rock")) == ["HN rock", "SG rock"]
    assert await titles(database, province="ho-chi-minh", topic="rock") == ["SG rock"]


async def test_events_are_sorted_by_start_and_filtered_by_a_date_range(
    catalog: CatalogService, store: EventStore, database: Database, clock: ManualClock
) -> None:
    base = clock.now + timedelta(days=10)
    for title, days in (("third", 3), ("first", 1), ("second", 2)):
        starts = base + timedelta(days=days)
        await published(
            catalog, clock, title=title, starts_at=starts, ends_at=starts + timedelta(hours=1)
        )
    await project_everything(store, database)
    assert await titles(database) == ["first", "second", "third"]
    assert await titles(
        database,
        starts_after=base + timedelta(days=2),
        starts_before=base + timedelta(days=3),
    ) == ["second"]


async def test_pages_split_the_sorted_list_and_count_the_total(
    catalog: CatalogService, store: EventStore, database: Database, clock: ManualClock
) -> None:
    base = clock.now + timedelta(days=10)
    for index in range(5):
        starts = base + timedelta(hours=index)
        await published(
            catalog, clock, title=f"e{index}", starts_at=starts, ends_at=starts + timedelta(hours=1)
        )
    await project_everything(store, database)
    page = await search_catalog(database, CatalogQuery(page=2, page_size=2))
    assert [e.title for e in page.items] == ["e2", "e3"]
    assert (page.total, page.page, page.page_size) == (5, 2, 2)
    last = await search_catalog(database, CatalogQuery(page=3, page_size=2))
    assert [e.title for e in last.items] == ["e4"]
    beyond = await search_catalog(database, CatalogQuery(page=9, page_size=2))
    assert (beyond.items, beyond.total) == ([], 5)


async def test_an_event_delivered_again_changes_nothing(
    catalog: CatalogService, store: EventStore, database: Database, clock: ManualClock
) -> None:
    event_id = await published(catalog, clock)
    await project_everything(store, database)
    before = await database[COLLECTION].find_one({"_id": event_id})
    projection = CatalogProjection()
    async with database.client.start_session() as session:
        for partition in range(store.partitions):
            for event in await store.read_log(partition):
                await projection.apply(event, database, session)
    assert await database[COLLECTION].find_one({"_id": event_id}) == before


async def test_replay_rebuilds_a_catalog_equal_to_the_live_one(
    catalog: CatalogService,
    store: EventStore,
    database: Database,
    clock: ManualClock,
) -> None:
    first = await published(catalog, clock, title="One", ticket_types=[ticket("A"), ticket("B")])
    await published(catalog, clock, title="Two", province="da-nang")
    await catalog.create_event(event_draft(clock, title="Draft"))
    await catalog.update_event(
        UpdateEvent(event_id=first, by=ORGANIZER, topics=("jazz", "Live Music"))
    )
    await catalog.cancel_event(CancelEvent(event_id=first, by=ORGANIZER))
    projector = Projector(database, [CatalogProjection()])
    for partition in range(store.partitions):
        for event in await store.read_log(partition):
            # One event per batch, as a slow projector would.
            await projector([event], lease_of([event]))
    live = await database[COLLECTION].find({}).sort("_id").to_list()
    assert len(live) == 3
    await replay(database, [CatalogProjection()], redis=store.redis, partitions=store.partitions)
    assert await database[COLLECTION].find({}).sort("_id").to_list() == live


async def test_an_organizer_lists_their_own_events_in_every_state_and_no_one_elses(
    catalog: CatalogService, store: EventStore, database: Database, clock: ManualClock
) -> None:
    def starting_in(days: int) -> dict[str, Any]:
        starts_at = clock.now + timedelta(days=days)
        return {"starts_at": starts_at, "ends_at": starts_at + timedelta(hours=3)}

    other = Actor(account_id="organizer-2")
    await catalog.create_event(event_draft(clock, title="Draft", **starting_in(3)))
    live = await published(catalog, clock, title="Live", **starting_in(5))
    gone = await published(catalog, clock, title="Gone", **starting_in(7))
    await catalog.cancel_event(CancelEvent(event_id=gone, by=ORGANIZER))
    await catalog.create_event(event_draft(clock, title="Someone else's draft", by=other))
    await project_everything(store, database)

    page = await events_of_organizer(
        database, OrganizerEventsQuery(organizer_id=ORGANIZER.account_id)
    )
    assert [(e.title, e.status) for e in page.items] == [
        ("Draft", EventStatus.DRAFT),
        ("Live", EventStatus.PUBLISHED),
        ("Gone", EventStatus.CANCELLED),
    ]
    assert page.total == 3
    assert page.items[1].id == live

    drafts = await events_of_organizer(
        database, OrganizerEventsQuery(organizer_id=ORGANIZER.account_id, status=EventStatus.DRAFT)
    )
    assert [e.title for e in drafts.items] == ["Draft"]
    second = await events_of_organizer(
        database, OrganizerEventsQuery(organizer_id=ORGANIZER.account_id, page=2, page_size=2)
    )
    assert ([e.title for e in second.items], second.total) == (["Gone"], 3)
    theirs = await events_of_organizer(database, OrganizerEventsQuery(organizer_id="organizer-2"))
    assert [e.title for e in theirs.items] == ["Someone else's draft"]
