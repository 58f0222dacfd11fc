"""Credit notes of completed refunds: numbers in the invoice series, amounts that cancel out,
written by the projector with the order, and rebuilt the same by a replay."""

# The ticket fixtures are imported to be used here by name: their parameters "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from eventhunting.domain.accounts import Account
from eventhunting.domain.catalog import CatalogEvent
from eventhunting.domain.orders import (
    CreditNoteIssued,
    InvoiceIssued,
    Order,
    RequestedItem,
)
from eventhunting.domain.payments import RecordRefundResult, invoice_series, invoice_symbol
from eventhunting.domain.sales import EventSales
from eventhunting.domain.tickets import IssuedTicket
from eventhunting.projections.base import CHECKPOINTS_COLLECTION, Projector
from eventhunting.projections.orders import (
    CREDIT_NOTES_COLLECTION,
    INVOICES_COLLECTION,
    ORDERS_COLLECTION,
    REFUNDS_COLLECTION,
    OrdersProjection,
)
from eventhunting.projections.replay import replay
from eventhunting.projections.sales import SalesProjection
from eventhunting.services.catalog import CatalogService
from eventhunting.services.invoice_numbers import invoice_series_counter
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.services.refunds import RefundService
from eventhunting.services.sales import SalesQuery, SalesService
from eventhunting.services.tickets import TicketService
from eventhunting.store import keys
from eventhunting.store.append import EventStore
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.orders.conftest import (
    CREDENTIALS,
    ORGANIZER,
    PAY_URL,
    ManualClock,
    NewEvent,
    TicketTypeSpec,
)
from tests.integration.orders.test_payments_projection import (  # noqa: F401 - a fixture
    fail_updates,
    projector_database,
)
from tests.integration.orders.test_payments_races import ipn
from tests.integration.tickets.conftest import signing_key, signing_ring, tickets  # noqa: F401
from tests.support.leases import lease_of
from tests.support.sales_history import redis_now

# Prices whose VAT does not split evenly per ticket: 99,999 carries 9,091 of VAT alone but
# three of them 27,272, so credit notes that each rounded their own share would not cancel.
ODD = TicketTypeSpec("Odd", 99_999, 50)
EVEN = TicketTypeSpec("Even", 150_005, 50)

Database = Any


@pytest.fixture
def refunds(orders: OrderService) -> RefundService:
    return RefundService(orders)


async def paid(
    orders: OrderService,
    payments: PaymentService,
    event: CatalogEvent,
    quantities: Sequence[int],
    *,
    buyer: str = "buyer-1",
) -> Order:
    placement = await orders.place(
        buyer_id=buyer,
        event_id=event.id,
        items=[
            RequestedItem(ticket_type_id=ticket_type.id, quantity=quantity)
            for ticket_type, quantity in zip(event.ticket_types, quantities, strict=True)
        ],
    )
    link = await payments.start(placement.order.id, buyer_id=buyer, client_ip="203.0.113.5")
    answer = await payments.handle_ipn(ipn(link.txn_ref, placement.order.total_amount))
    assert answer.code == "00"
    return await orders.get(placement.order.id)


def outcome(order_id: str, refund_id: str, *, completed: bool = True) -> RecordRefundResult:
    return RecordRefundResult(
        order_id=order_id,
        refund_id=refund_id,
        completed=completed,
        response_code="00" if completed else "94",
        message="ok" if completed else "refused",
        transaction_no="77001122" if completed else None,
    )


def of_type(issued: Sequence[IssuedTicket], ticket_type_id: str) -> list[str]:
    return [t.ticket_id for t in issued if t.ticket_type_id == ticket_type_id]


