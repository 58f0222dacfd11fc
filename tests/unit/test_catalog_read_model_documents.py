"""Catalog read-model documents and filters, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventhunting.domain.catalog import (
    CatalogEvent,
    EventStatus,
    TicketType,
    Venue,
)
from eventhunting.projections.catalog import CatalogQuery, document_of, event_of, filter_of

STARTS = datetime(2030, 5, 1, 12, tzinfo=UTC)


def event(**overrides: object) -> CatalogEvent:
    fields: dict[str, object] = {
        "id": "E1",
        "version": 3,
        "status": EventStatus.PUBLISHED,
        "organizer_id": "O1",
        "title": "Đêm nhạc",
        "description": "Hòa tấu",
        "venue": Venue(name="Hall", address="Street"),
        "province": "ha-noi",
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(hours=2),
        "topics": ("jazz",),
        "max_tickets_per_customer": None,
        "ticket_types": (TicketType(id="T1", name="A", price=0, quantity=5, sale_ends_at=STARTS),),
        "drafted_at": STARTS - timedelta(days=9),
        "updated_at": STARTS - timedelta(days=8),
        "published_at": STARTS - timedelta(days=8),
    }
    fields.update(overrides)
    return CatalogEvent(**fields)  # type: ignore[arg-type]


def test_a_document_round_trips_to_the_same_event() -> None:
    assert event_of(document_of(event())) == event()


def test_a_document_keeps_real_datetimes_for_range_queries_and_sorting() -> None:
    document = document_of(event())
    assert document["_id"] == "E1"
    assert document["starts_at"] == STARTS
    assert document["ticket_types"][0]["sale_ends_at"] == STARTS


def test_naive_datetimes_read_back_are_taken_as_utc() -> None:
    document = document_of(event())
    document["starts_at"] = STARTS.replace(tzinfo=None)
    assert event_of(document).starts_at == STARTS


def test_a_document_is_listed_once_published_and_searches_folded_text() -> None:
    assert document_of(event())["listed"] is True
    assert document_of(event(published_at=None, status=EventStatus.DRAFT))["listed"] is False
    assert document_of(event())["search"] == "dem nhac\nhoa tau"


def test_the_default_filter_lists_only_listed_events() -> None:
    assert filter_of(CatalogQuery()) == {"listed": True}


def test_the_filter_combines_every_criterion() -> None:
    after, before = STARTS, STARTS + timedelta(days=1)
    assert filter_of(
        CatalogQuery(
            text="Đêm  NHẠC!",
            province="hue",
            topic="jazz",
            starts_after=after,
            starts_before=before,
        )
    ) == {
        "listed": True,
        "province": "hue",
        "topics": "jazz",
        "starts_at": {"$gte": after, "$lt": before},
        "$and": [{"search": {"$regex": "dem"}}, {"search": {"$regex": "nhac"}}],
    }


def test_search_words_are_letters_and_digits_only_so_no_regex_reaches_mongodb() -> None:
    assert filter_of(CatalogQuery(text=".* (a|b) [x]")) == {
        "listed": True,
        "$and": [{"search": {"$regex": word}} for word in ("a", "b", "x")],
    }
