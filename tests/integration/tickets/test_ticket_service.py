"""Issuing, reading and checking in tickets through the ticket service on a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import EventNotFound
from eventhunting.domain.errors import RateLimited
from eventhunting.domain.orders import OrderStatus, RefundRequested, RequestedItem
from eventhunting.domain.tickets import (
    AlreadyCheckedIn,
    InvalidTicket,
    NotDoorStaff,
    TicketStatus,
)
from eventhunting.services.orders import ORDERS, OrderService
from eventhunting.services.tickets import DoorStaff, TicketService
from eventhunting.store import keys
from eventhunting.store.append import AppendRequest, EventStore
from eventhunting.tickets.qr_codes import (
    InvalidTicketCode,
    TicketCode,
    sign_ticket_code,
    verify_ticket_code,
)
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.tickets.conftest import (
    ORGANIZER,
    Buyer,
    NewEvent,
    PaidOrder,
    TicketTypeSpec,
)

ADMIN = DoorStaff(account_id="admin-1", is_admin=True)


async def test_a_paid_order_gets_one_ticket_per_seat_with_signed_codes_once(
    tickets: TicketService, signing_ring: QrKeyRing, buyer: Buyer, free_order: PaidOrder
) -> None:
    buyer_id = await buyer(full_name="Trần Thị Bình")
    event, order = await free_order(buyer_id, quantity=3)

    issued = await tickets.issue(order.id, signing_ring)
    again = await tickets.issue(order.id, signing_ring)

    assert len(issued) == 3
    assert again == ()
    state = await tickets.order_tickets(order.id)
    assert state.tickets == issued
    assert len({t.code for t in issued}) == 3
    for ticket in issued:
        assert ticket.holder_name == "Trần Thị Bình"
        assert keys.partition_of(ticket.ticket_id, 4) == keys.partition_of(order.id, 4)
        verified = verify_ticket_code(ticket.qr, signing_ring)
        assert (verified.ticket_id, verified.event_id, verified.ticket_type_id) == (
            ticket.ticket_id,
            event.id,
            event.ticket_types[0].id,
        )
        assert "Bình" not in ticket.qr
        assert buyer_id not in ticket.qr


async def test_concurrent_issuing_of_one_order_writes_one_set(
    tickets: TicketService, signing_ring: QrKeyRing, buyer: Buyer, free_order: PaidOrder
) -> None:
    _, order = await free_order(await buyer(), quantity=2)

    results = await asyncio.gather(*(tickets.issue(order.id, signing_ring) for _ in range(10)))

    assert sum(1 for issued in results if issued) == 1
    history = await tickets.store.read_stream(ORDERS.stream(order.id))
    assert [e.type for e in history].count("TicketsIssued") == 1


async def test_the_first_scan_wins_and_later_scans_say_when(
    tickets: TicketService, signing_ring: QrKeyRing, buyer: Buyer, free_order: PaidOrder
) -> None:
    _, order = await free_order(await buyer(), quantity=1)
    (ticket,) = await tickets.issue(order.id, signing_ring)

    first = await tickets.check_in(ADMIN, qr=ticket.qr, gate="A")
    with pytest.raises(AlreadyCheckedIn) as second:
        await tickets.check_in(ADMIN, qr=ticket.qr, gate="B")

    assert first.ticket_id == ticket.ticket_id
    assert second.value.extra == {"checked_in_at": first.checked_in_at, "gate": "A"}
    (state,) = await tickets.tickets_of(order.id, Actor(order.buyer_id))
    assert state.status is TicketStatus.CHECKED_IN


async def test_of_fifty_concurrent_scans_of_one_ticket_exactly_one_succeeds(
    tickets: TicketService, signing_ring: QrKeyRing, buyer: Buyer, free_order: PaidOrder
) -> None:
    _, order = await free_order(await buyer(), quantity=1)
    (ticket,) = await tickets.issue(order.id, signing_ring)

    outcomes = await asyncio.gather(
        *(tickets.check_in(ADMIN, qr=ticket.qr) for _ in range(50)), return_exceptions=True
    )

    assert sum(1 for outcome in outcomes if not isinstance(outcome, BaseException)) == 1
    assert all(
        isinstance(outcome, AlreadyCheckedIn)
        for outcome in outcomes
        if isinstance(outcome, BaseException)
    )


async def test_the_checkin_count_is_exact_after_concurrent_scans_of_many_tickets(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    buyer: Buyer,
    free_order: PaidOrder,
    new_event: NewEvent,
) -> None:
    event = await new_event(
        TicketTypeSpec(name="Standing", price=0, quantity=50),
        TicketTypeSpec(name="Seated", price=0, quantity=50),
    )
    issued = []
    for number, quantity in enumerate((3, 4, 2)):
        _, order = await free_order(
            await buyer(email=f"b{number}@example.test"), quantity=quantity, event=event
        )
        issued.extend(await tickets.issue(order.id, signing_ring))
    admitted = issued[:7]
    before = await tickets.checkin_summary(ADMIN, event.id)

    # Each admitted ticket scanned five times at once, at two gates: one scan of each wins.
    outcomes = await asyncio.gather(
        *(
            tickets.check_in(ADMIN, qr=ticket.qr, gate=("Cổng A", "Cổng B", None)[n % 3])
            for ticket in admitted
            for n in range(5)
        ),
        return_exceptions=True,
    )
    summary = await tickets.checkin_summary(ADMIN, event.id)

    assert (before.checked_in, before.tickets) == (0, 9)
    wins = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    assert len(wins) == 7
    assert all(isinstance(o, AlreadyCheckedIn) for o in outcomes if isinstance(o, BaseException))
    assert (summary.checked_in, summary.tickets) == (7, 9)
    assert [(line.name, line.checked_in, line.tickets) for line in summary.by_ticket_type] == [
        ("Standing", 7, 9),
        ("Seated", 0, 0),
    ]
    assert sum(summary.by_gate.values()) == 7
    assert set(summary.by_gate) <= {"Cổng A", "Cổng B", None}
    assert {win.ticket_id for win in wins} == {ticket.ticket_id for ticket in admitted}


async def test_the_checkin_count_is_for_the_events_door_staff_only(
    tickets: TicketService, buyer: Buyer, free_order: PaidOrder, new_event: NewEvent
) -> None:
    event, _ = await free_order(await buyer(), quantity=1)
    other, _ = await free_order(await buyer(email="o@example.test"), quantity=1)
    draft = await new_event(TicketTypeSpec(name="Later", price=0, quantity=5), publish=False)

    staff = DoorStaff(account_id="staff-1", staff_events=frozenset({event.id}))
    organizer = DoorStaff(account_id=ORGANIZER.account_id, is_organizer=True)
    for allowed in (staff, organizer, ADMIN):
        assert (await tickets.checkin_summary(allowed, event.id)).tickets == 1
    with pytest.raises(NotDoorStaff):
        await tickets.checkin_summary(staff, other.id)
    with pytest.raises(NotDoorStaff):
        await tickets.checkin_summary(DoorStaff(account_id="customer-1"), event.id)
    with pytest.raises(EventNotFound):
        await tickets.checkin_summary(staff, draft.id)
    with pytest.raises(EventNotFound):
        await tickets.checkin_summary(ADMIN, "01JNOSUCHEVENT0000000000000")
    assert (await tickets.checkin_summary(organizer, draft.id)).checked_in == 0


async def test_a_ticket_is_checked_in_by_its_door_code_and_the_event(
    tickets: TicketService, signing_ring: QrKeyRing, buyer: Buyer, free_order: PaidOrder
) -> None:
    event, order = await free_order(await buyer(), quantity=1)
    (ticket,) = await tickets.issue(order.id, signing_ring)

    typed = ticket.code.replace("-", " ").lower()
    checked = await tickets.check_in(ADMIN, code=typed, door_event_id=event.id)

    assert checked.ticket_id == ticket.ticket_id
    with pytest.raises(InvalidTicket) as unknown:
        await tickets.check_in(ADMIN, code="2222-2222", door_event_id=event.id)
    assert unknown.value.reason == "not_found"


async def test_staff_of_another_event_and_other_doors_are_refused_as_other_event(
    tickets: TicketService, signing_ring: QrKeyRing, buyer: Buyer, free_order: PaidOrder
) -> None:
    event, order = await free_order(await buyer(), quantity=1)
    other, _ = await free_order(await buyer(email="x@example.test"), quantity=1)
    (ticket,) = await tickets.issue(order.id, signing_ring)

    with pytest.raises(InvalidTicket) as staff_elsewhere:
        await tickets.check_in(
            DoorStaff(account_id="staff-1", staff_events=frozenset({other.id})), qr=ticket.qr
        )
    with pytest.raises(InvalidTicket) as wrong_door:
        await tickets.check_in(ADMIN, qr=ticket.qr, door_event_id=other.id)
    with pytest.raises(NotDoorStaff):
        await tickets.check_in(DoorStaff(account_id="customer-1"), qr=ticket.qr)

    assert staff_elsewhere.value.reason == wrong_door.value.reason == "other_event"
    organizer = DoorStaff(account_id=ORGANIZER.account_id, is_organizer=True)
    staff = DoorStaff(account_id="staff-2", staff_events=frozenset({event.id}))
    assert (await tickets.check_in(staff, qr=ticket.qr)).ticket_id == ticket.ticket_id
    with pytest.raises(AlreadyCheckedIn):
        await tickets.check_in(organizer, qr=ticket.qr)


async def test_forged_altered_and_foreign_codes_are_invalid(
    tickets: TicketService, signing_ring: QrKeyRing, buyer: Buyer, free_order: PaidOrder
) -> None:
    _, order = await free_order(await buyer(), quantity=1)
    (ticket,) = await tickets.issue(order.id, signing_ring)
    foreign = QrKeyRing(signing_key=Ed25519PrivateKey.generate())
    code = verify_ticket_code(ticket.qr, signing_ring)
    altered = ticket.qr[:-5] + ("A" if ticket.qr[-5] != "A" else "B") + ticket.qr[-4:]

    forged = sign_ticket_code(
        TicketCode(
            ticket_id=code.ticket_id, event_id=code.event_id, ticket_type_id=code.ticket_type_id
        ),
        foreign,
    )
    reasons = []
    for text in (forged, altered, "hello"):
        with pytest.raises(InvalidTicketCode) as refused:
            await tickets.check_in(ADMIN, qr=text)
        reasons.append(refused.value.reason)

    assert reasons == ["unknown_key", "bad_signature", "malformed"]


async def test_a_full_refund_voids_the_tickets_even_before_any_read_model(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    buyer: Buyer,
    free_order: PaidOrder,
    store: EventStore,
) -> None:
    _, order = await free_order(await buyer(), quantity=2)
    first, second = await tickets.issue(order.id, signing_ring)
    await tickets.check_in(ADMIN, qr=first.qr)
    version = (await tickets.order_tickets(order.id)).version
    await store.append(
        AppendRequest(
            partition=keys.partition_of(order.id, store.partitions),
            stream=ORDERS.stream(order.id),
            events=[
                RefundRequested(
                    order_id=order.id,
                    refund_id="refund-1",
                    txn_ref="-",
                    amount=0,
                    reason="event_cancelled",
                    full=True,
                    requested_at=tickets.now(),
                    requested_by="admin-1",
                )
            ],
            expected_version=version,
        )
    )

    with pytest.raises(InvalidTicket) as refused:
        await tickets.check_in(ADMIN, qr=second.qr)

    assert refused.value.reason == "refunded"
    statuses = [t.status for t in await tickets.tickets_of(order.id, Actor("admin", True))]
    assert statuses == [TicketStatus.CHECKED_IN, TicketStatus.REFUNDED]


async def test_resends_are_limited_per_order_with_the_seconds_to_wait(
    tickets: TicketService, signing_ring: QrKeyRing, buyer: Buyer, free_order: PaidOrder
) -> None:
    _, order = await free_order(await buyer(), quantity=1)
    await tickets.issue(order.id, signing_ring)
    me = Actor(order.buyer_id)

    purposes = [await tickets.resend(order.id, me) for _ in range(3)]
    with pytest.raises(RateLimited) as limited:
        await tickets.resend(order.id, me)

    assert purposes == ["resend:1", "resend:2", "resend:3"]
    assert 3_500 < limited.value.retry_after_seconds <= 3_600
    state = await tickets.order_tickets(order.id)
    assert state.mails_requested == ("resend:1", "resend:2", "resend:3")


async def test_an_order_paid_by_any_method_gets_its_tickets(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    buyer: Buyer,
    new_event: NewEvent,
    orders: OrderService,
) -> None:
    event = await new_event(TicketTypeSpec(name="Standard", price=250_000, quantity=10))
    placed = await orders.place(
        buyer_id=await buyer(),
        event_id=event.id,
        items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=2)],
    )
    assert await tickets.issue(placed.order.id, signing_ring) == ()  # pending: nothing yet

    await orders.mark_paid(placed.order.id, amount=500_000, method="bank_transfer")

    assert len(await tickets.issue(placed.order.id, signing_ring)) == 2


async def test_a_refund_of_some_tickets_voids_only_those(
    tickets: TicketService,
    signing_ring: QrKeyRing,
    buyer: Buyer,
    free_order: PaidOrder,
    store: EventStore,
) -> None:
    _, order = await free_order(await buyer(), quantity=2)
    kept, refunded = await tickets.issue(order.id, signing_ring)
    version = (await tickets.order_tickets(order.id)).version
    await store.append(
        AppendRequest(
            partition=keys.partition_of(order.id, store.partitions),
            stream=ORDERS.stream(order.id),
            events=[
                RefundRequested(
                    order_id=order.id,
                    refund_id="refund-2",
                    txn_ref="-",
                    amount=0,
                    reason="cannot come",
                    full=False,
                    requested_at=tickets.now(),
                    requested_by="admin-1",
                    ticket_ids=(refunded.ticket_id,),
                    order_status=OrderStatus.PARTIALLY_REFUNDED,
                )
            ],
            expected_version=version,
        )
    )

    statuses = [t.status for t in await tickets.tickets_of(order.id, Actor("admin", True))]
    with pytest.raises(InvalidTicket) as refused:
        await tickets.check_in(ADMIN, qr=refunded.qr)

    assert statuses == [TicketStatus.ISSUED, TicketStatus.REFUNDED]
    assert refused.value.reason == "refunded"
    assert (await tickets.check_in(ADMIN, qr=kept.qr)).ticket_id == kept.ticket_id