def assert_cancels_out(invoice: InvoiceIssued, notes: Sequence[CreditNoteIssued]) -> None:
    """The original and its credit notes add up to 0 per line and in total, to the dong."""
    for position, line in enumerate(invoice.lines, start=1):
        credits = [c for note in notes for c in note.lines if c.line == position]
        assert line.quantity + sum(c.quantity for c in credits) == 0
        assert line.amount + sum(c.amount for c in credits) == 0
        assert line.vat_amount + sum(c.vat_amount for c in credits) == 0
        assert line.amount_before_vat + sum(c.amount_before_vat for c in credits) == 0
        assert {(c.vat_rate, c.unit_price) for c in credits} == {(line.vat_rate, line.unit_price)}
    assert invoice.total_amount + sum(n.total_amount for n in notes) == 0
    assert invoice.vat_amount + sum(n.vat_amount for n in notes) == 0
    assert invoice.amount_before_vat + sum(n.amount_before_vat for n in notes) == 0


async def test_partial_refunds_then_the_rest_get_credit_notes_that_cancel_the_invoice_exactly(
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    event = await new_event(ODD, EVEN)
    order = await paid(orders, payments, event, [3, 2])
    issued = await tickets.issue(order.id, signing_ring)
    odd = of_type(issued, event.ticket_types[0].id)
    even = of_type(issued, event.ticket_types[1].id)
    one = await refunds.request(order.id, by=ORGANIZER, reason="one seat", ticket_ids=odd[:1])
    two = await refunds.request(
        order.id, by=ORGANIZER, reason="two seats", ticket_ids=[odd[1], even[0]]
    )
    rest = await refunds.request(order.id, by=ORGANIZER, reason="the rest")

    # A refused refund gets no credit note and takes no number.
    assert await payments.record_refund(outcome(order.id, one.refund.id, completed=False))
    assert (await orders.get(order.id)).credit_notes == ()
    # Completed out of order: the rest first, then the refused one that went through later.
    for refund in (rest, one, two):
        clock.advance(60)
        assert await payments.record_refund(outcome(order.id, refund.refund.id))
    # Settled already: nothing more is written.
    assert await payments.record_refund(outcome(order.id, rest.refund.id)) is None

    refunded = await orders.get(order.id)
    invoice = refunded.invoice
    assert invoice is not None
    notes = refunded.credit_notes
    assert [n.refund_id for n in notes] == [rest.refund.id, one.refund.id, two.refund.id]
    assert [n.sequence for n in notes] == [2, 3, 4]
    assert [n.number for n in notes] == [f"{invoice.series}-0000000{s}" for s in (2, 3, 4)]
    for note, refund in zip(notes, (rest, one, two), strict=True):
        assert note.total_amount == -refund.refund.amount
        assert note.series == invoice.series
        assert note.symbol == invoice.symbol
        assert note.adjusts.number == invoice.number
        assert note.adjusts.symbol == invoice.symbol
        assert note.adjusts.issued_at == invoice.issued_at
        assert note.organizer_id == invoice.organizer_id
        assert note.amount_before_vat + note.vat_amount == note.total_amount
    # The one-seat note rounds its own VAT as the invoice does for one ticket (9,091) ...
    assert [(c.line, c.quantity, c.amount, c.vat_amount) for c in notes[1].lines] == [
        (1, -1, -99_999, -9_091)
    ]
    # ... the rest took what was left of each line, whatever the rounding of the others.
    assert [(c.line, c.quantity) for c in notes[0].lines] == [(1, -1), (2, -1)]
    assert_cancels_out(invoice, notes)


async def test_a_refund_of_money_we_could_not_keep_gets_no_credit_note(
    orders: OrderService,
    payments: PaymentService,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    event = await new_event(ODD)
    placement = await orders.place(
        buyer_id="buyer-1",
        event_id=event.id,
        items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=1)],
    )
    order = placement.order
    links = [
        await payments.start(order.id, buyer_id="buyer-1", client_ip="203.0.113.5")
        for _ in range(2)
    ]
    # Both attempts were paid: the second payment is recorded and refunded in full.
    for link in links:
        assert (await payments.handle_ipn(ipn(link.txn_ref, order.total_amount))).code == "00"
    duplicate = (await orders.get(order.id)).refunds[-1]
    assert await payments.record_refund(outcome(order.id, duplicate.id))
    after = await orders.get(order.id)
    assert after.invoice is not None
    assert after.credit_notes == ()
    assert [r.status for r in after.refunds] == ["completed"]


