"""The catalog aggregate: drafting, updating, publishing, cancelling, and ticket types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import (
    MAX_TICKET_TYPES,
    AddTicketType,
    CancelEvent,
    CatalogEvent,
    ChangeTicketType,
    CreateEvent,
    EventCancelled,
    EventDrafted,
    EventPublished,
    EventStatus,
    EventUpdated,
    NewTicketType,
    PublishEvent,
    TicketTypeAdded,
    TicketTypeChanged,
    TicketTypeNotFound,
    UpdateEvent,
    Venue,
    decide_add_ticket_type,
    decide_cancel_event,
    decide_change_ticket_type,
    decide_create_event,
    decide_publish_event,
    decide_update_event,
    evolve,
    fold,
    normalise_topics,
)
from eventhunting.domain.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from eventhunting.domain.events import DomainEvent, registry

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
ORGANIZER = Actor("org-1")
STARTS = NOW + timedelta(days=30)
ENDS = STARTS + timedelta(hours=4)


@dataclass(frozen=True)
class Recorded:
    data: DomainEvent
    version: int
    occurred_at: datetime


def ticket(**overrides: object) -> NewTicketType:
    fields: dict[str, object] = {"name": "Standard", "price": 200_000, "quantity": 100}
    fields.update(overrides)
    return NewTicketType(**fields)  # type: ignore[arg-type]


def draft(**overrides: object) -> CreateEvent:
    fields: dict[str, object] = {
        "by": ORGANIZER,
        "title": "Đêm nhạc Trịnh",
        "description": "Acoustic evening",
        "venue": Venue(name="Nhà hát Lớn", address="1 Tràng Tiền"),
        "province": "ha-noi",
        "starts_at": STARTS,
        "ends_at": ENDS,
        "topics": ("Nhạc sống",),
        "max_tickets_per_customer": 6,
        "ticket_types": (ticket(),),
    }
    fields.update(overrides)
    for many in ("topics", "ticket_types"):
        fields[many] = tuple(fields[many])  # type: ignore[call-overload]
    return CreateEvent(**fields)  # type: ignore[arg-type]


def decided(event_draft: CreateEvent | None = None) -> list[DomainEvent]:
    event_draft = event_draft or draft()
    return decide_create_event(
        None,
        event_draft,
        event_id="E1",
        ticket_type_ids=[f"T{i}" for i in range(len(event_draft.ticket_types))],
        now=NOW,
    )


def publish_event(state: CatalogEvent, *, now: datetime) -> list[DomainEvent]:
    return decide_publish_event(state, PublishEvent(event_id=state.id, by=ORGANIZER), now=now)


def cancel_event(state: CatalogEvent, *, reason: str | None = None) -> list[DomainEvent]:
    return decide_cancel_event(state, CancelEvent(event_id=state.id, by=ORGANIZER, reason=reason))


def update_event(state: CatalogEvent, *, now: datetime, **changes: object) -> list[DomainEvent]:
    command = UpdateEvent(event_id=state.id, by=ORGANIZER, **changes)  # type: ignore[arg-type]
    return decide_update_event(state, command, now=now)


def add_ticket_type(
    state: CatalogEvent, *, ticket_type_id: str, draft: NewTicketType
) -> list[DomainEvent]:
    command = AddTicketType(event_id=state.id, by=ORGANIZER, ticket_type=draft)
    return decide_add_ticket_type(state, command, ticket_type_id=ticket_type_id)


def change_ticket_type(
    state: CatalogEvent, ticket_type_id: str, **changes: object
) -> list[DomainEvent]:
    command = ChangeTicketType(
        event_id=state.id,
        ticket_type_id=ticket_type_id,
        by=ORGANIZER,
        **changes,  # type: ignore[arg-type]
    )
    return decide_change_ticket_type(state, command)


def apply(state: CatalogEvent | None, events: list[DomainEvent]) -> CatalogEvent:
    version = 0 if state is None else state.version
    for event in events:
        version += 1
        state = evolve(state, Recorded(event, version, NOW))
    assert state is not None
    return state


def drafted_state(event_draft: CreateEvent | None = None) -> CatalogEvent:
    return apply(None, decided(event_draft))


def published_state() -> CatalogEvent:
    state = drafted_state()
    return apply(state, list(publish_event(state, now=NOW)))


def code_of(error: pytest.ExceptionInfo[DomainError]) -> str:
    return error.value.code


# --- drafting ---------------------------------------------------------------------------


def test_drafting_emits_event_drafted_then_one_ticket_type_added_per_ticket_type() -> None:
    events = decided(draft(ticket_types=[ticket(name="A"), ticket(name="B", price=0)]))
    assert [type(event) for event in events] == [EventDrafted, TicketTypeAdded, TicketTypeAdded]
    assert [event.ticket_type_id for event in events[1:]] == ["T0", "T1"]  # type: ignore[attr-defined]


def test_a_drafted_event_is_a_draft_owned_by_its_organizer() -> None:
    state = drafted_state()
    assert state.status is EventStatus.DRAFT
    assert state.organizer_id == "org-1"
    assert state.version == 2
    assert state.ticket_types[0].id == "T0"
    assert state.topics == ("nhac-song",)


def test_times_are_stored_in_utc_at_millisecond_precision() -> None:
    local = timezone(timedelta(hours=7))
    starts = datetime(2030, 2, 1, 19, 0, 0, 123456, tzinfo=local)
    state = drafted_state(draft(starts_at=starts, ends_at=starts + timedelta(hours=2)))
    assert state.starts_at == datetime(2030, 2, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert state.starts_at.tzinfo is UTC


def test_an_event_must_end_after_it_starts() -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(ends_at=STARTS))
    assert code_of(raised) == "invalid_dates"
    assert raised.value.extra["errors"] == [
        {"field": "ends_at", "message": "the event must end after it starts"}
    ]


def test_an_event_must_start_in_the_future() -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(starts_at=NOW - timedelta(minutes=1)))
    assert code_of(raised) == "invalid_dates"


def test_an_event_may_not_start_more_than_three_years_ahead() -> None:
    far = NOW + timedelta(days=4 * 365)
    with pytest.raises(InvalidInput):
        decided(draft(starts_at=far, ends_at=far + timedelta(hours=1)))


def test_an_event_lasts_at_most_a_year() -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(ends_at=STARTS + timedelta(days=400)))
    assert raised.value.extra["errors"][0]["field"] == "ends_at"


def test_a_time_without_offset_is_invalid() -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(starts_at=datetime(2030, 2, 1, 19)))
    assert raised.value.extra["errors"][0]["field"] == "starts_at"


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
def test_a_title_is_required_and_bounded(title: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(title=title))
    assert raised.value.extra["errors"][0]["field"] == "title"


def test_text_is_trimmed() -> None:
    assert drafted_state(draft(title="  Jazz night  ")).title == "Jazz night"


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_max_tickets_per_customer_is_between_1_and_1000(limit: int) -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(max_tickets_per_customer=limit))
    assert raised.value.extra["errors"][0]["field"] == "max_tickets_per_customer"


def test_max_tickets_per_customer_may_be_left_unlimited() -> None:
    assert drafted_state(draft(max_tickets_per_customer=None)).max_tickets_per_customer is None


def test_a_free_ticket_type_has_price_zero() -> None:
    assert drafted_state(draft(ticket_types=[ticket(price=0)])).ticket_types[0].price == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"price": -1}, "ticket_types[0].price"),
        ({"quantity": 0}, "ticket_types[0].quantity"),
        ({"max_per_order": 0}, "ticket_types[0].max_per_order"),
        ({"max_per_order": 101}, "ticket_types[0].max_per_order"),
        ({"name": " "}, "ticket_types[0].name"),
    ],
)
def test_ticket_type_fields_are_bounded(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(ticket_types=[ticket(**overrides)]))
    assert raised.value.extra["errors"][0]["field"] == field


def test_sales_must_end_by_the_end_of_the_event() -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(ticket_types=[ticket(sale_ends_at=ENDS + timedelta(seconds=1))]))
    assert code_of(raised) == "invalid_sale_window"
    assert raised.value.extra["errors"][0]["field"] == "ticket_types[0].sale_ends_at"


def test_sales_must_start_before_they_end() -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(
            draft(ticket_types=[ticket(sale_starts_at=NOW + timedelta(days=2), sale_ends_at=NOW)])
        )
    assert code_of(raised) == "invalid_sale_window"


def test_sales_without_an_end_must_start_before_the_event_ends() -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(ticket_types=[ticket(sale_starts_at=ENDS)]))
    assert code_of(raised) == "invalid_sale_window"


def test_ticket_type_names_are_unique_within_an_event_ignoring_case_and_marks() -> None:
    with pytest.raises(InvalidInput) as raised:
        decided(draft(ticket_types=[ticket(name="Vé VIP"), ticket(name="ve vip")]))
    assert code_of(raised) == "duplicate_ticket_type_name"
    assert raised.value.extra["errors"][0]["field"] == "ticket_types[1].name"


def test_an_event_may_be_drafted_without_ticket_types() -> None:
    assert drafted_state(draft(ticket_types=[])).ticket_types == ()


def test_topics_become_slugs_without_duplicates() -> None:
    assert normalise_topics(["Nhạc Sống", "nhac song", "Jazz & Blues"]) == (
        "nhac-song",
        "jazz-blues",
    )


def test_a_topic_without_letters_is_invalid_topic() -> None:
    with pytest.raises(InvalidInput) as raised:
        normalise_topics(["ok", "!!!"])
    assert code_of(raised) == "invalid_topic"
    assert raised.value.extra["errors"][0]["field"] == "topics[1]"


def test_an_event_has_at_most_ten_topics() -> None:
    with pytest.raises(InvalidInput):
        normalise_topics([f"topic {i}" for i in range(11)])


# --- publishing and cancelling -------------------------------------------------------------


def test_publishing_a_draft_with_a_ticket_type_makes_it_public() -> None:
    state = published_state()
    assert state.status is EventStatus.PUBLISHED
    assert state.published_at == NOW
    assert state.is_public()


def test_publishing_needs_a_ticket_type() -> None:
    with pytest.raises(Conflict) as raised:
        publish_event(drafted_state(draft(ticket_types=[])), now=NOW)
    assert code_of(raised) == "no_ticket_types"


def test_publishing_twice_is_a_conflict() -> None:
    with pytest.raises(Conflict) as raised:
        publish_event(published_state(), now=NOW)
    assert code_of(raised) == "event_already_published"


def test_an_event_that_has_ended_cannot_be_published() -> None:
    with pytest.raises(Conflict) as raised:
        publish_event(drafted_state(), now=ENDS)
    assert code_of(raised) == "event_ended"


def test_cancelling_a_published_event_marks_it_cancelled() -> None:
    state = published_state()
    cancelled = apply(state, list(cancel_event(state, reason="rain")))
    assert cancelled.status is EventStatus.CANCELLED
    assert cancelled.cancelled_at == NOW
    assert cancelled.is_public()


def test_a_cancelled_event_can_change_no_more() -> None:
    state = published_state()
    cancelled = apply(state, list(cancel_event(state)))
    attempts: list[Callable[[], object]] = [
        lambda: cancel_event(cancelled),
        lambda: publish_event(cancelled, now=NOW),
        lambda: update_event(cancelled, now=NOW, title="New"),
        lambda: add_ticket_type(cancelled, ticket_type_id="T9", draft=ticket(name="Late")),
        lambda: change_ticket_type(cancelled, "T0", quantity=5),
    ]
    for attempt in attempts:
        with pytest.raises(Conflict) as raised:
            attempt()
        assert code_of(raised) == "event_cancelled"


def test_a_cancelled_draft_stays_invisible_to_others() -> None:
    state = drafted_state()
    cancelled = apply(state, list(cancel_event(state)))
    with pytest.raises(NotFound):
        cancelled.ensure_visible_to("someone", is_admin=False)


# --- updating -------------------------------------------------------------------------------


def test_an_update_carries_every_detail_after_the_change() -> None:
    [event] = update_event(drafted_state(), now=NOW, title="New title")
    assert isinstance(event, EventUpdated)
    assert event.title == "New title"
    assert event.province == "ha-noi"
    assert event.topics == ("nhac-song",)


def test_an_update_that_changes_nothing_emits_nothing() -> None:
    state = drafted_state()
    assert update_event(state, now=NOW, title=state.title) == []


def test_max_tickets_per_customer_can_be_cleared() -> None:
    state = drafted_state()
    changed = apply(state, list(update_event(state, now=NOW, max_tickets_per_customer=None)))
    assert changed.max_tickets_per_customer is None


def test_an_update_keeps_dates_in_order() -> None:
    with pytest.raises(InvalidInput) as raised:
        update_event(drafted_state(), now=NOW, ends_at=STARTS - timedelta(hours=1))
    assert code_of(raised) == "invalid_dates"


def test_the_end_of_an_underway_event_can_move_although_it_started() -> None:
    state = drafted_state()
    later = STARTS + timedelta(hours=1)
    [event] = update_event(state, now=later, ends_at=ENDS + timedelta(hours=1))
    assert isinstance(event, EventUpdated)


def test_an_update_may_not_end_the_event_before_a_ticket_type_sale_ends() -> None:
    state = drafted_state(draft(ticket_types=[ticket(sale_ends_at=ENDS)]))
    with pytest.raises(InvalidInput) as raised:
        update_event(state, now=NOW, ends_at=ENDS - timedelta(hours=1))
    assert code_of(raised) == "invalid_sale_window"


# --- ticket types ---------------------------------------------------------------------------


def test_a_ticket_type_can_be_added_to_a_published_event() -> None:
    state = published_state()
    [event] = add_ticket_type(state, ticket_type_id="T9", draft=ticket(name="VIP", price=900_000))
    assert isinstance(event, TicketTypeAdded)
    assert apply(state, [event]).ticket_type("T9").price == 900_000


def test_an_added_ticket_type_needs_a_unique_name() -> None:
    with pytest.raises(InvalidInput) as raised:
        add_ticket_type(published_state(), ticket_type_id="T9", draft=ticket(name="STANDARD"))
    assert code_of(raised) == "duplicate_ticket_type_name"


def test_an_event_has_at_most_fifty_ticket_types() -> None:
    state = drafted_state(
        draft(ticket_types=[ticket(name=f"T{i}") for i in range(MAX_TICKET_TYPES)])
    )
    with pytest.raises(Conflict) as raised:
        add_ticket_type(state, ticket_type_id="X", draft=ticket(name="one more"))
    assert code_of(raised) == "too_many_ticket_types"


def test_changing_a_ticket_type_records_the_quantity_before_and_after() -> None:
    [event] = change_ticket_type(published_state(), "T0", quantity=40)
    assert isinstance(event, TicketTypeChanged)
    assert (event.previous_quantity, event.quantity) == (100, 40)
    assert event.name == "Standard"


def test_changing_a_ticket_type_keeps_the_other_fields_and_its_place() -> None:
    state = drafted_state(draft(ticket_types=[ticket(name="A"), ticket(name="B")]))
    changed = apply(state, list(change_ticket_type(state, "T0", price=0)))
    assert [t.id for t in changed.ticket_types] == ["T0", "T1"]
    assert changed.ticket_type("T0").price == 0
    assert changed.ticket_type("T0").quantity == 100


def test_a_ticket_type_quantity_is_at_least_one() -> None:
    with pytest.raises(InvalidInput):
        change_ticket_type(published_state(), "T0", quantity=0)


def test_a_sale_window_can_be_cleared() -> None:
    state = drafted_state(draft(ticket_types=[ticket(sale_ends_at=ENDS)]))
    changed = apply(state, list(change_ticket_type(state, "T0", sale_ends_at=None)))
    assert changed.ticket_type("T0").sale_ends_at is None


def test_changing_an_unknown_ticket_type_is_ticket_type_not_found() -> None:
    with pytest.raises(TicketTypeNotFound) as raised:
        change_ticket_type(published_state(), "nope", quantity=5)
    assert code_of(raised) == "ticket_type_not_found"


def test_a_change_that_changes_nothing_emits_nothing() -> None:
    assert change_ticket_type(published_state(), "T0", quantity=100) == []


# --- visibility, sales, folding --------------------------------------------------------------


def test_a_draft_is_not_found_for_anyone_but_its_organizer_and_admins() -> None:
    state = drafted_state()
    state.ensure_visible_to("org-1", is_admin=False)
    state.ensure_visible_to("admin", is_admin=True)
    for stranger in ("someone", None):
        with pytest.raises(NotFound) as raised:
            state.ensure_visible_to(stranger, is_admin=False)
        assert code_of(raised) == "event_not_found"


def test_only_the_organizer_or_an_admin_manages_a_published_event() -> None:
    state = published_state()
    state.ensure_managed_by("org-1", is_admin=False)
    state.ensure_managed_by("admin", is_admin=True)
    with pytest.raises(Forbidden) as raised:
        state.ensure_managed_by("someone", is_admin=False)
    assert code_of(raised) == "not_event_organizer"


def test_a_ticket_type_is_on_sale_only_while_published_and_inside_its_window() -> None:
    opens = NOW + timedelta(days=1)
    state = drafted_state(draft(ticket_types=[ticket(sale_starts_at=opens)]))
    ticket_type = state.ticket_type("T0")
    assert not state.is_on_sale(ticket_type, opens)
    published = apply(state, list(publish_event(state, now=NOW)))
    assert not published.is_on_sale(ticket_type, NOW)
    assert published.is_on_sale(ticket_type, opens)
    assert not published.is_on_sale(ticket_type, ENDS)


def test_fold_rebuilds_the_state_from_recorded_events() -> None:
    events = decided()
    history = [Recorded(event, index + 1, NOW) for index, event in enumerate(events)]
    assert fold(history) == drafted_state()
    assert fold([]) is None


def test_every_catalog_event_is_registered_on_the_event_stream_kind() -> None:
    for name in (
        "EventDrafted",
        "EventUpdated",
        "EventPublished",
        "EventCancelled",
        "TicketTypeAdded",
        "TicketTypeChanged",
    ):
        assert registry.by_name[name].stream_kind == "event"


def test_catalog_events_survive_a_round_trip_through_the_registry() -> None:
    import msgspec

    for event in [*decided(), EventPublished(event_id="E1"), EventCancelled(event_id="E1")]:
        described = registry.type_of(event)
        raw = msgspec.json.decode(msgspec.json.encode(event))
        assert registry.decode(described.name, described.schema, raw) == event


@given(
    price=st.integers(min_value=-10, max_value=10),
    quantity=st.integers(min_value=-10, max_value=10),
)
def test_a_ticket_type_is_accepted_exactly_when_price_and_quantity_are_in_bounds(
    price: int, quantity: int
) -> None:
    try:
        decided(draft(ticket_types=[ticket(price=price, quantity=quantity)]))
        accepted = True
    except InvalidInput:
        accepted = False
    assert accepted == (price >= 0 and quantity >= 1)


def test_only_the_organizer_or_an_admin_may_decide_on_an_event() -> None:
    state = published_state()
    stranger = CancelEvent(event_id=state.id, by=Actor("someone"))
    with pytest.raises(Forbidden) as raised:
        decide_cancel_event(state, stranger)
    assert code_of(raised) == "not_event_organizer"
    admin = CancelEvent(event_id=state.id, by=Actor("admin", is_admin=True))
    assert [type(event) for event in decide_cancel_event(state, admin)] == [EventCancelled]


def test_a_draft_is_not_found_by_the_decisions_of_anyone_but_its_organizer() -> None:
    command = PublishEvent(event_id="E1", by=Actor("someone"))
    with pytest.raises(NotFound):
        decide_publish_event(drafted_state(), command, now=NOW)
    with pytest.raises(NotFound):
        decide_publish_event(None, command, now=NOW)