async def test_numbers_stay_gapless_across_invoices_and_credit_notes_of_racing_processes(
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    store: EventStore,
    redis_client: aioredis.Redis,
    archive_client: Any,
    mongo_database_name: str,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    # A second process: its own numbering turns, so the two race through the store's guard.
    rival = PaymentService(
        orders=orders,
        redis=redis_client,
        database=archive_client[mongo_database_name],
        credentials=CREDENTIALS,
        pay_url=PAY_URL,
        public_base_url="https://tickets.example",
        clock=clock,
    )
    event = await new_event(ODD, EVEN)
    first = [await paid(orders, payments, event, [2, 1], buyer=f"b{i}") for i in range(8)]
    placed = [
        (
            await orders.place(
                buyer_id=f"late{i}",
                event_id=event.id,
                items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=1)],
            )
        ).order
        for i in range(8)
    ]
    links = [
        await payments.start(o.id, buyer_id=o.buyer_id, client_ip="203.0.113.5") for o in placed
    ]
    requested = [
        await refunds.request(order.id, by=ORGANIZER, reason="cancelled") for order in first
    ]
    services = (payments, rival)
    await asyncio.gather(
        *(
            services[i % 2].record_refund(outcome(r.order_id, r.refund.id))
            for i, r in enumerate(requested)
        ),
        *(
            services[i % 2].handle_ipn(ipn(link.txn_ref, o.total_amount))
            for i, (link, o) in enumerate(zip(links, placed, strict=True))
        ),
    )
    documents: list[InvoiceIssued | CreditNoteIssued] = []
    for order_id in [o.id for o in first] + [o.id for o in placed]:
        order = await orders.get(order_id)
        assert order.invoice is not None
        documents += [order.invoice, *order.credit_notes]
    series = invoice_series(event.id, invoice_symbol(clock.now))
    assert {d.series for d in documents} == {series}
    assert sorted(d.sequence for d in documents) == list(range(1, 25))
    assert sum(isinstance(d, CreditNoteIssued) for d in documents) == 8
    partition = keys.partition_of(event.id, store.partitions)
    counter = invoice_series_counter(series)
    assert (await store.read_counters(partition, [counter]))[counter]["issued"] == 24
    for order in first:
        refunded = await orders.get(order.id)
        assert refunded.invoice is not None
        assert_cancels_out(refunded.invoice, refunded.credit_notes)

    # The read model, projected batch by batch, is rebuilt the same by a replay of the logs.
    projection = OrdersProjection()
    database = payments.database
    await projection.create_indexes(database)
    projector = Projector(database, [projection])
    after = "0"
    while batch := await store.read_log(partition, after, count=7):
        await projector(batch, lease_of(batch))
        after = batch[-1].position or after
    live = await read_model(database)
    assert sorted(n["sequence"] for n in live[CREDIT_NOTES_COLLECTION]) == sorted(
        d.sequence for d in documents if isinstance(d, CreditNoteIssued)
    )
    assert {d["_id"] for d in live[INVOICES_COLLECTION]} | {
        d["_id"] for d in live[CREDIT_NOTES_COLLECTION]
    } == {d.number for d in documents}
    await replay(database, [projection], redis=store.redis, partitions=store.partitions)
    assert await read_model(database) == live


async def read_model(database: Database) -> dict[str, list[dict[str, Any]]]:
    return {
        name: await database[name].find({}).sort("_id").to_list()
        for name in (
            ORDERS_COLLECTION,
            INVOICES_COLLECTION,
            CREDIT_NOTES_COLLECTION,
            REFUNDS_COLLECTION,
        )
    }


async def refunded_order_entries(
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    new_event: NewEvent,
    clock: ManualClock,
    projector: Projector,
) -> tuple[Order, int, list[Any], list[Any]]:
    """A refunded order projected up to its refund's completion, and the completion's entries."""
    event = await new_event(ODD)
    order = await paid(orders, payments, event, [2])
    requested = await refunds.request(order.id, by=ORGANIZER, reason="cancelled")
    partition = keys.partition_of(order.id, orders.partitions)
    before = await orders.store.read_log(partition, count=1000)
    await projector(before, lease_of(before))
    await payments.record_refund(outcome(order.id, requested.refund.id))
    completing = await orders.store.read_log(
        partition, after=before[-1].position or "0", count=1000
    )
    assert [e.type for e in completing] == ["RefundCompleted", "CreditNoteIssued"]
    return order, partition, before, completing


async def test_an_error_between_the_order_and_its_credit_note_leaves_neither(
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    new_event: NewEvent,
    clock: ManualClock,
    projector_database: Any,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> None:
    projector = Projector(projector_database, [OrdersProjection()])
    order, partition, before, completing = await refunded_order_entries(
        orders, payments, refunds, new_event, clock, projector
    )
    admin: Any = mongo_client.admin
    # The refund's and the order's updates go through; the credit note's (the third) fails.
    await fail_updates(admin, mode={"skip": 2}, code=2)
    try:
        with pytest.raises(OperationFailure):
            await projector(completing, lease_of(completing))
    finally:
        turned_off = await admin.command("configureFailPoint", "failCommand", mode="off")
    assert turned_off["count"] == 1, "the credit note's write was the one refused"
    document = await projector_database[ORDERS_COLLECTION].find_one({"_id": order.id})
    assert document is not None
    assert "credit_notes" not in document
    assert "credited_amount" not in document
    assert await projector_database[CREDIT_NOTES_COLLECTION].count_documents({}) == 0
    refund = await projector_database[REFUNDS_COLLECTION].find_one({"order_id": order.id})
    assert refund is not None
    assert refund["status"] == "requested"
    checkpoint = await projector_database[CHECKPOINTS_COLLECTION].find_one(
        {"_id": f"orders:{partition}"}
    )
    assert checkpoint is not None
    assert checkpoint["position"] == before[-1].position

    await projector(completing, lease_of(completing))
    await credited_together(projector_database, order)


async def test_a_write_conflict_in_the_credit_note_batch_is_retried_to_all_of_it(
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    new_event: NewEvent,
    clock: ManualClock,
    projector_database: Any,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> None:
    projector = Projector(projector_database, [OrdersProjection()])
    order, _, _, completing = await refunded_order_entries(
        orders, payments, refunds, new_event, clock, projector
    )
    admin: Any = mongo_client.admin
    await fail_updates(admin, mode={"times": 2}, code=112)
    try:
        await projector(completing, lease_of(completing))
    finally:
        turned_off = await admin.command("configureFailPoint", "failCommand", mode="off")
    assert turned_off["count"] == 2, "both write conflicts happened and were retried"
    await credited_together(projector_database, order)


async def credited_together(database: Database, order: Order) -> None:
    document = await database[ORDERS_COLLECTION].find_one({"_id": order.id})
    assert document is not None
    assert document["status"] == "refunded"
    note = await database[CREDIT_NOTES_COLLECTION].find_one({"order_id": order.id})
    assert note is not None
    assert document["credit_notes"] == [note["number"]]
    assert document["credited_amount"] == order.total_amount == -note["total_amount"]
    assert note["adjusts"]["number"] == order.invoice_number
    refund = await database[REFUNDS_COLLECTION].find_one({"order_id": order.id})
    assert refund is not None
    assert refund["status"] == "completed"


async def test_the_organizers_letters_in_force_name_the_series_of_each_document(
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    new_event: NewEvent,
    clock: ManualClock,
) -> None:
    chosen: dict[str, str | None] = {ORGANIZER.account_id: None}

    async def find_account(account_id: str) -> Account | None:
        return Account(
            account_id=account_id,
            email=f"{account_id}@example.com",
            full_name="Organizer",
            password_hash="-",
            roles=frozenset({"customer", "organizer"}),
            invoice_letters=chosen.get(account_id),
        )

    payments.find_account = find_account
    event = await new_event(ODD)
    order = await paid(orders, payments, event, [2])
    assert order.invoice is not None
    default = invoice_symbol(clock.now)
    assert (order.invoice.symbol, order.invoice.series) == (default, f"{default}-{event.id}")
    # The organizer chooses other letters: the invoice keeps its symbol, the credit note of
    # a refund completed afterwards starts the new series at 1.
    chosen[ORGANIZER.account_id] = "AB"
    requested = await refunds.request(order.id, by=ORGANIZER, reason="changed plans")
    assert await payments.record_refund(outcome(order.id, requested.refund.id))
    after = await orders.get(order.id)
    [note] = after.credit_notes
    symbol = invoice_symbol(clock.now, "AB")
    assert (note.symbol, note.series) == (symbol, invoice_series(event.id, symbol))
    assert (note.sequence, note.number) == (1, f"{symbol}-{event.id}-00000001")
    assert after.invoice == order.invoice


async def test_refunds_show_in_the_sales_figures_live_replayed_and_as_of_a_time(
    orders: OrderService,
    payments: PaymentService,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    new_event: NewEvent,
    catalog: CatalogService,
    clock: ManualClock,
) -> None:
    event = await new_event(ODD, EVEN)
    order = await paid(orders, payments, event, [3, 2])
    issued = await tickets.issue(order.id, signing_ring)
    odd_type, even_type = (t.id for t in event.ticket_types)
    one = await refunds.request(
        order.id, by=ORGANIZER, reason="one seat", ticket_ids=of_type(issued, odd_type)[:1]
    )
    clock.advance(60)
    assert await payments.record_refund(outcome(order.id, one.refund.id))
    await asyncio.sleep(0.005)
    partly_at = await redis_now(orders.store.redis)  # as_of reads log ids: Redis milliseconds
    await asyncio.sleep(0.005)
    clock.advance(60)
    rest = await refunds.request(order.id, by=ORGANIZER, reason="the rest")
    assert await payments.record_refund(outcome(order.id, rest.refund.id))
    invoice = (await orders.get(order.id)).invoice
    assert invoice is not None

    database = payments.database
    projection = SalesProjection()
    await projection.create_indexes(database)
    projector = Projector(database, [projection])
    partition = keys.partition_of(event.id, orders.partitions)
    after = "0"
    while batch := await orders.store.read_log(partition, after, count=5):
        await projector(batch, lease_of(batch))
        after = batch[-1].position or after
    sales = SalesService(orders.store, database, catalog.load_event, clock)

    def money(figures: EventSales) -> tuple[int, int, int, int, int]:
        revenue = figures.revenue
        return (revenue.gross, revenue.vat, revenue.refunded, revenue.refunded_vat, revenue.net)

    now = await sales.event_sales(
        event.id, SalesQuery(), account_id=ORGANIZER.account_id, is_admin=False
    )
    # Every ticket came back: all the money went back, VAT included, and nothing is left.
    assert money(now) == (
        invoice.total_amount,
        invoice.vat_amount,
        invoice.total_amount,
        invoice.vat_amount,
        0,
    )
    assert (now.tickets.sold, now.tickets.refunded) == (5, 5)
    assert {t.id: t.tickets.refunded for t in now.ticket_types} == {odd_type: 3, even_type: 2}
    assert (now.orders.paid, now.orders.refunded) == (1, 1)
    [bucket] = [b for b in now.timeline.items if b.tickets_refunded]
    assert (bucket.tickets_refunded, bucket.orders_refunded, bucket.refunded) == (
        5,
        1,
        invoice.total_amount,
    )

    # Folded from the log up to the first refund: one seat of 99,999 back, its own VAT.
    then = await sales.event_sales(
        event.id, SalesQuery(as_of=partly_at), account_id=ORGANIZER.account_id, is_admin=False
    )
    assert money(then) == (
        invoice.total_amount,
        invoice.vat_amount,
        99_999,
        9_091,
        invoice.total_amount - invoice.vat_amount - (99_999 - 9_091),
    )
    assert (then.tickets.refunded, then.orders.refunded) == (1, 0)

    built = {
        name: await database[name].find({}).sort("_id").to_list()
        for name in SalesProjection.collections
    }
    await replay(database, [projection], redis=orders.store.redis, partitions=orders.partitions)
    assert {
        name: await database[name].find({}).sort("_id").to_list()
        for name in SalesProjection.collections
    } == built
